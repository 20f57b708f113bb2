"""8-bit RGB images in pure Python, and a PNG encoder (zlib + struct, no Pillow).

Real ComfyUI passes IMAGE as a float tensor [batch, height, width, 3]; the fake passes a tuple of
Frames. Pure Python is slow, so workflows for the fake should use small images; a uniform frame
(all EmptyImage gives) is blurred in constant time.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class Frame:
    width: int
    height: int
    rgb: bytes  # width * height * 3 bytes, row-major

    def __repr__(self) -> str:
        return f"Frame({self.width}x{self.height})"

    def is_uniform(self) -> bool:
        return self.rgb == self.rgb[:3] * (self.width * self.height)


Batch = Tuple[Frame, ...]


def solid(width: int, height: int, color: int) -> Frame:
    """color is 0xRRGGBB, as EmptyImage's input."""
    pixel = bytes(((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF))
    return Frame(width, height, pixel * (width * height))


_INVERT = bytes(255 - v for v in range(256))


def invert(frame: Frame) -> Frame:
    return Frame(frame.width, frame.height, frame.rgb.translate(_INVERT))


def _gaussian(radius: int, sigma: float) -> list:
    weights = [math.exp(-(x * x) / (2 * sigma * sigma)) for x in range(-radius, radius + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def _reflect(i: int, n: int) -> int:
    if n == 1:
        return 0
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def _blur_lines(values: list, length: int, count: int, stride: int, step: int, kernel: list, radius: int) -> list:
    """Convolve `count` lines of `length` samples each (sample k of line j at j*stride + k*step)."""
    out = values[:]
    taps = [[_reflect(k + d, length) for d in range(-radius, radius + 1)] for k in range(length)]
    for j in range(count):
        base = j * stride
        for k in range(length):
            out[base + k * step] = sum(w * values[base + t * step] for w, t in zip(kernel, taps[k], strict=True))
    return out


def blur(frame: Frame, radius: int, sigma: float) -> Frame:
    """Gaussian blur with reflected edges (ImageBlur: kernel 2*radius+1, given sigma)."""
    if radius == 0 or frame.is_uniform():
        return frame
    kernel = _gaussian(radius, sigma)
    w, h = frame.width, frame.height
    channels = []
    for c in range(3):
        plane = list(frame.rgb[c::3])
        plane = _blur_lines(plane, w, h, w, 1, kernel, radius)   # along rows
        plane = _blur_lines(plane, h, w, 1, w, kernel, radius)   # along columns
        channels.append(plane)
    rgb = bytearray(w * h * 3)
    for c in range(3):
        rgb[c::3] = bytes(min(255, max(0, round(v))) for v in channels[c])
    return Frame(w, h, bytes(rgb))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(frame: Frame, text: Dict[str, str], compress_level: int = 4) -> bytes:
    """An 8-bit RGB PNG; `text` becomes tEXt chunks (SaveImage stores 'prompt' and 'workflow' there)."""
    row = frame.width * 3
    raw = b"".join(b"\x00" + frame.rgb[y * row:(y + 1) * row] for y in range(frame.height))
    out = [b"\x89PNG\r\n\x1a\n",
           _chunk(b"IHDR", struct.pack(">IIBBBBB", frame.width, frame.height, 8, 2, 0, 0, 0))]
    for key, value in text.items():
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    out.append(_chunk(b"IDAT", zlib.compress(raw, compress_level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)

