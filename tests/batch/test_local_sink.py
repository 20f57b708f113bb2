"""LocalSink: outputs written atomically under the output folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyrig.batch.worker import LocalSink


def test_local_sink_writes_atomically(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    out = sink("job1", "9", 0, "ComfyUI_00001_.png", b"data")
    assert out.path == "outputs/job1-9-0.png" and (tmp_path / out.path).read_bytes() == b"data"
    assert out.sha256 == "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7" and out.bytes == 4
    (tmp_path / "outputs" / ".job2-9-0.png.1.2.part").write_bytes(b"half")
    assert sink.clean_partials() == 1
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["job1-9-0.png"]


def test_chunks_are_written_as_they_come_and_a_broken_stream_leaves_nothing(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    out = sink("job1", "9", 0, "v.mp4", iter([b"ab", b"cd"]))
    assert (tmp_path / out.path).read_bytes() == b"abcd" and out.bytes == 4

    def broken() -> Iterator[bytes]:
        yield b"x" * 1024
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        sink("job2", "9", 0, "v.mp4", broken())
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["job1-9-0.mp4"]  # no job2 file, no .part
    sink.discard([out])
    assert list((tmp_path / "outputs").iterdir()) == []
