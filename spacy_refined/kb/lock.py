"""The write lock of a KB directory: one writer at a time.

Every write to a KB (`kb add`, `kb embed`, `kb compact`, and the placement
of a rebuilt KB over an old one) holds an exclusive `fcntl.flock` on the
file `.lock` in the KB directory. Readers take no lock: each write becomes
visible to them by one atomic rename, of a file or of a directory.

The lock is a few lines of our own rather than the `filelock` package
because a KB directory can itself be replaced (renamed aside by a rebuild)
while a writer waits: once the lock is granted, its file must still be the
one in the directory at `path`, else the writer waits again on the new one.
"""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..util import PathLike
from .errors import KBError

LOCK_FILE = ".lock"


@contextmanager
def write_lock(path: PathLike) -> Iterator[None]:
    """Hold the exclusive write lock of the KB directory `path`.

    path (str / Path): The KB directory.
    RAISES (KBError): If `path` is not a directory.
    """
    lock_path = Path(path) / LOCK_FILE
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except (FileNotFoundError, NotADirectoryError):
            raise KBError(f"no KB at {path}: not a directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                current = os.stat(lock_path)
                same = (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the directory was replaced while we waited: lock the new one
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
