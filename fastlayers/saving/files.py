"""The file layer: atomic writes, and zip archives read defensively.

Every file is written to a temporary file in the destination's directory, flushed
and fsynced, then renamed over the destination with ``os.replace``: readers see
either the old file or the complete new one, never a partial write.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from typing import Callable, Dict, Iterable, Tuple

# A .keras archive is small JSON plus one weights file; anything larger is refused
# before decompression (zip bombs).
MAX_ENTRY_BYTES = 8 << 30
CHUNK_BYTES = 1 << 16


def to_json(obj, **kwargs) -> str:
    """``json.dumps`` that writes NumPy scalars and arrays as plain numbers and lists."""
    def default(o):
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray) and o.dtype.kind in "biuf":
            return o.tolist()
        raise TypeError(f"{type(o).__name__} {o!r} cannot be written to a config: give plain "
                        f"numbers, strings, lists or dicts")

    return json.dumps(obj, default=default, **kwargs)


def write_bytes(f, data: bytes) -> None:
    """Every byte written to a saved file goes through here (tests inject faults)."""
    f.write(data)


def atomic_write(path: str, produce: Callable[[], bytes]) -> None:
    """Write ``produce()`` to ``path`` atomically; on any error the old file is untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot save to {path!r}: directory {directory!r} does not exist")
    data = produce()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            view = memoryview(data)
            for start in range(0, len(view), CHUNK_BYTES):
                write_bytes(f, view[start:start + CHUNK_BYTES])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def zip_bytes(entries: Iterable[Tuple[str, bytes]]) -> bytes:
    """A zip archive (deflated) of ``(name, data)`` entries, in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _check_entry_name(name: str, source: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if (name.startswith(("/", "\\")) or "\\" in name or ".." in parts or "" in parts[:-1]
            or (len(name) > 1 and name[1] == ":") or "\x00" in name):
        raise ValueError(f"{source}: refusing zip entry {name!r}: an absolute or parent-relative "
                         f"name ('..') is never extracted")


def read_zip(source, name: str, allowed: Callable[[str], bool]) -> Dict[str, bytes]:
    """All entries of the zip at ``source`` (path or bytes) whose names pass ``allowed``.

    Hostile names (``..``, absolute), duplicates, oversized and corrupt entries raise a
    ValueError naming ``name`` (the file) and the entry.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ValueError(f"{name}: not a valid .keras (zip) archive, it may be truncated or "
                         f"corrupt: {exc}") from None
    out: Dict[str, bytes] = {}
    with zf:
        infos = zf.infolist()
        for info in infos:
            _check_entry_name(info.filename, name)
        names = [i.filename for i in infos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{name}: zip entries {dupes} appear more than once")
        for info in infos:
            if info.is_dir() or not allowed(info.filename):
                continue
            if info.file_size > MAX_ENTRY_BYTES:
                raise ValueError(f"{name}: entry {info.filename!r} is {info.file_size} bytes, "
                                 f"more than the {MAX_ENTRY_BYTES} allowed")
            try:
                out[info.filename] = zf.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
                    RuntimeError, NotImplementedError) as exc:
                raise ValueError(f"{name}: entry {info.filename!r} is corrupt or truncated: "
                                 f"{exc}") from None
    return out


def describe(source) -> str:
    """The name errors use for ``source``: its path, or "<in-memory archive>"."""
    if isinstance(source, (bytes, bytearray)):
        return "<in-memory archive>"
    return repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else repr(source)


def as_source(path) -> object:
    if isinstance(path, (bytes, bytearray)):
        return bytes(path)
    return os.fspath(path)


