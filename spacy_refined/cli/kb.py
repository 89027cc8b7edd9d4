"""`kb` commands: build, info, lookup, add, embed, verify, compact.

The builder and the pipeline are imported by the commands that use them,
and KBs are read by the spaCy-free `KBReader`, so that `kb info` and
`kb lookup` import neither spaCy nor torch.
"""

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..kb.reader import KBReader
from ._app import kb_app


@kb_app.command("build")
def build(
    output: Path = typer.Option(
        ..., "--output", "-o", help="KB directory to write (a KB there is replaced only once the new one is complete)"
    ),
    wikidata: Optional[Path] = typer.Option(None, help="Wikidata JSON dump (latest-all.json[.bz2|.gz])"),
    wikipedia: Optional[Path] = typer.Option(
        None, help="Wikipedia pages-articles XML dump (.bz2): anchors and redirects"
    ),
    entities: List[Path] = typer.Option(
        [], help="Your own entities as JSONL (id, label, aliases, description, types, facts)"
    ),
    mention_counts: List[Path] = typer.Option(
        [], help="Mention->entity counts: TSV (mention, id, count) or EL documents JSONL"
    ),
    triples: List[Path] = typer.Option(
        [], help="A KG as triples: TSV of head, relation, tail names (e.g. MetaQA's kb)"
    ),
    popularity: Optional[Path] = typer.Option(None, help="Popularity scores, TSV(.gz) of id and score (e.g. PageRank)"),
    language: str = typer.Option("en", help="Language of labels, aliases and descriptions"),
    n_types: int = typer.Option(1400, help="Size of the type inventory"),
    max_type_share: float = typer.Option(0.5, help="Skip types held by more than this share of typed entities"),
    max_candidates: int = typer.Option(30, help="Candidates kept per alias"),
    person_type: str = typer.Option("Q5", help="Type of people, for the first-name/surname rule"),
    processes: int = typer.Option(1, "--processes", "-p", help="Processes parsing the Wikidata dump"),
    progress: bool = typer.Option(True, help="Show progress bars"),
    overwrite: bool = typer.Option(False, help="Replace an --output that exists and is not a KB (deleting it)"),
) -> None:
    """Build a KB from Wikidata/Wikipedia dumps and/or your own entities."""
    from ..kb.builder import KBBuilder
    from ..kb.triples import add_triples

    if wikidata is None and not entities and not triples:
        raise typer.BadParameter("give --wikidata, --entities and/or --triples: a KB needs entities")
    for path in [wikidata, wikipedia, popularity, *entities, *triples, *mention_counts]:
        if path is not None and not path.exists():
            raise FileNotFoundError(f"input file {path} does not exist")
    builder = KBBuilder(
        output,
        language=language,
        n_types=n_types,
        max_type_share=max_type_share,
        max_candidates=max_candidates,
        person_type=person_type,
        progress=progress,
        overwrite=overwrite,
    )
    with builder:
        if wikidata is not None:
            builder.add_wikidata(wikidata, processes=processes)
        for path in entities:
            builder.add_entities_jsonl(path)
        for path in triples:
            add_triples(builder, path)
        if wikipedia is not None:
            builder.add_wikipedia(wikipedia)
        for path in mention_counts:
            builder.add_mention_counts(path)
        if popularity is not None:
            builder.add_popularity(popularity)
    stats = builder.stats
    typer.echo(
        f"KB written to {output}: {stats['entities']:,} entities, {stats['aliases']:,} aliases, "
        f"{stats['types']:,} types, {stats['facts']:,} facts in {stats['seconds']} s"
    )


@kb_app.command("info")
def info(
    path: Path = typer.Argument(..., help="KB directory"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Counts, types, languages and sizes of a KB."""
    kb = KBReader.load(path)
    sizes = {segment.path.name: segment.nbytes for segment in kb.segments}
    summary = {
        "path": str(path),
        "format_version": kb.manifest["format_version"],
        "language": kb.manifest.get("language"),
        "entities": len(kb),
        "segments": kb.manifest["segments"],
        "types": len(kb.type_ids),
        "type_hash": kb.type_hash,
        "relations": len(kb.relation_ids),
        "embeddings": kb.manifest.get("embeddings"),
        "bytes": sizes,
        "total_bytes": kb.nbytes,
        "sources": kb.manifest.get("build", {}).get("sources", []),
        "top_types": [{"id": t, "label": label} for t, label in list(zip(kb.type_ids, kb.type_labels))[:20]],
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    typer.echo(f"KB {path} (format {summary['format_version']}, language {summary['language']})")
    typer.echo(f"  entities   {summary['entities']:,} in {len(kb.segments)} segment(s), {kb.nbytes / 1e6:.1f} MB")
    for seg in kb.manifest["segments"]:
        typer.echo(
            f"    {seg['name']}: {seg['n_entities']:,} entities, {seg['n_aliases']:,} aliases, {seg['n_facts']:,} facts, {sizes[seg['name']] / 1e6:.1f} MB"
        )
    typer.echo(f"  types      {summary['types']:,} (hash {summary['type_hash']})")
    typer.echo(f"  relations  {summary['relations']:,}")
    typer.echo(f"  embeddings {summary['embeddings'] or 'none (run `kb embed`)'}")
    typer.echo("  top types  " + ", ".join(f"{t['label']} ({t['id']})" for t in summary["top_types"][:10]))


@kb_app.command("lookup")
def lookup(
    path: Path = typer.Argument(..., help="KB directory"),
    mention: str = typer.Argument(..., help="Mention text"),
    k: int = typer.Option(10, "-k", help="Number of candidates"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Candidates of a mention, with priors, labels and descriptions."""
    kb = KBReader.load(path)
    entities, priors = kb.candidates([mention], k)[0]
    rows = [
        {
            "id": kb.entity_id(e),
            "prior": round(float(p), 4),
            "label": kb.label(e),
            "description": kb.description(e),
            "types": kb.types(e)[:5],
        }
        for e, p in zip(entities, priors)
    ]
    if as_json:
        typer.echo(json.dumps({"mention": mention, "candidates": rows}, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo(f"no candidates for {mention!r}")
    for row in rows:
        typer.echo(f"{row['prior']:.4f}  {row['id']:<12} {row['label']} — {row['description']}")


@kb_app.command("add")
def add(
    path: Path = typer.Argument(..., help="KB directory"),
    entities: Path = typer.Argument(
        ..., help="Entities JSONL (id, label, aliases, description, types, facts, popularity in [0, 1])"
    ),
    mention_counts: Optional[Path] = typer.Option(
        None, help="Mention->entity counts for the new (or existing) entities"
    ),
) -> None:
    """Add entities to a built KB, without rebuilding it or retraining a model.
    Safe beside other writers: it waits for the KB's write lock."""
    from ..kb.builder import append_segment, read_mention_counts

    kb = KBReader.load(path)
    if not entities.exists():
        raise FileNotFoundError(f"input file {entities} does not exist")
    counts = list(read_mention_counts(mention_counts)) if mention_counts else []
    added = append_segment(path, entities, counts)
    kb.reload()
    typer.echo(f"added {added} entities to {path} (now {len(kb):,})")


@kb_app.command("embed")
def embed(
    pipeline: Path = typer.Argument(..., help="Trained pipeline with a refined_linker"),
    path: Path = typer.Argument(..., help="KB directory"),
    batch_size: int = typer.Option(1024, help="Descriptions encoded per batch"),
    force: bool = typer.Option(False, help="Recompute all embeddings, not only the missing ones"),
    gpu_id: int = typer.Option(-1, help="GPU to use, -1 for CPU"),
    progress: bool = typer.Option(True, help="Show progress bars"),
) -> None:
    """Precompute the description embeddings of the KB's entities, so linking looks them up."""
    import spacy

    from ..training.embed import embed_kb

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    KBReader.load(path)  # a clear error for a bad KB before the pipeline loads
    nlp = spacy.load(pipeline)
    encoded = embed_kb(nlp, path, batch_size, force=force, progress=progress)
    typer.echo(f"embedded {encoded:,} entities into {path}" if encoded else f"embeddings of {path} are up to date")


@kb_app.command("verify")
def verify(path: Path = typer.Argument(..., help="KB directory")) -> None:
    """Check every file of a KB against the checksum recorded when it was
    written, and every value of its arrays; exit 1 on any problem."""
    kb = KBReader.load(path)
    problems = kb.verify()
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    checked = "checksums and structure" if kb.manifest.get("checksums") else "structure (no checksums recorded)"
    typer.echo(f"KB {path} is intact: {len(kb):,} entities in {len(kb.segments)} segment(s), {checked} checked")


@kb_app.command("compact")
def compact(path: Path = typer.Argument(..., help="KB directory")) -> None:
    """Merge the segments that `kb add` appended into one, so that opening the
    KB and adding to it stay fast; the answers do not change."""
    from ..kb.compact import compact_kb

    result = compact_kb(path)
    if result["segments"] == 1:
        typer.echo(f"KB {path} has one segment: nothing to compact")
        return
    typer.echo(f"compacted {result['segments']} segments of {path} into one ({result['entities']:,} entities)")
    if result["embeddings_dropped"]:
        typer.echo(f"only some segments had embeddings, which are dropped: run `kb embed PIPELINE {path}`")
