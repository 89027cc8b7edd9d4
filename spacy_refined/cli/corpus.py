"""`convert`: entity-linking JSONL documents -> `.spacy` training data."""
from pathlib import Path
from typing import Optional

import spacy
import typer
from spacy.tokens import DocBin

from ..kb.errors import DumpError
from ..kb.store import RefinedKB
from ..training.corpus import docs_from_jsonl
from ._app import app


@app.command("convert")
def convert(
    input_path: Path = typer.Argument(..., help="EL documents as JSONL: {id, text, labels: [{span: [start, end], entity_id}]}"),
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
    try:
        for doc in docs_from_jsonl(nlp, input_path, kb=knowledge_base):
            docs.add(doc)
            n_mentions += len(doc.ents)
            n_linked += sum(1 for ent in doc.ents if ent.kb_id_ and ent.kb_id_ != "NIL")
    except DumpError:  # names the file and line already
        raise
    except ValueError as error:
        raise DumpError(input_path, str(error)) from None
    if len(docs) == 0:
        raise DumpError(input_path, "no documents: the corpus is empty")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    docs.to_disk(output_path)
    typer.echo(f"wrote {len(docs):,} documents ({n_mentions:,} mentions, {n_linked:,} with an entity ID) to {output_path}")
