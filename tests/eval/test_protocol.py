import numpy as np
import pytest

from eval.protocol import build_manipulations, label_keys
from fsnet.errors import CatalogError

NAMES = ["colour", "sleeve", "collar"]
NUM_VALUES = [3, 2, 2]


def plain_loop(queries, gallery, at_once):
    """Every manipulation by hand: (query, changed attributes, new values) whose target is a gallery row."""
    import itertools

    rows = {tuple(g) for g in gallery.tolist()}
    out = []
    for q, labels in enumerate(queries.tolist()):
        for combo in itertools.combinations(range(len(NAMES)), at_once):
            for values in itertools.product(*[range(NUM_VALUES[a]) for a in combo]):
                if any(labels[a] == v for a, v in zip(combo, values)):
                    continue
                target = list(labels)
                for a, v in zip(combo, values):
                    target[a] = v
                if tuple(target) in rows:
                    out.append((q, combo, values))
    return out


def test_counts_on_hand_made_labels():
    queries = np.array([[0, 0, 0], [2, 1, 1]])
    gallery = np.array([[1, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 0], [2, 1, 0], [1, 1, -1]])
    m = build_manipulations(queries, gallery, NAMES, NUM_VALUES)
    # query 0: colour -> 1 and -> 2 exist, sleeve -> 1 exists, collar -> 1 does not
    # query 1: (2,1,1) -> colour 0/1 gives (0,1,1)/(1,1,1): absent; sleeve -> 0 gives (2,0,1): absent;
    # collar -> 0 gives (2,1,0): present
    assert m.counts() == {"colour": 2, "sleeve": 1, "collar": 1}
    assert m.query.tolist() == [0, 0, 0, 1]
    assert m.target.tolist() == [[1, 0, 0], [2, 0, 0], [0, 1, 0], [2, 1, 0]]
    assert m.change.tolist() == [[1, -1, -1], [2, -1, -1], [-1, 1, -1], [-1, -1, 0]]
    # no manipulation whose target is absent from the gallery; an unknown value never makes a target
    keys = set(label_keys(gallery, NUM_VALUES).tolist())
    assert all(k in keys for k in label_keys(m.target, NUM_VALUES).tolist())


@pytest.mark.parametrize("at_once", [1, 2, 3])
def test_matches_a_plain_loop(at_once):
    rng = np.random.default_rng(at_once)
    queries = np.stack([rng.integers(0, v, 30) for v in NUM_VALUES], 1)
    gallery = np.stack([rng.integers(-1, v, 40) for v in NUM_VALUES], 1)
    m = build_manipulations(queries, gallery, NAMES, NUM_VALUES, at_once)
    got = [
        (int(q), tuple(np.flatnonzero(c >= 0).tolist()), tuple(c[c >= 0].tolist())) for q, c in zip(m.query, m.change)
    ]
    assert sorted(got) == sorted(plain_loop(queries, gallery, at_once))
    assert len(m) > 0
    for g, name in enumerate(m.groups):
        changed = m.change[m.group == g] >= 0
        assert name == "+".join(NAMES[a] for a in np.flatnonzero(changed[0])) if len(changed) else True


def test_queries_need_every_attribute():
    with pytest.raises(CatalogError, match="unknown attribute value"):
        build_manipulations(np.array([[0, -1, 0]]), np.array([[0, 0, 0]]), NAMES, NUM_VALUES)


def test_stored_list_keeps_its_order_and_drops_absent_queries():
    from eval.protocol import stored_manipulations

    ids = np.array(["q2", "q0", "q1", "q0", "gone", "q2"])
    change = np.array([[1, -1, -1], [-1, 0, -1], [2, -1, 1], [-1, -1, 1], [0, -1, -1], [-1, 1, -1]])
    target = np.array([[1, 0, 0], [0, 0, 1], [2, -1, 1], [0, 1, 1], [0, 0, 0], [-1, 1, 0]])  # unknowns allowed
    m = stored_manipulations(ids, change, target, np.array(["q0", "q1", "q2"]), NAMES)
    keep = [0, 1, 2, 3, 5]  # "gone" is not a query row: its manipulation is left out
    assert m.query.tolist() == [2, 0, 1, 0, 2]
    assert m.change.tolist() == change[keep].tolist() and m.target.tolist() == target[keep].tolist()
    assert m.groups == ["colour", "sleeve", "collar", "colour+collar"]  # single attributes first, in schema order
    assert [m.groups[g] for g in m.group] == ["colour", "sleeve", "colour+collar", "collar", "sleeve"]
    assert m.counts() == {"colour": 1, "sleeve": 2, "collar": 1, "colour+collar": 1}
    assert m.change.dtype == np.int16 and m.target.dtype == np.int16


def test_stored_list_rejects_a_row_without_change():
    from eval.protocol import stored_manipulations

    with pytest.raises(CatalogError, match="changes no attribute"):
        stored_manipulations(np.array(["q0"]), np.array([[-1, -1, -1]]), np.array([[0, 0, 0]]), np.array(["q0"]), NAMES)
