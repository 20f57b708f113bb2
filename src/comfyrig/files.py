"""Every file comfyrig reads from a person goes through here, and every file it writes is checked here.

Reading: ``open`` on a FIFO waits for a writer forever, ``read()`` of
``/dev/zero`` fills memory, and ``Path.read_text`` of a UTF-16 file or a
folder raises something no user should see. So a file is opened without
blocking (``O_NONBLOCK``), checked to be a regular file on the descriptor
itself (no race between a check and the open), read up to a size cap, and
decoded as UTF-8 with a message that says which byte is wrong. Each error is
the caller's ``ConfigError`` subclass, naming what the file was for.

Writing: :func:`check_writable_dir` says before any work starts whether an
output folder can be created and written, so a batch never fails at its first
output with a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ComfyrigError, ConfigError

__all__ = ["MIB", "check_output_file", "check_writable_dir", "open_regular", "parse_json", "read_json", "read_text", "write_error"]

MIB = 1024 * 1024
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Path, what: str, error: type[ConfigError] = ConfigError) -> BinaryIO:
    """``path`` opened for binary reading, when it is a regular file (symbolic links followed).

    Raises ``error`` naming ``what`` ("the workflow", "the sweep file") for a missing file, a
    folder, a FIFO, a device or a socket, or one that cannot be opened; never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{_cap(what)} {path} does not exist.") from None
    except IsADirectoryError:
        raise error(f"{_cap(what)} {path} is a folder, not a file.") from None
    except OSError as exc:
        raise error(f"{_cap(what)} {path} cannot be opened ({exc.strerror or exc}).") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{_cap(what)} {path} is {_kind(mode)}, not a file; comfyrig reads only regular files.")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: Path, what: str, *, limit: int = 64 * MIB, error: type[ConfigError] = ConfigError) -> str:
    """The text of ``path``: a regular file of at most ``limit`` bytes, UTF-8 (a byte order mark is
    allowed). Raises ``error`` naming ``what`` for anything else."""
    with open_regular(path, what, error) as handle:
        try:
            raw = handle.read(limit + 1)
        except OSError as exc:
            raise error(f"{_cap(what)} {path} cannot be read ({exc.strerror or exc}).") from None
    if len(raw) > limit:
        raise error(f"{_cap(what)} {path} is larger than {limit // MIB} MiB; that is not a file comfyrig expects here.")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{_cap(what)} {path} is UTF-16 text; save it as UTF-8.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{_cap(what)} {path} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); save it as UTF-8.") from None


def read_json(path: Path, what: str, *, limit: int = 64 * MIB, error: type[ConfigError] = ConfigError) -> Any:
    """``read_text`` parsed as JSON; bad JSON is ``error`` with its line and column. NaN and
    Infinity (which Python's reader takes, but are not JSON) are refused too."""
    return parse_json(read_text(path, what, limit=limit, error=error), f"{_cap(what)} {path}", error)


def parse_json(text: str, where: str, error: type[ConfigError] = ConfigError) -> Any:
    """``text`` as strict JSON (no NaN or Infinity); ``error`` names ``where`` and the line and column."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except ValueError as exc:
        raise error(f"{where} is not valid JSON: {exc}.") from None


def check_writable_dir(path: Path, what: str, *, create: bool = True) -> Path:
    """Create the folder ``path`` (with missing parents) and prove it is writable by creating and
    removing a file in it; returns it. Raises ConfigError naming ``what`` ("--out") for an empty
    name, ``/``, a file in the way, a parent that cannot be created, or no write permission.

    ``create=False`` (a dry run) changes nothing: the folder, or the nearest existing folder
    above it, must be a folder this process may write in."""
    if not str(path).strip():
        raise ConfigError(f"{what} is empty; give a folder for the results.")
    resolved = path.expanduser().resolve()
    if resolved == Path(resolved.anchor):
        raise ConfigError(f"{what} {path} is the root folder; give a folder of its own for the results.")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder.")
    if not create:
        existing = next(p for p in (resolved, *resolved.parents) if p.exists())
        if not existing.is_dir():
            raise ConfigError(f"{what} {path}: {existing} is a file, not a folder.")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {path} cannot be written: permission denied in {existing}.")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{what} {path}: a part of that path is a file, not a folder.") from None
    except OSError as exc:
        raise write_error(exc, path, what) from None
    probe = path / f".comfyrig-write-check-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise write_error(exc, path, what) from None
    return path


def check_output_file(path: Path, what: str) -> Path:
    """``path`` when a file may be written there: an existing regular file or a new name in an
    existing, writable folder. Raises ConfigError naming ``what`` ("--write") for an empty name,
    a folder, a FIFO or device (writing one blocks or goes nowhere), or a missing parent."""
    if not str(path).strip() or str(path) == ".":
        raise ConfigError(f"{what} is empty; give a file name.")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        parent = path.parent
        if not parent.is_dir():
            raise ConfigError(f"{what} {path}: the folder {parent} does not exist.") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {path} cannot be written: permission denied in {parent}.") from None
        return path
    except OSError as exc:
        raise write_error(exc, path, what) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what} {path} is {_kind(mode)}; give a file name.")
    return path


def write_error(exc: OSError, path: Path, what: str, error: type[ComfyrigError] = ConfigError) -> ComfyrigError:
    """One message for a failed write: the disk full, no permission, a read-only file system."""
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENOTDIR: "a part of that path is a file, not a folder",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return error(f"{what} {path} cannot be written: {reason}.")


def _cap(what: str) -> str:
    # "the workflow" starts a sentence; "--sweep 1.x: the file" already does.
    return "The" + what[3:] if what.startswith("the ") else what
