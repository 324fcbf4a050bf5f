"""Exact Top-K of every manipulated query in about the time of the factorized products: the same lists as
eval/topk.py's ``factorized_topk`` and ``brute_force_topk``, ties included, without a selection over the gallery
per manipulation or per (query, attribute).

For the manipulations of one query that change the same attribute(s) S, eval/topk.py's factorized score of
gallery image n is score_v[n] = shared[n] + sum_{a in S} mem[a, v_a][n] with mem[a, v] = -2 m_av . g_n, and

    bound[n] = shared[n] + sum_{a in S} min_v mem[a, v][n]  <=  score_v[n]  for every value v

(exactly, in float32: the terms are added in the same order and rounding is monotone). A threshold T on the bound,
the value a strided sample of it puts about ``prune`` images under, keeps the candidates bound < T: a compare over
the gallery once per (query, S), no sort. Every other image scores >= T, so a manipulation whose k + MARGIN smallest
candidate scores end below T - tie has its k + MARGIN nearest among the candidates, found by a sort of about
``prune`` scores; the rest (the bound is loose for them: rare) are scored over the whole gallery, as the old path
does. Float32 candidates are finished by eval/topk.py's ``_finish`` wherever float32 could misorder them (float64
distances rounded to float32, then gallery position), so the order is the exact one of both other paths.

Why whole Top-k lists and not only each manipulation's first exact match: the Top-K curves need only that rank, but
the NDCG curves (eval/metrics.py, K = 1..k_max, kept in results.json) give each of the first k_max results a
relevance of its own (its share of the target's attributes; whether it has the new value), so they need the k_max
nearest in order. The first-match rank comes from the same list (eval/metrics.py ``hit_ranks``).

Memory: arrays of (query_chunk, N) per chunk and (rows, ~prune) per block of manipulations, never (M, N)."""

from __future__ import annotations

import numpy as np
import torch

from eval.algebra import ManipulationAlgebra
from eval.protocol import Manipulations
from eval.topk import FINISH_ROWS, MARGIN, PRUNE, SCORE_BYTES, TIE, TopK, _device, _finish

SAMPLE_HITS = 32  # sampled bounds under the threshold: its candidate count varies by about 1 / sqrt(32) = 18%
OVERFULL = 4  # a sampled threshold keeping over 4 x prune candidates (or under k + MARGIN) is set exactly instead
SAFE = 1.01  # the float32 distances a row's norm comes from are not _finish's float64 ones: flag a little more


def threshold_topk(
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
    every manipulated query, in manipulation order (any order of queries: a stored list need not be sorted).
    ``values`` (Q, A): the queries' current values, which an additive memory (the ADDE-style model) subtracts."""
    device = _device()
    m, n = len(manipulations), len(gallery)
    k = min(k, n)
    c = min(k + MARGIN, n)
    prune = min(max(prune, c), n)
    gallery64 = gallery.astype(np.float64)
    g_scale = float(np.einsum("nr,nr->n", gallery64, gallery64).max())
    reps = reps.astype(np.float64)
    global_ = model.global_of(reps)  # (Q, r) F(q)
    slots = model.slots(reps, values)  # (Q, A, w) what a manipulation of each attribute takes out
    g = torch.from_numpy(gallery.astype(np.float32)).to(device)  # (N, r)
    g_norm = (g * g).sum(1)  # (N,)
    offsets = model.offsets
    slot_products = model.gallery_products(g)  # (a, (n, w) in slot a) -> (n, N) products with the gallery
    memory = torch.cat(
        [-2 * slot_products(a, model.memory_rows(a)) for a in range(model.attributes)]
    )  # (C, N) -2 m_c . g_n, row offsets[a] + v
    lowest = [memory[o : o + v].min(dim=0).values for o, v in zip(offsets, model.num_values)]  # A x (N,)
    projected = np.concatenate(
        [model.project(a, model.memory_rows(a)) for a in range(model.attributes)]
    )  # (C, r) project_a(m_av): F' = F + sum_a (projected - project_a(slot_a)) gives each row's ||F'||^2

    positions = np.zeros((m, k), dtype=np.int64)
    distances = np.zeros((m, k), dtype=np.float64)
    exact_rows = full_rows = 0
    rows_per_block = max(1, SCORE_BYTES // (4 * n))
    by_query = np.argsort(manipulations.query, kind="stable")  # a chunk of queries is then a slice of rows
    starts = np.searchsorted(manipulations.query[by_query], np.arange(0, len(reps) + query_chunk, query_chunk))
    for chunk, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        if lo == hi:
            continue
        q0 = chunk * query_chunk
        queries = np.arange(q0, min(q0 + query_chunk, len(reps)))
        chunk_rows = by_query[lo:hi]  # manipulation indexes
        base = g_norm[None, :] - 2 * (torch.from_numpy(global_[queries].astype(np.float32)).to(device) @ g.T)  # (Qc, N)
        for group in np.unique(manipulations.group[chunk_rows]):
            # the chunk's rows that change the same attribute(s), in query order
            rows = chunk_rows[manipulations.group[chunk_rows] == group]
            attributes = np.flatnonzero(manipulations.change[rows[0]] >= 0)
            users, which = np.unique(manipulations.query[rows] - q0, return_inverse=True)
            users_t = torch.from_numpy(users).to(device)
            shared = base[users_t] + sum(
                2 * slot_products(a, slots[queries[users], a]) for a in attributes
            )  # (U, N): + 2 u_qa . g_n
            bound = shared.clone()
            for a in attributes:
                bound += lowest[a]  # in the order the scores add their memory terms: bound <= score exactly
            idx, count, threshold = _candidates(bound, prune, c)  # (U, W) positions, (U,), (U,)
            del bound
            kept = shared.gather(1, idx).masked_fill_(
                torch.arange(idx.shape[1], device=device)[None, :] >= count[:, None], float("inf")
            )  # (U, W) shared part of the candidates' scores, +inf past each user's count
            moved = {a: model.project(a, slots[queries[users], a]) for a in attributes}  # a -> (U, r) project_a(slot)
            for b0 in range(0, len(rows), rows_per_block):
                block = rows[b0 : b0 + rows_per_block]
                which_b = which[b0 : b0 + rows_per_block]
                user = torch.from_numpy(which_b).to(device)
                value = {a: offsets[a] + manipulations.change[block, a].astype(np.int64) for a in attributes}
                value_t = {a: torch.from_numpy(v).to(device) for a, v in value.items()}  # a -> (R,) memory rows
                cand = idx[user]  # (R, W)
                score = kept[user]
                for a in attributes:
                    score += memory[value_t[a][:, None], cand]
                approx, at = torch.topk(score, c, dim=1, largest=False, sorted=True)  # (R, c)
                cand = cand.gather(1, at)
                del score
                norm = _norms(global_, manipulations.query[block], projected, moved, value, which_b)  # (R,)
                tie = SAFE * TIE * (norm + g_scale)  # (R,) float32 error allowance
                # every image outside the candidates scores >= the threshold: rows whose c-th score is not safely
                # below it (or that have fewer than c candidates) are scored over the whole gallery
                loose = np.flatnonzero(
                    (approx[:, -1] >= threshold[user] - torch.from_numpy(tie).to(device)).cpu().numpy()
                )
                full_rows += len(loose)
                if len(loose):
                    loose_t = torch.from_numpy(loose).to(device)
                    full = shared[user[loose_t]]  # (L, N)
                    for a in attributes:
                        full += memory[value_t[a][loose_t]]
                    approx[loose_t], cand[loose_t] = torch.topk(full, c, dim=1, largest=False, sorted=True)
                    del full
                approx = approx.double().cpu().numpy() + norm[:, None]  # (R, c) distances
                cand = cand.cpu().numpy()
                positions[block], distances[block] = cand[:, :k], approx[:, :k]
                exact_rows += _refine(
                    model,
                    global_,
                    slots,
                    manipulations,
                    block,
                    gallery64,
                    g_scale,
                    (cand, approx, tie),
                    k,
                    (positions, distances),
                )
    return TopK(positions, distances, exact_rows, full_rows)


def _candidates(bound: torch.Tensor, prune: int, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, N) lower bounds -> the candidates of each row: positions (U, W) in gallery order, padded with 0 past the
    row's count (U,), and its threshold (U,): every image outside has bound >= threshold. The threshold is the
    value a strided sample of the row puts about ``prune`` images under (a compare over N instead of a selection);
    a row where it keeps fewer than ``c`` or more than OVERFULL * prune gets the exact prune-th bound instead."""
    u, n = bound.shape
    device = bound.device
    if prune >= n:  # every image is a candidate
        return (
            torch.arange(n, device=device).expand(u, n),
            torch.full((u,), n, device=device),
            torch.full((u,), float("inf"), device=device),
        )
    stride = max(1, prune // SAMPLE_HITS)
    sample = bound[:, ::stride]  # (U, S)
    rank = min(sample.shape[1], max(1, round(prune * sample.shape[1] / n)))
    threshold = torch.topk(sample, rank, dim=1, largest=False, sorted=False).values.max(dim=1).values  # (U,)
    keep = bound < threshold[:, None]  # (U, N)
    count = keep.sum(dim=1)
    odd = torch.nonzero((count < c) | (count > OVERFULL * prune)).flatten()
    if len(odd):
        threshold[odd] = torch.topk(bound[odd], prune, dim=1, largest=False, sorted=False).values.max(dim=1).values
        keep[odd] = bound[odd] < threshold[odd, None]  # under prune; under c only where the prune-th ties
        count[odd] = keep[odd].sum(dim=1)
    row, col = keep.nonzero(as_tuple=True)  # row-major: each row's columns ascending
    start = torch.cumsum(count, 0) - count  # (U,) first entry of each row
    idx = torch.zeros((u, max(int(count.max()), c)), dtype=torch.int64, device=device)
    idx[row, torch.arange(len(row), device=device) - start[row]] = col
    return idx, count, threshold


def _norms(
    global_: np.ndarray,
    query: np.ndarray,
    projected: np.ndarray,
    moved: dict[int, np.ndarray],
    value: dict[int, np.ndarray],
    user: np.ndarray,
) -> np.ndarray:
    """(R,) ||F'||^2 of rows of queries ``query`` (R,): F' = F + sum_a (projected[value[a]] - moved[a][user]), in
    parts of FINISH_ROWS rows (r may be A * D wide)."""
    out = np.empty(len(query))
    for f0 in range(0, len(query), FINISH_ROWS):
        part = slice(f0, f0 + FINISH_ROWS)
        f_prime = global_[query[part]]  # (p, r)
        for a in value:
            f_prime = f_prime + (projected[value[a][part]] - moved[a][user[part]])
        out[part] = np.einsum("nr,nr->n", f_prime, f_prime)
    return out


def _refine(
    model: ManipulationAlgebra,
    global_: np.ndarray,
    slots: np.ndarray,
    manipulations: Manipulations,
    block: np.ndarray,
    gallery64: np.ndarray,
    g_scale: float,
    found: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int,
    out: tuple[np.ndarray, np.ndarray],
) -> int:
    """Rows of ``block`` whose float32 order may be wrong (two of the first k + 1 candidates, or the k-th and the
    last, within ``tie``) are finished by eval/topk.py's ``_finish`` with F' in float64 as the old path computes it
    (model.manipulated); the others keep their candidate order, which is then the exact one. Writes into
    ``out`` (positions, distances) and returns the rows re-ranked over the whole gallery. ``found``: the block's
    candidates (R, c), their distances (R, c) ascending and the float32 error allowance (R,)."""
    cand, approx, tie = found
    positions, distances = out
    n = len(gallery64)
    near = (np.diff(approx[:, : min(k + 1, approx.shape[1])], axis=1) < tie[:, None]).any(axis=1)
    unsure = (approx.shape[1] < n) & (approx[:, -1] <= approx[:, k - 1] + tie)
    redo = np.flatnonzero(near | unsure)
    redone = 0
    for f0 in range(0, len(redo), FINISH_ROWS):
        part = redo[f0 : f0 + FINISH_ROWS]
        rows = block[part]
        q = manipulations.query[rows]
        f_prime = model.manipulated(global_[q], slots[q], manipulations.change[rows])  # (p, r) float64
        p, dist, full = _finish(f_prime, gallery64, g_scale, cand[part], approx[part], k)
        positions[rows], distances[rows] = p, dist
        redone += full
    return redone
