"""The validation images: carved from the training split, never from the query or gallery split, so that choosing
a checkpoint or a regularisation strength never looks at what the benchmark scores (ADDE's published code selects
on its test set; fsnet does not).

Membership is a property of the id: an image is a validation image when a seeded digest of its id falls in the
lowest ``fraction`` of the digest range. A re-pack that reorders or extends the catalog keeps the same images on
the same side, and every process (workers, the probe in evaluate) finds the same ones without being told.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fsnet.errors import ConfigError

DIGEST_RANGE = 1 << 32


def validation_fraction(requested: int | float, train_images: int) -> float:
    """train.validation as a fraction of the training split: a count (>= 1) or a fraction (0 < f < 1)."""
    if requested >= 1:
        if train_images and requested >= train_images:
            raise ConfigError(
                f"train.validation={requested}: the training split has only {train_images} images; ask for fewer"
            )
        return requested / max(train_images, 1)
    return float(requested)


def is_validation(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: which of ``ids`` are validation images."""
    cut = int(fraction * DIGEST_RANGE)
    digests = [int.from_bytes(hashlib.sha1(f"{seed}:{i}".encode()).digest()[:4], "big") for i in ids]
    return np.asarray(digests, np.int64) < cut


def split_training(train_ids: np.ndarray, requested: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training ids, validation ids) of the training split, each in the order given."""
    mask = is_validation(train_ids, validation_fraction(requested, len(train_ids)), seed)
    return train_ids[~mask], train_ids[mask]
