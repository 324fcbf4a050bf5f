"""Exact Top-K of every manipulated query over the gallery, two ways that must agree.

``factorized_topk`` uses the linearity of F in each attribute slot (eval/algebra.py). For a manipulation
(q; a -> v) the squared distance to gallery image n is ||F'||^2 + score, with

    score[n] = ||g_n||^2 - 2 F(q).g_n + 2 sum_{a changed} (u_qa . g_n - m_av . g_n),
    u_qa = lambda_a s_qa W_a (the query's own slot),  m_av = lambda_a M[a, v] W_a (the memory row's),

so F(q).G^T is computed once per query, u_qa.G^T once per (query, attribute) and m_av.G^T once per value, and
the manipulations of one query only add rows: (Q + Q*A + C) N products of width min(D, r) instead of M N of
width r. For the ADDE-style model (eval/additive_memory.py) u_qa = m_au, the memory column of the query's current
value u, and m_av the new value's, both r wide. ``brute_force_topk`` builds every manipulated query explicitly
and searches faiss IndexFlatL2.

Both take k + margin float32 candidates. Where no two of the first k + 1 are closer than float32 error could
confuse, their order is the exact one; otherwise the candidates are ordered by distance recomputed in float64
from F' and rounded to float32, ties broken by gallery position (the gallery is in id order). Where the last
candidate is too close to the k-th to be sure nothing outside the candidates belongs in the Top-K, the whole
row is ordered that way. So both return the same lists, ties included."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch

from eval.algebra import ManipulationAlgebra
from eval.protocol import Manipulations

MARGIN = 16  # extra float32 candidates per row: float32 error reorders only near-equal distances
TIE = 2e-6  # distances closer than this (relative to ||F'||^2 + max ||g||^2) may be ordered differently in float32
SCORE_BYTES = 256 * 2**20  # bound on one block of float32 scores (rows x gallery)
PRUNE = 512  # gallery candidates per (query, changed attributes) kept by the lower bound shared by all their values
FINISH_ROWS = 512  # rows re-ranked in float64 at once (rows x candidates x r)


@dataclass
class TopK:
    positions: np.ndarray  # (M, k) gallery positions, nearest first
    distances: np.ndarray  # (M, k) squared L2, float64
    exact_rows: int  # rows whose candidates were not conclusive and were recomputed over the whole gallery
    full_rows: int = 0  # factorized: rows the shared lower bound did not settle, scored over the whole gallery


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _finish(
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


def factorized_topk(
    model: ManipulationAlgebra,
    reps: np.ndarray,
    gallery: np.ndarray,
    manipulations: Manipulations,
    k: int,
    query_chunk: int = 256,
    prune: int = PRUNE,
    values: np.ndarray | None = None,
) -> TopK:
    """reps (Q, A, D) of the queries, gallery (N, r) global representations: the k nearest gallery positions of
    every manipulated query, in manipulation order. ``values`` (Q, A): the queries' current values, which an
    additive memory (the ADDE-style model) subtracts; FashionSearchNet's replacement ignores them."""
    device = _device()
    m, n = len(manipulations), len(gallery)
    k = min(k, n)
    c = min(k + MARGIN, n)
    gallery64 = gallery.astype(np.float64)
    g_scale = float(np.einsum("nr,nr->n", gallery64, gallery64).max())
    reps = reps.astype(np.float64)
    global_ = model.global_of(reps)  # (Q, r) F(q); the gallery's F come from the index as they are
    slots = model.slots(reps, values)  # (Q, A, w) what a manipulation of each attribute takes out
    g = torch.from_numpy(gallery.astype(np.float32)).to(device)  # (N, r)
    g_norm = (g * g).sum(1)  # (N,)
    a_count = model.attributes
    slot_products = model.gallery_products(g)  # (a, (n, w) in slot a) -> (n, N) products with the gallery
    memory_products = [slot_products(a, model.memory_rows(a)) for a in range(a_count)]  # A x (V_a, N) m_av . g_n
    lowest = [(-2 * mp).min(dim=0).values for mp in memory_products]  # A x (N,) the smallest -2 m_av . g_n over v
    positions = np.zeros((m, k), dtype=np.int64)
    distances = np.zeros((m, k), dtype=np.float64)
    exact_rows = 0
    prune = min(max(prune, c), n)
    full_rows = 0
    rows_per_block = max(1, SCORE_BYTES // (4 * n))
    starts = np.searchsorted(manipulations.query, np.arange(0, len(reps) + query_chunk, query_chunk))
    for chunk, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        if lo == hi:
            continue
        q0 = chunk * query_chunk
        queries = np.arange(q0, min(q0 + query_chunk, len(reps)))
        change = manipulations.change[lo:hi]
        local_q = manipulations.query[lo:hi] - q0
        base = g_norm[None, :] - 2 * (torch.from_numpy(global_[queries].astype(np.float32)).to(device) @ g.T)  # (Qc, N)
        f_prime = model.manipulated(
            global_[manipulations.query[lo:hi]], slots[manipulations.query[lo:hi]], change
        )  # (rows, r) float64
        tie = TIE * (np.einsum("nr,nr->n", f_prime, f_prime) + g_scale)  # (rows,) float32 error allowance
        for group in np.unique(manipulations.group[lo:hi]):
            rows = np.flatnonzero(manipulations.group[lo:hi] == group)  # chunk rows changing the same attribute(s)
            attributes = np.flatnonzero(change[rows[0]] >= 0)
            users, which = np.unique(local_q[rows], return_inverse=True)
            users_t = torch.from_numpy(users).to(device)
            # score[n] = shared[n] + sum_a -2 m_{a v_a} . g_n, and shared + sum_a lowest_a bounds it from below
            shared = base[users_t] + sum(
                2 * slot_products(a, slots[queries[users], a]) for a in attributes
            )  # (U, N): + 2 u_qa . g_n
            bound, kept = torch.topk(
                shared + sum(lowest[a] for a in attributes), prune, dim=1, largest=False, sorted=True
            )  # (U, P)
            for b0 in range(0, len(rows), rows_per_block):
                block = rows[b0 : b0 + rows_per_block]
                user = torch.from_numpy(which[b0 : b0 + rows_per_block]).to(device)
                idx = kept[user]  # (R, P) candidate gallery positions of each row's query
                score = shared[user].gather(1, idx)
                for a in attributes:
                    targets = torch.from_numpy(change[block, a].astype(np.int64)).to(device)  # (R,) new values
                    score -= 2 * memory_products[a][targets[:, None], idx]
                approx, at = torch.topk(score, c, dim=1, largest=False, sorted=True)  # (R, c)
                cand = idx.gather(1, at)
                # every gallery image outside the candidates scores >= the P-th bound; rows whose c-th score is not
                # safely below it are scored over the whole gallery
                loose = np.flatnonzero(
                    (prune < n)
                    & (approx[:, -1] >= bound[user, -1] - torch.from_numpy(tie[block]).float().to(device)).cpu().numpy()
                )
                full_rows += len(loose)
                if len(loose):
                    full = shared[user[loose]]
                    for a in attributes:
                        full = (
                            full
                            - 2
                            * memory_products[a][torch.from_numpy(change[block[loose], a].astype(np.int64)).to(device)]
                        )
                    approx[loose], cand[loose] = torch.topk(full, c, dim=1, largest=False, sorted=True)
                approx = (
                    approx.double().cpu().numpy() + np.einsum("nr,nr->n", f_prime[block], f_prime[block])[:, None]
                )  # distances
                for f0 in range(0, len(block), FINISH_ROWS):
                    part = slice(f0, f0 + FINISH_ROWS)
                    p, dist, redone = _finish(
                        f_prime[block[part]], gallery64, g_scale, cand[part].cpu().numpy(), approx[part], k
                    )
                    positions[lo + block[part]], distances[lo + block[part]] = p, dist
                    exact_rows += redone
    return TopK(positions, distances, exact_rows, full_rows)


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
            p, dist, redone = _finish(
                f_prime[part], gallery64, g_scale, cand[part].astype(np.int64), approx[part].astype(np.float64), k
            )
            positions[lo + f0 : lo + f0 + len(p)], distances[lo + f0 : lo + f0 + len(p)] = p, dist
            exact_rows += redone
    return TopK(positions, distances, exact_rows)
