"""Link a corpus file into an output directory of shards: the `link` command's engine.

The input is streamed: at most a shard's worth of records is pending at any
time, whatever the size of the input. The local engine runs one `nlp.pipe`
over all unfinished shards (`n_process` worker processes), the Ray engine
the same pipeline on a Ray Data actor pool (`ray_engine`); both write the
same files. A rerun with the same input, formats and shard size skips the
shards already finished.
"""

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

from tqdm import tqdm

from ..util import DumpError, PathLike, release_free_memory
from .io import (
    DEFAULT_BATCH_SIZE,
    ON_ERROR,
    OUTPUT_FORMATS,
    LinkSettings,
    RecordError,
    ShardSet,
    detect_input_format,
    iter_raw,
    parse_record,
    prepare_output,
    read_stats,
    shard_of,
    write_summary,
)
from .records import arrow_schema, doc_record, has_relations, load_pipeline

ENGINES = ("local", "ray")


class LinkSettingsError(ValueError):
    """A setting of `link_corpus` out of its range."""


@dataclass
class LinkSummary:
    """The counts of a finished `link_corpus` job, over all its shards
    (those finished by earlier, interrupted runs too)."""

    read: int
    linked: int
    skipped: int
    shards: int
    resumed_shards: int
    seconds: float
    linked_now: int = 0

    @property
    def docs_per_s(self) -> float:
        """Documents linked per second by this run."""
        return self.linked_now / self.seconds if self.seconds else 0.0


def link_corpus(
    pipeline: PathLike,
    input_path: PathLike,
    output: PathLike,
    *,
    input_format: str = "auto",
    output_format: str = "jsonl",
    shard_size: int = 10_000,
    batch_size: Optional[int] = None,
    n_process: int = 1,
    on_error: str = "fail",
    kb: Optional[PathLike] = None,
    gpu_id: int = -1,
    engine: str = "local",
    ray_address: Optional[str] = None,
    n_actors: int = 0,
    actor_cpus: float = 1.0,
    actor_gpus: float = 0.0,
    progress: bool = True,
) -> LinkSummary:
    """Link every document of an input file into shards under `output`.

    pipeline (str / Path): The pipeline directory.
    input_path (str / Path): JSONL (`id`, `text`; gzip or bzip2 too), plain
        text (one document per line; its ID: the line number) or Parquet
        (a `text` and an optional `id` column).
    output (str / Path): The output directory: `part-NNNNN.jsonl` (or
        `.parquet`) and `part-NNNNN.stats.json` per shard, `job.json`,
        `summary.json`.
    input_format (str): "auto" (by suffix), "jsonl", "text" or "parquet".
    output_format (str): "jsonl" or "parquet".
    shard_size (int): Input records (lines, rows) per shard.
    batch_size (Optional[int]): Documents per `nlp.pipe` batch (None:
        `DEFAULT_BATCH_SIZE` of the engine). It sets the peak memory: the
        C heap keeps room for the largest arrays of the batches it has
        seen (fragmented by their varying sizes), which grow with the
        batch, while docs/s on CPU hardly depends on it locally.
    n_process (int): Local engine: worker processes (torch runs on one thread in each).
    on_error (str): A malformed record: "fail" (raise) or "skip" (report it,
        count it, write it to its shard's statistics).
    kb (Optional[str / Path]): Open the pipeline's KB from this path.
    gpu_id (int): Local engine: the GPU to run on, -1 for CPU.
    engine (str): "local" or "ray".
    ray_address (Optional[str]): Ray engine: the cluster to join (None: a
        local Ray runtime, or the one this process already joined).
    n_actors (int): Ray engine: pipeline actors (0: as many as fit).
    actor_cpus (float): Ray engine: CPUs per actor (and its torch threads).
    actor_gpus (float): Ray engine: GPUs per actor.
    progress (bool): Show a progress bar (documents, docs/s) on stderr.
    RETURNS (LinkSummary): Documents read, linked and skipped over all shards.
    RAISES (LinkSettingsError): A setting out of its range.
    RAISES (DumpError): A malformed record with `on_error` "fail", a missing
        input, or an output directory that holds another job's shards.
    """
    if on_error not in ON_ERROR:
        raise LinkSettingsError(f"on_error {on_error!r}: choose one of {', '.join(ON_ERROR)}")
    if output_format not in OUTPUT_FORMATS:
        raise LinkSettingsError(f"output format {output_format!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if engine not in ENGINES:
        raise LinkSettingsError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE[engine]
    if shard_size < 1 or batch_size < 1 or n_process < 1:
        raise LinkSettingsError("shard_size, batch_size and n_process must be at least 1")
    if gpu_id >= 0 and n_process > 1:
        raise LinkSettingsError("a GPU runs one process: use n_process 1 with gpu_id")
    input_path = Path(input_path)
    if not input_path.is_file():
        raise DumpError(input_path, "no such file")
    settings = LinkSettings(
        pipeline=Path(pipeline),
        input_path=input_path,
        output=Path(output),
        input_format=detect_input_format(input_path, input_format),
        output_format=output_format,
        shard_size=shard_size,
        batch_size=batch_size,
        on_error=on_error,
        kb=Path(kb) if kb is not None else None,
    )
    finished = prepare_output(settings.output, settings.job())
    started = time.perf_counter()
    with tqdm(unit="doc", desc="linking", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        if engine == "ray":
            from .ray_engine import link_shards_ray

            linked_now = link_shards_ray(
                settings, finished, bar, ray_address=ray_address, n_actors=n_actors, cpus=actor_cpus, gpus=actor_gpus
            )
        else:
            linked_now = _link_local(settings, finished, bar, n_process=n_process, gpu_id=gpu_id)
    return _summarize(settings.output, len(finished), linked_now, time.perf_counter() - started)


def _summarize(output: Path, resumed: int, linked_now: int, seconds: float) -> LinkSummary:
    stats = read_stats(output)
    summary = LinkSummary(
        read=sum(s["read"] for s in stats),
        linked=sum(s["linked"] for s in stats),
        skipped=sum(len(s["skipped"]) for s in stats),
        shards=len(stats),
        resumed_shards=resumed,
        seconds=seconds,
        linked_now=linked_now,
    )
    write_summary(output, asdict(summary))
    return summary


def _pending_records(settings: LinkSettings, finished, shards: ShardSet) -> Iterator[Tuple[str, Tuple[int, str]]]:
    """(text, (shard, id)) of every well-formed record of an unfinished shard;
    opens, counts and closes the shards in `shards` as it reads."""
    current = -1
    for position, raw in iter_raw(settings.input_path, settings.input_format):
        shard = shard_of(position, settings.shard_size)
        if shard in finished:
            continue
        if shard != current:
            shards.start(shard)
            current = shard
        shards.open[shard].stats.read += 1
        try:
            doc_id, text = parse_record(raw, position, settings.input_format)
        except RecordError as error:
            shards.skip(shard, error)
            continue
        shards.expected[shard] += 1
        yield text, (shard, doc_id)
    shards.closed.update(shards.open)


def _link_local(settings: LinkSettings, finished, bar: tqdm, *, n_process: int, gpu_id: int) -> int:
    import spacy
    import torch

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = load_pipeline(settings.pipeline, settings.kb)
    schema = arrow_schema(has_relations()) if settings.output_format == "parquet" else None
    shards = ShardSet(settings, schema, bar)
    threads = torch.get_num_threads()
    if n_process > 1:  # the workers are the parallelism; see model/threads.py on forks and torch threads
        torch.set_num_threads(1)
    try:
        docs = nlp.pipe(
            _pending_records(settings, finished, shards),
            as_tuples=True,
            batch_size=settings.batch_size,
            n_process=n_process,
        )
        committed = shards.committed
        for doc, (shard, doc_id) in docs:
            shards.add(shard, [doc_record(doc, doc_id)])
            if shards.committed != committed:  # a shard done: the memory held between shards goes back
                committed = shards.committed
                release_free_memory()
        shards.flush(final=True)
    finally:
        torch.set_num_threads(threads)
    return shards.linked_now
