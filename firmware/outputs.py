"""Safe output files for every ``ilmpq`` command that writes one.

Three rules, the same for every output (``-o``, ``--json``, ``--save``):

* **No symlinks.** An output path (a file, or an output directory and every file written into
  it) that is a symbolic link is refused: ilmpq never writes through a link, nor replaces one.
* **No silent overwrite.** An existing file is replaced only with ``--force``; without it the
  command stops *before* it starts working (and, for files it could not name in advance, before
  it moves anything into place). Only regular files are ever replaced: a directory, a FIFO or a
  device at an output path is refused even with ``--force``.
* **Atomic.** Every file is written to a temporary file in the same directory and renamed over
  its name when it is complete, so a failing or interrupted command leaves the previous file (or
  no file), never a partial one. Without ``--force`` the rename is a hard link that fails if the
  name appeared meanwhile (no check-then-write race). An output directory is filled in a private
  staging directory next to it and each file is moved in when the command succeeded.

Every refusal is an :class:`OutputError` (an :class:`~ilmpq.golden.errors.IlmpqValueError`):
the CLI prints it as one ``error:`` line naming the path, the problem and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ..golden.errors import IlmpqValueError

__all__ = ["OutputError", "check_output_file", "check_output_dir", "atomic_file", "atomic_path",
           "write_text", "write_bytes", "output_dir", "add_force_argument"]


class OutputError(IlmpqValueError):
    """An output path that ilmpq will not write: a symlink, an existing file without
    ``--force``, something that is not a regular file, or a failed write."""


def add_force_argument(parser) -> None:
    """The ``--force`` flag every output command takes."""
    parser.add_argument("--force", action="store_true",
                        help="replace existing output files (never symlinks, directories or "
                             "special files)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _lstat(p: Path, what: str):
    """``os.lstat`` of an output path (links not followed), ``None`` if nothing is there; a path
    that runs through a file is an :class:`OutputError` starting with ``what``."""
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise OutputError(f"{what}: Not a directory (a part of the path is a file)") from None


def check_output_file(path, *, force: bool = False) -> Path:
    """Check that ``path`` may be written as a regular file; return it as a :class:`Path`.

    Raises
    ------
    OutputError
        ``path`` is a symlink, a directory or a special file, an existing file without
        ``force``, or its parent is missing or not a directory.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise OutputError(f"{str(path)!r} is not a file name: give the output file's path")
    st = _lstat(p, f"cannot write {p}")
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"cannot write {p}: it is a symbolic link (ilmpq does not write "
                              f"through or over links): remove it or give the real path")
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot write {p}: Is a directory; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"cannot write {p}: it exists and is not a regular file (a FIFO, "
                              f"socket or device); give a new file name")
        if not force:
            raise OutputError(f"cannot write {p}: File exists; pass --force to replace it")
    parent = p.parent
    if not parent.exists():
        raise OutputError(f"cannot write {p}: No such file or directory ({parent} does not "
                          f"exist)")
    if not parent.is_dir():
        raise OutputError(f"cannot write {p}: Not a directory ({parent} is a file)")
    return p


def _commit(tmp: str, dst: Path, force: bool) -> None:
    """Move the complete temporary file ``tmp`` to ``dst`` (same directory)."""
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode)):
        check_output_file(dst, force=True)  # raises the right message
    if force:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)  # fails if dst exists: no check-then-write race
    except FileExistsError:
        raise OutputError(f"cannot write {dst}: File exists (it appeared while the command "
                          f"ran); pass --force to replace it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP,
                           errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(dst):  # file systems without hard links
            raise OutputError(f"cannot write {dst}: File exists; pass --force to replace it") \
                from None
        os.rename(tmp, dst)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(path, *, force: bool = False, mode: str = "w"):
    """Context manager yielding a file object open on a temporary file next to ``path``; the
    file becomes ``path`` when the ``with`` block ends without an exception (else it is
    deleted and ``path`` is untouched). ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path, force=force) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path, *, force: bool = False):
    """Like :func:`atomic_file` for writers that take a path (``QModel.save``): yields the
    temporary path to write; it becomes ``path`` when the block succeeds."""
    dst = check_output_file(path, force=force)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            yield tmp
        except OSError as e:
            if e.filename in (None, tmp) and e.strerror:
                raise OutputError(f"cannot write {dst}: {e.strerror}; nothing was written "
                                  f"(any previous {dst.name} is unchanged)") from None
            raise
        _commit(tmp, dst, force)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_text(path, text: str, *, force: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically under the rules above."""
    with atomic_file(path, force=force, mode="w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path, data: bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically under the rules above."""
    with atomic_file(path, force=force, mode="wb") as f:
        f.write(data)
    return Path(path)


def check_output_dir(path, *, force: bool = False, names=()) -> Path:
    """Check that ``path`` may be used as an output directory (missing, or a real directory)
    and that none of ``names`` (files the command will write into it) exists unless ``force``.
    """
    d = Path(path)
    if str(path) == "":
        raise OutputError("'' is not a directory name: give the output directory's path")
    st = _lstat(d, f"cannot create directory {d}")
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"cannot write into {d}: it is a symbolic link (ilmpq does not "
                              f"write through links): give the real directory")
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot create directory {d}: File exists and is not a "
                              f"directory; give a new directory name")
        for name in names:
            target = d / name
            if os.path.lexists(target):
                check_output_file(target, force=force)
    else:
        parent = d.parent
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot create directory {d}: Not a directory ({parent} is a "
                              f"file)")
    return d


@contextlib.contextmanager
def output_dir(path, *, force: bool = False, names=(), keep_on_error: bool = False):
    """Context manager for a command that writes files into the directory ``path``.

    Checks ``path`` (and the ``names`` it will write) first, then yields a private staging
    directory next to it. When the block succeeds, every file written there (subdirectories
    too) is checked against the rules above -- all of them before the first is moved -- and
    moved into ``path`` (created if missing), each with an atomic rename. When the block fails
    the staging directory is deleted and ``path`` is untouched, unless ``keep_on_error`` (e.g.
    a failed Vivado run whose logs the user needs: its files are moved in, then the error
    propagates; an interrupt or SIGTERM never keeps anything).
    """
    d = check_output_dir(path, force=force, names=names)
    parent = d.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".tmp", dir=parent)
    try:
        try:
            yield staging
        except BaseException as e:
            if keep_on_error and isinstance(e, Exception):  # not on Ctrl-C / SIGTERM
                with contextlib.suppress(IlmpqValueError, OSError):
                    _move_in(staging, d, force=force)
            if isinstance(e, OSError) and e.strerror and (
                    e.filename is None or str(e.filename).startswith(staging)):
                raise OutputError(f"cannot write into {d}: {e.strerror}; nothing was moved into "
                                  f"{d} (its files are unchanged)") from None
            raise
        _move_in(staging, d, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_in(staging: str, d: Path, *, force: bool) -> None:
    files = []
    for root, _dirs, fnames in os.walk(staging):
        for fname in fnames:
            src = os.path.join(root, fname)
            files.append((src, d / os.path.relpath(src, staging)))
    check_output_dir(d, force=force, names=[os.path.relpath(t, d) for _, t in files])
    d.mkdir(exist_ok=True)
    for src, dst in files:
        if os.path.islink(dst.parent):
            raise OutputError(f"cannot write into {dst.parent}: it is a symbolic link")
        dst.parent.mkdir(parents=True, exist_ok=True)
        _commit(src, dst, force)
