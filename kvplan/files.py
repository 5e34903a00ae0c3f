"""Reading a file a user named (config.json, a .gguf header, KVPLAN_MODEL_SPECS), without trusting it.

One guarded way in for every config read: a path may name a FIFO (open() would block until a writer
comes), a device (`/dev/zero` never ends), a symlink to either, a folder, or a file of gigabytes.
`open_regular` opens with O_NONBLOCK (a FIFO with no writer does not block), checks with fstat on the
opened descriptor (no race with a rename) that it is a regular file, and returns its size;
`read_limited` then reads at most `max_bytes + 1` bytes, so a file that grows meanwhile is still
refused instead of read to the end.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from kvplan.errors import UnsupportedConfigError

__all__ = ["open_regular", "read_limited"]

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | \
    getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, field: str = "config.json") -> tuple[BinaryIO, int]:
    """(binary file object, size in bytes) of a regular file; the caller closes it.

    Raises:
        UnsupportedConfigError: `path` is a pipe, device, socket or folder (named in `field`).
        OSError: the file cannot be opened (missing, permissions, a name the OS rejects).
    """
    try:
        fd = os.open(os.fspath(path), _OPEN_FLAGS)
    except ValueError:  # a NUL byte in the name
        raise FileNotFoundError(2, "no such file", str(path)[:200]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedConfigError(field, f"{os.fspath(path)[:200]!r} is {_kind(st.st_mode)}, not a "
                                                "regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: ordinary reads from here on
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_limited(path: str | os.PathLike, max_bytes: int, field: str = "config.json") -> bytes:
    """The whole content of a regular file of at most `max_bytes` bytes.

    Raises:
        UnsupportedConfigError: not a regular file, or larger than `max_bytes` (checked on the size
            and on the bytes actually read).
        OSError: the file cannot be opened or read.
    """
    fh, size = open_regular(path, field)
    with fh:
        if size > max_bytes:
            raise UnsupportedConfigError(field, f"{size:,} bytes is too large (limit {max_bytes:,} bytes)")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsupportedConfigError(field, f"more than {max_bytes:,} bytes (the file grew while read)")
    return data
