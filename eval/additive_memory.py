"""The ADDE-style model's manipulation algebra as plain arrays: F = [s_1, ..., s_A] (the concatenated chunks,
r = A * D) and a manipulation a -> v from the query's value u adds M[:, (a, v)] - M[:, (a, u)], so

    F' = F + sum_{a changed} (m_av - m_au),   m_c = column c of the memory M (the full width r, off-diagonal
    blocks included).

That is the shared formula F' = F + sum_a project_a(m_av - slot_a) (eval/slot_algebra.py) with project_a the
identity and the query's slot a being m_au, the memory column of its current value (zero when that value is
unknown), so both evaluators run it unchanged. The query's current values are its labels in an evaluation (as in
ADDE's protocol). The algebra of models whose ``manipulation`` is "additive"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from eval.slot_algebra import SlotAlgebra


@dataclass(frozen=True)
class AdditiveMemory(SlotAlgebra):
    memory: np.ndarray  # (C, r) M's columns as rows: value c's prototype over the whole embedding
    num_values: list[int]
    embed_dim: int  # D, the chunk width (r = A * D)

    @classmethod
    def from_model(cls, model) -> "AdditiveMemory":
        with torch.no_grad():
            memory = model.memory.table.detach().double().cpu().numpy()
        return cls(memory, list(model.memory.num_values), model.cfg.embed_dim)

    def global_of(self, reps: np.ndarray) -> np.ndarray:
        """reps (n, A, D) -> F (n, A * D)."""
        return reps.reshape(len(reps), -1)

    def project(self, attribute: int, vectors: np.ndarray) -> np.ndarray:
        """Memory columns already live in F's space: the identity."""
        return vectors

    def slots(self, reps: np.ndarray, values: np.ndarray | None) -> np.ndarray:
        """(n, A, r): slot a is the memory column of the query's current value of a (zero when unknown)."""
        if values is None:
            raise ValueError("the ADDE-style model's manipulation needs the queries' current values")
        values = np.asarray(values, dtype=np.int64)
        rows = self.offsets[None, :] + np.clip(values, 0, None)  # (n, A)
        return np.where((values >= 0)[:, :, None], self.memory[rows], 0.0)

    def gallery_products(self, gallery: torch.Tensor) -> Callable[[int, np.ndarray], torch.Tensor]:
        """(a, x (n, r)) -> (n, N) x . g_n (with ``into``: added to it, times ``alpha``, in place): memory columns
        are full width, so the products are too."""

        def products(a: int, x: np.ndarray, into: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
            xt = torch.from_numpy(x.astype(np.float32)).to(gallery.device)
            if into is not None:
                return into.addmm_(xt, gallery.T, alpha=alpha)
            return xt @ gallery.T

        return products

    def long_way(self, reps: np.ndarray, values: np.ndarray | None, change: np.ndarray) -> np.ndarray:
        """F' built as the model builds it: the indicator i over the C values (-1 on each changed attribute's old
        value, +1 on its new one), then F + M i."""
        if values is None:
            raise ValueError("the ADDE-style model's manipulation needs the queries' current values")
        n = len(reps)
        indicator = np.zeros((n, len(self.memory)))  # (n, C)
        offsets = self.offsets
        for a in range(self.attributes):
            rows = np.flatnonzero(change[:, a] >= 0)
            indicator[rows, offsets[a] + change[rows, a].astype(np.int64)] += 1.0
            old = rows[values[rows, a] >= 0]
            indicator[old, offsets[a] + values[old, a].astype(np.int64)] -= 1.0
        return self.global_of(reps.astype(np.float64)) + indicator @ self.memory
