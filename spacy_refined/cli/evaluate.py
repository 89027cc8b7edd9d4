"""`evaluate`: score a pipeline on EL documents; `convert-docs`: NIF / AIDA -> EL JSONL."""

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, Optional

import srsly
import typer

from ..evaluation.formats import FORMATS, read_documents, read_id_map
from ..util import DumpError
from ._app import app

GEMM = ("numpy", "blis")
FORMAT_HELP = f"Input format: auto (by suffix: .ttl/.nif, .tsv/.conll, else JSONL) or one of {', '.join(FORMATS)}"


@app.command("evaluate")
def evaluate(
    pipeline: Path = typer.Argument(..., help="Trained pipeline directory"),
    documents: Path = typer.Argument(..., help="Gold documents: EL JSONL, GERBIL NIF (.ttl) or AIDA-CoNLL TSV"),
    gold_spans: bool = typer.Option(
        False,
        "--gold-spans",
        help="Link the gold mentions (disambiguation only): refined_linker's mentions are doc.ents, NER disabled",
    ),
    mentions: Optional[str] = typer.Option(
        None, help="Replace refined_linker's mention source: tagger, aliases or tagger+aliases"
    ),
    kb: Optional[Path] = typer.Option(
        None, help="KB for coverage, in-KB accuracy and candidate recall (default: the pipeline's)"
    ),
    format: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    id_map: Optional[Path] = typer.Option(
        None, help="TSV title<TAB>ID mapping Wikipedia titles (NIF/AIDA input) to entity IDs"
    ),
    limit: int = typer.Option(0, help="Evaluate only the first N documents (0: all)"),
    batch_size: int = typer.Option(32, help="Documents per batch"),
    gpu_id: int = typer.Option(-1, help="GPU to use, -1 for CPU"),
    gemm: str = typer.Option(
        "numpy",
        help="Matrix products on CPU, for whatever pipeline is evaluated: 'numpy' (numpy's BLAS, multi-threaded) or 'blis' (thinc's default)",
    ),
    nil_bias: Optional[float] = typer.Option(
        None, help="Replace refined_linker's nil_bias (added to NIL's logit; below 0: fewer NIL answers)"
    ),
    train_docs: Optional[Path] = typer.Option(
        None,
        help="The training documents (any input format): ED accuracy also for gold entities seen and not seen in them",
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write all metrics as JSON here"),
) -> None:
    """Entity linking (micro/macro P/R/F1, InKB), disambiguation accuracy,
    candidate recall@k, mention detection, speed (the median of timed passes
    after a warm-up batch) and peak memory. The pipeline is loaded under the
    chosen CPU matrix products (`--gemm`), so that two pipelines compared
    by this command run on the same ones."""
    import spacy
    from thinc.api import get_current_ops, use_ops

    from ..evaluation.runner import evaluate as run
    from ..evaluation.runner import linked_entities

    if gemm not in GEMM:
        raise typer.BadParameter(f"{gemm!r}: choose one of {', '.join(GEMM)}", param_hint="--gemm")
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    titles = read_id_map(id_map) if id_map else None
    records = read_documents(documents, format, titles)
    if not records:
        raise DumpError(documents, "no documents to evaluate on")
    if limit:
        records = records[:limit]
    training_entities = linked_entities(read_documents(train_docs, "auto", titles)) if train_docs else None
    on_cpu = get_current_ops().device_type == "cpu"
    with use_ops("numpy", use_blis=gemm == "blis") if on_cpu else nullcontext():
        metrics = run(
            pipeline,
            records,
            gold_spans=gold_spans,
            kb_path=kb,
            batch_size=batch_size,
            nil_bias=nil_bias,
            mention_source=mentions,
            training_entities=training_entities,
        )
    metrics["settings"]["documents"] = str(documents)
    metrics["settings"]["train_docs"] = str(train_docs) if train_docs else None
    typer.echo(summary(metrics))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(output, metrics)
        typer.echo(f"metrics written to {output}")


@app.command("convert-docs")
def convert_docs(
    input_path: Path = typer.Argument(..., help="GERBIL NIF (.ttl) or AIDA-CoNLL TSV (AIDA-YAGO2-dataset.tsv)"),
    output_path: Path = typer.Argument(..., help="EL JSONL to write"),
    format: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    id_map: Optional[Path] = typer.Option(
        None, help="TSV title<TAB>ID mapping Wikipedia titles to entity IDs (unmapped: ID null)"
    ),
    split: Optional[str] = typer.Option(None, help="AIDA: keep only this split (train, testa, testb)"),
) -> None:
    """Convert evaluation documents to EL JSONL (for `evaluate` and `convert`)."""
    records = read_documents(input_path, format, read_id_map(id_map) if id_map else None)
    if split is not None:
        records = [r for r in records if r.get("split") == split]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_jsonl(output_path, records)
    typer.echo(
        f"wrote {len(records):,} documents ({sum(len(r['labels']) for r in records):,} mentions) to {output_path}"
    )


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def summary(metrics: Dict[str, Any]) -> str:
    """A short human-readable summary of `evaluate`'s metrics."""
    gold, el, ed, md, speed = metrics["gold"], metrics["el"], metrics["ed"], metrics["md"], metrics["speed"]
    lines = [
        f"gold mentions {gold['mentions']:,}: linked {gold['linked']:,}, NIL {gold['nil']:,}, unknown ID {gold['unknown_id']:,}"
        + (f", entity not in the KB {gold['not_in_kb']:,}" if gold["not_in_kb"] is not None else ""),
    ]
    for variant, name in (
        ("nil_fp", "EL (links on NIL spans are errors)"),
        ("nil_ignored", "EL (links on NIL spans ignored)"),
    ):
        micro, macro = el[variant]["micro"], el[variant]["macro"]
        lines.append(
            f"{name}: micro P {_percent(micro['p'])} R {_percent(micro['r'])} F1 {_percent(micro['f'])} | macro F1 {_percent(macro['f'])}"
        )
    lines.append(
        f"ED accuracy: in-KB {_percent(ed['accuracy_in_kb'])} ({ed['correct']:,}/{ed['in_kb']:,}), of detected {_percent(ed['accuracy_detected'])}, "
        f"in-KB with NIL not an answer {_percent(ed['accuracy_in_kb_forced'])}"
    )
    if ed["by_training"]:
        lines.append(
            "ED accuracy by training data (NIL not an answer): "
            + ", ".join(
                f"{group} {_percent(c['accuracy_in_kb_forced'])} ({c['in_kb']:,})"
                for group, c in ed["by_training"].items()
            )
        )
    if ed["recall_at_k"]:
        lines.append("candidate recall@k: " + ", ".join(f"@{k} {_percent(v)}" for k, v in ed["recall_at_k"].items()))
    lines.append(f"MD: P {_percent(md['micro']['p'])} R {_percent(md['micro']['r'])} F1 {_percent(md['micro']['f'])}")
    gemm = metrics["settings"].get("gemm")
    lines.append(
        f"speed: {speed['docs_per_s']:.1f} docs/s, {speed['tokens_per_s']:,.0f} tokens/s (median of {speed['timed_passes']} timed passes"
        + (f", {gemm} matrix products" if gemm else "")
        + f"); peak memory {speed['peak_memory_mb']:,.0f} MB"
    )
    return "\n".join(lines)
