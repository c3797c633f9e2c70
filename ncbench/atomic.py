"""Atomic file writes, and the other file operations ncbench does in a (possibly shared) results folder.

``write_atomic`` writes a temporary file in the target's folder, fsyncs it and renames it over the
target: a reader (or a crash) sees the old file or the new one, never half of one. Results, noise
indices, checkpoints and rendered tables are all written this way. The file gets the permissions of
an ordinary new file under the process's umask (``0o666 & ~umask``, e.g. ``-rw-r--r--`` under
022), not the private ``-rw-------`` of a temporary file, so a results folder shared on a cluster
stays readable.

Nothing is ever written *through* a link someone planted in a shared folder: a target that is a
symbolic link is refused (``UnsafePathError``), ``open_regular`` opens only regular files and never
follows a link, and ``move_aside`` moves a link itself, never its target, to a name nobody else
can have chosen (process id and a random part), so files set aside in the same second never
overwrite each other. A write killed by SIGKILL leaves its temporary file (``.<name>.<random>.tmp``);
``remove_temporaries`` clears those of one file stem, for a caller that holds the lock on it.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import IO, Callable

from .errors import NcbenchError

TMP_SUFFIX = ".tmp"


class UnsafePathError(NcbenchError):
    """A path in a results folder is a symbolic link or not a regular file where ncbench expects its own file."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem  # problem: "a symbolic link to /x", "not a regular file"
        super().__init__(f"{path}: is {problem}, not a file ncbench made; refusing to use it "
                         "(remove it if nobody should have put it there)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_link(path: str | Path) -> None:
    """Raise UnsafePathError when ``path`` is a symbolic link (ncbench writes its files itself)."""
    if os.path.islink(path):
        raise UnsafePathError(path, f"a symbolic link to {os.readlink(path)}")


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary binary file, then move it to ``path`` (never a link)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.chmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        refuse_link(path)  # planted while we wrote: os.replace would replace it, but say so instead
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def open_regular(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symbolic link at ``path`` and accepts only a regular file,
    which, opened for writing, must have no other hard link (so it is nobody else's file);
    UnsafePathError otherwise."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            refuse_link(path)
        raise
    st = os.fstat(fd)
    writing = flags & (os.O_WRONLY | os.O_RDWR)
    problem = ("not a regular file" if not stat.S_ISREG(st.st_mode) else
               f"a file with {st.st_nlink} hard links" if writing and st.st_nlink > 1 else None)
    if problem:
        os.close(fd)
        raise UnsafePathError(path, problem)
    return fd


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path`` (never through a link, never a FIFO or device), at most
    ``max_bytes``: UnsafePathError otherwise, ``ValueError`` when it is larger."""
    with os.fdopen(open_regular(path), "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    return raw


def move_aside(path: Path, folder: Path, reason: str) -> Path:
    """Move ``path`` (a link itself, not its target) into ``folder`` as
    ``<stem>.<reason>.<YYYYmmdd-HHMMSS>.<pid>-<random><suffix>``, a name no other move can take."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while True:
        dest = folder / f"{path.stem}.{reason}.{stamp}.{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
        if not os.path.lexists(dest):
            break
    shutil.move(str(path), dest)  # a rename within the results folder
    return dest


def temporaries(folder: Path, stem: str) -> list[Path]:
    """The temporary files made for files named ``<stem>.*`` in ``folder``: hidden, ending in
    ``.tmp`` (``write_atomic``'s ``.<stem>.<suffix>.<random>.tmp``, and those of a hidden name such
    as ``..<stem>.json.pending.tmp.<random>.tmp``); regular files only, never links."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = []
    for name in sorted(names):
        if name.startswith(".") and name.lstrip(".").startswith(f"{stem}.") and name.endswith(TMP_SUFFIX):
            p = Path(folder) / name
            try:
                if stat.S_ISREG(os.lstat(p).st_mode):
                    found.append(p)
            except FileNotFoundError:
                pass
    return found


def remove_temporaries(folder: Path, stem: str, log: Callable[[str], None]) -> None:
    """Delete the temporary files of ``<stem>.*`` that an interrupted writer left (``kill -9``
    during a write). Only for a caller that holds the lock on those files: nobody else writes them."""
    for p in temporaries(folder, stem):
        p.unlink(missing_ok=True)
        log(f"    removed orphan temporary file {p} left by an interrupted run")
