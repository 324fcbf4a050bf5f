"""The parts of a trained model that a manipulation touches, as plain tensors: the global representation is
F = sum_a lambda_a s_a W_a (paper Eq. 7, linear in each attribute slot) and a manipulation a -> v swaps s_a for
the memory row M[a, v], so F' = F + sum_{a changed} lambda_a (M[a, v] - s_a) W_a. Both evaluators and the search
use this; only the brute-force reference builds F' the long way, from the replaced representations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LinearGlobal:
    lambdas: np.ndarray  # (A,) lambda_a
    blocks: np.ndarray | None  # (A, D, r) W_a; None when F is the plain concatenation [s_1, ..., s_A] (r = A * D)
    memory: np.ndarray  # (C, D) the memory block, rows of attribute a at offsets[a] .. offsets[a] + num_values[a]
    num_values: list[int]

    @classmethod
    def from_model(cls, model) -> "LinearGlobal":
        g = model.global_rep
        with torch.no_grad():
            lambdas = g.lambdas.detach().double().cpu().numpy()
            blocks = g.blocks().detach().double().cpu().numpy() if g.learned else None
            memory = model.memory.table.detach().double().cpu().numpy()
        return cls(lambdas, blocks, memory, list(model.memory.num_values))

    @property
    def attributes(self) -> int:
        return len(self.num_values)

    @property
    def embed_dim(self) -> int:
        return self.memory.shape[1]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.num_values)[:-1]]).astype(np.int64)

    def memory_rows(self, attribute: int) -> np.ndarray:
        """(V_a, D) the memory rows of one attribute."""
        start = self.offsets[attribute]
        return self.memory[start : start + self.num_values[attribute]]

    def project(self, attribute: int, vectors: np.ndarray) -> np.ndarray:
        """x (n, D) in attribute ``attribute``'s slot -> lambda_a x W_a (n, r)."""
        a, d = attribute, self.embed_dim
        if self.blocks is None:
            out = np.zeros((len(vectors), self.attributes * d), dtype=np.result_type(vectors, np.float32))
            out[:, a * d : (a + 1) * d] = vectors
            return out * self.lambdas[a]
        return self.lambdas[a] * (vectors @ self.blocks[a])

    def global_of(self, reps: np.ndarray) -> np.ndarray:
        """reps (n, A, D) -> F (n, r), the long way: [lambda_1 s_1, ..., lambda_A s_A] w_r."""
        weighted = reps * self.lambdas[None, :, None]  # (n, A, D)
        flat = weighted.reshape(len(reps), -1)  # (n, A * D)
        if self.blocks is None:
            return flat
        return flat @ self.blocks.reshape(-1, self.blocks.shape[2])  # (n, r)

    def manipulated(self, global_: np.ndarray, reps: np.ndarray, change: np.ndarray) -> np.ndarray:
        """F' = F + sum over changed a of lambda_a (M[a, v] - s_a) W_a, for global_ (n, r), reps (n, A, D) and
        change (n, A) with -1 keeping an attribute."""
        out = global_.astype(np.float64, copy=True)
        offsets = self.offsets
        for a in range(self.attributes):
            rows = np.flatnonzero(change[:, a] >= 0)
            if len(rows):
                delta = self.memory[offsets[a] + change[rows, a].astype(np.int64)] - reps[rows, a].astype(np.float64)  # (n_a, D)
                out[rows] += self.project(a, delta)
        return out

    def replaced_reps(self, reps: np.ndarray, change: np.ndarray) -> np.ndarray:
        """reps (n, A, D) with s_a replaced by M[a, v] where change (n, A) says so."""
        rows = self.offsets[None, :] + np.clip(change, 0, None).astype(np.int64)  # (n, A) memory row per slot
        return np.where((change >= 0)[:, :, None], self.memory[rows], reps)
