"""Header readers: real files from the safetensors and gguf libraries, sparse
giants, and every kind of broken file (a ModelFileError naming file and offset)."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from comfyrig.errors import ConfigError, ModelFileError
from comfyrig.fit.header import read_header
from tests.fit.layouts import flux_layout, layout_bytes, write_sparse_safetensors


def test_reads_a_real_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "small.safetensors"
    save_file(
        {"a.weight": np.zeros((4, 8), dtype=np.float16), "b.bias": np.zeros(3, dtype=np.float32), "pos": np.arange(77, dtype=np.int64)},
        str(path),
        metadata={"format": "pt"},
    )
    header = read_header(path)
    assert header.format == "safetensors"
    by_name = {t.name: t for t in header.tensors}
    assert by_name["a.weight"].dtype == "F16" and by_name["a.weight"].shape == (4, 8) and by_name["a.weight"].nbytes == 64
    assert by_name["b.bias"].nbytes == 12 and by_name["pos"].dtype == "I64"
    assert header.metadata == {"format": "pt"}
    assert header.data_start + header.data_bytes == header.file_size == path.stat().st_size


def test_sparse_24_gb_file_is_read_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "flux1-dev.safetensors"
    size = write_sparse_safetensors(path, flux_layout())
    assert size > 23e9
    assert path.stat().st_blocks * 512 < 10 * 2**20  # nothing allocated: the test stays cheap
    header = read_header(path)
    assert len(header.tensors) == 780
    assert header.data_bytes == layout_bytes(flux_layout())


def test_reads_a_real_gguf_file(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf", reason="the gguf package writes the real GGUF files for this test")
    path = tmp_path / "flux-Q4_K.gguf"
    writer = gguf.GGUFWriter(str(path), arch="flux")
    writer.add_string("general.name", "test")
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    q4k = np.zeros((3072, 3072 // 256 * 144), dtype=np.uint8)  # raw Q4_K bytes of a 3072x3072 matrix
    writer.add_tensor("double_blocks.0.img_attn.qkv.weight", q4k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    writer.add_tensor("double_blocks.0.img_attn.norm.key_norm.scale", np.ones(128, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_header(path)
    assert header.format == "gguf"
    assert header.metadata["general.architecture"] == "flux"
    by_name = {t.name: t for t in header.tensors}
    qkv = by_name["double_blocks.0.img_attn.qkv.weight"]
    assert qkv.dtype == "Q4_K" and qkv.shape == (3072, 3072) and qkv.nbytes == 3072 * 3072 // 256 * 144
    assert by_name["double_blocks.0.img_attn.norm.key_norm.scale"].nbytes == 512


def _safetensors_bytes(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x01\x02", "before the 8-byte header length"),
        (struct.pack("<Q", 5000) + b"{}", "file ends at byte 10"),
        (struct.pack("<Q", 10**12), "above safetensors' limit"),
        (struct.pack("<Q", 12) + b'{"a": [1, }x', "corrupt at byte offset 18"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not UTF-8 (byte offset 8)"),
        (struct.pack("<Q", 2) + b"[]", "not an object"),
        (_safetensors_bytes({"t": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 1]}}, b"x"), "unknown dtype 'Q9'"),
        (_safetensors_bytes({"t": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}}, b"xxxx"), "needs 6 bytes"),
        (_safetensors_bytes({"t": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}}, b"x" * 8), "gap of 4 bytes"),
        (_safetensors_bytes({"t": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"x" * 10), "3,990 missing"),
        (_safetensors_bytes({"t": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}, b"xxxx"), "2 bytes follow the last tensor"),
    ],
)
def test_broken_safetensors_name_file_and_offset(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        read_header(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_truncated_sparse_download_says_how_much_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "flux1-dev.safetensors"
    size = write_sparse_safetensors(path, flux_layout())
    with path.open("r+b") as f:
        f.truncate(size - 1_000_000)
    with pytest.raises(ModelFileError, match="1,000,000 missing"):
        read_header(path)


def test_pickles_and_other_files_are_refused(tmp_path: Path) -> None:
    pickle = tmp_path / "model.safetensors"
    pickle.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelFileError, match="PyTorch pickle"):
        read_header(pickle)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x02" + b"\0" * 10)
    with pytest.raises(ModelFileError, match="not a safetensors or GGUF file"):
        read_header(ckpt)
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 20)
    with pytest.raises(ModelFileError, match="GGUF magic"):
        read_header(fake)


def _gguf_prefix(version: int = 3, n_tensors: int = 1, n_kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _gguf_string(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"GGUF\x03\x00", "needs bytes 4 to 8"),
        (_gguf_prefix(version=1), "GGUF version 1"),
        (_gguf_prefix(n_kv=1) + _gguf_string("general.name") + struct.pack("<I", 99), "unknown value type 99"),
        (_gguf_prefix() + _gguf_string("w") + struct.pack("<I", 1) + struct.pack("<Q", 64), "the type of 'w' needs bytes"),
        (_gguf_prefix() + _gguf_string("w") + struct.pack("<IQIQ", 1, 64, 77, 0), "unknown GGML type 77"),
        (_gguf_prefix() + _gguf_string("w") + struct.pack("<IQIQ", 1, 100, 12, 0), "not a whole number of Q4_K blocks"),
        (_gguf_prefix() + _gguf_string("w") + struct.pack("<IQIQ", 1, 64, 0, 0), "(tensor 'w'), but the file holds only"),
        (_gguf_prefix() + _gguf_string("w") + struct.pack("<IQIQ", 1, 64, 0, 3), "not aligned to 32"),
    ],
)
def test_broken_gguf_names_file_and_offset(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        read_header(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_random_garbage_never_crashes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    good = tmp_path / "good.safetensors"
    save_file({"w": np.zeros((8, 8), dtype=np.float16)}, str(good))
    blob = bytearray(good.read_bytes())
    for i in range(200):
        corrupt = bytearray(blob)
        for pos in rng.integers(0, len(blob), size=3):
            corrupt[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"c{i}.safetensors"
        path.write_bytes(bytes(corrupt[: int(rng.integers(1, len(blob) + 1))]))
        with contextlib.suppress(ModelFileError):
            read_header(path)
