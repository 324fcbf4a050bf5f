"""Decode an encoded image once to decide whether it may enter a catalog, and read its size.

Every image that a catalog holds has been fully decoded here (PIL, with truncated images refused), so the
training and index jobs never meet an image that cannot be decoded."""

from __future__ import annotations

import io
from typing import Iterable

from PIL import Image, UnidentifiedImageError

# Why an image was left out; rejected.csv and catalog.json count by these names.
REASONS = ("missing", "unreadable", "empty", "undecodable", "truncated", "unsupported_format")


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
        raise ImageRejected("undecodable", "not a recognisable image") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageRejected("undecodable", str(err)) from None
    fmt = image.format or "unknown"
    if fmt not in set(formats):
        raise ImageRejected("unsupported_format", f"{fmt} (catalog.formats: {', '.join(formats)})")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = "truncated" if "truncated" in str(err).lower() else "undecodable"
        raise ImageRejected(reason, str(err)) from None
    return fmt, image.width, image.height
