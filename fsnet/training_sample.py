"""A seeded sample of training images as the embed path feeds them: decoded, resized as a whole, no augmentation,
read without Ray. BatchNorm statistics are re-estimated on it after an image stage (fsnet/model/batch_norm.py),
and train_summary.json's training accuracy (``classifier_accuracy``) is measured on it: with the saved statistics
and with re-estimated ones, the two agree when the statistics describe the final weights."""

from __future__ import annotations

import numpy as np
import torch

from fsnet.catalog.reader import Catalog
from fsnet.decode import decode_images, resize_batch
from fsnet.model.retrieval_model import RetrievalModel

SAMPLE_IMAGES = 1024  # enough for BatchNorm statistics (a cumulative average over 16 batches of 64) in seconds


def training_sample(
    catalog: Catalog, ids: np.ndarray, size: int, seed: int, count: int = SAMPLE_IMAGES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` of ``ids`` (training split ids), a seeded random choice in a seeded random order (batches
    cut from it mix the catalog, as the embed path's statistics must): (N, 3, size, size) uint8 images and their
    (N, A) int64 labels (-1 unknown). An undecodable image is left out, as the index leaves it out."""
    names = catalog.schema.names
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(np.asarray(ids).astype(str))[:count]
    rows = catalog.rows(chosen.tolist(), ["id", "image", *names])  # catalog order
    images, labels = [], []
    for i in rng.permutation(len(rows["id"])):
        try:
            images.append(decode_images([rows["image"][i]])[0])  # (3, H, W) uint8
        except Exception:  # noqa: BLE001 - undecodable: the index rejects it too
            continue
        labels.append([int(rows[a][i]) for a in names])
    if not images:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8), torch.zeros((0, len(names)), dtype=torch.int64)
    return resize_batch(images, size), torch.tensor(labels, dtype=torch.int64)  # (N, 3, S, S), (N, A)


@torch.no_grad()
def classifier_accuracy(
    model: RetrievalModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> dict[str, float]:
    """Per attribute: the eval-mode GAP classifiers' accuracy on ``images`` (N, 3, S, S) over the known ``labels``
    (N, A); an attribute with no known label is left out."""
    model.eval()
    device = next(model.parameters()).device
    predicted = torch.cat(
        [
            torch.stack([lg.argmax(dim=1) for lg in model(x.to(device), heads=False).logits], dim=1).cpu()
            for x in images.split(batch_size)
        ]
    )  # (N, A)
    known = labels >= 0
    correct = ((predicted == labels) & known).sum(dim=0)
    return {
        name: float(c / k) for name, c, k in zip(model.schema.names, correct.tolist(), known.sum(dim=0).tolist()) if k
    }
