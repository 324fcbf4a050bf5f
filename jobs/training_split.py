"""The catalog's training split as the training stages use it: the images they train on and the validation images
held out of them for model selection (seeded by train.seed, fsnet/validation.py: the same in every process that
asks), their rows as a Ray Data dataset and their labels."""

from __future__ import annotations

import numpy as np
import ray.data

from fsnet.catalog.reader import Catalog
from fsnet.config import Config
from fsnet.validation import split_training


def training_ids(cfg: Config, catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(the ids the stages train on, the validation ids held out of them): the training split, seeded by train.seed
    (fsnet/validation.py; the same in every process that asks)."""
    return split_training(catalog.split_ids("train").astype(str), cfg.train.validation, cfg.train.seed)


def training_rows(cfg: Config, catalog: Catalog, columns: list[str], **read) -> "ray.data.Dataset":
    """The catalog rows the stages train on (the training split without the validation images)."""
    from ray.data.expressions import col

    fit_ids, _ = training_ids(cfg, catalog)
    return catalog.dataset("train", columns, **read).filter(expr=col("id").is_in(fit_ids.tolist()))


def labels_of(catalog: Catalog, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (N, A) labels) of ``ids`` in catalog order, read without Ray."""
    rows = catalog.rows(ids.tolist(), ["id", *catalog.schema.names])
    labels = np.stack([rows[a] for a in catalog.schema.names], axis=1).astype(np.int16)
    return rows["id"].astype(str), labels
