"""The reference every exact Top-K path is checked against (``fsnet evaluate --check``, the tests): every manipulated
query built explicitly as the model builds it and searched with faiss IndexFlatL2, its k + MARGIN candidates
finished by eval/topk.py's rules (ties by gallery position). ``fsnet evaluate`` also takes it where a protocol is
too sparse for the threshold path to save work (eval/threshold_topk.py ``exact_topk``)."""

from __future__ import annotations

import faiss
import numpy as np

from eval.algebra import ManipulationAlgebra
from eval.protocol import Manipulations
from eval.topk import FINISH_ROWS, MARGIN, TopK, finish


def brute_force_topk(
    model: ManipulationAlgebra,
    reps: np.ndarray,
    gallery: np.ndarray,
    manipulations: Manipulations,
    k: int,
    batch: int = 4096,
    values: np.ndarray | None = None,
) -> TopK:
    """The reference: every manipulated query built explicitly as the model builds it (FashionSearchNet: s_a
    replaced by M[a, v], then [lambda_1 s_1, ...] w_r; ADDE-style: F + M i) and searched with faiss IndexFlatL2."""
    n = len(gallery)
    k = min(k, n)
    c = min(k + MARGIN, n)
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    gallery64 = gallery.astype(np.float64)
    g_scale = float(np.einsum("nr,nr->n", gallery64, gallery64).max())
    positions = np.zeros((len(manipulations), k), dtype=np.int64)
    distances = np.zeros((len(manipulations), k), dtype=np.float64)
    exact_rows = 0
    for lo in range(0, len(manipulations), batch):
        hi = min(lo + batch, len(manipulations))
        q = manipulations.query[lo:hi]
        f_prime = model.long_way(
            reps[q].astype(np.float64), None if values is None else values[q], manipulations.change[lo:hi]
        )  # (b, r)
        approx, cand = index.search(np.ascontiguousarray(f_prime, dtype=np.float32), c)
        for f0 in range(0, hi - lo, FINISH_ROWS):
            part = slice(f0, f0 + FINISH_ROWS)
            p, dist, redone = finish(
                f_prime[part], gallery64, g_scale, cand[part].astype(np.int64), approx[part].astype(np.float64), k
            )
            positions[lo + f0 : lo + f0 + len(p)], distances[lo + f0 : lo + f0 + len(p)] = p, dist
            exact_rows += redone
    return TopK(positions, distances, exact_rows)
