"""What every exact Top-K path shares: the evaluator ``fsnet evaluate`` runs (eval/threshold_topk.py), the faiss
brute-force reference it is checked against (eval/brute_force.py), and the baselines' and the fused ranking's
``smallest_k``: the lists' type, the device, and the rules that make the lists exact, ties included.

A path takes k + MARGIN float32 candidates per row. Where no two of the first k + 1 are closer than float32 error
could confuse, their order is the exact one; otherwise the candidates are ordered by distance recomputed in float64
from F' and rounded to float32, ties broken by gallery position (the gallery is in id order). Where the last
candidate is too close to the k-th to be sure nothing outside the candidates belongs in the Top-K, the whole row is
ordered that way (``finish``). So every path returns the same lists, ties included."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MARGIN = 16  # extra float32 candidates per row: float32 error reorders only near-equal distances
TIE = 2e-6  # distances closer than this (relative to ||F'||^2 + max ||g||^2) may be ordered differently in float32
SCORE_BYTES = 256 * 2**20  # bound on one block of float32 scores (rows x gallery)
FINISH_ROWS = 512  # rows re-ranked in float64 at once (rows x candidates x r)


@dataclass
class TopK:
    positions: np.ndarray  # (M, k) gallery positions, nearest first
    distances: np.ndarray  # (M, k) squared L2, float64
    exact_rows: int  # rows whose candidates were not conclusive and were recomputed over the whole gallery
    full_rows: int = 0  # the threshold path: rows no candidate tier settled, scored over the whole gallery


def compute_device(device: torch.device | str | None = None) -> torch.device:
    """The device a path computes its products on: ``device`` when given, else CUDA where torch sees it, else the
    CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def finish(
    f_prime: np.ndarray, gallery64: np.ndarray, g_scale: float, candidates: np.ndarray, approx: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The Top-k of rows F' (n, r) from their float32 candidates (n, c) and approximate squared distances (n, c),
    ascending. Where two of the first k + 1 are closer than the float32 error allows, the candidates are ordered
    by exact float64 distance (ties by position); where the last candidate is that close to the k-th, something
    outside may belong in, and the whole gallery is ordered exactly."""
    n, c = candidates.shape
    tie = TIE * (np.einsum("nr,nr->n", f_prime, f_prime) + g_scale)  # (n,) float32 error allowance
    positions, distances = candidates[:, :k].copy(), approx[:, :k].copy()
    near = np.flatnonzero((np.diff(approx[:, : min(k + 1, c)], axis=1) < tie[:, None]).any(axis=1))
    if len(near):
        diff = f_prime[near, None, :] - gallery64[candidates[near]]  # (near, c, r)
        exact = np.einsum("ncr,ncr->nc", diff, diff)
        order = np.lexsort((candidates[near], exact.astype(np.float32)), axis=1)[
            :, :k
        ]  # float32 distance, then position
        positions[near] = np.take_along_axis(candidates[near], order, 1)
        distances[near] = np.take_along_axis(exact, order, 1)
    unsure = np.flatnonzero((c < len(gallery64)) & (approx[:, -1] <= approx[:, k - 1] + tie))
    for row in unsure:
        diff = f_prime[row][None, :] - gallery64  # (N, r)
        full = np.einsum("nr,nr->n", diff, diff)
        order = np.lexsort((np.arange(len(full)), full.astype(np.float32)))[:k]
        positions[row], distances[row] = order, full[order]
    return positions, distances, len(unsure)


def smallest_k(score: torch.Tensor, k: int) -> np.ndarray:
    """(R, N) scores -> (R, k) positions of the k smallest, equal scores in position order: k + MARGIN candidates,
    and the whole row where the k-th score reaches the last candidate (ties past the candidates)."""
    n = score.shape[1]
    c = min(k + MARGIN, n)
    top, cand = torch.topk(score, c, dim=1, largest=False, sorted=True)
    top, cand = top.numpy(), cand.numpy()
    order = np.lexsort((cand, top), axis=1)[:, :k]
    out = np.take_along_axis(cand, order, 1)
    for row in np.flatnonzero((c < n) & (top[:, -1] == np.take_along_axis(top, order, 1)[:, -1])):
        out[row] = np.lexsort((np.arange(n), score[row].numpy()))[:k]
    return out
