"""The formula both manipulation algebras share, in one place: a manipulation a -> v of a query moves its global
representation by the projection of the difference between the new value's memory row and what the query's slot
a holds,

    F' = F + sum_{a changed} project_a(m_av - slot_a),

with m_av row offsets[a] + v of the memory (C rows, attribute a's values at offsets[a] .. offsets[a] + V_a - 1).
Replace-by-memory (eval/linear_global.py) and additive memory (eval/additive_memory.py) differ only in the
slots, the projection and the memory's width; each subclass gives ``memory``, ``num_values`` and ``project``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from fsnet.catalog.schema import value_offsets


class SlotAlgebra(ABC):
    memory: np.ndarray  # (C, w) one row per attribute value, schema order
    num_values: list[int]

    @abstractmethod
    def project(self, attribute: int, vectors: np.ndarray) -> np.ndarray:
        """x (n, w) in attribute ``attribute``'s slot -> its contribution to F (n, r)."""

    @property
    def attributes(self) -> int:
        return len(self.num_values)

    @property
    def offsets(self) -> np.ndarray:
        """(A,) the memory row of each attribute's first value."""
        return np.asarray(value_offsets(self.num_values), dtype=np.int64)

    def memory_rows(self, attribute: int) -> np.ndarray:
        """(V_a, w) the memory rows of one attribute."""
        start = self.offsets[attribute]
        return self.memory[start : start + self.num_values[attribute]]

    def manipulated(self, global_: np.ndarray, slots: np.ndarray, change: np.ndarray) -> np.ndarray:
        """F' = F + sum over changed a of project_a(M[a, v] - slot_a), for global_ (n, r), ``slots`` (n, A, w) and
        change (n, A) with -1 keeping an attribute; float64."""
        out = global_.astype(np.float64, copy=True)
        offsets = self.offsets
        for a in range(self.attributes):
            rows = np.flatnonzero(change[:, a] >= 0)
            if len(rows):
                new = self.memory[offsets[a] + change[rows, a].astype(np.int64)]  # (n_a, w)
                out[rows] += self.project(a, new - slots[rows, a].astype(np.float64))
        return out
