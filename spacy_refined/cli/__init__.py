"""Command line: `python -m spacy_refined <command>` or `spacy-refined <command>`.

Bad input (a missing file, a malformed dump, a KB that does not fit) and
the failures of the machine that a user must fix (a full disk, a read-only
or forbidden path) end with exit code 1 and a one-line reason; set
`SPACY_REFINED_DEBUG=1` to see its traceback too. Any other exception is a
bug and surfaces as a traceback.

A command's module is imported only when that command runs (`COMMANDS`), so
that e.g. `kb lookup` does not load the evaluation and training code.
"""

import errno
import importlib
import os
import sys
import traceback
from typing import Optional, Sequence

import typer

from ..kb.errors import DumpError, KBError
from ._app import app as _app

# The module (in this package) that registers each top-level command.
# (In the order `--help` lists them.)
COMMANDS = {
    "calibrate": "calibrate",
    "wikipedia-corpus": "corpus",
    "convert": "corpus",
    "evaluate": "evaluate",
    "convert-docs": "evaluate",
    "kb": "kb",
    "link": "link",
    "train-config": "project_commands",
    "demo": "project_commands",
    "evaluate-qa": "qa",
}
# DumpError covers evaluation.formats.FormatError; KBError covers UnknownEntityError.
USER_ERRORS = (DumpError, KBError, FileNotFoundError, NotADirectoryError)
# OS errors that are the machine's state, not a bug: a full disk or quota, a read-only or forbidden path.
USER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
DEBUG_ENV = "SPACY_REFINED_DEBUG"


def load_commands(args: Optional[Sequence[str]] = None) -> typer.Typer:
    """Register the commands that `args` (a command line, without the
    program) can run: the one it names, or all (None, `--help`, unknown).

    RETURNS (typer.Typer): The app.
    """
    name = next((arg for arg in args if not arg.startswith("-")), None) if args is not None else None
    for module in [COMMANDS[name]] if name in COMMANDS else dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"{__name__}.{module}")
    return _app


def __getattr__(name: str) -> typer.Typer:
    # `spacy_refined.cli.app`: the app with every command.
    if name == "app":
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fail(error: BaseException, message: str) -> None:
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    sys.exit(1)


def main() -> None:
    """Run the CLI; bad input ends with exit code 1 and a one-line reason."""
    app = load_commands(sys.argv[1:])
    try:
        code = app(standalone_mode=False)  # a command's `typer.Exit(n)` comes back as n
    except USER_ERRORS as error:
        _fail(error, str(error))
    except OSError as error:
        if error.errno not in USER_ERRNOS:
            raise
        where = f": {error.filename}" if error.filename else ""
        _fail(error, f"{error.strerror or error}{where} (nothing was changed: the old files are intact)")
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as error:  # usage errors: unknown option, missing argument...
        typer.echo(f"error: {error.format_message()} (see --help)", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
