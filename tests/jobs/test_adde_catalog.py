"""ADDE's split files through fsnet pack (fixed splits, the stored query list) and fsnet evaluate
(eval.protocol=catalog), on a real local Ray, local and S3 storage."""

import json
import shutil

import numpy as np
import pytest

from fsnet.catalog.manifest import CATALOG_FILE
from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.errors import CatalogError
from fsnet.storage import Storage, join
from jobs.evaluate import eval_manipulations, evaluate, load_data, open_index, protocol_mode, queries_in_index
from jobs.index import index
from jobs.pack import pack
from tests.adde_files import NUM_VALUES, TEST, TRAIN, expected_change_target, write_adde
from tests.images import GARBAGE
from tests.jobs.tiny_model import make_model

pytestmark = pytest.mark.usefixtures("ray_cluster")

BROKEN = 2  # imgs_test line 3 (a query of several manipulations) is not an image: the pack rejects it


def adde_config(source, *sets):
    return load_config(["tiny"], [f"source.path={source}", "source.kind=adde", "catalog.shard_rows=8", *sets])


def test_pack_fixed_splits_and_query_list(location):
    cfg = adde_config(location.url("src"), *location.sets)
    storage = Storage(cfg.storage)
    files = write_adde(storage, location.url("src"))
    out = location.url("catalog")
    m = pack(cfg, out, show_progress=False).manifest  # split.n_query/n_gallery do not apply: nothing to fit

    catalog = Catalog.open(out, storage)
    assert m.splits.rule is None and m.splits.source == "adde: imgs_train.txt -> train, imgs_test.txt -> gallery"
    assert m.splits.counts == {"train": len(TRAIN), "query": 0, "gallery": len(TEST)}
    assert catalog.split_ids("train").tolist() == files.ids("train") and catalog.split_ids(
        "gallery"
    ).tolist() == files.ids("test")
    rows = next(catalog.batches(columns=["id", "attr0", "attr1", "attr2"], batch_size=100))
    by_id = dict(zip(rows["id"], np.stack([rows[a] for a in ("attr0", "attr1", "attr2")], axis=1).tolist()))
    assert [by_id[i] for i in files.ids("train") + files.ids("test")] == TRAIN + TEST
    assert [a.values for a in catalog.schema.attributes] == [[str(v) for v in range(n)] for n in NUM_VALUES]

    assert m.protocol.rows == len(files.rows) and m.protocol.queries == len({ref for ref, _, _ in files.rows})
    assert m.protocol.rejected_queries == 0 and m.protocol.path.startswith("protocol-")
    stored = catalog.protocol()
    change, target = expected_change_target(files.rows)
    assert stored["query"].tolist() == [files.ids("test")[ref] for ref, _, _ in files.rows]
    np.testing.assert_array_equal(stored["change"], change)
    np.testing.assert_array_equal(stored["target"], target)

    # a re-pack with another query list names a new protocol file and removes the old one
    for name in ("ref_test.txt", "indfull_test.txt", "gt_test.txt"):
        url = join(location.url("src"), name)
        storage.write_text(url, "".join(storage.read_text(url).splitlines(keepends=True)[:-1]))
    again = pack(cfg, out, show_progress=False).manifest
    assert again.protocol.rows == len(files.rows) - 1 and again.protocol.path != m.protocol.path
    assert again.splits.path == m.splits.path
    assert [n for n in storage.listdir(out) if n.startswith("protocol-")] == [again.protocol.path]


def test_catalogs_written_before_still_open(adde_index, tmp_path):
    """catalog.json of earlier packs: a split rule, no split source, no protocol."""
    shutil.copytree(adde_index["catalog"].url, tmp_path / "catalog")
    saved = json.loads((tmp_path / "catalog" / CATALOG_FILE).read_text())
    saved["splits"] = {k: v for k, v in saved["splits"].items() if k != "source"} | {
        "rule": {"n_query": 0.1, "n_gallery": 0.4, "seed": 0}
    }
    del saved["protocol"]
    (tmp_path / "catalog" / CATALOG_FILE).write_text(json.dumps(saved))
    catalog = Catalog.open(str(tmp_path / "catalog"), adde_index["storage"])
    assert catalog.manifest.protocol is None and catalog.protocol() is None and catalog.manifest.splits.rule.seed == 0
    with pytest.raises(CatalogError, match="stores no query list"):
        protocol_mode(load_config(["tiny"], ["eval.protocol=catalog"]), catalog)
    assert protocol_mode(load_config(["tiny"]), catalog) == "generated"


@pytest.fixture(scope="module")
def adde_index(tmp_path_factory, ray_cluster):
    """An ADDE catalog with one query image broken, a tiny untrained model, and an index of its gallery."""
    root = tmp_path_factory.mktemp("adde")
    cfg = adde_config(root / "src")
    storage = Storage(cfg.storage)
    files = write_adde(storage, str(root / "src"))
    storage.write_bytes(join(str(root / "src"), "images", files.test_images[BROKEN]), GARBAGE)
    pack(cfg, str(root / "catalog"), show_progress=False)
    catalog = Catalog.open(str(root / "catalog"), storage)
    make_model(catalog, str(root / "model.pt"), storage)
    index(load_config(["tiny"]), str(root / "model.pt"), str(root / "catalog"), str(root / "index"), split="gallery")
    return {"root": root, "files": files, "catalog": catalog, "storage": storage}


@pytest.mark.slow
def test_evaluate_uses_exactly_the_stored_list(adde_index):
    files, catalog, root = adde_index["files"], adde_index["catalog"], adde_index["root"]
    assert catalog.manifest.protocol.rejected_queries == 1
    cfg = load_config(["tiny"], ["eval.protocol=catalog"])
    opened = open_index(cfg, str(root / "index"), catalog.url)
    protocol = protocol_mode(cfg, opened.catalog)
    data = load_data(opened, protocol, queries_in_index(opened, protocol))
    m = eval_manipulations(cfg, catalog, data)

    broken = files.ids("test")[BROKEN]
    kept = [(ref, change, target) for ref, change, target in files.rows if ref != BROKEN]
    assert data.protocol == "catalog" and data.queries_rejected == [broken]
    assert data.query_ids.tolist() == sorted({files.ids("test")[ref] for ref, _, _ in kept})
    assert [data.query_ids[q] for q in m.query] == [files.ids("test")[ref] for ref, _, _ in kept]  # the file's order
    change, target = expected_change_target(kept)
    np.testing.assert_array_equal(m.change, change)
    np.testing.assert_array_equal(m.target, target)
    np.testing.assert_array_equal(
        data.query_labels, np.array([TEST[files.ids("test").index(i)] for i in data.query_ids])
    )
    assert m.groups == ["attr0", "attr1", "attr2", "attr0+attr2"]

    results = evaluate(cfg, str(root / "index"), catalog.url, str(root / "eval"))
    dataset = results["dataset"]
    assert (
        dataset["protocol"] == "catalog" and dataset["manipulations"] == len(kept) and dataset["counts"] == m.counts()
    )
    assert dataset["queries_rejected"] == {"count": 1, "ids": [broken]}
    assert dataset["gallery_missing"]["count"] == 0  # the pack left it out of the gallery split already
    assert dataset["gallery"] == len(TEST) - 1 and dataset["queries"] == len(data.query_ids)
    for run in results["runs"]:
        assert set(run["groups"]) == set(m.groups) and run["average"]["count"] == len(kept)

    auto = evaluate(
        load_config(["tiny"], ["report.examples=0", "eval.baselines=[]"]),
        str(root / "index"),
        catalog.url,
        str(root / "auto"),
    )
    assert auto["dataset"]["protocol"] == "catalog" and auto["runs"][0]["average"] == results["runs"][0]["average"]
    with pytest.raises(
        CatalogError, match=r"no query split \(adde: imgs_train.txt -> train, imgs_test.txt -> gallery\)"
    ):
        evaluate(
            load_config(["tiny"], ["eval.protocol=generated"]),
            str(root / "index"),
            catalog.url,
            str(root / "generated"),
        )
