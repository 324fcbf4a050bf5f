"""The parts of a trained model that a manipulation touches, as plain tensors: the global representation is
F = sum_a lambda_a s_a W_a (paper Eq. 7, linear in each attribute slot) and a manipulation a -> v swaps s_a for
the memory row M[a, v], so F' = F + sum_{a changed} lambda_a (M[a, v] - s_a) W_a: the shared formula of
eval/slot_algebra.py with slot_a = s_a and project_a(x) = lambda_a x W_a. Both evaluators use this; only the
brute-force reference builds F' the long way, from the replaced representations.

The algebra of models whose ``manipulation`` is "replace" (FashionSearchNet); ``eval.algebra.algebra_of(model)``
picks it, and the ADDE-style model's additive memory (eval/additive_memory.py) for "additive"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from eval.slot_algebra import SlotAlgebra


@dataclass(frozen=True)
class LinearGlobal(SlotAlgebra):
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
    def embed_dim(self) -> int:
        return self.memory.shape[1]

    def project(self, attribute: int, vectors: np.ndarray) -> np.ndarray:
        """x (n, D) in attribute ``attribute``'s slot -> lambda_a x W_a (n, r)."""
        a, d = attribute, self.embed_dim
        if self.blocks is None:
            out = np.zeros((len(vectors), self.attributes * d), dtype=np.result_type(vectors, np.float32))
            out[:, a * d : (a + 1) * d] = vectors
            return out * self.lambdas[a]
        return self.lambdas[a] * (vectors @ self.blocks[a])

    def slots(self, reps: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """(n, A, D) what a manipulation of attribute a takes out of the query's slot a: its own s_a (whatever its
        values are: a replacement does not depend on them)."""
        return reps

    def gallery_products(self, gallery: torch.Tensor) -> Callable[[int, np.ndarray], torch.Tensor]:
        """For gallery F (N, r) on the evaluation device: a function (a, x (n, D) in slot a) -> (n, N) of
        lambda_a (x W_a) . g_n (with ``into``: added to it, times ``alpha``, in place). Where D < r it precomputes
        P_a = G W_a^T (N, D), so each product is D wide."""
        a_count, d = self.attributes, self.embed_dim
        device = gallery.device
        if self.blocks is None:
            slots = [gallery[:, a * d : (a + 1) * d] for a in range(a_count)]  # (N, D) views: W_a picks the slot
        else:
            blocks = torch.from_numpy(self.blocks.astype(np.float32)).to(device)  # (A, D, r)
            slots = [gallery @ blocks[a].T if d < gallery.shape[1] else None for a in range(a_count)]
        lambdas = self.lambdas.astype(np.float32)

        def products(a: int, x: np.ndarray, into: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
            xt = torch.from_numpy(x.astype(np.float32)).to(device)
            lhs, rhs = (xt, slots[a].T) if slots[a] is not None else (xt @ blocks[a], gallery.T)
            if into is not None:  # into += alpha * the products, inside the product (no (n, N) temporary)
                return into.addmm_(lhs, rhs, alpha=alpha * float(lambdas[a]))
            return lambdas[a] * (lhs @ rhs)

        return products

    def long_way(self, reps: np.ndarray, values: np.ndarray | None, change: np.ndarray) -> np.ndarray:
        """F' built as the model builds it: the replaced representations, then [lambda_1 s_1, ...] w_r."""
        return self.global_of(self.replaced_reps(reps, change))

    def global_of(self, reps: np.ndarray) -> np.ndarray:
        """reps (n, A, D) -> F (n, r), the long way: [lambda_1 s_1, ..., lambda_A s_A] w_r."""
        weighted = reps * self.lambdas[None, :, None]  # (n, A, D)
        flat = weighted.reshape(len(reps), -1)  # (n, A * D)
        if self.blocks is None:
            return flat
        return flat @ self.blocks.reshape(-1, self.blocks.shape[2])  # (n, r)

    def replaced_reps(self, reps: np.ndarray, change: np.ndarray) -> np.ndarray:
        """reps (n, A, D) with s_a replaced by M[a, v] where change (n, A) says so."""
        rows = self.offsets[None, :] + np.clip(change, 0, None).astype(np.int64)  # (n, A) memory row per slot
        return np.where((change >= 0)[:, :, None], self.memory[rows], reps)
