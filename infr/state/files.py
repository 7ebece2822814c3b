"""State files on disk: atomic writes (a crash at any instant leaves the old content or the new,
never a torn file), and reads that name the file when it is not what it should be."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from infr.errors import StateError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write `data` to a temp file beside `path`, fsync it, rename it over `path`, fsync the dir.

    `durable=False` skips both fsyncs, for files that only save time (the cache): readers
    still see the old file or the new one, and after a power cut it may be empty or cut short.
    """
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


# A key line (validate.MAX_KEY_LINE) and its line end, CRLF at most.
_KEY_FILE_LIMIT = 16 * 1024 + 2


def read_key_file(path: Path) -> str:
    """An SSH public key file's text, stripped; ValueError saying why it cannot be one (too
    big, not a regular file, not UTF-8). Shared by `keys add` and the loading of keys/*.pub."""
    return _key_text(read_bounded(path, _KEY_FILE_LIMIT))


def read_key_stream(stream: BinaryIO) -> str:
    """read_key_file() for standard input: read up to the limit, never to memory's end."""
    data = stream.read(_KEY_FILE_LIMIT + 1)
    if len(data) > _KEY_FILE_LIMIT:
        raise ValueError(f"is larger than {_KEY_FILE_LIMIT} bytes")
    return _key_text(data)


def _key_text(data: bytes) -> str:
    """The key's line without its line end and edge spaces. Only those: str.strip() would also
    drop a tab or \x1c-\x1f at either end, and a file holding them is refused, not mended."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r").strip(" ")


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Anything else raises ValueError saying what it is: a FIFO or a terminal would block
    (and a lock held meanwhile would stall every other infr), /dev/zero never ends.
    The open does not block on a FIFO (O_NONBLOCK), and the size is checked on the open
    file, so a file swapped in between cannot slip past.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("is not a regular file")
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, limit + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return data


def _toml(path: str | Path) -> dict[str, Any]:
    import tomllib

    from infr.state import tomlread

    try:
        return tomlread.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise StateError(f"{path} is not valid TOML: {exc}", "fix the file or restore it from git") from None


def read_text(path: str | Path) -> str:
    """A state file's text; a file that is not UTF-8 is an error naming it and the first bad byte."""
    with open(path, "rb") as handle:  # not Path.read_bytes: a Path per file cost 0.1 s of 11,000
        data = handle.read()
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise StateError(
            f"{path} is not UTF-8 text (byte {exc.start} is {data[exc.start : exc.start + 1]!r})",
            "fix the file or restore it from git",
        ) from None


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def dump_toml(data: dict[str, Any]) -> bytes:
    import tomli_w

    return tomli_w.dumps(data).encode()
