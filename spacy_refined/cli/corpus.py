"""Training data: `wikipedia-corpus` (EL documents from Wikipedia hyperlinks)
and `convert` (EL documents -> `.spacy`)."""

from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import spacy
import typer
from spacy.tokens import DocBin

from ..ids import NIL
from ..kb.store import RefinedKB
from ..training.corpus import docs_from_jsonl
from ..training.wikipedia_corpus import write_wikipedia_corpus
from ..util import DumpError, read_jsonl
from ._app import app


@app.command("wikipedia-corpus")
def wikipedia_corpus(
    dump: Path = typer.Argument(..., help="Wikipedia pages-articles XML dump (.bz2, .gz or plain)"),
    kb: Path = typer.Argument(..., help="KB directory: link targets become its entities by Wikipedia title"),
    output_dir: Path = typer.Argument(..., help="Directory for train.jsonl and dev.jsonl (EL documents)"),
    dev_share: float = typer.Option(0.2, help="Share of the documents in the dev set (by a hash of their ID)"),
    max_articles: int = typer.Option(0, help="Stop after this many articles with linked paragraphs (0: all)"),
    min_chars: int = typer.Option(50, help="Skip paragraphs shorter than this"),
) -> None:
    """Training and dev documents (EL JSONL) from Wikipedia hyperlinks.

    One document per paragraph that links to a KB entity; the anchors are the
    mentions, their targets (through redirects) the entities, NIL when the KB
    has no entity for the target.
    """
    if not dump.exists():
        raise FileNotFoundError(f"input file {dump} does not exist")
    if not 0.0 < dev_share < 1.0:
        raise typer.BadParameter(f"--dev-share must be between 0 and 1, not {dev_share}")
    counts = write_wikipedia_corpus(
        dump, RefinedKB.load(kb), output_dir, dev_share=dev_share, max_articles=max_articles, min_chars=min_chars
    )
    for split, count in counts.items():
        typer.echo(
            f"{split}: {count['documents']:,} documents from {count['articles']:,} articles, "
            f"{count['mentions']:,} mentions ({count['linked']:,} of KB entities) -> {output_dir / split}.jsonl"
        )


@app.command("convert")
def convert(
    input_path: Path = typer.Argument(
        ..., help="EL documents as JSONL: {id, text, labels: [{span: [start, end], entity_id}]}"
    ),
    output_path: Path = typer.Argument(..., help="Output .spacy file (DocBin)"),
    kb: Optional[Path] = typer.Option(None, help="KB directory: mentions get the coarse label of their entity's types"),
    lang: str = typer.Option("en", help="Language of the tokenizer"),
    pipeline: Optional[Path] = typer.Option(None, help="Tokenize with this pipeline instead of a blank one"),
) -> None:
    """Convert EL documents to a DocBin with gold entities for `spacy train`.

    NIL mentions are kept (kb_id "NIL") for mention detection; mentions whose
    entity is unknown or not in the KB are kept out of the disambiguation loss.
    """
    if not input_path.exists():
        raise FileNotFoundError(f"input file {input_path} does not exist")
    nlp = spacy.load(pipeline) if pipeline is not None else spacy.blank(lang)
    knowledge_base = RefinedKB.load(kb, nlp.vocab) if kb is not None else None
    docs = DocBin(store_user_data=True)
    n_mentions = n_linked = 0
    for doc in docs_from_jsonl(nlp, _read_el_records(input_path), kb=knowledge_base):
        docs.add(doc)
        n_mentions += len(doc.ents)
        n_linked += sum(1 for ent in doc.ents if ent.kb_id_ and ent.kb_id_ != NIL)
    if len(docs) == 0:
        raise DumpError(input_path, "no documents: the corpus is empty")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    docs.to_disk(output_path)
    typer.echo(
        f"wrote {len(docs):,} documents ({n_mentions:,} mentions, {n_linked:,} with an entity ID) to {output_path}"
    )


def _read_el_records(path: Path) -> Iterator[Dict[str, Any]]:
    """The records of an EL JSONL file, checked for the shape `convert` reads.

    path (Path): The file.
    YIELDS (Dict[str, Any]): The records, in order.
    RAISES (DumpError): Naming the line of a record that is not valid JSON or
        not an object with a 'text' string and 'labels' with [start, end] spans.
    """
    for line, record in read_jsonl(path):
        problem = _record_problem(record)
        if problem:
            raise DumpError(path, problem, line=line)
        yield record


def _record_problem(record: Any) -> str:
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return "expected an object with a 'text' string"
    labels = record.get("labels") or []
    if not isinstance(labels, list):
        return "expected 'labels' to be a list"
    for label in labels:
        span = label.get("span") if isinstance(label, dict) else None
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(i, int) for i in span)):
            return f"expected each label to be an object with a 'span' [start, end], not {label!r}"
    return ""
