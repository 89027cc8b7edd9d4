"""`calibrate`: refit a trained pipeline's candidate scorer on dev documents."""

from pathlib import Path
from typing import Optional

import typer

from ..evaluation.formats import read_documents, read_id_map
from ._app import app
from .evaluate import FORMAT_HELP


@app.command("calibrate")
def calibrate(
    pipeline: Path = typer.Argument(..., help="Trained pipeline directory"),
    documents: Path = typer.Argument(
        ..., help="Dev documents with gold links: EL JSONL, GERBIL NIF (.ttl) or AIDA-CoNLL TSV"
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Where to write the calibrated pipeline (may be PIPELINE itself)"
    ),
    format: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    id_map: Optional[Path] = typer.Option(
        None, help="TSV title<TAB>ID mapping Wikipedia titles (NIF/AIDA input) to entity IDs"
    ),
    mentions: str = typer.Option(
        "gold",
        help="Fit on the 'gold' mentions, or on the 'predicted' ones (those the pipeline finds; NIL for those that match no gold span)",
    ),
    l2: float = typer.Option(1e-4, help="Pull of the weights towards the trained ones"),
    batch_size: int = typer.Option(32, help="Documents per batch"),
    gpu_id: int = typer.Option(-1, help="GPU to use, -1 for CPU"),
    overwrite: bool = typer.Option(False, help="Replace an --output that exists and is not a pipeline (deleting it)"),
) -> None:
    """Refit the refined_linker's candidate scorer (weights of prior, typing,
    description, coherence; bias against NIL) on dev documents, the rest of
    the model fixed, and save the pipeline (written beside OUTPUT, then
    renamed into place). An OUTPUT that exists must be a pipeline (or an
    empty directory), unless --overwrite is given."""
    import spacy

    from ..evaluation.runner import load_pipeline
    from ..kb.format import check_output, staging_directory
    from ..training.calibrate import calibrate_pipeline

    check_output(output, kind="pipeline", accept=is_pipeline, overwrite=overwrite)  # before the work
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = load_pipeline(pipeline, gold_spans=False)
    records = read_documents(documents, format, read_id_map(id_map) if id_map else None)
    try:
        result = calibrate_pipeline(nlp, records, mentions=mentions, batch_size=batch_size, l2=l2)
    except ValueError as error:  # nothing to fit on, or an unknown --mentions
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{result['mentions']:,} dev mentions: loss {result['loss_before']:.4f} -> {result['loss_after']:.4f}, "
        f"accuracy (NIL included) {100 * result['accuracy_before']:.1f} -> {100 * result['accuracy_after']:.1f}"
    )
    with staging_directory(output, kind="pipeline", accept=is_pipeline, overwrite=overwrite) as staging:
        nlp.to_disk(staging)
    typer.echo(f"calibrated pipeline written to {output}")


def is_pipeline(path: Path) -> bool:
    """Whether `path` is a saved spaCy pipeline: a directory with `config.cfg` and `meta.json`."""
    return (path / "config.cfg").is_file() and (path / "meta.json").is_file()
