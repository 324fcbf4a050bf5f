"""The evaluation protocol (paper section 4.5): every attribute manipulation a -> v != q_a of every query whose
target attribute vector (the query's with a changed to v) exists in the gallery. Changing several attributes at
once (``at_once`` > 1, beyond the paper) applies every combination of that many attributes.

Queries must have every attribute known (the catalog's query split guarantees it); gallery images with an unknown
value never count as a target.

A catalog may instead store its source's own query list (ADDE's ref/indfull/gt files): ``stored_manipulations``
takes it as it is, in the file's order. Its queries may have unknown values and its targets too (an unknown target
value matches only a gallery image unknown there as well, as ADDE compares one-hot vectors)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np

from fsnet.errors import CatalogError


@dataclass(frozen=True)
class Manipulations:
    query: np.ndarray  # (M,) row of the query arrays
    change: np.ndarray  # (M, A) the new value per attribute, -1 where the attribute keeps the query's value
    target: np.ndarray  # (M, A) the full target attribute vector
    group: np.ndarray  # (M,) index into ``groups``: which attribute(s) changed
    groups: list[str]  # "gender", or "gender+baseColour" when several change at once

    def __len__(self) -> int:
        return len(self.query)

    def counts(self) -> dict[str, int]:
        return {name: int(n) for name, n in zip(self.groups, np.bincount(self.group, minlength=len(self.groups)))}


def label_keys(labels: np.ndarray, num_values: list[int]) -> np.ndarray:
    """(N, A) labels (-1 unknown) -> (N,) one int64 key per attribute vector (mixed radix; unknown is a digit of
    its own, so a vector with an unknown value never equals a complete target)."""
    radix = [v + 1 for v in num_values]
    if np.prod([float(r) for r in radix]) >= 2.0**62:
        raise CatalogError(
            f"{len(radix)} attributes with {sum(num_values)} values: attribute vectors do not fit a 64-bit key"
        )
    keys = np.zeros(len(labels), dtype=np.int64)
    for a, r in enumerate(radix):
        digit = np.where(labels[:, a] < 0, r - 1, labels[:, a]).astype(np.int64)
        keys = keys * r + digit
    return keys


def build_manipulations(
    query_labels: np.ndarray, gallery_labels: np.ndarray, names: list[str], num_values: list[int], at_once: int = 1
) -> Manipulations:
    """Every manipulation of ``at_once`` attributes whose target exists in the gallery; query_labels (Q, A) and
    gallery_labels (N, A) are value indexes, -1 unknown."""
    q, a = query_labels.shape
    if q and (query_labels < 0).any():
        raise CatalogError("a query has an unknown attribute value; queries must have every attribute known")
    if not 1 <= at_once <= a:
        raise CatalogError(f"eval.at_once={at_once}: between 1 and the {a} attributes")
    gallery_keys = np.unique(label_keys(gallery_labels, num_values))
    queries, changes, groups, group_names = [], [], [], []
    for combo in itertools.combinations(range(a), at_once):
        # every assignment of new values to the attributes in combo, for every query: (Q, P, A) candidates
        options = list(itertools.product(*[range(num_values[i]) for i in combo]))  # (P, at_once)
        values = np.asarray(options, dtype=np.int64).reshape(len(options), at_once)
        change = np.full((q, len(options), a), -1, dtype=np.int64)
        change[:, :, list(combo)] = values[None]
        differs = (values[None] != query_labels[:, None, list(combo)]).all(axis=2)  # (Q, P) each value is new
        target = np.where(change >= 0, change, query_labels[:, None, :])  # (Q, P, A)
        exists = np.isin(label_keys(target.reshape(-1, a), num_values), gallery_keys).reshape(q, len(options))
        rows, cols = np.nonzero(differs & exists)  # in query order, then value order
        queries.append(rows)
        changes.append(change[rows, cols])
        groups.append(np.full(len(rows), len(group_names)))
        group_names.append("+".join(names[i] for i in combo))
    query = np.concatenate(queries)
    order = np.argsort(query, kind="stable")  # by query, then attribute, then value
    change = np.concatenate(changes)[order].astype(np.int16)
    target = np.where(change >= 0, change, query_labels[query[order]]).astype(np.int16)
    return Manipulations(query[order], change, target, np.concatenate(groups)[order], group_names)


def stored_manipulations(
    query: np.ndarray, change: np.ndarray, target: np.ndarray, query_ids: np.ndarray, names: list[str]
) -> Manipulations:
    """A stored query list -> Manipulations in its order. ``query`` (M,) ids, ``change`` (M, A) the new value per
    attribute (-1 unchanged), ``target`` (M, A); ``query_ids`` (Q,) sorted, unique: the evaluation's query rows.
    Rows whose query is not in ``query_ids`` (an image the pack or the index rejected) are left out."""
    change = np.asarray(change, dtype=np.int16).reshape(len(query), len(names))
    target = np.asarray(target, dtype=np.int16).reshape(len(query), len(names))
    ids = np.asarray(query).astype(str)
    query_ids = np.asarray(query_ids).astype(str)
    position = np.searchsorted(query_ids, ids)  # (M,) row of each query in query_ids, where it is there
    found = position < len(query_ids)
    found[found] = query_ids[position[found]] == ids[found]
    changed = change[found] >= 0  # (M', A)
    if not changed.any(axis=1).all():
        raise CatalogError("a stored manipulation changes no attribute")
    patterns, inverse = np.unique(changed, axis=0, return_inverse=True)  # (P, A) which attributes change, (M',)
    combos = [tuple(np.flatnonzero(p).tolist()) for p in patterns]
    order = sorted(
        range(len(combos)), key=lambda g: (len(combos[g]), combos[g])
    )  # single attributes first, in schema order
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return Manipulations(
        query=position[found].astype(np.int64),
        change=change[found],
        target=target[found],
        group=rank[inverse.reshape(-1)],
        groups=["+".join(names[a] for a in combos[g]) for g in order],
    )


def protocol_fingerprint(query_ids: np.ndarray, gallery_ids: np.ndarray, manipulations: Manipulations) -> dict:
    """results.json's ``dataset.fingerprint``: sha256 prefixes of the query ids, the gallery ids (both in order) and
    the manipulations (each one's query id and new values, in order). Two evaluations with equal fingerprints rank
    the same manipulations over the same gallery: they can be compared manipulation by manipulation."""

    def digest(*parts: np.ndarray) -> str:
        h = hashlib.sha256()
        for part in parts:
            h.update(np.ascontiguousarray(part).tobytes())
            h.update(b"|")
        return h.hexdigest()[:16]

    queries = np.asarray(query_ids).astype(str)
    return {
        "queries": digest(np.char.encode(queries)),
        "gallery": digest(np.char.encode(np.asarray(gallery_ids).astype(str))),
        "manipulations": digest(np.char.encode(queries[manipulations.query]), manipulations.change.astype(np.int16)),
    }
