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
from typing import Dict, Optional, Tuple


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


_INVERT = INVERT_TABLE = bytes(255 - v for v in range(256))


@dataclass(frozen=True)
class Mask:
    """A MASK: one byte per pixel, 255 = masked (ComfyUI's 1.0)."""
    width: int
    height: int
    values: bytes

    def __repr__(self) -> str:
        return f"Mask({self.width}x{self.height})"


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



# --- Reading PNGs (LoadImage, /upload/mask) ----------------------------------------------------

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}   # PNG colour type -> samples per pixel (8-bit only)


class UnsupportedImage(ValueError):
    """A file the fake cannot decode (it reads 8-bit, non-interlaced, non-palette PNGs only)."""


@dataclass(frozen=True)
class Decoded:
    frame: Frame                 # the RGB picture (grey is expanded)
    alpha: Optional[bytes]       # width * height bytes when the PNG has an alpha channel
    text: Dict[str, str]         # tEXt chunks


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytes:
    """Undo the five PNG row filters (None, Sub, Up, Average, Paeth)."""
    out = bytearray()
    previous = bytearray(stride)
    pos = 0
    for _ in range(height):
        kind, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                up_left = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, previous[i], up_left)) & 0xFF
        elif kind != 0:
            raise UnsupportedImage(f"bad PNG filter type {kind}")
        out += line
        previous = line
    return bytes(out)


def decode_png(data: bytes) -> Decoded:
    """An 8-bit grey, grey+alpha, RGB or RGBA PNG (not interlaced). Raises UnsupportedImage otherwise."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise UnsupportedImage("not a PNG file (the fake ComfyUI reads PNG only)")
    pos, idat, text = 8, [], {}
    width = height = colour = 0
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body[:13])
            if depth != 8 or colour not in _CHANNELS or interlace:
                raise UnsupportedImage(f"PNG with bit depth {depth}, colour type {colour}, interlace {interlace}: "
                                       "the fake ComfyUI reads 8-bit grey/RGB(A) PNGs without interlacing only")
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not width or not idat:
        raise UnsupportedImage("PNG without IHDR or image data")
    channels = _CHANNELS[colour]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as err:
        raise UnsupportedImage(f"corrupt PNG data: {err}") from None
    stride = width * channels
    if len(raw) < height * (stride + 1):
        raise UnsupportedImage("truncated PNG data")
    pixels = _unfilter(raw, height, stride, channels)
    if colour == 2:
        return Decoded(Frame(width, height, pixels), None, text)
    if colour == 6:
        rgb = bytearray(width * height * 3)
        for c in range(3):
            rgb[c::3] = pixels[c::4]
        return Decoded(Frame(width, height, bytes(rgb)), pixels[3::4], text)
    grey = pixels[::channels]
    rgb = bytearray(width * height * 3)
    for c in range(3):
        rgb[c::3] = grey
    return Decoded(Frame(width, height, bytes(rgb)), pixels[1::2] if colour == 4 else None, text)


def png_bytes_rgba(frame: Frame, alpha: bytes, text: Dict[str, str], compress_level: int = 4) -> bytes:
    """An 8-bit RGBA PNG (what /upload/mask writes: the original picture with the mask's alpha)."""
    rgba = bytearray(frame.width * frame.height * 4)
    for c in range(3):
        rgba[c::4] = frame.rgb[c::3]
    rgba[3::4] = alpha
    row = frame.width * 4
    raw = b"".join(b"\x00" + bytes(rgba[y * row:(y + 1) * row]) for y in range(frame.height))
    out = [b"\x89PNG\r\n\x1a\n",
           _chunk(b"IHDR", struct.pack(">IIBBBBB", frame.width, frame.height, 8, 6, 0, 0, 0))]
    for key, value in text.items():
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    out.append(_chunk(b"IDAT", zlib.compress(raw, compress_level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


# --- A minimal baseline JPEG writer for solid grey pictures (sampler previews) ----------------
# ComfyUI's latent previews are JPEG. The fake's previews are solid grey squares, so one DC value
# per 8x8 block and no AC coefficient say everything: a standard DC table (JPEG Annex K.3) and an
# AC table holding only end-of-block are enough, and any decoder reads the result.

_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)   # code counts per length 1..16
_DC_VALUES = tuple(range(12))
_AC_BITS = (1,) + (0,) * 15                                     # one code: "0" = end of block
_AC_VALUES = (0x00,)
_QUANT = 8   # every entry of the one quantisation table; a DC of (level - 128) dequantises exactly


def _huffman_codes(bits, values) -> dict:
    """value -> (code, length), canonical as JPEG assigns them."""
    codes, code, k = {}, 0, 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[values[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def jpeg_solid_grey(width: int, height: int, level: int) -> bytes:
    """A baseline greyscale JPEG of width x height pixels, all of grey `level` (0..255)."""
    dc_codes = _huffman_codes(_DC_BITS, _DC_VALUES)
    eob_code, eob_length = _huffman_codes(_AC_BITS, _AC_VALUES)[0x00]
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    acc, n, out = 0, 0, bytearray()

    def put(value: int, length: int) -> None:
        nonlocal acc, n
        acc, n = (acc << length) | value, n + length
        while n >= 8:
            byte = (acc >> (n - 8)) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0x00)   # byte stuffing
            n -= 8
        acc &= (1 << n) - 1

    previous = 0
    for _ in range(blocks):
        diff, previous = (level - 128) - previous, level - 128
        size = abs(diff).bit_length()
        put(*dc_codes[size])
        if size:
            put(diff if diff > 0 else diff + (1 << size) - 1, size)
        put(eob_code, eob_length)
    if n:
        put((1 << (8 - n)) - 1, 8 - n)   # pad with one-bits
    return b"".join((
        b"\xff\xd8",
        _segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
        _segment(0xFFDB, b"\x00" + bytes([_QUANT] * 64)),
        _segment(0xFFC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        _segment(0xFFC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALUES) + b"\x10" + bytes(_AC_BITS) + bytes(_AC_VALUES)),
        _segment(0xFFDA, b"\x01\x01\x00\x00\x3f\x00"),
        bytes(out),
        b"\xff\xd9",
    ))
