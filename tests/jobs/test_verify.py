"""A catalog shard whose bytes changed after the pack (a bad copy, a disk error): `fsnet verify` finds it, the jobs
that read it end in one line naming it, and `fsnet reindex --verify` refuses it. Real packed catalog, real Ray,
real faiss index; the damage is real bytes overwritten in a real shard file."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.errors import CatalogError, StorageError
from fsnet.storage import Storage, join
from jobs import reindex
from jobs.evaluate import evaluate
from jobs.index import index
from jobs.verify import verify, verify_index
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

FSNET = Path(sys.executable).with_name("fsnet")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ray_cluster):
    return tiny_catalog_and_model(tmp_path_factory.mktemp("verify"))


@pytest.fixture(scope="module")
def tiny_index(tiny):
    out = str(tiny["root"] / "index")
    index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out)
    return out


def damage(path: Path, where: str = "first page") -> None:
    """Overwrite bytes of a file in place: ``first page``: the header of the first data page (the id column's),
    which any read of the shard trips on; ``middle``: 2,000 bytes inside the image column's data, which a read need
    not notice (snappy passes literal bytes through) -- only the fingerprint does."""
    data = bytearray(path.read_bytes())
    at, size = (4, 64) if where == "first page" else (len(data) // 2, 2000)
    data[at : at + size] = b"\xff" * size
    path.write_bytes(bytes(data))


def damaged_catalog(tiny, where: Path, shard: int = 1, how: str = "first page") -> tuple[str, str]:
    """A copy of the tiny catalog with one shard damaged: (catalog URL, that shard's URL)."""
    shutil.copytree(tiny["catalog"], where)
    catalog = Catalog.open(str(where), tiny["storage"])
    victim = catalog.shard_urls[shard]
    damage(Path(victim), how)
    return str(where), victim


def fsnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(FSNET), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def bad_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("bad: ")]


# ----- fsnet verify ---------------------------------------------------------------------------------------------
def test_verify_catalog_names_each_bad_shard(tiny, location, tmp_path):
    """Local and s3://: an intact catalog exits 0; one with a changed and a missing shard exits 2 with one line each."""
    storage = Storage(load_config(sets=location.sets).storage)
    good, bad = location.url("good"), location.url("bad")
    catalog = Catalog.open(tiny["catalog"], tiny["storage"])
    for name in ["catalog.json", catalog.manifest.splits.path, *(s.path for s in catalog.manifest.shards)]:
        data = tiny["storage"].read_bytes(join(tiny["catalog"], name))
        storage.write_bytes(join(good, name), data)
        if name == catalog.manifest.shards[1].path:
            data = data[:1000] + b"\x00" * 2000 + data[3000:]
        if name != catalog.manifest.shards[3].path:
            storage.write_bytes(join(bad, name), data)
    sets = [a for s in location.sets for a in ("--set", s)]

    done = fsnet("verify", good, *sets, cwd=tmp_path)
    assert done.returncode == 0 and bad_lines(done) == [], done.stderr
    assert "every byte matches catalog.json" in done.stdout

    done = fsnet("verify", bad, *sets, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = bad_lines(done)
    shards = [join(bad, s.path) for s in catalog.manifest.shards]
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(f"bad: {shards[1]}: bytes changed since the pack (sha256 ")
    assert lines[1] == f"bad: {shards[3]}: missing"
    assert all(s not in done.stderr for s in (shards[0], shards[2]))
    assert "testing-secret-value" not in done.stdout + done.stderr


def test_verify_a_url_that_is_neither(tmp_path):
    done = fsnet("verify", "nothing-here", cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert (
        done.returncode == 2
        and len(lines) == 1
        and "nothing-here: neither a catalog (catalog.json) nor an index (CURRENT)" in lines[0]
    )


def test_verify_index_checks_what_it_honestly_can(tiny, tiny_index, tmp_path):
    """The index holds no hashes of its own files: present, decodable, row counts as the manifest says, and the
    model's sha256. A damaged embedding file and a cut faiss file are one line each."""
    storage = tiny["storage"]
    verdict = verify(storage, tiny_index)
    assert verdict.problems == [] and "holds no hashes of the index's own files" in verdict.summary

    copy = tmp_path / "index"
    shutil.copytree(tiny_index, copy)
    version = copy / "v1"
    embedding = min(version.glob("embeddings/*/*.parquet"))
    damage(embedding)
    faiss_file = version / "index.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:-500])

    problems = verify_index(storage, str(copy)).problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{version / 'index.faiss'}: cannot be read (")
    assert problems[1].startswith(f"{embedding.parent}: cannot be read (")

    done = fsnet("verify", str(copy), cwd=tmp_path)
    assert done.returncode == 2 and len(bad_lines(done)) == 2, done.stderr


# ----- jobs reading a damaged shard: one line naming it --------------------------------------------------------------
def test_reading_a_damaged_shard_names_it(tiny, tmp_path):
    """Without Ray (batches, rows) and through Ray Data (a read task fails, Ray wraps the pyarrow error)."""
    import ray

    url, victim = damaged_catalog(tiny, tmp_path / "catalog")
    catalog = Catalog.open(url, tiny["storage"])
    expected = rf"^{victim}: bytes changed since the pack .*; reading it failed \(.+\): .*fsnet verify {url}"

    with pytest.raises(CatalogError, match=expected):
        list(catalog.batches(None, ["id", "image"]))
    with pytest.raises(CatalogError, match=expected):
        catalog.rows(catalog.split_ids("train").tolist(), ["id", "image"])
    with pytest.raises(CatalogError, match=expected), catalog.reading():
        ray.data.Dataset.materialize(catalog.dataset(None, ["id", "image"]))

    with pytest.raises(CatalogError) as err:
        list(catalog.batches(None, ["id", "image"]))
    assert str(err.value).isprintable()  # one line, no raw bytes that pyarrow's thrift error quotes


def test_an_error_the_shards_do_not_explain_passes_unchanged(tiny):
    """An intact catalog: an OSError inside reading() is not blamed on it; an FsnetError is never rewritten."""
    catalog = Catalog.open(tiny["catalog"], tiny["storage"])
    with pytest.raises(OSError, match="No space left on device"), catalog.reading():
        raise OSError(28, "No space left on device")
    with pytest.raises(StorageError, match="s3://b/x: no such file"), catalog.reading():
        raise StorageError("s3://b/x: no such file")


def test_index_of_a_damaged_catalog_names_the_shard(tiny, tmp_path):
    url, victim = damaged_catalog(tiny, tmp_path / "catalog")
    with pytest.raises(CatalogError, match=rf"^{victim}: bytes changed .*fsnet verify {url}"):
        index(load_config(["tiny"]), tiny["model"], url, str(tmp_path / "index"))


def test_evaluate_of_a_damaged_catalog_names_the_shard(tiny, tiny_index, tmp_path):
    """The issue's case: 340 lines of Ray/pyarrow traceback before."""
    url, victim = damaged_catalog(tiny, tmp_path / "catalog", shard=2)
    with pytest.raises(CatalogError, match=rf"^{victim}: bytes changed .*fsnet verify {url}"):
        evaluate(load_config(["tiny"]), tiny_index, url, str(tmp_path / "eval"))


def test_reindex_verify_refuses_a_damaged_catalog(tiny, tiny_index, tmp_path):
    """Without --verify a re-index sees the same fingerprints in catalog.json and has nothing to do; with it the
    damaged shard is one line."""
    url, victim = damaged_catalog(tiny, tmp_path / "catalog", how="middle")
    assert len(list(Catalog.open(url, tiny["storage"]).batches(None, ["id"]))) > 0  # the ids still read
    plain = index(load_config(["tiny"]), tiny["model"], url, tiny_index)
    assert plain.manifest is None and "nothing to do" in plain.message
    with pytest.raises(
        CatalogError,
        match=rf"^{victim}: bytes changed .*: re-pack the catalog from its source to the same URL before re-indexing",
    ):
        reindex.cli(catalog=url, index_url=tiny_index, model=None, verify=True, config=["tiny"], set_=None)


def test_train_on_a_damaged_catalog_names_the_shard(tiny, tmp_path):
    """The shard is read by Ray Data inside the Ray Train workers: the pyarrow error arrives in a WorkerGroupError."""
    from jobs.train import train

    url, victim = damaged_catalog(tiny, tmp_path / "catalog")
    cfg = load_config(["tiny"], ["train.workers=1", "train.max_failures=0", "train.stage1.epochs=1"])
    with pytest.raises(CatalogError, match=rf"^{victim}: bytes changed .*fsnet verify {url}"):
        train(cfg, url, str(tmp_path / "run"))
