"""Linking with Ray Data: the pipeline on an actor pool, locally or on a cluster.

Each actor loads the pipeline once and links batches of rows with
`nlp.pipe`; the KB is opened by memory map from a path every node can read
(the pipeline's own, or `kb`), so the actors of a machine share its pages.
Ray schedules the actors (on GPUs when `gpus` > 0) and restarts an actor
that dies, retrying its batch, so every row comes out exactly once. The
`link` command reads its input in shards on the workers (`io.read_shard`)
and writes the results through the driver in input order, into the same
files as the local engine.
"""

from typing import Any, Dict, List, Optional, Set

from tqdm import tqdm

from ..util import PathLike
from .io import DEFAULT_BATCH_SIZE, LinkSettings, RecordError, ShardSet, read_shard, shard_offsets
from .records import RELATIONS, arrow_schema, doc_record, from_arrow, has_relations, load_pipeline, require_pyarrow


def require_ray():
    """Import Ray (with Ray Data).

    RETURNS (module): ray.
    RAISES (ImportError): Saying how to install it.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError('the Ray engine needs Ray Data: pip install "spacy-refined[ray]"') from None
    return ray


class LinkActor:
    """A Ray Data actor: loads the pipeline once, then links batches of rows."""

    def __init__(self, pipeline: str, kb: Optional[str], text_column: str, batch_size: int, cpus: float) -> None:
        import ray
        import spacy
        import torch

        if ray.get_gpu_ids():  # Ray shows an actor only its own GPUs
            spacy.require_gpu(0)
        else:
            torch.set_num_threads(max(1, int(cpus)))
        self.nlp = load_pipeline(pipeline, kb)
        self.text_column = text_column
        self.batch_size = batch_size
        self.relations = has_relations()
        schema = arrow_schema(self.relations)
        self.entities_type = schema.field("entities").type

    def __call__(self, batch):
        """Link the rows of a pyarrow table whose text is not null.

        batch (pyarrow.Table): The rows.
        RETURNS (pyarrow.Table): The rows without the text column, with
            `entities` (null where the text is null) and, when the pipeline
            has them, `relations` (JSON).
        """
        pa = require_pyarrow()
        texts = batch.column(self.text_column).to_pylist()
        rows = [i for i, text in enumerate(texts) if text is not None]
        entities: List[Any] = [None] * len(texts)
        relations: List[Any] = [None] * len(texts)
        for i, doc in zip(rows, self.nlp.pipe([texts[i] for i in rows], batch_size=self.batch_size)):
            record = doc_record(doc, "")
            entities[i] = record["entities"]
            relations[i] = record.get(RELATIONS)
        kept = [name for name in batch.schema.names if name != self.text_column]
        table = batch.select(kept).append_column("entities", pa.array(entities, type=self.entities_type))
        if self.relations:
            table = to_relations_column(table, relations)
        return table


def to_relations_column(table, relations: List[Any]):
    import json

    pa = require_pyarrow()
    values = [None if r is None else json.dumps(r) for r in relations]
    return table.append_column(RELATIONS, pa.array(values, type=pa.string()))


def link_dataset(
    dataset,
    pipeline: PathLike,
    *,
    kb: Optional[PathLike] = None,
    text_column: str = "text",
    batch_size: int = DEFAULT_BATCH_SIZE["ray"],
    n_actors: int = 0,
    cpus: float = 1.0,
    gpus: float = 0.0,
):
    """Link the documents of a Ray dataset on a pool of pipeline actors (lazily, as Ray Data does).

    dataset (ray.data.Dataset): Rows with a text column (null: not linked);
        the other columns (e.g. `id`) are kept.
    pipeline (str / Path): The pipeline directory, readable on every node.
    kb (Optional[str / Path]): Open the pipeline's KB from this path (on
        every node) instead of the pipeline's own.
    text_column (str): The column of the texts.
    batch_size (int): Rows per actor call and per `nlp.pipe` batch (the
        actor's peak memory; see `link_corpus`).
    n_actors (int): Actors in the pool (0: as many as the cluster's CPUs, or
        GPUs when `gpus` > 0, can hold).
    cpus (float): CPUs per actor (its torch threads on CPU).
    gpus (float): GPUs per actor (0: CPU).
    RETURNS (ray.data.Dataset): The rows without the text column, with
        `entities` (a list of the entity structs of `records.doc_record`)
        and, when the pipeline sets them, `relations` (JSON).
    """
    ray = require_ray()
    if n_actors <= 0:
        resources = ray.cluster_resources()
        n_actors = int(resources.get("GPU", 0) // gpus) if gpus > 0 else int(resources.get("CPU", 1) // cpus)
    return dataset.map_batches(
        LinkActor,
        fn_constructor_kwargs={
            "pipeline": str(pipeline),
            "kb": None if kb is None else str(kb),
            "text_column": text_column,
            "batch_size": batch_size,
            "cpus": cpus,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=max(1, n_actors)),
        num_cpus=cpus,
        num_gpus=gpus,
    )


def _shard_rows(item: Dict[str, Any], path: str, fmt: str, shard_size: int) -> List[Dict[str, Any]]:
    """The rows of one input shard: position, shard, ID and text, or the error of a malformed record."""
    from .io import parse_record

    rows = []
    for position, raw in read_shard(path, fmt, item["shard"], shard_size, item["offset"]):
        try:
            doc_id, text = parse_record(raw, position, fmt)
            error = None
        except RecordError as problem:
            doc_id, text, error = None, None, problem.reason
        rows.append({"shard": item["shard"], "position": position, "id": doc_id, "text": text, "error": error})
    return rows


def link_shards_ray(
    settings: LinkSettings,
    finished: Set[int],
    bar: tqdm,
    *,
    ray_address: Optional[str],
    n_actors: int,
    cpus: float,
    gpus: float,
) -> int:
    """The Ray engine of `corpus.link_corpus`: link the unfinished shards; returns the documents linked."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=ray_address)
    offsets = shard_offsets(settings.input_path, settings.input_format, settings.shard_size)
    items = [{"shard": k, "offset": offset} for k, offset in enumerate(offsets) if k not in finished]
    if not items:
        return 0
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the driver writes the shards in input order
    context.enable_progress_bars = False  # the bar is ours
    rows = ray.data.from_items(items).flat_map(
        _shard_rows,
        fn_kwargs={
            "path": str(settings.input_path.resolve()),
            "fmt": settings.input_format,
            "shard_size": settings.shard_size,
        },
        num_cpus=0,  # reading is light: the CPUs go to the actors
    )
    linked = link_dataset(
        rows,
        settings.pipeline.resolve(),
        kb=None if settings.kb is None else settings.kb.resolve(),
        batch_size=settings.batch_size,
        n_actors=n_actors,
        cpus=cpus,
        gpus=gpus,
    )
    shards = None
    for table in linked.iter_batches(batch_size=None, batch_format="pyarrow"):
        relations = RELATIONS in table.schema.names
        if shards is None:
            shards = ShardSet(settings, arrow_schema(relations) if settings.output_format == "parquet" else None, bar)
        columns = ["id", "entities"] + ([RELATIONS] if relations else [])
        records = from_arrow(table.select(columns))
        for shard, position, error, record in zip(
            table.column("shard").to_pylist(),
            table.column("position").to_pylist(),
            table.column("error").to_pylist(),
            records,
        ):
            if shard not in shards.open:
                shards.start(shard)
            shards.open[shard].stats.read += 1
            if error is not None:
                shards.skip(shard, RecordError(position, error))
            else:
                shards.expected[shard] += 1
                shards.add(shard, [record])
    if shards is None:
        return 0
    shards.closed.update(shards.open)
    shards.flush(final=True)
    return shards.linked_now
