"""The faiss index of global representations, by ``index.kind``:

- ``flat``: exact ``IndexFlatL2`` — the paper's Euclidean search; the default.
- ``ivf``: ``IVF<nlist>,Flat`` with nlist = 4 * sqrt(N) (at least 1, at most N / 39 so each list trains on 39 points).
- ``hnsw``: ``HNSW32`` graph, no training.
- ``ivfpq``: ``IVF<nlist>,PQ<m>x<bits>`` for catalogs whose vectors do not fit in memory: m the largest divisor of
  the dimension up to 32 that leaves sub-vectors of at least 4 dimensions, 8 bits per code unless the catalog is too
  small to train 2^8 centroids on 39 points each (faiss's minimum), then fewer: one-dimensional sub-vectors of 256
  centroids each train slowly and on too few points.

Positions in the index are row numbers of the index's ``ids.parquet``. Where faiss sees GPUs (faiss-gpu) the
index is built and searched there and saved back as a CPU index.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

KINDS = ("flat", "ivf", "hnsw", "ivfpq")


def factory_string(kind: str, n: int, dim: int) -> str:
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return "HNSW32"
    nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 or 1))
    if kind == "ivf":
        return f"IVF{nlist},Flat"
    if kind == "ivfpq":
        m = max(d for d in range(1, min(max(dim // 4, 1), 32) + 1) if dim % d == 0)
        bits = max(1, min(8, int(math.log2(max(n, 1) / 39))))
        return f"IVF{nlist},PQ{m}x{bits}"
    raise ValueError(f"index.kind={kind}: one of {', '.join(KINDS)}")


def build_index(vectors: np.ndarray, kind: str) -> faiss.Index:
    """(N, r) float32 -> a trained, filled faiss index (on GPU while building when faiss has GPUs)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    index = faiss.index_factory(dim, factory_string(kind, n, dim), faiss.METRIC_L2)
    if kind in ("flat", "ivf") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    if faiss.get_num_gpus() > 0 and hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    return index


def index_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def index_from_bytes(data: bytes, use_gpu: bool = True) -> faiss.Index:
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    if use_gpu and faiss.get_num_gpus() > 0 and isinstance(index, (faiss.IndexFlat, faiss.IndexIVF)):
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances (Q, k) as squared L2, positions (Q, k); -1 where fewer than k exist)."""
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = max(1, index.nlist // 8)  # a recall/speed middle ground; exact search is "flat"
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
