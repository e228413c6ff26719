"""Safe file access for everything ``gram`` reads and writes (docs/reliability.md, "Files").

* **Outputs** (:func:`output_target`): ``gram`` writes only regular files.  A target that is a directory,
  device node, FIFO or socket is refused with a one-line :class:`FileRuleError`; a symlink is written
  *through* (the file it points to is replaced atomically, the link stays a link).  Callers check every
  target before any work, and :func:`gram_pyro.checkpoint.atomic_path` checks again at the write.
* **Inputs** (:func:`read_limited`): a file is read only when it is a regular file (opened without
  blocking, so a FIFO cannot hang), and at most ``limit + 1`` bytes are read: a larger file is refused
  with the limit in the message (``/dev/zero`` behind a symlink is refused before any byte is read).
* **Run folders** (:func:`run_lock`): an exclusive ``fcntl.flock`` on ``RUN/.gram.lock`` while a process
  writes the run; a second writer fails at once with a one-line error.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# Size limits per kind of input file (bytes); docs/reliability.md lists them.
LIMITS = {"preset": MIB, "config": MIB, "input": MIB, "data": GIB, "history": GIB, "checkpoint": 8 * GIB,
          "cache": 2 * GIB}
LOCK_NAME = ".gram.lock"


class FileRuleError(OSError, ValueError):
    """An output target, input file or run folder that breaks a file rule: the message is one line (the CLI
    prints it).  An ``OSError`` (it is about a file) and a ``ValueError`` (like every other bad-input error)."""

    def __str__(self) -> str:  # OSError's str() would prefix "[Errno None]"
        return self.args[0]


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def output_target(path: str | os.PathLike) -> Path:
    """The regular file that writing ``path`` will replace: ``path`` itself, or the end of its symlink
    chain (written through).  Refuses directories, devices, FIFOs and sockets, and a missing or read-only
    parent folder, before anything is written."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as err:
        raise FileRuleError(f"cannot write {path}: {err.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        via = f" (via the symlink {path})" if target != path else ""
        raise FileRuleError(f"cannot write {target}{via}: it is {kind_of(st.st_mode)}; gram writes only regular files")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise FileRuleError(f"cannot write {path}: {parent} is not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise FileRuleError(f"cannot write {path}: folder {parent} is not writable")
    return target


def output_folder(path: str | os.PathLike) -> Path:
    """A folder ``gram`` will write files into: missing (it is created) or a directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileRuleError(f"cannot write into {path}: it is {kind_of(os.stat(path).st_mode)}, not a folder")
    if path.exists() and not os.access(path, os.W_OK | os.X_OK):
        raise FileRuleError(f"cannot write into {path}: the folder is not writable")
    return path


def show_size(n: int) -> str:
    return f"{n // GIB} GiB" if n % GIB == 0 else f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"


def read_limited(path: str | os.PathLike, kind: str, limit: int | None = None) -> bytes:
    """The bytes of regular file ``path`` (a ``kind`` of input, see ``LIMITS``), at most ``limit`` of them."""
    limit = LIMITS[kind] if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except FileNotFoundError:
        raise FileRuleError(f"{kind} file not found: {os.fspath(path)}") from None
    except OSError as err:
        raise FileRuleError(f"cannot read {kind} file {os.fspath(path)}: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileRuleError(f"cannot read {os.fspath(path)}: it is {kind_of(st.st_mode)}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1) if st.st_size <= limit else b""
    if st.st_size > limit or len(data) > limit:
        raise FileRuleError(f"{os.fspath(path)} is larger than the {show_size(limit)} limit for {kind} files")
    return data


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike):
    """Hold an exclusive lock on ``folder/.gram.lock`` (created if needed) while the block runs."""
    import fcntl

    path = Path(folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileRuleError(f"{folder} is in use by another gram process (locked: {path})") from None
        yield path
    finally:
        os.close(fd)
