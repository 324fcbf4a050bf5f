"""Training batches from the frozen trunk's cached maps (train.trunk: frozen): what a worker's stage 1-2 loop reads
instead of decoded images.

Every worker holds the training images' maps in memory (fp16; fashion-product-small at 96 px: 16k x 320 x 6 x 6,
370 MB) and draws each epoch's order from one seeded permutation of them all, taking every world-th row from its
rank: a batch is a uniform sample of the whole training split. The image path's batches come from a few shards at
a time (block order plus a local shuffle buffer), and catalogs are packed in their table's order, often grouped by
category: uniform batches are what SGD and the in-batch triplets assume. Augmentation is the horizontal flip, applied
to the maps (a flipped image's maps are, to the trunk's symmetry, the flipped maps); crops would need the image.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


class CachedBatches:
    def __init__(self, maps: np.ndarray, labels: np.ndarray, batch_size: int, rank: int, world: int, seed: int):
        """maps (N, C, h, w) float16, labels (N, A) int: the training images, the same on every worker."""
        self.maps, self.labels = maps, labels
        self.batch_size, self.rank, self.world, self.seed = batch_size, rank, world, seed

    @property
    def steps(self) -> int:
        """Batches per epoch, equal on every worker (DDP steps together)."""
        return (len(self.maps) // self.world) // self.batch_size

    def epoch(self, epoch: int, flip: bool) -> Iterator[dict[str, torch.Tensor]]:
        """This worker's batches of ``epoch``: {"image": (B, C, h, w) float32 maps, "labels": (B, A) int16}."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.maps))[self.rank :: self.world]
        flips = np.random.default_rng([self.seed, epoch, self.rank]).random(len(order)) < 0.5
        for i in range(self.steps):
            rows = order[i * self.batch_size : (i + 1) * self.batch_size]
            maps = torch.from_numpy(self.maps[rows]).float()  # (B, C, h, w)
            if flip:
                flipped = torch.from_numpy(flips[i * self.batch_size : (i + 1) * self.batch_size])
                maps[flipped] = maps[flipped].flip(-1)
            yield {"image": maps, "labels": torch.from_numpy(self.labels[rows].astype(np.int16))}
