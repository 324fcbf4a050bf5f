"""fsnet/decode.py: the batched resize gives the pixels of resizing image by image, and a batch decoded at once
names its bad images as the image-by-image decode does (the GPU path's fallback, run here on the CPU)."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from fsnet.decode import decode_images, decode_or_reject, resize_batch
from tests.images import GARBAGE, image_bytes


def test_resize_batch_of_mixed_sizes_equals_one_by_one_in_order():
    sizes = [(60, 80), (224, 224), (60, 80), (31, 17), (224, 224), (64, 64)]  # (width, height), interleaved repeats
    images = decode_images([image_bytes(w, h, seed=i) for i, (w, h) in enumerate(sizes)])
    expected = torch.stack([TF.resize(image, [64, 64], antialias=True) for image in images])
    resized = resize_batch(images, 64)  # (6, 3, 64, 64)
    assert resized.shape == (6, 3, 64, 64) and resized.dtype == torch.uint8
    torch.testing.assert_close(resized, expected, rtol=0, atol=0)
    assert torch.equal(resize_batch(images[5:], 64)[0], images[5])  # already 64 x 64: unchanged
    assert resize_batch([], 64).shape == (0, 3, 64, 64)


def test_a_batch_with_a_bad_image_falls_back_to_naming_it():
    blobs = [image_bytes(60, 80, seed=0), GARBAGE, image_bytes(40, 30, fmt="PNG", seed=1), image_bytes(seed=2)]
    for batched in (False, True):
        images, errors = decode_or_reject(blobs, batched=batched)
        assert [e is None for e in errors] == [True, False, True, True]
        assert errors[1].startswith("undecodable: ") and images[1] is None
        for i in (0, 2, 3):
            assert torch.equal(images[i], decode_images([blobs[i]])[0])


def test_a_good_batch_decodes_in_one_call_as_one_by_one():
    blobs = [image_bytes(60, 80, seed=s) for s in range(4)]
    images, errors = decode_or_reject(blobs, batched=True)
    assert errors == [None] * 4
    for image, one in zip(images, decode_images(blobs)):
        assert torch.equal(image, one)
