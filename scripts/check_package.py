"""Install a packaged pipeline into a fresh venv and link a sentence with `spacy.load`.

Builds spacy-refined's own wheel, gathers the wheels of all dependencies
(pinned to the versions of the running environment, from pip's configured
indexes, local wheel directories and cache) into a wheelhouse, creates a
fresh venv, installs the pipeline package from the wheelhouse with
`--no-index`, and runs `spacy.load(name)` in a directory outside the source
tree with Hugging Face downloads off. Exit code 1 with a one-line reason on
failure.

    python scripts/check_package.py packages/en_x-0.1.0/dist/en_x-0.1.0-py3-none-any.whl en_x
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import venv
from pathlib import Path
from typing import Any, List, Union

import typer

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "Angola is a country on the Atlantic Ocean in Southern Africa. Its capital is Luanda, and it is a member of the United Nations."
CHECK = textwrap.dedent(
    """
    import sys
    import spacy
    import spacy_refined

    source, name, text = sys.argv[1:]
    assert not spacy_refined.__file__.startswith(source), f"spacy_refined was imported from the source tree: {spacy_refined.__file__}"
    nlp = spacy.load(name)
    doc = nlp(text)
    linked = [ent for ent in doc.ents if ent.kb_id_ not in ("", "NIL")]
    for ent in doc.ents:
        print(f"{ent.text!r:<28} {ent.kb_id_:<10} {ent.label_:<7} {ent._.kb_score:.2f}")
    assert linked, "no entity was linked"
    print(f"spacy.load({name!r}) from {nlp.path}: {len(linked)} of {len(doc.ents)} entities linked")
    """
)


def run(command: List[Union[str, Path]], show: bool = False, **kwargs: Any) -> None:
    """Run a command (printing its output if `show`); on failure stop with its
    last output and a one-line reason."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        typer.echo((result.stdout + result.stderr)[-3000:], err=True)
        typer.echo(
            f"error: `{' '.join(str(c) for c in command[:4])} ...` failed with exit code {result.returncode}", err=True
        )
        raise typer.Exit(1)
    if show:
        typer.echo(result.stdout.rstrip())


def main(
    package_wheel: Path = typer.Argument(..., help="The pipeline package's wheel (from `spacy package --build wheel`)"),
    name: str = typer.Argument(..., help="The pipeline package's name, for spacy.load"),
    work_dir: Path = typer.Option(Path("build/check-package"), help="Wheelhouse and venv (replaced)"),
    text: str = typer.Option(SENTENCE, help="Sentence to link"),
) -> None:
    """Check that the pipeline package installs and links text without the source tree or the network."""
    if not package_wheel.exists():
        typer.echo(
            f"error: package wheel {package_wheel} does not exist (run `python -m spacy project run package`)", err=True
        )
        raise typer.Exit(1)
    work_dir = work_dir.resolve()
    shutil.rmtree(work_dir, ignore_errors=True)
    wheelhouse = work_dir / "wheels"
    wheelhouse.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    typer.echo("building spacy-refined's wheel")
    run([*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", wheelhouse, ROOT])
    constraints = work_dir / "constraints.txt"
    frozen = subprocess.run([*pip, "freeze", "--exclude-editable"], capture_output=True, text=True, check=True).stdout
    constraints.write_text(frozen, encoding="utf8")
    typer.echo("gathering the dependencies' wheels")
    run(
        [
            *pip,
            "wheel",
            "--quiet",
            "--wheel-dir",
            wheelhouse,
            "--find-links",
            wheelhouse,
            "--constraint",
            constraints,
            package_wheel,
        ]
    )
    venv_dir = work_dir / "venv"
    typer.echo(f"installing {package_wheel.name} into a fresh venv, with --no-index")
    venv.create(venv_dir, with_pip=True)
    python = venv_dir / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheelhouse, package_wheel])
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))
    }
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1")
    with tempfile.TemporaryDirectory() as outside:
        script = Path(outside) / "check.py"
        script.write_text(CHECK, encoding="utf8")
        run([python, script, ROOT / "spacy_refined", name, text], show=True, cwd=outside, env=environment)


if __name__ == "__main__":
    typer.run(main)
