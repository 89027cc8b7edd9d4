"""`link`: link every document of a corpus file into sharded, resumable output."""

from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command("link")
def link(
    pipeline: Path = typer.Argument(..., help="Trained pipeline directory"),
    input_path: Path = typer.Argument(
        ..., help="Documents: JSONL ('id', 'text'; .gz/.bz2 too), plain text (one per line) or Parquet"
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (shards, their statistics, a summary)"),
    input_format: str = typer.Option("auto", help="auto (.parquet, .txt, else JSONL), jsonl, text or parquet"),
    output_format: str = typer.Option("jsonl", help="jsonl or parquet"),
    shard_size: int = typer.Option(10_000, help="Input records (lines, rows) per shard: the unit of resumption"),
    batch_size: Optional[int] = typer.Option(
        None, help="Documents per batch (default: 16 locally, 64 on Ray): larger ones raise peak memory"
    ),
    n_process: int = typer.Option(1, help="Local engine: worker processes"),
    gpu_id: int = typer.Option(-1, help="Local engine: GPU to use, -1 for CPU"),
    on_error: str = typer.Option("fail", help="A malformed record: fail, or skip (reported with its line and counted)"),
    kb: Optional[Path] = typer.Option(None, help="Open the pipeline's KB from this path (every worker must read it)"),
    engine: str = typer.Option("local", help="local, or ray (Ray Data: an actor pool, locally or on a cluster)"),
    ray_address: Optional[str] = typer.Option(None, help="Ray engine: the cluster ('auto': the one on this node)"),
    actors: int = typer.Option(0, help="Ray engine: pipeline actors (0: as many as fit)"),
    actor_cpus: float = typer.Option(1.0, help="Ray engine: CPUs per actor"),
    actor_gpus: float = typer.Option(0.0, help="Ray engine: GPUs per actor (0: CPU)"),
    progress: bool = typer.Option(True, help="Show a progress bar with docs/s"),
) -> None:
    """Link a corpus: one record per document (its entities with span, text,
    KB ID, label, score, top candidates and types) in shards under --output.
    A rerun with the same arguments resumes: finished shards are skipped."""
    from ..linking import link_corpus
    from ..linking.corpus import LinkSettingsError

    try:
        summary = link_corpus(
            pipeline,
            input_path,
            output,
            input_format=input_format,
            output_format=output_format,
            shard_size=shard_size,
            batch_size=batch_size,
            n_process=n_process,
            on_error=on_error,
            kb=kb,
            gpu_id=gpu_id,
            engine=engine,
            ray_address=ray_address,
            n_actors=actors,
            actor_cpus=actor_cpus,
            actor_gpus=actor_gpus,
            progress=progress,
        )
    except (LinkSettingsError, ImportError) as error:  # a bad option, or Ray / pyarrow not installed
        raise typer.BadParameter(str(error)) from None
    typer.echo(
        f"read {summary.read:,} documents: linked {summary.linked:,}, skipped {summary.skipped:,} "
        f"({summary.shards:,} shards, {summary.resumed_shards:,} finished before this run; "
        f"{summary.linked_now:,} linked now at {summary.docs_per_s:.1f} docs/s) -> {output}"
    )
