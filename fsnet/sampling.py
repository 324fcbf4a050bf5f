"""Which examples meet in a loss.

- ``region_triplets``: in-batch triplets of regions per attribute (paper section 3.4): for every (anchor image,
  attribute) with a known value, one positive with the same value and one negative with another known value,
  drawn at random among the batch; pairs with no positive or no negative give no triplet. Attributes are
  independent, so one batch yields up to B x A triplets.
- ``GlobalTripletSampler``: stage-3 triplets (query, manipulation t, positive, negative): t changes one attribute
  a -> v != q_a such that some image has exactly the target attribute vector; the positive is drawn among those
  images, the negative at random among images with another vector. Images are grouped by a hash of their label
  vector once, so drawing costs a dictionary lookup per candidate manipulation, whatever the catalog size.
  Random negatives are mostly easy (they differ from the target in most attributes), and an easy triplet gives
  the soft-triplet loss almost no gradient; so the sampler can draw several candidate negatives per triplet and
  ``choose_negatives`` keeps one by the current distances (train.negatives): the first (random), the closest
  (hardest), or the closest farther than the positive (semihard, FaceNet's rule, which ADDE mines by).
- ``manipulation_triplets``: the ADDE-style model's in-batch triplets (anchor, manipulation, positive, negative):
  for every anchor with every attribute known, the positive is drawn among the other complete images that differ
  from it in the fewest attributes (at least one; mostly one or two in a batch of 64), the manipulation changes
  exactly those attributes to the positive's values (so the positive has the target vector), and the negative is
  drawn among the complete images with another vector (the anchor itself included: it is one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RegionTriplets:
    attribute: torch.Tensor  # (T,) int64
    anchor: torch.Tensor  # (T,) batch indices
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return int(self.attribute.numel())


def region_triplets(labels: torch.Tensor, generator: torch.Generator | None = None) -> RegionTriplets:
    """labels (B, A), -1 unknown -> one triplet per (anchor, attribute) that has a positive and a negative."""
    b, a = labels.shape
    lab = labels.t()  # (A, B)
    known = lab >= 0
    both = known.unsqueeze(2) & known.unsqueeze(1)  # (A, B, B)
    same = (lab.unsqueeze(2) == lab.unsqueeze(1)) & both
    eye = torch.eye(b, dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, both & ~same
    valid = pos_mask.any(dim=2) & neg_mask.any(dim=2)  # (A, B)
    scores = torch.rand((2, a, b, b), generator=generator, device="cpu").to(labels.device)
    positive = torch.where(pos_mask, scores[0], -1.0).argmax(dim=2)  # (A, B): a random positive per anchor
    negative = torch.where(neg_mask, scores[1], -1.0).argmax(dim=2)
    attr, anchor = valid.nonzero(as_tuple=True)
    return RegionTriplets(
        attribute=attr, anchor=anchor, positive=positive[attr, anchor], negative=negative[attr, anchor]
    )


NEGATIVE_CANDIDATES = 8  # negatives drawn per triplet when mining: among 8 random images one is usually close to
# the query (a shared value or two) while distances stay cheap (8 x global_batch rows of F per step, no gradient)
NEGATIVE_RULES = ("random", "semihard", "hardest")  # train.negatives


@dataclass
class GlobalTriplets:
    query: np.ndarray  # (T,) image indices
    manipulation: np.ndarray  # (T, A) target value per attribute, -1 = unchanged
    positive: np.ndarray  # (T,) an image with exactly the target vector
    candidates: np.ndarray  # (T, K) images with another vector, drawn at random: the negatives to choose from

    def __len__(self) -> int:
        return len(self.query)

    @property
    def negative(self) -> np.ndarray:
        """(T,) the first candidate: a random negative."""
        return self.candidates[:, 0]


class GlobalTripletSampler:
    def __init__(self, labels: np.ndarray, num_values: list[int]):
        """labels (N, A) of the images the triplets index into (-1 unknown)."""
        self.labels = np.ascontiguousarray(labels, dtype=np.int16)
        self.num_values = list(num_values)
        complete = np.flatnonzero((self.labels >= 0).all(axis=1))
        rows = self.labels[complete]
        keys = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()
        unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.groups: dict[bytes, np.ndarray] = {
            unique[g].tobytes(): complete[order[s : s + c]] for g, (s, c) in enumerate(zip(starts, counts))
        }

    def candidates(self, query: int) -> list[tuple[int, int]]:
        """Manipulations (a, v) of ``query`` whose target vector some image has."""
        q = self.labels[query]
        if (q < 0).any():
            return []
        out = []
        target = q.copy()
        for a, count in enumerate(self.num_values):
            for v in range(count):
                if v == q[a]:
                    continue
                target[a] = v
                if target.tobytes() in self.groups:
                    out.append((a, v))
            target[a] = q[a]
        return out

    def sample(
        self, queries: np.ndarray, rng: np.random.Generator, negatives: int = 1, negative_tries: int = 100
    ) -> GlobalTriplets:
        """One triplet per query that has a manipulation with a positive, with ``negatives`` candidate negatives;
        other queries are skipped. With one candidate the draws are those of a plain random negative."""
        n, a_count = self.labels.shape
        out_q, out_m, out_p, out_n = [], [], [], []
        for query in np.asarray(queries).tolist():
            options = self.candidates(query)
            if not options:
                continue
            a, v = options[int(rng.integers(len(options)))]
            target = self.labels[query].copy()
            target[a] = v
            positives = self.groups[target.tobytes()]
            drawn = [self._negative(target, rng, negative_tries) for _ in range(negatives)]
            if drawn[0] < 0:
                continue
            manipulation = np.full(a_count, -1, dtype=np.int64)
            manipulation[a] = v
            out_q.append(query)
            out_m.append(manipulation)
            out_p.append(int(positives[int(rng.integers(len(positives)))]))
            out_n.append([d if d >= 0 else drawn[0] for d in drawn])  # a failed later draw repeats the first
        return GlobalTriplets(
            query=np.asarray(out_q, dtype=np.int64),
            manipulation=np.asarray(out_m, dtype=np.int64).reshape(-1, a_count),
            positive=np.asarray(out_p, dtype=np.int64),
            candidates=np.asarray(out_n, dtype=np.int64).reshape(-1, negatives),
        )

    def _negative(self, target: np.ndarray, rng: np.random.Generator, tries: int) -> int:
        """A random image whose vector is not ``target`` (-1 when ``tries`` draws found none)."""
        for _ in range(tries):
            pick = int(rng.integers(len(self.labels)))
            if not np.array_equal(self.labels[pick], target):
                return pick
        return -1


def choose_negatives(d_positive: torch.Tensor, d_candidates: torch.Tensor, rule: str) -> torch.Tensor:
    """The candidate each triplet keeps, by the current distances from its (manipulated) query: d_positive (T,) to
    the positive, d_candidates (T, K) to the candidate negatives -> (T,) column in 0..K-1. random: the first;
    hardest: the closest; semihard: the closest farther than the positive, or the closest when none is."""
    if rule not in NEGATIVE_RULES:
        raise ValueError(f"negatives {rule!r}: choose one of {', '.join(NEGATIVE_RULES)}")
    if rule == "random":
        return torch.zeros(d_candidates.shape[0], dtype=torch.long, device=d_candidates.device)
    hardest = d_candidates.argmin(dim=1)  # (T,)
    if rule == "hardest":
        return hardest
    farther = d_candidates > d_positive.unsqueeze(1)  # (T, K)
    semihard = torch.where(farther, d_candidates, torch.inf).argmin(dim=1)  # (T,)
    return torch.where(farther.any(dim=1), semihard, hardest)


@dataclass
class ManipulationTriplets:
    anchor: torch.Tensor  # (T,) batch indices
    manipulation: torch.Tensor  # (T, A) the new value per attribute, -1 = unchanged
    positive: torch.Tensor  # (T,) has exactly the anchor's vector with the manipulation applied
    negative: torch.Tensor  # (T,) another vector

    def __len__(self) -> int:
        return int(self.anchor.numel())


def manipulation_triplets(labels: torch.Tensor, generator: torch.Generator | None = None) -> ManipulationTriplets:
    """labels (B, A), -1 unknown -> one triplet per complete anchor that has a complete other image."""
    b, a = labels.shape
    complete = (labels >= 0).all(dim=1)  # (B,)
    diff = (labels.unsqueeze(1) != labels.unsqueeze(0)).sum(dim=2)  # (B, B) attributes in which two images differ
    pair = complete.unsqueeze(1) & complete.unsqueeze(0) & (diff > 0)
    distance = torch.where(pair, diff, a + 1)
    pos_mask = pair & (distance == distance.min(dim=1, keepdim=True).values)  # (B, B) the fewest differences
    scores = torch.rand((2, b, b), generator=generator, device="cpu").to(labels.device)
    anchor = pos_mask.any(dim=1).nonzero(as_tuple=True)[0]  # (T,)
    positive = torch.where(pos_mask, scores[0], -1.0).argmax(dim=1)[anchor]  # (T,) a random one of them
    neg_mask = complete.unsqueeze(0) & (diff[positive] > 0)  # (T, B) complete, another vector than the target
    negative = torch.where(neg_mask, scores[1][anchor], -1.0).argmax(dim=1)  # (T,) the anchor is always a candidate
    manipulation = torch.where(labels[positive] != labels[anchor], labels[positive], -1).long()  # (T, A)
    return ManipulationTriplets(anchor=anchor, manipulation=manipulation, positive=positive, negative=negative)
