"""Read the header of a .safetensors or .gguf file, never its weights.

A 40 GB model is planned from a few hundred kilobytes: the safetensors JSON
header, or the GGUF key/value and tensor-info sections. Every size here is in
bytes. Each reader validates what the real loaders validate (safetensors'
``Metadata::validate`` and its buffer-length check; GGUF's magic, version,
alignment and tensor bounds), so a file planned here is one ComfyUI can open,
and every failure is a ModelFileError naming the file and the byte offset.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ModelFileError
from ..files import open_regular

__all__ = [
    "GGML_TYPES",
    "MAX_SAFETENSORS_HEADER",
    "SAFETENSORS_DTYPE_BITS",
    "ModelFormat",
    "ModelHeader",
    "TensorInfo",
    "read_header",
]

ModelFormat = Literal["safetensors", "gguf"]

# Bits per element of each safetensors dtype (the Rust crate's Dtype::bitsize).
SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}

# The safetensors crate refuses headers above this many bytes (HeaderTooLarge).
MAX_SAFETENSORS_HEADER = 100_000_000

# GGML tensor types: id -> (name, elements per block, bytes per block), as in
# ggml's type traits (the gguf package's GGML_QUANT_SIZES).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

_GGUF_MAGIC = b"GGUF"
_GGUF_DEFAULT_ALIGNMENT = 32
# GGUF metadata value types -> struct format of one scalar (8 = string, 9 = array).
_GGUF_SCALARS: dict[int, str] = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it. ``dtype`` is the safetensors
    name ("BF16", "F8_E4M3") or the GGML type name ("Q4_K")."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int  # bytes in the file

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class ModelHeader:
    """What a file's header says. ``metadata`` holds the safetensors
    ``__metadata__`` strings, or the GGUF scalar key/values as strings."""

    path: Path
    format: ModelFormat
    file_size: int  # bytes
    data_start: int  # bytes: where tensor data begins
    tensors: tuple[TensorInfo, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def read_header(path: Path) -> ModelHeader:
    """Read a .safetensors/.sft or .gguf header; raises ModelFileError."""
    # open_regular never blocks: a FIFO or a device named .safetensors is refused, not read.
    with open_regular(path, "the model file", ModelFileError) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            magic = f.read(9)
        except OSError as exc:
            raise ModelFileError(f"{path} cannot be read ({exc.strerror or exc}).") from exc
    suffix = path.suffix.lower()
    if magic[:4] == _GGUF_MAGIC:
        return _read_gguf(path, size)
    if suffix == ".gguf":
        raise ModelFileError(
            f"{path} is named .gguf but does not start with the GGUF magic bytes (byte 0 holds {magic[:4]!r}); "
            "it is not a GGUF file, or it is corrupt."
        )
    if suffix in (".safetensors", ".sft"):
        # A safetensors header is JSON from byte 8 on; zip and pickle files start otherwise.
        if magic[8:9] != b"{" and (magic[:2] == b"PK" or magic[:1] == b"\x80"):
            raise ModelFileError(
                f"{path} is named .safetensors but holds a PyTorch pickle (zip or pickle bytes at offset 0), "
                "not a safetensors file.",
                hint="Convert it to safetensors; comfyrig plan reads headers only and never unpickles.",
            )
        return _read_safetensors(path, size, magic[:8])
    raise ModelFileError(
        f"{path} is not a safetensors or GGUF file (its name ends in {suffix or 'nothing'!r}).",
        hint="comfyrig plan reads .safetensors, .sft and .gguf files, or folders of them; "
        ".ckpt/.pt/.bin pickles cannot be sized without loading them.",
    )


# --- safetensors -----------------------------------------------------------------


def _read_safetensors(path: Path, size: int, first8: bytes) -> ModelHeader:
    if size < 8 or len(first8) < 8:
        raise ModelFileError(
            f"{path} is truncated: it ends at byte {size}, before the 8-byte header length of a safetensors file."
        )
    (n,) = struct.unpack("<Q", first8)
    if n > MAX_SAFETENSORS_HEADER:
        raise ModelFileError(
            f"{path}: bytes 0-7 declare a header of {n:,} bytes, above safetensors' limit of "
            f"{MAX_SAFETENSORS_HEADER:,}; the file is corrupt or not a safetensors file."
        )
    if 8 + n > size:
        raise ModelFileError(
            f"{path} is truncated: its header should span bytes 8 to {8 + n:,}, but the file ends at byte {size:,}."
        )
    with path.open("rb") as f:
        f.seek(8)
        raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: the header is not UTF-8 (byte offset {8 + exc.start:,}); the file is corrupt.") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        offset = 8 + len(text[: exc.pos].encode("utf-8"))
        raise ModelFileError(
            f"{path}: the JSON header is corrupt at byte offset {offset:,} ({exc.msg})."
        ) from None
    if not isinstance(doc, dict):
        raise ModelFileError(f"{path}: the header at byte offset 8 is JSON but not an object; not a safetensors file.")
    data_start = 8 + n
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: __metadata__ in the header must be an object of strings.")
    entries = [_st_entry(path, name, spec, data_start) for name, spec in doc.items()]
    # safetensors requires the tensors to tile the data buffer: sorted by offset,
    # each starting where the previous ended (InvalidOffset otherwise).
    entries.sort(key=lambda e: (e[1], e[2]))
    expected = 0
    for tensor, begin, end in entries:
        if begin != expected:
            what = "overlaps the previous tensor" if begin < expected else f"leaves a gap of {begin - expected:,} bytes"
            raise ModelFileError(
                f"{path}: tensor {tensor.name!r} starts at data offset {begin:,} (file byte {data_start + begin:,}) "
                f"and {what}; the header is corrupt."
            )
        expected = end
    declared_end = data_start + expected
    if declared_end > size:
        raise ModelFileError(
            f"{path}: the header declares {expected:,} bytes of tensor data, up to file byte {declared_end:,}, "
            f"but the file holds only {size:,} bytes ({declared_end - size:,} missing); it is truncated "
            "(an interrupted download or copy)."
        )
    if declared_end < size:
        raise ModelFileError(
            f"{path}: {size - declared_end:,} bytes follow the last tensor (from byte {declared_end:,}); "
            "safetensors refuses such files (MetadataIncompleteBuffer), so ComfyUI could not load it."
        )
    return ModelHeader(
        path=path,
        format="safetensors",
        file_size=size,
        data_start=data_start,
        tensors=tuple(t for t, _, _ in entries),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def _st_entry(path: Path, name: str, spec: object, data_start: int) -> tuple[TensorInfo, int, int]:
    where = f"{path}: tensor {name!r}"
    if not isinstance(spec, dict):
        raise ModelFileError(f"{where} is not described by an object in the header.")
    dtype = spec.get("dtype")
    shape = spec.get("shape")
    offsets = spec.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BITS:
        raise ModelFileError(f"{where} has the unknown dtype {dtype!r}.")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ModelFileError(f"{where} has an invalid shape {shape!r}.")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise ModelFileError(f"{where} has invalid data_offsets {offsets!r}.")
    begin, end = offsets
    numel = 1
    for d in shape:
        numel *= d
    bits = numel * SAFETENSORS_DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - begin:
        raise ModelFileError(
            f"{where} ({dtype}, shape {shape}) needs {bits / 8:,.0f} bytes but its data_offsets "
            f"span {end - begin:,} (file bytes {data_start + begin:,} to {data_start + end:,}); the header is corrupt."
        )
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), nbytes=end - begin), begin, end


# --- GGUF ------------------------------------------------------------------------


class _Cursor:
    """Bounds-checked little-endian reads over a memory map, naming offsets."""

    def __init__(self, path: Path, buf: mmap.mmap | bytes, size: int) -> None:
        self.path, self.buf, self.size, self.pos = path, buf, size, 0

    def fail(self, what: str, at: int | None = None) -> ModelFileError:
        return ModelFileError(f"{self.path}: {what} at byte offset {self.pos if at is None else at:,}.")

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > self.size:
            raise ModelFileError(
                f"{self.path} is truncated or corrupt: {what} needs bytes {start:,} to {start + n:,}, "
                f"but the file ends at byte {self.size:,}."
            )
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> int | float | bool:
        start = self.take(struct.calcsize("<" + fmt), what)
        value: int | float | bool = struct.unpack_from("<" + fmt, self.buf, start)[0]
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("Q", what))

    def string(self, what: str) -> str:
        n = self.u64(f"the length of {what}")
        start = self.take(n, what)
        try:
            return bytes(self.buf[start : start + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8", start) from None


def _read_gguf(path: Path, size: int) -> ModelHeader:
    try:
        with path.open("rb") as f:
            buf: mmap.mmap | bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path} cannot be mapped for reading ({exc}).") from exc
    try:
        return _parse_gguf(_Cursor(path, buf, size))
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _parse_gguf(c: _Cursor) -> ModelHeader:
    c.take(4, "the magic")
    version = c.u32("the version")
    if version not in (2, 3):
        why = "big-endian GGUF is not supported" if version >= 1 << 16 else "only versions 2 and 3 are supported"
        raise c.fail(f"GGUF version {version} ({why})", 4)
    n_tensors = c.u64("the tensor count")
    n_kv = c.u64("the metadata count")
    metadata: dict[str, str] = {}
    for i in range(n_kv):
        key = c.string(f"metadata key #{i}")
        value_type = c.u32(f"the type of {key!r}")
        value = _gguf_value(c, value_type, key)
        if value is not None:
            metadata[key] = value
    alignment = _GGUF_DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        alignment = int(float(metadata["general.alignment"]))
        if alignment <= 0 or alignment & (alignment - 1):
            raise c.fail(f"general.alignment is {alignment}, not a power of two", 0)
    infos: list[tuple[TensorInfo, int, int]] = []
    for i in range(n_tensors):
        info_at = c.pos
        name = c.string(f"the name of tensor #{i}")
        n_dims = c.u32(f"the dimension count of {name!r}")
        if n_dims > 8:
            raise c.fail(f"tensor {name!r} claims {n_dims} dimensions (corrupt)", info_at)
        ne = [c.u64(f"dimension {d} of {name!r}") for d in range(n_dims)]
        type_id = c.u32(f"the type of {name!r}")
        offset = c.u64(f"the data offset of {name!r}")
        if type_id not in GGML_TYPES:
            raise c.fail(f"tensor {name!r} has the unknown GGML type {type_id}", info_at)
        type_name, block, type_size = GGML_TYPES[type_id]
        numel = 1
        for d in ne:
            numel *= d
        if ne and ne[0] % block:
            raise c.fail(f"tensor {name!r}: its row of {ne[0]} elements is not a whole number of {type_name} blocks", info_at)
        nbytes = numel // block * type_size
        if offset % alignment:
            raise c.fail(f"tensor {name!r} has data offset {offset:,}, not aligned to {alignment}", info_at)
        # GGUF lists dimensions innermost first; numpy and torch order is the reverse.
        infos.append((TensorInfo(name=name, dtype=type_name, shape=tuple(reversed(ne)), nbytes=nbytes), offset, info_at))
    data_start = -(-c.pos // alignment) * alignment
    end = max((offset + t.nbytes for t, offset, _ in infos), default=0)
    if data_start + end > c.size:
        worst = max(infos, key=lambda e: e[1] + e[0].nbytes)[0]
        raise ModelFileError(
            f"{c.path}: the header declares tensor data up to file byte {data_start + end:,} "
            f"(tensor {worst.name!r}), but the file holds only {c.size:,} bytes "
            f"({data_start + end - c.size:,} missing); it is truncated."
        )
    return ModelHeader(
        path=c.path,
        format="gguf",
        file_size=c.size,
        data_start=data_start,
        tensors=tuple(t for t, _, _ in infos),
        metadata=metadata,
    )


def _gguf_value(c: _Cursor, value_type: int, key: str) -> str | None:
    """Read one metadata value; scalars and strings are kept, arrays skipped."""
    if value_type in _GGUF_SCALARS:
        return str(c.unpack(_GGUF_SCALARS[value_type], f"the value of {key!r}"))
    if value_type == _GGUF_STRING:
        return c.string(f"the value of {key!r}")
    if value_type == _GGUF_ARRAY:
        item_type = c.u32(f"the item type of {key!r}")
        count = c.u64(f"the length of {key!r}")
        if item_type in _GGUF_SCALARS:
            c.take(count * struct.calcsize("<" + _GGUF_SCALARS[item_type]), f"the items of {key!r}")
        elif item_type == _GGUF_STRING:
            for _ in range(count):
                c.take(c.u64(f"an item length of {key!r}"), f"an item of {key!r}")
        else:
            raise c.fail(f"metadata {key!r} is an array of unsupported type {item_type}")
        return None
    raise c.fail(f"metadata {key!r} has the unknown value type {value_type}")
