from functools import partial
from pathlib import Path
from typing import Optional, Union


class DumpError(ValueError):
    """A dump file is malformed, truncated or unreadable. The message names
    the file and, where known, the line, column and byte offset (counted in
    the uncompressed data).
    """

    def __init__(
        self,
        path: Union[str, Path],
        reason: str,
        *,
        line: Optional[int] = None,
        column: Optional[int] = None,
        offset: Optional[int] = None,
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.column = column
        self.offset = offset
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        position = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{self.path}{position}: {reason}")

    def __reduce__(self):
        # Keep the exception picklable, e.g. when raised in a worker process.
        rebuild = partial(
            DumpError, line=self.line, column=self.column, offset=self.offset
        )
        return (rebuild, (self.path, self.reason))


class KBError(ValueError):
    """A KB directory is missing, corrupt, or does not fit its use."""
