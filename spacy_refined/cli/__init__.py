"""Command line: `python -m spacy_refined <command>` or `spacy-refined <command>`.

Bad input (a missing file, a malformed dump, a KB that does not fit) ends
with exit code 1 and a one-line reason; set `SPACY_REFINED_DEBUG=1` to see
its traceback too. Any other exception is a bug and surfaces as a traceback.
"""

import os
import sys
import traceback

import typer

from ..kb.errors import DumpError, KBError
from . import calibrate, corpus, evaluate, kb, project_commands  # noqa: F401  (registers the commands)
from ._app import app

# DumpError covers evaluation.formats.FormatError; KBError covers UnknownEntityError.
USER_ERRORS = (DumpError, KBError, FileNotFoundError, NotADirectoryError)
DEBUG_ENV = "SPACY_REFINED_DEBUG"


def main() -> None:
    """Run the CLI; bad input ends with exit code 1 and a one-line reason."""
    try:
        code = app(standalone_mode=False)  # a command's `typer.Exit(n)` comes back as n
    except USER_ERRORS as error:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as error:  # usage errors: unknown option, missing argument...
        typer.echo(f"error: {error.format_message()} (see --help)", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
