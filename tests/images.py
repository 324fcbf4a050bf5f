"""Real encoded images for tests: JPEG/PNG bytes drawn with PIL, and the ways they go bad."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def image_bytes(width: int = 60, height: int = 80, fmt: str = "JPEG", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


GARBAGE = b"this is not an image at all" * 10
