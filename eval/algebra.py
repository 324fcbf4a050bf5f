"""The manipulation algebra: what both evaluators (eval/topk.py) and the evaluation job call to build a
manipulated query's global representation F' from plain arrays, without the model. A model names its algebra
(``manipulation``, fsnet/model/retrieval_model.py) and ``algebra_of(model)`` builds it:

- "replace" (FashionSearchNet, eval/linear_global.py): slot a is swapped for the memory row M[a, v];
- "additive" (the ADDE-style model, eval/additive_memory.py): M's column of the new value minus the old one's is
  added.

Both are F' = F + sum_{a changed} project_a(m_av - slot_a) (eval/slot_algebra.py); tests/eval/test_algebra.py
holds each to the model's own ``global_representation``."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

from eval.additive_memory import AdditiveMemory
from eval.linear_global import LinearGlobal
from fsnet.model.retrieval_model import RetrievalModel


class ManipulationAlgebra(Protocol):
    num_values: list[int]
    memory: np.ndarray  # (C, w) one row per attribute value

    @property
    def attributes(self) -> int: ...

    @property
    def offsets(self) -> np.ndarray: ...  # (A,) memory row of each attribute's first value

    def global_of(self, reps: np.ndarray) -> np.ndarray: ...  # reps (n, A, D) -> F (n, r)

    def slots(self, reps: np.ndarray, values: np.ndarray | None) -> np.ndarray:
        """(n, A, w) what a manipulation of each attribute takes out of the query; ``values`` (n, A) its current
        values (-1 unknown), which only an additive memory reads."""
        ...

    def memory_rows(self, attribute: int) -> np.ndarray: ...  # (V_a, w)

    def project(self, attribute: int, vectors: np.ndarray) -> np.ndarray: ...  # (n, w) in slot a -> (n, r)

    def manipulated(self, global_: np.ndarray, slots: np.ndarray, change: np.ndarray) -> np.ndarray:
        """F' (n, r) float64 of F (n, r), slots (n, A, w) and change (n, A; new value or -1)."""
        ...

    def gallery_products(self, gallery: torch.Tensor) -> Callable[..., torch.Tensor]:
        """(a, x (n, w) in slot a) -> (n, N) products of project_a(x) with the gallery's F (N, r); with
        ``into=`` (n, N) and ``alpha=``, into += alpha * products in place (eval/threshold_topk.py: no temporary)."""
        ...

    def long_way(self, reps: np.ndarray, values: np.ndarray | None, change: np.ndarray) -> np.ndarray:
        """F' (n, r) built as the model builds it, for the brute-force reference."""
        ...


ALGEBRAS: dict[str, Callable[..., ManipulationAlgebra]] = {
    "replace": LinearGlobal.from_model,
    "additive": AdditiveMemory.from_model,
}


def algebra_of(model: RetrievalModel) -> ManipulationAlgebra:
    """The manipulation algebra of a trained model, by the name its class declares."""
    try:
        build = ALGEBRAS[model.manipulation]
    except KeyError:
        raise ValueError(
            f"{type(model).__name__}.manipulation = {model.manipulation!r}: algebras are {', '.join(ALGEBRAS)}"
        ) from None
    return build(model)
