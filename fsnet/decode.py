"""Encoded image bytes -> uint8 tensors (B, 3, S, S), on the CPU (torchvision's libjpeg-turbo / libpng) or on a
GPU (nvJPEG through ``decode_jpeg(..., device="cuda")``, one batched call). Images are resized to S x S as a whole
(the paper's fixed-size input), one resize call per distinct input size (on a GPU, a call per image costs more in
launches than the resize itself); training adds a random crop of ``crop_scale``-1.0 of the area and a flip."""

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


def decode_or_reject(
    blobs: Sequence[bytes], device: torch.device | str = "cpu", batched: bool = False
) -> tuple[list[torch.Tensor | None], list[str | None]]:
    """Per image: decoded (3, H, W) uint8 on ``device`` or None, and None or why it could not be decoded. One bad
    image must not take its batch down. ``batched``: one call for the whole batch first (nvJPEG decodes a list at
    once, several times faster than image by image) and image by image only when that call fails, to name the bad
    ones. Off the CPU an image the GPU decoder refuses (some CMYK JPEGs) is decoded on the CPU and moved there."""
    device = torch.device(device)
    if batched:
        try:
            return list(decode_images(blobs, device)), [None] * len(blobs)
        except Exception:  # noqa: BLE001 - some image of the batch is bad: found one by one below
            pass
    images: list[torch.Tensor | None] = []
    errors: list[str | None] = []
    for blob in blobs:
        try:
            images.append(_decode_one(blob, device))
            errors.append(None)
        except Exception as err:  # noqa: BLE001 - every decoder failure is a rejected image
            images.append(None)
            errors.append(f"undecodable: {type(err).__name__}: {str(err)[:200]}")
    return images, errors


def _decode_one(blob: bytes, device: torch.device) -> torch.Tensor:
    try:
        return decode_images([blob], device)[0]
    except Exception:  # noqa: BLE001 - off the CPU, the GPU decoder's refusal; the CPU decoder decides
        if device.type == "cpu":
            raise
        return decode_images([blob])[0].to(device)


def resize_batch(
    images: list[torch.Tensor],
    size: int,
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(3, H, W) images -> (B, 3, size, size) uint8; with ``augment`` a random crop and flip first. Without it the
    images of one input size are resized in one call (the same pixels as one by one)."""
    if augment is None:
        return _resize_by_shape(images, size)
    out = []  # each image its own crop, then resized
    for image in images:
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


def _resize_by_shape(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """(3, H, W) images -> (B, 3, size, size), in their order: one resize per distinct (H, W)."""
    if not images:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    shapes: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        shapes.setdefault(tuple(image.shape[1:]), []).append(i)
    if len(shapes) == 1:
        return TF.resize(torch.stack(images), [size, size], antialias=True)  # (B, 3, size, size)
    out = torch.empty((len(images), 3, size, size), dtype=images[0].dtype, device=images[0].device)
    for rows in shapes.values():
        out[rows] = TF.resize(torch.stack([images[i] for i in rows]), [size, size], antialias=True)
    return out


def decode_batch(
    blobs: Sequence[bytes],
    size: int,
    device: torch.device | str = "cpu",
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Encoded images -> (B, 3, size, size) uint8 on ``device``."""
    return resize_batch(decode_images(blobs, device), size, augment, generator)
