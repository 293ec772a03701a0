"""Builders of bad input for the robustness tests: damaged copies of real images, crafted
decompression-bomb headers, and the odd file-system entries a real folder holds.

Everything is made in the test's own temporary folder; nothing here is committed data.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
from PIL import Image

__all__ = [
    "bmp_bomb",
    "encode",
    "gif_bomb",
    "gif_with_huge_second_frame",
    "jpeg_bomb",
    "jpeg_with_precision",
    "png_bomb",
    "png_rgb16",
    "splice",
    "tiff_bomb",
    "webp_bomb",
    "with_flipped_bytes",
]


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    """``img`` saved as ``fmt`` in memory."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def with_flipped_bytes(data: bytes, start: int, count: int, seed: int) -> bytes:
    """``data`` with ``count`` random bytes at or after ``start`` XOR-ed with 0xFF."""
    rng = random.Random(seed)
    out = bytearray(data)
    for pos in rng.sample(range(start, len(data)), count):
        out[pos] ^= 0xFF
    return bytes(out)


def splice(data: bytes, other: bytes, at: int) -> bytes:
    """``data`` with a run of another file's bytes overwriting it from ``at``."""
    piece = other[: len(data) - at]
    return data[:at] + piece + data[at + len(piece):]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A valid-looking 100-byte PNG that declares ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def png_rgb16(rgb8: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG of an 8-bit RGB array (Pillow cannot write one)."""
    height, width, _ = rgb8.shape
    wide = rgb8.astype(">u2") * 257
    raw = b"".join(b"\x00" + wide[y].tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _sof_offset(jpeg: bytes) -> int:
    pos = 2
    while pos < len(jpeg):
        marker = jpeg[pos + 1]
        length = struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
        if 0xC0 <= marker <= 0xC2:
            return pos
        pos += 2 + length
    raise ValueError("no SOF marker")


def jpeg_bomb(small_jpeg: bytes, width: int = 65000, height: int = 65000) -> bytes:
    """A small real JPEG whose frame header claims ``width`` x ``height`` pixels."""
    pos = _sof_offset(small_jpeg)
    out = bytearray(small_jpeg)
    out[pos + 5:pos + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def jpeg_with_precision(small_jpeg: bytes, bits: int) -> bytes:
    """A JPEG whose frame header says ``bits`` bits per sample (12-bit JPEGs exist)."""
    pos = _sof_offset(small_jpeg)
    out = bytearray(small_jpeg)
    out[pos + 4] = bits
    return bytes(out)


def _tiny_gif(frames: int) -> bytes:
    imgs = [Image.new("L", (2, 2), 255 * (i % 2)) for i in range(frames)]
    return encode(imgs[0], "GIF", save_all=True, append_images=imgs[1:])


def _patch_gif_frame(gif: bytes, index: int, width: int, height: int) -> bytes:
    # Image descriptors of a 2x2 frame at (0, 0): "," left top width height (little endian).
    descriptor = b"," + struct.pack("<HHHH", 0, 0, 2, 2)
    pos = -1
    for _ in range(index + 1):
        pos = gif.index(descriptor, pos + 1)
    return gif[:pos + 5] + struct.pack("<HH", width, height) + gif[pos + 9:]


def gif_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A tiny GIF whose screen and first frame claim ``width`` x ``height`` pixels."""
    gif = _patch_gif_frame(_tiny_gif(1), 0, width, height)
    return gif[:6] + struct.pack("<HH", width, height) + gif[10:]


def gif_with_huge_second_frame() -> bytes:
    """A 2x2 GIF whose second frame claims 65535 x 65535 pixels (never read: first frame)."""
    return _patch_gif_frame(_tiny_gif(2), 1, 65535, 65535)


def bmp_bomb(width: int = 50000, height: int = 50000) -> bytes:
    """A BMP header claiming ``width`` x ``height`` 24-bit pixels, with 16 bytes of data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    body = b"\x00" * 16
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(body), 0, 0, 14 + len(info))
    return header + info + body


def tiff_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A little-endian grey TIFF claiming ``width`` x ``height`` pixels, 16 bytes of data."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, 16)]
    ifd_size = 2 + 12 * len(tags) + 4
    data_at = 8 + ifd_size
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_at if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 16


def webp_bomb(width: int = 16384, height: int = 16384) -> bytes:
    """A lossless WebP header claiming ``width`` x ``height`` pixels (the format's maximum)."""
    bits = (width - 1) | ((height - 1) << 14)
    body = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunk = b"VP8L" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
