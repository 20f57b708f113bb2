"""The one reader and the one output-folder check (comfyrig/files.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from comfyrig.errors import ConfigError, JournalError, WorkflowError
from comfyrig.files import check_writable_dir, read_json, read_text, write_error


def test_reads_utf8_with_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"\xef\xbb\xbfhello")
    assert read_text(tmp_path / "a", "the file") == "hello"


def test_size_cap(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (2 * 1024 * 1024 + 1))
    with pytest.raises(ConfigError, match="larger than 2 MiB"):
        read_text(tmp_path / "big", "the file", limit=2 * 1024 * 1024)


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(WorkflowError, match=r"^The workflow .* is a FIFO \(named pipe\), not a file"):
        read_text(tmp_path / "p", "the workflow", error=WorkflowError)


def test_json_constants_are_not_json(tmp_path: Path) -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        (tmp_path / "j").write_text(f'{{"a": {constant}}}')
        with pytest.raises(ConfigError, match=f"{constant} is not a JSON value"):
            read_json(tmp_path / "j", "the file")


def test_output_folder_checks(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for bad, needle in (("/", "root folder"), (tmp_path / "f", "is a file"), (tmp_path / "f" / "sub", "is a file")):
        for create in (True, False):
            with pytest.raises(ConfigError, match=needle):
                check_writable_dir(Path(bad), "--out", create=create)
    made = check_writable_dir(tmp_path / "new" / "deeper", "--out")
    assert made.is_dir() and list(made.iterdir()) == []  # the write probe is gone
    check_writable_dir(tmp_path / "dry" / "run", "--out", create=False)
    assert not (tmp_path / "dry").exists()  # a dry run creates nothing


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "permission denied"),
                                             (errno.EROFS, "the file system is read-only")])
def test_write_errors_say_why(code: int, words: str) -> None:
    error = write_error(OSError(code, os.strerror(code)), Path("/x/report.json"), "The report", JournalError)
    assert isinstance(error, JournalError)
    assert error.message == f"The report /x/report.json cannot be written: {words}."
