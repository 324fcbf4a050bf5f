"""Exact Top-K of every manipulated query in about the time of the factorized products: the lists of the faiss
brute-force reference (eval/brute_force.py), ties included, without a selection over the gallery per manipulation
or per (query, attribute). The evaluator ``fsnet evaluate`` runs (``exact_topk``).

The factorization: F is linear in each attribute slot (eval/algebra.py). For a manipulation (q; a -> v) the squared
distance to gallery image n is ||F'||^2 + score, with

    score[n] = ||g_n||^2 - 2 F(q).g_n + 2 sum_{a changed} (u_qa . g_n - m_av . g_n),
    u_qa = lambda_a s_qa W_a (the query's own slot),  m_av = lambda_a M[a, v] W_a (the memory row's),

so F(q).G^T is computed once per query, u_qa.G^T once per (query, attribute) and m_av.G^T once per value, and the
manipulations of one query only add rows. For the ADDE-style model (eval/additive_memory.py) u_qa = m_au, the
memory column of the query's current value u, and m_av the new value's, both r wide.

For the manipulations of one query that change the same attribute(s) S, the score of gallery image n is
score_v[n] = shared[n] + sum_{a in S} term[a, v_a][n] with term[a, v] = -2 m_av . g_n, and

    bound[n] = shared[n] + sum_{a in S} min_{v != q_a} term[a, v][n]  <=  score_v[n]  for every new value v

(exactly, in float32: the terms are added in the same order and rounding is monotone). Leaving out the query's own
value q_a, which no manipulation takes, keeps the bound tight near the query, where most images share that value.

- Candidates, once per (query, S): a cut on the bound, the value a strided sample of it puts about ``prune``
  images under, keeps the images below it: a compare over the gallery, no selection; the few kept are partitioned
  by bound at the tier widths. Every image outside has bound >= the cut.
- Per manipulation: its scores over the first 2 (k + MARGIN) candidates, then 4, 8, then all, until the
  k + MARGIN smallest end safely (a float32 allowance) under the bound of everything outside those candidates: a
  sort of a few hundred scores. A manipulation no tier settles (rare) is scored over the whole gallery.
- Exactness: where two of the first k + 1 float32 distances are too close for float32 to order (eval/topk.py's
  TIE), the candidates in such runs are ordered by float64 distance rounded to float32, then gallery position, as
  eval/topk.py's ``finish`` orders them; where the last candidate is that close to the k-th, ``finish`` itself
  orders the whole gallery. So the lists are the reference's, ties included.

Why whole Top-k lists and not only each manipulation's first exact match: the Top-K curves need only that rank, but
the NDCG curves (eval/metrics.py, K = 1..k_max, kept in results.json) give each of the first k_max results a
relevance of its own (its share of the target's attributes; whether it has the new value), so they need the k_max
nearest in order. The first-match rank comes from the same list (eval/metrics.py ``hit_ranks``).

The products and the bounds run in torch (on the GPU where there is one); the candidates' ordering and the
per-manipulation stage in numpy on the CPU, one part of each group per torch thread.

Memory: arrays of (query_chunk, N) reused chunk after chunk, (rows, <= prune) per part of a group's manipulations,
the (C, N) memory terms; never (M, N)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from eval.algebra import ManipulationAlgebra
from eval.brute_force import brute_force_topk
from eval.protocol import Manipulations
from eval.topk import FINISH_ROWS, MARGIN, SCORE_BYTES, TIE, TopK, compute_device, finish

PRUNE = 1024  # most candidates a (query, changed attributes) keeps: a value rare near the query needs many
TIERS = (2, 4, 8)  # candidate widths (x k + MARGIN) a manipulation tries before all of them
SAMPLE_HITS = 32  # sampled bounds under a cut: the count it keeps varies by about 1 / sqrt(32) = 18%
CUT_OVERSHOOT = 4  # a cut keeping over 4 x prune (the sample misjudged) is set exactly, by a selection over N
TIE_SLACK = 1.01  # the allowance here comes from ||F'||^2 computed otherwise than finish's: flag a little more


BOUND_PASSES = 2  # passes over (users, N) per changed attribute a group makes: its products, then its bound


def factorized_rows(manipulations: Manipulations) -> int:
    """Rows of gallery-wide work the threshold path does: one product per query, and per group of manipulations
    changing the same attributes, BOUND_PASSES per (query, changed attribute)."""
    rows = len(np.unique(manipulations.query))
    for g in np.unique(manipulations.group):
        of_group = manipulations.group == g
        changed = int((manipulations.change[np.flatnonzero(of_group)[0]] >= 0).sum())
        rows += BOUND_PASSES * changed * len(np.unique(manipulations.query[of_group]))
    return rows


def exact_topk(
    model: ManipulationAlgebra,
    reps: np.ndarray,
    gallery: np.ndarray,
    manipulations: Manipulations,
    k: int,
    query_chunk: int = 256,
    values: np.ndarray | None = None,
    device: torch.device | str | None = None,
) -> TopK:
    """The same exact lists by the cheaper path for the protocol's shape. faiss brute force builds and searches
    every manipulated query: a gallery-wide product and selection per manipulation. The threshold path shares the
    work of a query's manipulations: its gallery-wide rows are ``factorized_rows``, and per row both cost about the
    same (bench/eval_bench.py). So a sparse protocol (a few manipulations per query and attribute) goes to brute
    force, a dense one to the threshold path."""
    if cheaper_path(manipulations) == "brute force":
        return brute_force_topk(model, reps, gallery, manipulations, k, values=values)
    return threshold_topk(model, reps, gallery, manipulations, k, query_chunk, values=values, device=device)


def cheaper_path(manipulations: Manipulations) -> str:
    """ "brute force" when the manipulations are fewer than the threshold path's gallery-wide rows, else
    "threshold" (exact_topk)."""
    return "brute force" if len(manipulations) < factorized_rows(manipulations) else "threshold"


def threshold_topk(
    model: ManipulationAlgebra,
    reps: np.ndarray,
    gallery: np.ndarray,
    manipulations: Manipulations,
    k: int,
    query_chunk: int = 256,
    prune: int = PRUNE,
    values: np.ndarray | None = None,
    device: torch.device | str | None = None,
) -> TopK:
    """reps (Q, A, D) of the queries, gallery (N, r) global representations: the k nearest gallery positions of
    every manipulated query, in manipulation order (any order of queries: a stored list need not be sorted).
    ``values`` (Q, A): the queries' current values, which an additive memory (the ADDE-style model) subtracts; the
    bound leaves them out where no manipulation of the query takes them (without ``values``, it keeps them).
    ``device``: where the products and bounds run (None: CUDA where torch sees it, else the CPU)."""
    device = compute_device(device)
    m, n = len(manipulations), len(gallery)
    k = min(k, n)
    c = min(k + MARGIN, n)
    prune = min(max(prune, c), n)
    reps = reps.astype(np.float64)
    threads = max(1, torch.get_num_threads())
    shape = (min(query_chunk, len(reps)), n)  # reused chunk after chunk: a fresh one costs more in page faults
    run = _Evaluation(
        model=model,
        manipulations=manipulations,
        values=values,
        global_=model.global_of(reps),  # (Q, r) F(q)
        slots=model.slots(reps, values),  # (Q, A, w) what a manipulation of each attribute takes out
        side=_GallerySide.of(model, gallery, device),
        k=k,
        prune=prune,
        tiers=[t * c for t in TIERS if t * c < prune] + [prune],  # candidate widths a manipulation tries
        out=TopK(np.zeros((m, k), dtype=np.int64), np.zeros((m, k)), exact_rows=0, full_rows=0),
        base=torch.empty(shape, device=device),
        shared=torch.empty(shape, device=device),
        bound=torch.empty(shape, device=device),
        keep=torch.empty(shape, dtype=torch.bool, device=device),
        pool=ThreadPoolExecutor(threads),  # the per-manipulation stage: numpy, a part of each group per thread
        part_rows=max(1, SCORE_BYTES // (4 * n)),
        threads=threads,
    )
    by_query = np.argsort(manipulations.query, kind="stable")  # a chunk of queries is then a slice of rows
    starts = np.searchsorted(manipulations.query[by_query], np.arange(0, len(reps) + query_chunk, query_chunk))
    try:
        for lo, hi in zip(starts[:-1], starts[1:]):
            if lo < hi:
                run.chunk(by_query[lo:hi])
    finally:
        run.pool.shutdown()
    return run.out


@dataclass
class _Evaluation:
    """One threshold_topk call: its inputs, the gallery side, the (Qc, N) buffers, the thread pool and the output."""

    model: ManipulationAlgebra
    manipulations: Manipulations
    values: np.ndarray | None
    global_: np.ndarray  # (Q, r)
    slots: np.ndarray  # (Q, A, w)
    side: "_GallerySide"
    k: int
    prune: int
    tiers: list[int]
    out: TopK
    base: torch.Tensor  # (Qc, N) buffers
    shared: torch.Tensor
    bound: torch.Tensor
    keep: torch.Tensor
    pool: ThreadPoolExecutor
    part_rows: int  # most manipulations a thread ranks at once
    threads: int

    def chunk(self, chunk_rows: np.ndarray) -> None:
        """The manipulations ``chunk_rows`` of up to query_chunk queries: their base products, then each group."""
        manipulations, side = self.manipulations, self.side
        queries = np.unique(manipulations.query[chunk_rows])  # the chunk's queries that have manipulations
        f = torch.from_numpy(self.global_[queries].astype(np.float32)).to(side.g.device)
        base = torch.mm(f, side.g.T, out=self.base[: len(queries)]).mul_(-2).add_(side.g_norm)  # ||g||^2 - 2 F.g
        # project_a(slot_a) (Qc, r) float64, for F': numpy's products at once, not between torch's (their thread
        # pools wait on each other)
        changed = np.flatnonzero((manipulations.change[chunk_rows] >= 0).any(axis=0))
        moved = {a: self.model.project(a, self.slots[queries, a]) for a in changed}
        for group in np.unique(manipulations.group[chunk_rows]):
            # the chunk's rows that change the same attribute(s), in query order
            self.group(chunk_rows[manipulations.group[chunk_rows] == group], queries, base, moved)

    def group(self, rows: np.ndarray, queries: np.ndarray, base: torch.Tensor, moved: dict[int, np.ndarray]) -> None:
        """Rows of one chunk that change the same attribute(s): their users' bounds and candidates, then the rows
        ranked in one part per thread (numpy's sorts and gathers release the GIL; the parts write disjoint rows)."""
        manipulations, side, slots = self.manipulations, self.side, self.slots
        device = base.device
        attributes = np.flatnonzero(manipulations.change[rows[0]] >= 0)
        users, which = np.unique(np.searchsorted(queries, manipulations.query[rows]), return_inverse=True)
        mine = queries[users]
        shared = torch.index_select(base, 0, torch.from_numpy(users).to(device), out=self.shared[: len(users)])
        for a in attributes:
            side.products(a, slots[mine, a], into=shared, alpha=2.0)  # (U, N) += 2 u_qa . g_n, in the product
        bound = self.bound[: len(users)]
        for i, a in enumerate(attributes):
            floor = torch.from_numpy(side.floor_rows(a, manipulations, rows, which, mine, self.values)).to(device)
            if i == 0:
                torch.index_select(side.floors, 0, floor, out=bound).add_(shared)  # (U, N) the bound
            else:
                bound += side.floors[floor]
        found = self.candidates(bound, shared, self.keep[: len(users)])  # (U, P) x 3, (U,)
        # F' - sum_a project_a(m_av) = F - sum_a project_a(slot_a): (U, r) per user, for the rows' F'
        rest = self.global_[mine] - sum(moved[a][users] for a in attributes)

        def rank(b0: int) -> tuple[int, int]:
            block = _Block(rows[b0 : b0 + size], which[b0 : b0 + size])
            full = _rank(block, attributes, manipulations, side, shared, found, rest, self.tiers, self.out)
            return full, _refine(block, rest, side, self.k, self.out)

        size = min(self.part_rows, -(-len(rows) // self.threads))
        for full, exact in self.pool.map(rank, range(0, len(rows), size)):
            self.out.full_rows, self.out.exact_rows = self.out.full_rows + full, self.out.exact_rows + exact

    def candidates(
        self, bound: torch.Tensor, shared: torch.Tensor, keep: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """_candidates of a group's users, one part of the rows per thread (the compares, gathers and partitions
        release the GIL), side by side again: widths padded as _candidates pads a row past its count."""
        u = bound.shape[0]
        size = -(-u // self.threads)
        parts = list(
            self.pool.map(
                lambda u0: _candidates(
                    bound[u0 : u0 + size], shared[u0 : u0 + size], self.prune, keep[u0 : u0 + size], self.tiers
                ),
                range(0, u, size),
            )
        )
        if len(parts) == 1:
            return parts[0]
        width = max(p[0].shape[1] for p in parts)
        idx, cand_shared, cand_bound = (
            np.concatenate([np.pad(p[i], ((0, 0), (0, width - p[i].shape[1])), constant_values=fill) for p in parts])
            for i, fill in ((0, 0), (1, np.inf), (2, np.inf))
        )
        return idx, cand_shared, cand_bound, np.concatenate([p[3] for p in parts])


@dataclass
class _GallerySide:
    """What every chunk reads of the gallery: F (N, r) on the device, ||g||^2, the products closure, the memory
    terms -2 m_c . g_n, and the floors the bounds are made of."""

    g: torch.Tensor  # (N, r)
    g_norm: torch.Tensor  # (N,)
    gallery64: np.ndarray  # (N, r) float64, for exact distances
    g_scale: float  # max ||g||^2: the float32 error allowance's scale
    products: Callable[..., torch.Tensor]  # (a, (n, w) in slot a, into=, alpha=) -> (n, N)
    terms: torch.Tensor  # (C, N) -2 m_c . g_n, row offsets[a] + v
    flat_terms: np.ndarray  # (C * N,) the same on the CPU, for the per-manipulation gathers
    # (C + A, N): row offsets[a] + u the smallest term of attribute a over its values other than u; row C + a the
    # smallest over all its values
    floors: torch.Tensor
    projected: np.ndarray  # (C, r) project_a(m_av)
    offsets: np.ndarray  # (A,) memory row of each attribute's first value

    @classmethod
    def of(cls, model: ManipulationAlgebra, gallery: np.ndarray, device: torch.device) -> "_GallerySide":
        gallery64 = gallery.astype(np.float64)
        g = torch.from_numpy(gallery.astype(np.float32)).to(device)
        products = model.gallery_products(g)
        terms = [-2 * products(a, model.memory_rows(a)) for a in range(model.attributes)]  # A x (V_a, N)
        lowest, others = [], []
        for t in terms:
            low, home = t.min(dim=0)  # (N,) the smallest term and its value
            mine = home[None, :] == torch.arange(len(t), device=device)[:, None]  # (V_a, N)
            second = t.masked_fill(mine, float("inf")).min(dim=0).values if len(t) > 1 else low  # (N,)
            others.append(torch.where(mine, second, low))  # (V_a, N) the smallest over the other values
            lowest.append(low)
        return cls(
            g=g,
            g_norm=(g * g).sum(1),
            gallery64=gallery64,
            g_scale=float(np.einsum("nr,nr->n", gallery64, gallery64).max()),
            products=products,
            terms=torch.cat(terms),
            flat_terms=torch.cat(terms).cpu().numpy().reshape(-1),
            floors=torch.cat([*others, torch.stack(lowest)]),
            projected=np.concatenate([model.project(a, model.memory_rows(a)) for a in range(model.attributes)]),
            offsets=model.offsets,
        )

    def floor_rows(
        self,
        a: int,
        manipulations: Manipulations,
        rows: np.ndarray,
        which: np.ndarray,
        mine: np.ndarray,
        values: np.ndarray | None,
    ) -> np.ndarray:
        """(U,) the row of ``floors`` each user's bound adds for attribute a: its value left out where the user
        has one and none of its rows (``rows``, user ``which``) takes it; else the smallest over all values."""
        plain = np.full(len(mine), len(self.terms) + a, dtype=np.int64)
        if values is None:
            return plain
        own = np.asarray(values)[mine, a].astype(np.int64)  # (U,)
        takes_own = np.zeros(len(mine), dtype=bool)
        takes_own[which[manipulations.change[rows, a] == own[which]]] = True
        return np.where((own >= 0) & ~takes_own, self.offsets[a] + own, plain)


@dataclass
class _Block:
    """Manipulation rows ranked together, with their user (row of the group's (U, ...) arrays) and, once ranked,
    their float32 candidates, distances, error allowance and new values' memory rows."""

    rows: np.ndarray  # (R,) manipulation indexes
    users: np.ndarray  # (R,)
    cand: np.ndarray | None = None  # (R, c) gallery positions, ascending distance
    approx: np.ndarray | None = None  # (R, c) squared distances from the float32 scores
    tie: np.ndarray | None = None  # (R,)
    value: dict[int, np.ndarray] | None = None  # attribute -> (R,) memory row of each row's new value


def _rank(
    block: _Block,
    attributes: np.ndarray,
    manipulations: Manipulations,
    side: _GallerySide,
    shared: torch.Tensor,
    found: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    rest: np.ndarray,
    tiers: list[int],
    out: TopK,
) -> int:
    """The c = k + MARGIN float32 nearest of each row of ``block`` among its user's candidates (``found``:
    positions, shared scores and bounds (U, P), ordered by bound as far as ``tiers`` need; threshold (U,)), in tiers:
    the first tiers[0] candidates, then more, then all P. A tier settles a row when its c-th score ends safely under
    the bound of everything outside the tier; the rows no tier settles are scored over the whole gallery (shared
    (U, N) on the device). On the CPU in numpy (its gathers and sorts of short rows are several times torch's).
    Fills block.cand / approx / tie / value and out's positions, distances (in candidate order); returns the rows
    scored over the whole gallery."""
    idx, cand_shared, cand_bound, threshold = found
    n, c = shared.shape[1], min(out.positions.shape[1] + MARGIN, shared.shape[1])
    block.value = value = {
        a: side.offsets[a] + manipulations.change[block.rows, a].astype(np.int64) for a in attributes
    }
    norm = _norms(rest, block.users, side.projected, value)  # (R,) ||F'||^2
    tie = TIE_SLACK * TIE * (norm + side.g_scale)  # (R,) float32 error allowance
    approx = np.empty((len(block.rows), c), dtype=np.float32)
    cand = np.empty((len(block.rows), c), dtype=np.int64)
    pending = np.arange(len(block.rows))  # rows not settled yet
    p = idx.shape[1]
    for width in [w for w in tiers if w < p] + [p] if p >= c else []:
        users = block.users[pending]
        tier_idx = idx[:, :width][users]  # (R', width)
        score = cand_shared[:, :width][users]
        for a in attributes:
            score += side.flat_terms.take(value[a][pending][:, None] * n + tier_idx)  # the rows' scores
        top, at = _smallest(score, c)  # (R', c)
        outside = threshold[users] if width == p else np.minimum(cand_bound[users, width], threshold[users])
        settled = top[:, -1] < outside - tie[pending]  # every image outside the tier scores >= outside
        approx[pending[settled]] = top[settled]
        cand[pending[settled]] = _pick(tier_idx[settled], at[settled])
        pending = pending[~settled]
        if not len(pending):
            break
    for f0 in range(0, len(pending), FINISH_ROWS):  # no tier settles them: the whole gallery, FINISH_ROWS at once
        part = pending[f0 : f0 + FINISH_ROWS]
        full = shared[torch.from_numpy(block.users[part]).to(shared.device)]  # (L, N)
        for a in attributes:
            full += side.terms[torch.from_numpy(value[a][part]).to(shared.device)]
        approx[part], cand[part] = _smallest(full.cpu().numpy(), c)
        del full
    block.cand, block.approx, block.tie = cand, approx.astype(np.float64) + norm[:, None], tie
    k = out.positions.shape[1]
    out.positions[block.rows], out.distances[block.rows] = block.cand[:, :k], block.approx[:, :k]
    return len(pending)


def _smallest(x: np.ndarray, c: int, kth: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(R, W) float32 -> the c smallest of each row, ascending: values (R, c) and columns (R, c), by numpy's
    vectorised partition and sort of float64 keys that carry the column in the 29 low mantissa bits a float32
    leaves zero (ordered by value first; equal values in some fixed order). Several times torch.topk's speed on
    the CPU for rows of a few hundred. With ``kth``, the c = W are only partitioned there: each kth-th in its
    sorted place, the smaller ones before it in some order."""
    r, w = x.shape
    if w >= 2**29:
        top, at = torch.topk(torch.from_numpy(x), c, dim=1, largest=False, sorted=True)
        return top.numpy(), at.numpy()
    keys = np.minimum(x, _ABOVE, dtype=np.float64)  # (R, W); +inf (a NaN with a column) -> 2^128
    keys.view(np.int64)[...] |= np.arange(w, dtype=np.int64)
    if kth is not None:
        if kth:
            keys.partition(kth, axis=1)
    else:
        if c < w:
            keys = np.partition(keys, c - 1, axis=1)[:, :c]
        keys.sort(axis=1)
    bits = keys.view(np.int64)
    with np.errstate(over="ignore"):  # 2^128 -> +inf again
        values = (bits & ~_COLUMN).view(np.float64).astype(np.float32)
    return values, bits & _COLUMN


def _pick(x: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """x (R, W)[row, columns (R, c)] -> (R, c): np.take_along_axis by flat index (several times faster)."""
    return x.reshape(-1).take(columns + (np.arange(len(x)) * x.shape[1])[:, None])


_COLUMN = np.int64(2**29 - 1)  # the low float64 mantissa bits _smallest keeps a column in
_ABOVE = 2.0**128  # above every finite float32, +inf once back in float32


def _candidates(
    bound: torch.Tensor, shared: torch.Tensor, prune: int, keep: torch.Tensor, tiers: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(U, N) bounds and shared scores on the device -> up to ``prune`` candidates per row, sorted by bound, in
    numpy: positions, shared scores, bounds (U, P) (+inf past a row's count), and the row's threshold (U,): every
    image not among its candidates has bound >= it. Sorted as far as the ``tiers`` widths need: each w-th in its
    place, the w smaller before it.

    The cut is the value a strided sample of the row puts about ``prune`` images under: a compare over N (into
    ``keep``, (U, N) bool) and a sort of the few kept, no selection over N. A row where the sample misjudged (over
    CUT_OVERSHOOT * prune kept) gets the exact prune-th bound as its cut."""
    u, n = bound.shape
    device = bound.device
    if prune >= n:  # every image is a candidate
        row, col = np.repeat(np.arange(u), n), np.tile(np.arange(n), u)
        cut = np.full(u, np.inf, dtype=np.float32)
    else:
        stride = max(1, prune // SAMPLE_HITS)
        sample = bound[:, ::stride]  # (U, S)
        rank = min(sample.shape[1], max(1, round(prune * sample.shape[1] / n)))
        cut_t = torch.topk(sample, rank, dim=1, largest=False, sorted=False).values.max(dim=1).values  # (U,)
        torch.lt(bound, cut_t[:, None], out=keep)
        row, col = _nonzero(keep)  # row-major: each row's columns ascending
        over = np.flatnonzero(np.bincount(row, minlength=u) > CUT_OVERSHOOT * prune)
        if len(over):
            over_t = torch.from_numpy(over).to(device)
            cut_t[over_t] = torch.topk(bound[over_t], prune, dim=1, largest=False).values.max(dim=1).values
            keep[over_t] = bound[over_t] < cut_t[over_t, None]
            row, col = _nonzero(keep)
        cut = cut_t.cpu().numpy()
    at = row * n + col
    if bound.is_cuda:
        at_t = torch.from_numpy(at).to(device)
        kept_bound, kept_shared = (t.reshape(-1)[at_t].cpu().numpy() for t in (bound, shared))
    else:
        kept_bound, kept_shared = (t.numpy().reshape(-1).take(at) for t in (bound, shared))
    # side by side, (U, W), padded with +inf, then sorted by bound
    count = np.bincount(row, minlength=u)
    width = max(int(count.max()), 1)
    flat = row * width + np.arange(len(row)) - (np.cumsum(count) - count)[row]
    padded = [np.full(u * width, fill, dtype=dtype) for fill, dtype in ((np.inf, np.float32),) * 2 + ((0, np.int64),)]
    for array, values in zip(padded, (kept_bound, kept_shared, col)):
        array[flat] = values
    # ordered by bound as far as the tiers read it: the first w smallest (any order) before the (w+1)-th, for each
    # tier width w (_tiers) and prune
    kth = [w for w in sorted({*tiers, prune}) if w < width]
    cand_bound, order = _smallest(padded[0].reshape(u, width), width, kth)  # (U, W)
    cand_shared, idx = (_pick(a.reshape(u, width), order) for a in padded[1:])
    if width <= prune:
        return idx, cand_shared, cand_bound, cut
    return idx[:, :prune], cand_shared[:, :prune], cand_bound[:, :prune], np.minimum(cand_bound[:, prune], cut)


def _nonzero(mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(U, N) bool -> (rows, columns) of its True entries, row-major, in numpy (flatnonzero is twice torch's
    nonzero on the CPU)."""
    if mask.is_cuda:
        row, col = mask.nonzero(as_tuple=True)
        return row.cpu().numpy(), col.cpu().numpy()
    flat = np.flatnonzero(mask.numpy())
    return flat // mask.shape[1], flat % mask.shape[1]


def _f_prime(rest: np.ndarray, users: np.ndarray, projected: np.ndarray, value: dict[int, np.ndarray]) -> np.ndarray:
    """F' (R, r) float64 of rows: rest[users] + sum_a projected[value[a]] (F - sum_a project_a(slot_a) + sum_a
    project_a(m_av), the formula model.manipulated computes in another order)."""
    f_prime = rest[users]
    for rows in value.values():
        f_prime += projected[rows]
    return f_prime


def _norms(rest: np.ndarray, users: np.ndarray, projected: np.ndarray, value: dict[int, np.ndarray]) -> np.ndarray:
    """(R,) ||F'||^2 of rows (_f_prime), in parts of FINISH_ROWS rows (r may be A * D wide)."""
    out = np.empty(len(users))
    for f0 in range(0, len(users), FINISH_ROWS):
        part = slice(f0, f0 + FINISH_ROWS)
        f_prime = _f_prime(rest, users[part], projected, {a: v[part] for a, v in value.items()})  # (p, r)
        out[part] = np.einsum("nr,nr->n", f_prime, f_prime)
    return out


def _refine(block: _Block, rest: np.ndarray, side: _GallerySide, k: int, out: TopK) -> int:
    """The exact order where float32 may be wrong, as eval/topk.py's ``finish`` makes it. Consecutive candidates
    closer than the allowance form runs; a run reaching into the first k is ordered by float64 distance (F' in
    float64, _f_prime) rounded to float32, then gallery position; runs keep their order (a gap of at least the
    allowance separates them). Rows whose last candidate is that close to the k-th go to ``finish`` itself (the
    whole gallery); returns how many of those ``finish`` re-ranked over the whole gallery."""
    cand, approx, tie = block.cand, block.approx, block.tie  # (R, c), (R, c), (R,)
    c = cand.shape[1]
    close = np.diff(approx, axis=1) < tie[:, None]  # (R, c - 1): j and j + 1 may be misordered
    run = np.concatenate([np.zeros((len(cand), 1), dtype=np.int64), np.cumsum(~close, axis=1)], axis=1)  # (R, c)
    member = np.zeros(cand.shape, dtype=bool)
    member[:, 1:] |= close
    member[:, :-1] |= close
    member &= run <= run[:, k - 1 : k]  # runs that reach into the first k
    unsure = (c < len(side.gallery64)) & (approx[:, -1] <= approx[:, k - 1] + tie)
    member[unsure] = False

    def f_prime(rows: np.ndarray) -> np.ndarray:  # (p, r) float64 of rows of the block
        return _f_prime(rest, block.users[rows], side.projected, {a: v[rows] for a, v in block.value.items()})

    for f0 in range(0, len(cand), FINISH_ROWS):  # runs, in parts of FINISH_ROWS rows
        part = np.arange(f0, min(f0 + FINISH_ROWS, len(cand)))
        near = part[member[part].any(axis=1)]
        if not len(near):
            continue
        r_, j_ = np.nonzero(member[near])  # the runs' candidates
        diff = f_prime(near)[r_] - side.gallery64[cand[near][r_, j_]]  # (pairs, r)
        exact = np.zeros((len(near), c))
        exact[r_, j_] = np.einsum("pr,pr->p", diff, diff)
        order = np.lexsort((cand[near], exact.astype(np.float32), run[near]), axis=1)[:, :k]
        rows = block.rows[near]
        dist = np.where(member[near], exact, approx[near])
        out.positions[rows] = np.take_along_axis(cand[near], order, 1)
        out.distances[rows] = np.take_along_axis(dist, order, 1)
    redo, redone = np.flatnonzero(unsure), 0
    for f0 in range(0, len(redo), FINISH_ROWS):  # the whole gallery
        part = redo[f0 : f0 + FINISH_ROWS]
        rows = block.rows[part]
        p, dist, full = finish(f_prime(part), side.gallery64, side.g_scale, cand[part], approx[part], k)
        out.positions[rows], out.distances[rows] = p, dist
        redone += full
    return redone
