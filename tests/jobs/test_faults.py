"""SIGKILL at a random moment (issue 13, part 5) and Ctrl-C (part 6): `fsnet index`, `fsnet reindex` and `fsnet
pack` run as subprocesses and killed with their whole process group (their local Ray included) at a seeded random
moment of their writing, or interrupted as a terminal does it (SIGINT to the group); what they had published stays
readable, nothing of them keeps running, and the next run completes.

Each kill moment is drawn from a seeded generator inside a window that starts when the job's first output appears
(the new index version's folder, the first new shard file), so it falls inside the job's writing on a fast or a
loaded machine; a job that finished before its moment is checked the same way (its own version must then be the
complete one), and each test requires that at least one of its kills landed mid-run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from fsnet.catalog.reader import Catalog
from fsnet.catalog.shard_writer import SHARD_DIR
from fsnet.config import load_config
from fsnet.index.manifest import read_current, read_manifest, versions
from fsnet.index.reader import IndexReader
from fsnet.storage import Storage, join
from jobs.cli import app
from jobs.index import index
from jobs.pack import pack
from tests.conftest import s3_sets
from tests.jobs.subprocess_jobs import (
    FSNET,
    reap,
    session_pids,
    signal_group,
    start,
    wait_until,
)
from tests.jobs.tiny_model import make_model, tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

SEED = 13
JOB_TIMEOUT_S = 240  # a subprocess job from start to its first output, on a loaded 2-core machine
STOP_BOUND_S = 15  # from Ctrl-C to exit: generous for a loaded 2-core machine (measured: 2.6-4 s at load 50-100)
# many small writes: a wide window to land in; on the actor pool (a few images are otherwise embedded without Ray)
SLOW_INDEX = ["--set", "index.batch_size=4", "--set", "index.actors=1", "--set", "index.in_process_max=0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ray_cluster):
    made = tiny_catalog_and_model(tmp_path_factory.mktemp("faults"))
    make_model(Catalog.open(made["catalog"], made["storage"]), str(made["root"] / "model2.pt"), made["storage"], seed=1)
    return made


def check_index_readable(tiny, out: str, tmp_path, name: str | None) -> int:
    """CURRENT names a complete version that `fsnet search` and (given a ``name`` for its output folder) `fsnet
    evaluate` read; returns it."""
    storage = tiny["storage"]
    live = read_current(storage, out)
    assert live is not None and live in versions(storage, out)
    manifest = read_manifest(storage, out, live)
    assert len(IndexReader.open(out, storage).ids) == manifest.indexed > 0
    query = min(Catalog.open(tiny["catalog"], storage).split_ids("gallery").tolist())
    runner = CliRunner()
    found = runner.invoke(app, ["search", "--index", out, "--id", query, "-k", "3"], terminal_width=200)
    assert found.exit_code == 0, found.output
    if name is None:
        return live
    evaluated = runner.invoke(
        app, ["evaluate", "--index", out, "--catalog", tiny["catalog"], "--out", str(tmp_path / name)]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / name / "results.json").read_text())["dataset"]["gallery"] > 0
    return live


def kill_when(job, appeared, rng: random.Random, window_s: float) -> bool:
    """SIGKILL the job's process group ``uniform(0, window_s)`` seconds after ``appeared()`` first holds; True
    when it was still running then."""
    assert wait_until(job, appeared, JOB_TIMEOUT_S), job.output()
    delay = rng.uniform(0, window_s)
    wait_until(job, lambda: False, delay)
    signal_group(job, signal.SIGKILL)
    status = reap(job)
    assert status in (0, -signal.SIGKILL), job.output()  # finished before its moment, or killed
    print(f"{job.log.stem}: {'killed' if status else 'finished before'} {delay:.2f} s after its first output")
    return status == -signal.SIGKILL


def test_index_and_reindex_killed_keep_current_and_the_next_run_completes(tiny, tmp_path):
    storage, rng = tiny["storage"], random.Random(SEED)
    out = str(tmp_path / "index")
    index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out)  # v1: the gallery, the live version
    landed = []

    # fsnet index of every split into the same URL: a full new version v2, killed while it is written
    job = start(
        [
            "index",
            "--config",
            "tiny",
            *SLOW_INDEX,
            "--model",
            tiny["model"],
            "--catalog",
            tiny["catalog"],
            "--out",
            out,
            "--split",
            "all",
        ],
        tmp_path / "index.log",
    )
    landed.append(kill_when(job, lambda: (tmp_path / "index" / "v2").exists(), rng, window_s=3.0))
    live = check_index_readable(tiny, out, tmp_path, "eval-1")
    assert live == (1 if landed[-1] else 2)

    # fsnet reindex with another model (a full re-index): it first removes the partial v2, then writes its own
    leftover = tmp_path / "index" / f"v{live + 1}"
    was_there = leftover.exists()
    job = start(
        [
            "reindex",
            "--config",
            "tiny",
            *SLOW_INDEX,
            "--catalog",
            tiny["catalog"],
            "--index",
            out,
            "--model",
            str(tiny["root"] / "model2.pt"),
        ],
        tmp_path / "reindex.log",
    )
    if was_there:  # the interrupted run's folder goes before the new one is written
        assert wait_until(job, lambda: not leftover.exists(), JOB_TIMEOUT_S), job.output()
    landed.append(kill_when(job, leftover.exists, rng, window_s=3.0))
    live = check_index_readable(tiny, out, tmp_path, "eval-2")
    assert any(landed), "every job finished before its kill moment: the windows no longer fall inside the runs"

    # the next run completes: a new version, CURRENT on it, no stale folder beside the kept ones
    done = index(load_config(["tiny"]), str(tiny["root"] / "model2.pt"), tiny["catalog"], out).manifest
    assert done is not None and done.version == live + 1 and read_current(storage, out) == live + 1
    assert versions(storage, out) == [live, live + 1]
    assert done.model.url == str(tiny["root"] / "model2.pt") and done.indexed == len(
        Catalog.open(tiny["catalog"], storage).split_ids("gallery")
    )
    check_index_readable(tiny, out, tmp_path, None)


@pytest.mark.parametrize("place", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_pack_killed_keeps_the_old_catalog_and_the_next_pack_completes(tiny, tmp_path, request, place):
    """A catalog of 64 rows re-packed with 192 more rows in shards of 16 by one actor (12 new shards written one
    after another), killed after its first new shard."""
    sets = [] if place == "local" else s3_sets(request.getfixturevalue("s3_endpoint"))
    cfg = load_config(["tiny"], sets)
    storage = Storage(cfg.storage)
    out = str(tmp_path / "catalog") if place == "local" else f"s3://fsnet-test/faults-{tmp_path.name}/catalog"
    labels = pd.read_csv(tiny["root"] / "synth" / "labels.csv", dtype=str)
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    for name in labels["image"]:
        (source / "images" / name).symlink_to(tiny["root"] / "synth" / "images" / name)
    labels.iloc[:64].to_csv(source / "labels.csv", index=False)
    old = pack(load_config(["tiny"], [*sets, f"source.path={source}"]), out, show_progress=False).manifest
    before = set(storage.listdir(join(out, SHARD_DIR)))

    labels.to_csv(source / "labels.csv", index=False)  # 192 more rows
    more = ["--set", "catalog.shard_rows=16", "--set", "catalog.pack_actors=1"]
    job = start(
        [
            "pack",
            "--config",
            "tiny",
            *more,
            *[a for s in sets for a in ("--set", s)],
            "--source",
            str(source),
            "--out",
            out,
        ],
        tmp_path / "pack.log",
    )
    landed = kill_when(
        job, lambda: bool(set(storage.listdir(join(out, SHARD_DIR))) - before), random.Random(SEED), window_s=0.5
    )
    assert landed, "the pack finished before its kill moment: the window no longer falls inside the run"

    catalog = Catalog.open(out, storage)  # the old catalog.json, as it was, and every file it names intact
    assert catalog.verify() == [] and catalog.manifest.model_dump() == old.model_dump() and catalog.manifest.rows == 64
    assert len(next(catalog.batches(None, ["id", "image"], batch_size=1000))["id"]) == catalog.manifest.rows

    # the next pack completes and removes what the killed one left
    new = pack(
        load_config(["tiny"], [*sets, f"source.path={source}", "catalog.shard_rows=16"]), out, show_progress=False
    ).manifest
    assert new.rows == 256 and len(new.shards) == 13 and Catalog.open(out, storage).verify() == []
    assert set(storage.listdir(join(out, SHARD_DIR))) == {s.path.removeprefix(f"{SHARD_DIR}/") for s in new.shards}
    assert not [n for n in storage.listdir(out) if ".tmp-" in n]


def test_a_pack_and_an_index_remove_the_temporary_files_of_killed_writes(tiny, tmp_path):
    """A kill during Storage.write_bytes on a local disk leaves ``<name>.tmp-<hex>`` (its rename never came):
    the next run removes it, as a random kill rarely lands inside that write."""
    storage = tiny["storage"]
    out = str(tmp_path / "index")
    index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out)
    (tmp_path / "index" / "CURRENT.tmp-0badf00d").write_text("v")
    (tmp_path / "index" / "v2").mkdir()  # an interrupted run's version folder
    again = index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out)  # nothing to do: still tidies
    assert again.manifest is None and "nothing to do" in again.message
    assert sorted(storage.listdir(out)) == ["CURRENT", "v1"]

    catalog = tmp_path / "catalog"
    fs, _ = storage.fs(str(catalog))
    fs.copy(tiny["catalog"], str(catalog), recursive=True)
    half = [
        catalog / SHARD_DIR / "part-00009-0123456789ab.parquet.tmp-0badf00d",
        catalog / "catalog.json.tmp-0badf00d",
        catalog / "splits-0123456789ab.parquet.tmp-0badf00d",
        catalog / "config.yaml.tmp-0badf00d",
    ]
    for path in half:
        path.write_bytes(b"half")
    (catalog / "notes.tmp-keep.txt").write_text("a user's file")  # not ours: stays
    pack(load_config(["tiny"], [f"source.path={tiny['root'] / 'synth'}"]), str(catalog), show_progress=False)
    assert not any(path.exists() for path in half) and (catalog / "notes.tmp-keep.txt").exists()
    assert Catalog.open(str(catalog), storage).verify() == []


def test_ctrl_c_stops_fsnet_index_at_once_and_the_next_run_completes(tiny, tmp_path):
    storage, out = tiny["storage"], str(tmp_path / "index")
    index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out)  # v1, the live version
    job = start(
        [
            "index",
            "--config",
            "tiny",
            *SLOW_INDEX,
            "--model",
            tiny["model"],
            "--catalog",
            tiny["catalog"],
            "--out",
            out,
            "--split",
            "all",
        ],
        tmp_path / "index.log",
    )
    try:
        assert wait_until(job, (tmp_path / "index" / "v2").exists, JOB_TIMEOUT_S), job.output()  # writing v2 now
        wait_until(job, lambda: False, random.Random(SEED).uniform(0, 1.0))
        sent = time.monotonic()
        assert signal_group(job, signal.SIGINT), "the index finished before Ctrl-C: " + job.output()
        try:
            status = job.proc.wait(STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"fsnet index still running {STOP_BOUND_S} s after Ctrl-C:\n{job.output()}")
        print(f"fsnet index stopped {time.monotonic() - sent:.1f} s after Ctrl-C")
        lines = [line for line in job.output().splitlines() if line.strip()]
        assert status == 130, job.output()
        assert lines[-1] == f"interrupted: {out}: CURRENT still v1; the partial v2 is removed by the next run", (
            job.output()
        )
        deadline = time.monotonic() + 15  # the local Ray's processes (its workers have process groups of their own)
        while session_pids(job) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_pids(job), f"left running after Ctrl-C: {session_pids(job)}"
    finally:
        reap(job)

    assert check_index_readable(tiny, out, tmp_path, None) == 1
    done = index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out, split="all").manifest  # the next run
    assert done.version == 2 and read_current(storage, out) == 2 and versions(storage, out) == [1, 2]


def ray_started(job) -> bool:
    """The job's local Ray is up: a raylet runs in its session (extraction starts right after)."""
    for pid in session_pids(job):
        try:
            if b"raylet" in open(f"/proc/{pid}/cmdline", "rb").read():
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("target", ["process", "group"])
def test_ctrl_c_during_extraction_stops_the_whole_ray_and_says_what_was_kept(tiny, tmp_path, target):
    """SIGINT between Ray's start and the first embedding written (its actors starting, the model loading): to the
    command alone, or to its process group as a terminal sends it. Exit 130 with the "interrupted:" line, and
    within 10 s no process of its session is left: Ray's agents, whose raylet dies first, included."""
    out = str(tmp_path / "index")
    job = start(
        ["index", "--config", "tiny", *SLOW_INDEX, "--model", tiny["model"], "--catalog", tiny["catalog"]]
        + ["--out", out, "--split", "all"],
        tmp_path / "index.log",
    )
    try:
        assert wait_until(job, lambda: ray_started(job), JOB_TIMEOUT_S), job.output()
        wait_until(job, lambda: False, random.Random(SEED).uniform(0, 2.0))
        assert job.proc.poll() is None, "the index finished before Ctrl-C: " + job.output()
        if target == "group":
            signal_group(job, signal.SIGINT)
        else:
            job.proc.send_signal(signal.SIGINT)
        try:
            status = job.proc.wait(STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"fsnet index still running {STOP_BOUND_S} s after Ctrl-C:\n{job.output()}")
        lines = [line for line in job.output().splitlines() if line.strip()]
        assert status == 130 and lines[-1].startswith(f"interrupted: {out}: "), job.output()
        deadline = time.monotonic() + 10
        while session_pids(job) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_pids(job), f"left running 10 s after Ctrl-C: {session_pids(job)}"
    finally:
        reap(job)


def test_two_reindexes_of_one_index_at_once_one_refuses_and_the_live_version_is_whole(tiny, tmp_path):
    """A scheduled re-index overlapping a manual one: the second stops at once with one line naming the first
    (exit 2), the first publishes a whole version: each image once, verify all well."""
    from jobs.verify import verify_index

    storage, out = tiny["storage"], str(tmp_path / "index")
    index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out)  # v1 of the first model
    args = ["--config", "tiny", "--catalog", tiny["catalog"], "--index", out]
    args += ["--model", str(tiny["root"] / "model2.pt")]  # another model: a full re-index, long enough to overlap
    first = start(["reindex", *SLOW_INDEX, *args], tmp_path / "first.log")
    try:
        assert wait_until(first, (tmp_path / "index" / "WRITER").exists, JOB_TIMEOUT_S), first.output()
        second = subprocess.run([FSNET, "reindex", *args], capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stdout + second.stderr
        assert "another run is writing this index (process" in lines[0] and "on this host" in lines[0], lines[0]
        assert reap(first) == 0, first.output()
    finally:
        reap(first)
    assert read_current(storage, out) == 2 and versions(storage, out) == [1, 2]
    reader = IndexReader.open(out, storage)
    ids = reader.ids.tolist()
    assert len(ids) == len(set(ids)) == reader.manifest.indexed
    assert not verify_index(storage, out).problems
    assert not (tmp_path / "index" / "WRITER").exists()
