"""Commands of the spaCy project (project.yml): `train-config`, `demo`; its data
commands are in `corpus`."""

import os
import re
from pathlib import Path
from typing import Optional

import typer

from ._app import app

TOK2VEC = "tok2vec"
# A Hugging Face model ID: "name" or "owner/name".
HF_MODEL_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
DEMO_TEXT = (
    "Angola is a country on the Atlantic Ocean in Southern Africa. Its capital is Luanda, "
    "and it is a member of the United Nations, OPEC and the African Union."
)


def check_encoder(encoder: str) -> None:
    """Stop with a clear error for an encoder that is neither a local model directory
    nor a Hugging Face model ID (that, offline, must already be in the cache)."""
    path = Path(encoder).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"encoder {encoder} is not a Hugging Face model directory: it has no config.json")
        return
    if encoder.startswith((".", "/", "~")) or encoder.count("/") > 1 or not HF_MODEL_ID_RE.fullmatch(encoder):
        raise FileNotFoundError(f"encoder path {encoder} does not exist")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("TRANSFORMERS_OFFLINE", "0") not in (
        "0",
        "",
    ):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(encoder, "config.json"), str):
            raise FileNotFoundError(
                f"encoder {encoder} is not in the Hugging Face cache, and downloads are off (HF_HUB_OFFLINE)"
            )


@app.command("train-config")
def train_config(
    encoder: str = typer.Argument(
        ..., help=f"'{TOK2VEC}' (CNN, CPU-friendly), or a Hugging Face model name or local path"
    ),
    output: Path = typer.Argument(..., help="Training config to write"),
    configs: Path = typer.Option(Path("configs"), help="Directory of tok2vec.cfg and transformer.cfg"),
) -> None:
    """Write the training config for an encoder.

    configs/tok2vec.cfg for "tok2vec", else configs/transformer.cfg with the
    encoder as `paths.encoder`.
    """
    from spacy.util import load_config

    source = configs / ("tok2vec.cfg" if encoder == TOK2VEC else "transformer.cfg")
    if not source.exists():
        raise FileNotFoundError(f"config {source} does not exist")
    config = load_config(source, interpolate=False)
    if encoder != TOK2VEC:
        check_encoder(encoder)
        config["paths"]["encoder"] = encoder
    output.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(output)
    typer.echo(f"wrote {output} ({source.name}{'' if encoder == TOK2VEC else f', encoder {encoder}'})")


@app.command("demo")
def demo(
    pipeline: str = typer.Argument(..., help="Trained pipeline: a directory or an installed package name"),
    text: Optional[str] = typer.Argument(None, help="Text to link (default: a sentence about Angola)"),
) -> None:
    """Link a text and print each entity: text, ID, label, description and score."""
    import spacy

    from ..ids import NIL
    from ..pipeline.linker import find_linker

    try:
        nlp = spacy.load(pipeline)
    except OSError:
        raise FileNotFoundError(
            f"pipeline {pipeline} is neither a pipeline directory nor an installed pipeline package"
        ) from None
    kb = find_linker(nlp).kb
    doc = nlp(text or DEMO_TEXT)
    typer.echo(doc.text)
    typer.echo(f"{'text':<24} {'ID':<10} {'label':<7} {'score':>5}  description")
    for ent in doc.ents:
        linked = ent.kb_id_ not in (NIL, "") and kb is not None and ent.kb_id_ in kb
        description = kb.description(kb.index(ent.kb_id_)) if linked else ""
        score = f"{ent._.kb_score:.2f}" if ent._.kb_score is not None else "-"
        typer.echo(f"{ent.text:<24} {ent.kb_id_ or '-':<10} {ent.label_:<7} {score:>5}  {description}")
    if not doc.ents:
        typer.echo("(no entities found)")
