"""The probe of a training split fitted once (eval/probe_memo.py): a second fit of the same features, labels and
strengths reads the first back (in whatever order its caller lists the images), anything different is fitted anew,
and a file that cannot be read is fitted anew and replaced. The cache is a stand-in with a TrunkCache's reader
(url, storage, read) over hand-made features, on real local storage."""

import numpy as np
import pytest

import eval.probe_memo as memo
from eval.linear_probe import fit_linear_probe
from fsnet.config import load_config
from fsnet.storage import Storage, join

NAMES, VALUES, STRENGTHS = ["colour", "kind"], [3, 2], [0.1, 1.0]


class Cache:
    """What split_probe reads of a trunk cache entry: its url, its storage, and ``read(ids)``."""

    def __init__(self, url: str, features: dict[str, np.ndarray]):
        self.url, self.storage, self.features = url, Storage(load_config().storage), features

    def read(self, ids, maps=False):
        found = np.array([i in self.features for i in ids])
        return found, {"pooled": np.stack([self.features[i] for i in ids if i in self.features])}


@pytest.fixture
def made(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array([f"img{n:03d}" for n in range(90)])
    labels = np.stack([np.arange(90) % 3, np.arange(90) % 2], axis=1)
    features = {i: rng.normal(size=4).astype(np.float32) + labels[n, 0] for n, i in enumerate(ids)}
    return Cache(str(tmp_path / "entry"), features), ids, labels


def test_a_second_fit_of_the_same_split_reads_the_first_back(made, monkeypatch):
    cache, ids, labels = made
    fits = []
    monkeypatch.setattr(memo, "fit_linear_probe", lambda *a: fits.append(1) or fit_linear_probe(*a))
    first, reused = memo.split_probe(cache, ids[:60], labels[:60], ids[60:], labels[60:], NAMES, VALUES, STRENGTHS)
    assert not reused and len(fits) == 1
    (kept,) = cache.storage.listdir(join(cache.url, memo.FOLDER))
    # the same images listed in another order: the same key, read back
    order = np.random.default_rng(1).permutation(60)
    again, reused = memo.split_probe(
        cache, ids[:60][order], labels[:60][order], ids[60:], labels[60:], NAMES, VALUES, STRENGTHS
    )
    assert reused and len(fits) == 1
    for field in ("names", "strengths", "validation_accuracy", "fit_images", "validation_images", "seconds"):
        assert getattr(again, field) == getattr(first, field)
    for a, b in zip(
        [first.mean, first.scale, *first.weights, *first.biases],
        [again.mean, again.scale, *again.weights, *again.biases],
    ):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    features = np.stack([cache.features[i] for i in ids[60:]])
    assert np.array_equal(again.probabilities(features), first.probabilities(features))

    # anything the fit depends on differs: another key, fitted anew
    memo.split_probe(cache, ids[:60], labels[:60], ids[60:], labels[60:], NAMES, VALUES, [0.1, 10.0])
    changed = labels[:60].copy()
    changed[0, 1] = 1 - changed[0, 1]
    memo.split_probe(cache, ids[:60], changed, ids[60:], labels[60:], NAMES, VALUES, STRENGTHS)
    memo.split_probe(cache, ids[:59], labels[:59], ids[59:], labels[59:], NAMES, VALUES, STRENGTHS)
    assert len(fits) == 4 and len(cache.storage.listdir(join(cache.url, memo.FOLDER))) == 4 and kept


def test_a_file_that_cannot_be_read_is_fitted_anew_and_replaced(made):
    cache, ids, labels = made
    args = (cache, ids[:60], labels[:60], ids[60:], labels[60:], NAMES, VALUES, STRENGTHS)
    memo.split_probe(*args)
    (name,) = cache.storage.listdir(join(cache.url, memo.FOLDER))
    cache.storage.write_bytes(join(cache.url, memo.FOLDER, name), b"PK\x03\x04 cut short")
    probe, reused = memo.split_probe(*args)
    assert not reused and probe.fit_images == 60
    assert memo.split_probe(*args)[1]
