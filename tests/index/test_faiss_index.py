import numpy as np
import pytest

from fsnet.index.faiss_index import KINDS, build_index, factory_string, index_bytes, index_from_bytes, search


def test_flat_is_exact_against_numpy():
    rng = np.random.default_rng(0)
    base, queries = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(7, 16)).astype(np.float32)
    distances, positions = search(build_index(base, "flat"), queries, 5)
    brute = ((queries[:, None, :] - base[None]) ** 2).sum(-1)
    assert np.array_equal(positions, np.argsort(brute, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :5], rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_saves_and_finds_itself(kind):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(2000, 32)).astype(np.float32)
    index = index_from_bytes(index_bytes(build_index(base, kind)))
    assert index.ntotal == 2000
    _, positions = search(index, base[:20], 3)
    assert (positions[:, 0] == np.arange(20)).mean() >= (0.9 if kind == "ivfpq" else 1.0)


@pytest.mark.parametrize(
    ("n", "dim", "expected"),
    [
        (100_000, 256, "IVF1264,PQ32x8"),  # 8-dimensional sub-vectors, 256 centroids each
        (10_000, 160, "IVF256,PQ32x8"),  # the ADDE-style model's 5 x 32 chunks
        (2_000, 32, "IVF51,PQ8x5"),  # 2^5 centroids x 39 points <= 2,000 vectors; sub-vectors of 4
        (50, 8, "IVF1,PQ2x1"),
    ],
)
def test_ivfpq_trains_what_the_vectors_can_train(n, dim, expected):
    """faiss wants 39 training points per centroid: a small catalog gets fewer bits per code, never 1-dimensional
    sub-vectors (m = D at D = 32 took 30-60 s to train on 2,000 vectors)."""
    assert factory_string("ivfpq", n, dim) == expected
