"""Encoded image bytes -> uint8 tensors (B, 3, S, S), on the CPU (torchvision's libjpeg-turbo / libpng) or on a
GPU (nvJPEG through ``decode_jpeg(..., device="cuda")``, one batched call). Images are resized to S x S as a whole
(the paper's fixed-size input); training adds a random crop of ``crop_scale``-1.0 of the area and a flip."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from fsnet.config import AugmentConfig

JPEG_MAGIC = b"\xff\xd8"


def _decode_cpu(blob: bytes) -> torch.Tensor:
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    try:
        return decode_image(data, mode=ImageReadMode.RGB)  # (3, H, W) uint8
    except RuntimeError:  # formats libjpeg/libpng refuse but PIL reads (e.g. some CMYK JPEGs)
        return torch.from_numpy(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).copy()).permute(2, 0, 1)


def decode_images(blobs: Sequence[bytes], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Decoded (3, H, W) uint8 images on ``device``; JPEGs go through nvJPEG in one batch on CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return [_decode_cpu(b) for b in blobs]
    out: list[torch.Tensor | None] = [None] * len(blobs)
    jpeg = [i for i, b in enumerate(blobs) if bytes(b[:2]) == JPEG_MAGIC]
    if jpeg:
        tensors = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpeg]
        for i, image in zip(jpeg, decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)):
            out[i] = image
    for i, b in enumerate(blobs):
        if out[i] is None:
            out[i] = _decode_cpu(b).to(device, non_blocking=True)
    return out  # type: ignore[return-value]


def resize_batch(
    images: list[torch.Tensor],
    size: int,
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(3, H, W) images -> (B, 3, size, size) uint8; with ``augment`` a random crop and flip first."""
    out = []
    for image in images:
        if augment is not None:
            _, h, w = image.shape
            scale = (
                float(torch.empty(1).uniform_(augment.crop_scale, 1.0, generator=generator))
                if augment.crop_scale < 1
                else 1.0
            )
            ch, cw = max(1, round(h * scale**0.5)), max(1, round(w * scale**0.5))
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            image = image[:, top : top + ch, left : left + cw]
            if augment.flip and bool(torch.randint(0, 2, (1,), generator=generator)):
                image = image.flip(-1)
        out.append(TF.resize(image, [size, size], antialias=True))
    return torch.stack(out)


def decode_batch(
    blobs: Sequence[bytes],
    size: int,
    device: torch.device | str = "cpu",
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Encoded images -> (B, 3, size, size) uint8 on ``device``."""
    return resize_batch(decode_images(blobs, device), size, augment, generator)
