"""The catalog's training split as the training stages use it, read once by the driver: the images they train on
and the validation images held out of them for model selection (seeded by train.seed, fsnet/validation.py: the same
in every process that asks), their rows as a Ray Data dataset and their labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ray.data

from fsnet.catalog.reader import Catalog
from fsnet.config import Config
from fsnet.validation import split_training


@dataclass(frozen=True)
class TrainingSplit:
    catalog: Catalog
    fit_ids: np.ndarray  # (N,) str: the ids the stages train on
    validation_ids: np.ndarray  # (V,) str: held out of them, for model selection

    @classmethod
    def of(cls, cfg: Config, catalog: Catalog) -> TrainingSplit:
        """The catalog's training split, divided as train.validation and train.seed say."""
        fit_ids, validation_ids = split_training(
            catalog.split_ids("train").astype(str), cfg.train.validation, cfg.train.seed
        )
        return cls(catalog, fit_ids, validation_ids)

    def rows(self, columns: list[str], **read) -> ray.data.Dataset:
        """The catalog rows the stages train on (the training split without the validation images)."""
        from ray.data.expressions import col

        return self.catalog.dataset("train", columns, **read).filter(expr=col("id").is_in(self.fit_ids.tolist()))

    def labels(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (N, A) labels) of ``ids`` in catalog order, read without Ray."""
        names = self.catalog.schema.names
        rows = self.catalog.rows(ids.tolist(), ["id", *names])
        return rows["id"].astype(str), np.stack([rows[a] for a in names], axis=1).astype(np.int16)
