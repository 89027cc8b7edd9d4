"""`evaluate-qa`: score a question-answering pipeline on QA JSONL."""

from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import srsly
import typer

from ..util import read_jsonl
from ._app import app
from .evaluate import GEMM


@app.command("evaluate-qa")
def evaluate_qa(
    pipeline: Path = typer.Argument(..., help="Trained pipeline directory (with a refined_qa component)"),
    questions: Path = typer.Argument(
        ..., help="QA JSONL: question, answers, optionally topic_entities, question_marked, qtype, path"
    ),
    k: int = typer.Option(10, "--k", help="The k of Hits@k"),
    entities: Optional[str] = typer.Option(
        None, help="Replace refined_qa's entity resolution: learned, gold or linker"
    ),
    limit: int = typer.Option(0, help="Evaluate only the first N questions (0: all)"),
    batch_size: int = typer.Option(256, help="Questions per batch"),
    gpu_id: int = typer.Option(-1, help="GPU to use, -1 for CPU"),
    gemm: str = typer.Option(
        "numpy", help="Matrix products on CPU: 'numpy' (numpy's BLAS) or 'blis' (thinc's default)"
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write all metrics as JSON here"),
) -> None:
    """Hits@1, Hits@k, answer-set F1 and entity-resolution accuracy (the top
    resolved entity is an annotated topic entity), overall and by hop count
    and question type, and questions per second."""
    import spacy
    from thinc.api import get_current_ops, use_ops

    from ..evaluation.qa import evaluate_qa as run
    from ..pipeline.qa import ENTITY_MODES, find_qa
    from ..training.qa_corpus import question_example

    if gemm not in GEMM:
        raise typer.BadParameter(f"{gemm!r}: choose one of {', '.join(GEMM)}", param_hint="--gemm")
    if entities is not None and entities not in ENTITY_MODES:
        raise typer.BadParameter(f"{entities!r}: choose one of {', '.join(ENTITY_MODES)}", param_hint="--entities")
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    records = [record for _, record in read_jsonl(questions)]
    if limit:
        records = records[:limit]
    on_cpu = get_current_ops().device_type == "cpu"
    with use_ops("numpy", use_blis=gemm == "blis") if on_cpu else nullcontext():
        nlp = spacy.load(pipeline)
        qa = find_qa(nlp)
        if entities is not None:
            qa.entities = entities
        metrics = run(nlp, [question_example(nlp, record) for record in records], k=k, batch_size=batch_size)
    metrics["settings"] = {
        "pipeline": str(pipeline),
        "questions": str(questions),
        "entities": qa.entities,
        "gemm": gemm,
    }
    typer.echo(
        f"{metrics['n']:,} questions: Hits@1 {metrics['hits1']}, Hits@{k} {metrics['hits_k']}, F1 {metrics['f1']}, "
        f"entity resolution {metrics['er_acc']}, {metrics['questions_per_second']} questions/s"
    )
    for name, group in metrics["groups"].items():
        if name.startswith("hops="):
            typer.echo(f"  {name}: n {group['n']:,}, Hits@1 {group['hits1']}, F1 {group['f1']}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(output, metrics)
        typer.echo(f"metrics written to {output}")
