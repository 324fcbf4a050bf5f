"""Decode an encoded image once to decide whether it may enter a catalog, and read its size.

Every image that a catalog holds has been fully decoded here (PIL, with truncated images refused), so the
training and index jobs never meet an image that cannot be decoded."""

from __future__ import annotations

import io
from typing import Iterable

from PIL import Image, UnidentifiedImageError

# Why an image was left out; rejected.csv and catalog.json count by these names.
REASONS = ("missing", "unreadable", "empty", "undecodable", "truncated", "unsupported_format")
Image.init()
PIL_FORMATS = tuple(sorted(Image.ID))  # every format this PIL opens: what a query image (fsnet search --image) may be


class ImageRejected(Exception):
    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_image(data: bytes, formats: Iterable[str]) -> tuple[str, int, int]:
    """(format, width, height) of a fully decodable image in one of ``formats``; else ``ImageRejected``."""
    if not data:
        raise ImageRejected("empty", "0 bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _failed(data, "not a recognisable image") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise _failed(data, str(err)) from None
    fmt = image.format or "unknown"
    if fmt not in set(formats):
        raise ImageRejected("unsupported_format", f"{fmt} (catalog.formats: {', '.join(formats)})")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise _failed(data, str(err)) from None
    return fmt, image.width, image.height


def _failed(data: bytes, detail: str) -> ImageRejected:
    """``truncated`` when the bytes begin as an image of a known format but stop before its end (a download or
    copy cut short), whatever PIL's message (a JPEG cut inside its header fails in Image.open with "Truncated File
    Read", one cut later with "image file is truncated"); ``undecodable`` otherwise."""
    cut = _cut_short(data)
    if cut or "truncated" in detail.lower():
        return ImageRejected("truncated", cut or detail)
    return ImageRejected("undecodable", detail)


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _cut_short(data: bytes) -> str | None:
    """What a cut-short file lacks, or None when its end is whole (or its format is not one fsnet checks)."""
    body = data.rstrip(b"\x00")  # a preallocated file that a download did not fill ends in zeros
    if data.startswith(JPEG_START) and not body.endswith(JPEG_END):
        return f"JPEG ends after {len(data):,} bytes without its end marker (FFD9)"
    if data.startswith(PNG_START) and not body.endswith(PNG_END):
        return f"PNG ends after {len(data):,} bytes without its IEND chunk"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and int.from_bytes(data[4:8], "little") + 8 > len(data):
        return f"WEBP ends after {len(data):,} bytes; its RIFF header says {int.from_bytes(data[4:8], 'little') + 8:,}"
    return None
