"""Bounded reads of user files for the tasks (docs/reliability.md, "Files"): the tasks import no ``gram_pyro``
module, so this is the tasks' copy of ``gram_pyro.files.read_limited``'s rule.

A file is read only when it is a regular file (opened without blocking, so a FIFO cannot hang; a symlink
to ``/dev/zero`` is refused before any byte is read), and at most ``limit + 1`` bytes are read: a larger
file is a one-line :class:`TaskInputError` with the limit in the message.
"""

from __future__ import annotations

import os
import stat

from gram_tasks.base import TaskInputError

MIB = 1 << 20
GRAPH_LIMIT = MIB  # a DIMACS .col file or a `gram solve` input file
DATA_LIMIT = 1024 * MIB  # a puzzle list or CSV (`--data`); Sudoku-Extreme's largest file is ~700 MiB
IDX_LIMIT = 256 * MIB  # an IDX image file, compressed or not (MNIST's largest is 47 MiB)


def read_limited(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (a ``what`` file, e.g. "DIMACS"), at most ``limit`` of them.

    A file that cannot be opened raises the ``OSError`` (callers name the file in their own words)."""
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise TaskInputError(f"cannot read {what} file {name!r}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1) if st.st_size <= limit else b""
    if st.st_size > limit or len(data) > limit:
        raise TaskInputError(f"{name}: larger than the {limit // MIB} MiB limit for {what} files")
    return data
