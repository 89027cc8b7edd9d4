"""Command line: `python -m spacy_refined <command>` or `spacy-refined <command>`."""
import sys

import typer

from ..kb.errors import DumpError, KBError
from ._app import app
from . import calibrate, corpus, evaluate, kb, project_commands  # noqa: F401  (registers the commands)

USER_ERRORS = (DumpError, KBError, FileNotFoundError, NotADirectoryError, KeyError)


def main() -> None:
    """Run the CLI; bad input ends with exit code 1 and a one-line reason."""
    try:
        code = app(standalone_mode=False)  # a command's `typer.Exit(n)` comes back as n
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as error:  # usage errors: unknown option, missing argument...
        typer.echo(f"error: {error.format_message()} (see --help)", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
