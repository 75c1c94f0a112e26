"""Reading untrusted input files without hanging, escaping or exhausting memory.

Every file ilmpq reads on a user's behalf (ONNX models and their external data, quantized-model
``.npz`` files, calibration and image ``.npy`` arrays) goes through this module:

* :func:`open_input` refuses anything but a regular file *before reading a byte*: a FIFO, a
  character device such as ``/dev/zero``, a socket or a block device is an
  :class:`InputFileError` (a FIFO is opened non-blocking, so it cannot hang the open either); a
  directory is the usual ``IsADirectoryError``.
* :func:`read_npy` and :func:`read_npz` parse every ``.npy`` header first and check the bytes it
  declares against the bytes the file (or the ZIP member) actually holds, so a 192-byte file
  declaring a TiB-sized array is rejected before anything is allocated. ZIP members must be
  stored or deflated, and a deflated member may not claim more than deflate's maximum expansion
  of its compressed size (:data:`MAX_DEFLATE_RATIO`).
* :func:`resolve_confined` maps a relative path found *inside* a file (ONNX external data) to a
  regular file inside a given directory: absolute paths, ``..`` and symlinks that lead outside
  are refused.
* :func:`loads_json` parses JSON text strictly: no ``NaN``/``Infinity``, no number that
  overflows to infinity, no nesting deeper than :data:`MAX_JSON_DEPTH`.

Errors are :class:`InputFileError` (an :class:`~ilmpq.golden.errors.IlmpqValueError`): the CLI
prints them as one ``error:`` line.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import stat
import zipfile

import numpy as np

from .errors import IlmpqValueError

__all__ = ["InputFileError", "open_input", "read_input", "read_npy", "read_npz",
           "npy_header", "resolve_confined", "loads_json", "MAX_DEFLATE_RATIO",
           "MAX_JSON_DEPTH"]

#: Largest expansion deflate can achieve (a stream of maximal back-references gives ~1032:1).
MAX_DEFLATE_RATIO = 1032

#: Deepest JSON nesting accepted (the model metadata needs 4 levels).
MAX_JSON_DEPTH = 64

_MAX_HEADER = 10_000  # numpy's own default limit of an .npy header


class InputFileError(IlmpqValueError):
    """An input file is unusable (a special file, an inconsistent header, outside its
    directory, malformed); the message names the file and the problem."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_input(path, what: str = "input", *, nofollow: bool = False):
    """Open ``path`` for binary reading if it is a regular file.

    A directory raises ``IsADirectoryError``; a FIFO, device or socket raises
    :class:`InputFileError` naming what it is. The file is opened with ``O_NONBLOCK`` so that
    opening a FIFO never waits for a writer; regular files ignore the flag, and it is cleared
    before the file object is returned. With ``nofollow`` a symlink as the last path component
    is refused (``O_NOFOLLOW``): for a path already resolved by :func:`resolve_confined`, so
    that a symlink swapped in afterwards cannot lead out.
    """
    p = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(p, flags)  # FileNotFoundError / PermissionError name the file
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), p)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{p}: is {_kind(st.st_mode)}, not a regular file; give the "
                                 f"{what} as a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path, what: str = "input", *, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_input`), at most ``max_bytes``."""
    with open_input(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise InputFileError(f"{os.fspath(path)}: {size} bytes is larger than the "
                                 f"{max_bytes} bytes a {what} may have")
        return f.read(size)


# -- .npy / .npz -------------------------------------------------------------------------------

def npy_header(fp, where: str):
    """Read the magic and header of an ``.npy`` stream at its current position.

    Returns ``(shape, fortran_order, dtype, header_bytes)`` where ``header_bytes`` counts the
    magic and the header. Raises :class:`InputFileError` for a missing magic or a malformed
    header.
    """
    fmt = np.lib.format
    start = fp.tell() if hasattr(fp, "tell") else 0
    try:
        major, minor = fmt.read_magic(fp)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp, max_header_size=_MAX_HEADER)
        elif (major, minor) == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp, max_header_size=_MAX_HEADER)
        elif (major, minor) == (3, 0):
            from numpy.lib import _format_impl
            shape, fortran, dtype = _format_impl._read_array_header(
                fp, (3, 0), max_header_size=_MAX_HEADER)
        else:
            raise ValueError(f"unknown .npy format version {major}.{minor}")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as e:
        raise InputFileError(f"{where}: not a valid .npy array header ({e})") from None
    return tuple(int(d) for d in shape), fortran, dtype, fp.tell() - start


def _array_bytes(shape, dtype) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * dtype.itemsize


def _check_header(fp, available: int, where: str, what: str):
    """Read the ``.npy`` header at ``fp`` (of which ``available`` bytes exist, header included)
    and check that the array it declares fits those bytes, before anything is allocated."""
    shape, fortran, dtype, hlen = npy_header(fp, where)
    if dtype.hasobject:
        raise InputFileError(f"{where}: holds a Python object array, which needs unpickling; "
                             f"Object arrays cannot be loaded when allow_pickle=False (give a "
                             f"numeric array)")
    need = _array_bytes(shape, dtype)
    have = available - hlen
    if need > have:
        raise InputFileError(
            f"{where}: the header declares a {dtype} array of shape {shape} ({need} bytes) but "
            f"the file holds only {max(have, 0)} bytes of data; the file is truncated or its "
            f"header is corrupt")
    return shape, fortran, dtype, hlen


def _read_array(fp, where: str) -> np.ndarray:
    try:
        return np.lib.format.read_array(fp, allow_pickle=False, max_header_size=_MAX_HEADER)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise InputFileError(f"{where}: cannot read the array ({e})") from None


def read_npy(path, what: str = "array", *, mmap: bool = False) -> np.ndarray:
    """One array from an ``.npy`` file: a regular file, no pickles, and a header whose declared
    size the file actually holds (checked before allocating). With ``mmap`` a non-empty array
    is a read-only ``numpy.memmap`` of the opened file (its data stays on disk until used)."""
    p = os.fspath(path)
    with open_input(p, what) as f:
        size = os.fstat(f.fileno()).st_size
        shape, fortran, dtype, hlen = _check_header(f, size, p, what)
        if mmap and _array_bytes(shape, dtype) > 0:
            return np.memmap(f, dtype=dtype, mode="r", offset=hlen, shape=shape,
                             order="F" if fortran else "C")
        f.seek(0)
        return _read_array(f, p)


def read_npz(raw: bytes, where: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive held in ``raw``, each member's header checked against
    the member's size (and the member's size against its compressed size) before allocating.

    Raises :class:`InputFileError` (a ``ValueError``) for anything malformed, and lets
    ``zipfile.BadZipFile`` / ``RuntimeError`` (encrypted members) propagate for the caller to
    name.
    """
    out = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        for info in z.infolist():
            name = info.filename
            mwhere = f"{where} member {name!r}"
            if not name.endswith(".npy"):
                raise InputFileError(f"{mwhere}: not an .npy member")
            if info.header_offset + info.compress_size > len(raw):
                raise InputFileError(f"{mwhere}: claims {info.compress_size} bytes at offset "
                                     f"{info.header_offset}, past the end of the "
                                     f"{len(raw)}-byte file")
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise InputFileError(f"{mwhere}: stored member of {info.compress_size} "
                                         f"bytes claims {info.file_size} bytes")
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024:
                    raise InputFileError(
                        f"{mwhere}: claims {info.file_size} bytes from {info.compress_size} "
                        f"compressed bytes, more than deflate can expand ({MAX_DEFLATE_RATIO}:1)")
            else:
                raise InputFileError(f"{mwhere}: compression method {info.compress_type} is "
                                     f"not supported (only stored or deflated, as numpy writes)")
            with z.open(info) as m:
                _check_header(m, info.file_size, mwhere, "numeric")
            with z.open(info) as m:
                out[name[:-4]] = _read_array(m, mwhere)
    return out


# -- paths inside files ------------------------------------------------------------------------

def resolve_confined(base_dir, rel, where: str, what: str = "file") -> str:
    """The real path of ``rel`` (a path read from inside a file) under ``base_dir``.

    Refused with :class:`InputFileError`: an empty or absolute path, a ``..`` component, a path
    that (after resolving symlinks) is outside ``base_dir``, and anything but a regular file.
    """
    if isinstance(rel, bytes):
        rel = rel.decode("utf-8", "replace")
    if not rel or "\x00" in rel:
        raise InputFileError(f"{where}: {what} location {rel!r} is empty or invalid")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise InputFileError(f"{where}: {what} location {rel!r} is an absolute path; only "
                             f"paths relative to the model's directory are allowed")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise InputFileError(f"{where}: {what} location {rel!r} leads out of the model's "
                             f"directory ('..'); only files inside it are allowed")
    base = os.path.realpath(base_dir)
    full = os.path.realpath(os.path.join(base, rel))
    if os.path.commonpath([base, full]) != base:
        raise InputFileError(f"{where}: {what} location {rel!r} resolves to {full}, outside "
                             f"the model's directory {base} (a symlink); only files inside it "
                             f"are allowed")
    return full


# -- JSON ----------------------------------------------------------------------------------------

def _reject_constant(name):
    raise ValueError(f"{name} is not a valid JSON number")


def _parse_float(text):
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:40]} overflows a float")
    return v


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def _depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of JSON text (strings skipped), in vectorized passes."""
    skel = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    b = np.frombuffer(skel, np.uint8)
    step = (np.isin(b, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(b, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(step).max()) if step.size else 0


def loads_json(text: str, where: str | None = None):
    """Strict :func:`json.loads`: :class:`InputFileError` for malformed JSON, ``NaN`` or
    ``Infinity``, numbers that overflow a float, and nesting deeper than
    :data:`MAX_JSON_DEPTH` (checked before parsing, so it never recurses deeply)."""
    pre = f"{where}: " if where else ""
    d = _depth(text)
    if d > MAX_JSON_DEPTH:
        raise InputFileError(f"{pre}JSON nested {d} levels deep; at most {MAX_JSON_DEPTH} "
                             f"are allowed")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except (ValueError, RecursionError) as e:
        raise InputFileError(f"{pre}not valid JSON ({e})") from None
