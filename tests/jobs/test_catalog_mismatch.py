"""fsnet evaluate / search with a catalog that is not the one the index was built from (issue 13, part 6): the same
images re-packed with another split seed. evaluate refuses in one line naming both, or with
--allow-catalog-mismatch goes on and names the gallery images the index lacks; search notes it."""

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.fingerprint import short_fingerprint
from fsnet.index.manifest import MANIFEST_FILE, read_manifest
from fsnet.index.reader import CatalogMismatch, IndexReader
from jobs.cli import app
from jobs.index import index
from jobs.pack import pack
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

FSNET = [sys.executable, "-m", "jobs.cli"]


def flat(text: str) -> str:
    """Console output with rich's wrapping undone (wrapping turns a space into a line break)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def repacked(tmp_path_factory, ray_cluster):
    """A catalog, an index of its gallery, and the same images packed again with split.seed=7."""
    made = tiny_catalog_and_model(tmp_path_factory.mktemp("mismatch"))
    root = made["root"]
    index(load_config(["tiny"]), made["model"], made["catalog"], str(root / "index"), split="gallery")
    made["other"] = str(root / "catalog-seed7")
    pack(load_config(["tiny"], [f"source.path={root / 'synth'}", "split.seed=7"]), made["other"], show_progress=False)
    return made


def short(fingerprint: str) -> str:
    return "splits-" + short_fingerprint(fingerprint)


def test_another_split_is_refused_in_one_line(repacked, tmp_path):
    storage, index_url = repacked["storage"], str(repacked["root"] / "index")
    other = Catalog.open(repacked["other"], storage).manifest
    assert [s.fingerprint for s in other.shards] == [
        s.fingerprint for s in Catalog.open(repacked["catalog"], storage).manifest.shards
    ]
    run = subprocess.run(
        [*FSNET, "evaluate", "--index", index_url, "--catalog", repacked["other"], "--out", str(tmp_path / "eval")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    built_on = read_manifest(storage, index_url, 1).splits_fingerprint
    assert f"split differs: catalog {short(other.splits.fingerprint)} vs index built on {short(built_on)}" in lines[0]
    assert repacked["other"] in lines[0] and index_url in lines[0] and repacked["catalog"] in lines[0]
    assert "fsnet reindex" in lines[0] and "--allow-catalog-mismatch" in lines[0]
    assert "shard" not in lines[0]  # the shards are the same: only the split differs
    assert not (tmp_path / "eval" / "results.json").exists()


def test_with_the_flag_the_missing_gallery_images_are_named(repacked, tmp_path):
    storage, index_url = repacked["storage"], str(repacked["root"] / "index")
    gallery = set(Catalog.open(repacked["other"], storage).split_ids("gallery").tolist())
    missing = sorted(gallery - set(IndexReader.open(index_url, storage).ids.tolist()))
    assert 0 < len(missing) < len(gallery)
    out = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--index",
            index_url,
            "--catalog",
            repacked["other"],
            "--out",
            str(tmp_path),
            "--allow-catalog-mismatch",
            "--set",
            "report.examples=0",
        ],
        terminal_width=200,
    )
    assert out.exit_code == 0, out.output
    text = flat(out.output)
    assert "split differs" in text
    assert (
        f"gallery: {len(missing)} of the {len(gallery)} gallery images of {repacked['other']} are not in the index "
        f"{index_url}" in text
    )
    assert f"0 rejected by it, {len(missing)} never indexed" in text
    assert all(i in text for i in missing[:5])
    dataset = json.loads((tmp_path / "results.json").read_text())["dataset"]
    assert dataset["gallery_missing"]["count"] == len(missing) and dataset["gallery_missing"]["ids"] == missing[:50]
    assert dataset["gallery"] == len(gallery) - len(missing)
    assert "split differs" in dataset["catalog_mismatch"]


def test_the_same_catalog_elsewhere_is_the_same_catalog(repacked, tmp_path):
    storage, index_url = repacked["storage"], str(repacked["root"] / "index")
    copy = str(tmp_path / "copy")
    shutil.copytree(repacked["catalog"], copy)
    reader = IndexReader.open(index_url, storage)
    assert reader.check_catalog(copy, Catalog.open(copy, storage).manifest) is None
    with pytest.raises(CatalogMismatch, match="split differs"):
        reader.check_catalog(repacked["other"], Catalog.open(repacked["other"], storage).manifest)


def test_search_notes_a_catalog_repacked_since_the_index(repacked, tmp_path):
    """The index's catalog re-packed with another split (an index whose manifest names the seed-7 catalog): search
    by an id the index does not hold reads the catalog, says it changed, and answers."""
    storage = repacked["storage"]
    moved = tmp_path / "index"
    shutil.copytree(repacked["root"] / "index", moved)
    manifest = json.loads((moved / "v1" / MANIFEST_FILE).read_text())
    manifest["catalog"] = repacked["other"]
    (moved / "v1" / MANIFEST_FILE).write_text(json.dumps(manifest))
    train_id = str(Catalog.open(repacked["catalog"], storage).split_ids("train")[0])
    out = CliRunner().invoke(app, ["search", "--index", str(moved), "--id", train_id, "-k", "3"], terminal_width=200)
    assert out.exit_code == 0, out.output
    text = flat(out.output)
    assert f"note: {repacked['other']} has changed since {moved} v1 was built from it: split differs" in text
