"""The re-index gate (jobs/gate.py): a re-index with a deliberately worse model is refused (exit 3, one line,
CURRENT still on the live version, the refused version beside it with its verdict and comparison page); one with
an equal model (the same weights in another file) passes with a difference of exactly 0 and is published."""

import json
import random
import subprocess

import pytest
import torch

from fsnet.config import load_config
from fsnet.index.manifest import GATE_FILE, read_current, versions
from fsnet.index.reader import IndexReader
from jobs.gate import EXIT_REFUSED, quality_gate
from jobs.index import index
from tests.jobs.subprocess_jobs import FSNET, start, user_env
from tests.jobs.test_faults import SEED, kill_when
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def test_a_worse_model_is_refused_and_an_equal_one_published(tmp_path):
    made = tiny_catalog_and_model(tmp_path)
    storage, catalog = made["storage"], made["catalog"]
    out = str(tmp_path / "index")
    index(load_config(["tiny"]), made["model"], catalog, out)  # v1, published without the gate: no stored results
    worse = str(tmp_path / "worse.pt")
    saved = torch.load(made["model"], weights_only=True)
    table = saved["state_dict"]["memory.table"]  # (values, D): what a manipulation moves a query towards
    saved["state_dict"]["memory.table"] = (
        10 * table.std() * torch.randn(table.shape, generator=torch.Generator().manual_seed(0))
    )
    torch.save(saved, worse)  # a deliberately worse model: every new value's memory a random vector

    args = ["reindex", "--config", "tiny", "--gate", "--catalog", catalog, "--index", out, "--model", worse]
    done = subprocess.run([FSNET, *args], capture_output=True, text=True, env=user_env(), timeout=600)
    assert done.returncode == EXIT_REFUSED, done.stdout + done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]  # (a loaded machine: Ray's
    # start-up retries say so on stderr too)
    assert len(error) == 1 and "v2 refused" in error[0] and "CURRENT stays v1" in error[0], done.stderr
    assert "v1 has no stored results" in done.stdout.replace("\n", " ")
    assert read_current(storage, out) == 1 and IndexReader.open(out, storage).manifest.model.url == made["model"]
    verdict = json.loads((tmp_path / "index" / "v2" / GATE_FILE).read_text())
    assert verdict["published"] is False and verdict["high"] < -0.01 and verdict["pairing"] == "paired"
    assert (tmp_path / "index" / "v2" / "gate" / "compare.html").is_file()
    assert (tmp_path / "index" / "v1" / "eval" / "results.json").is_file()  # evaluated once, stored with v1

    # the equal model: the same weights in another file (a full re-index), compared with v1's stored results
    same = tmp_path / "same.pt"
    saved = torch.load(made["model"], weights_only=True)
    saved["fsnet_version"] += "+again"
    torch.save(saved, same)
    cfg = load_config(["tiny"])
    result = index(cfg, str(same), catalog, out, before_publish=quality_gate(cfg, out, catalog))
    assert result.manifest is not None and result.manifest.version == 3  # after the refused v2, kept beside it
    assert "passed" in result.message and read_current(storage, out) == 3
    verdict = json.loads((tmp_path / "index" / "v3" / GATE_FILE).read_text())
    assert verdict["published"] and (verdict["difference"], verdict["low"], verdict["high"]) == (0.0, 0.0, 0.0)
    assert (tmp_path / "index" / "v3" / "eval" / "outcomes.parquet").is_file()  # the next gate compares with it
    assert versions(storage, out) == [1, 3]  # v1 kept for its readers; the refused v2 gone once v3 is published


def test_a_gate_run_killed_leaves_current_and_the_next_run_completes(tmp_path):
    """SIGKILL to the whole process group (its local Ray included) at a seeded moment after the gate says it
    evaluates the new version (its evaluation, then the verdict)."""
    made = tiny_catalog_and_model(tmp_path)
    storage, catalog = made["storage"], made["catalog"]
    out = str(tmp_path / "index")
    cfg = load_config(["tiny"])
    gate = quality_gate(cfg, out, catalog)
    index(cfg, made["model"], catalog, out, before_publish=gate)  # a first version: published, its results stored
    assert (tmp_path / "index" / "v1" / "eval" / "results.json").is_file()
    same = tmp_path / "same.pt"
    saved = torch.load(made["model"], weights_only=True)
    saved["fsnet_version"] += "+again"
    torch.save(saved, same)
    # the actor pool: its evaluation outlasts the kill's moment (a tiny catalog's queries in process end before it)
    pool = ["--set", "index.in_process_max=0"]
    args = ["reindex", "--config", "tiny", *pool, "--gate", "--catalog", catalog, "--index", out]
    log = tmp_path / "gate.log"  # (a kill during extraction: tests/jobs/test_faults.py)
    job = start([*args, "--model", str(same)], log)
    landed = kill_when(job, lambda: "gate: evaluating v2" in log.read_text(), random.Random(SEED), window_s=8.0)
    assert read_current(storage, out) in (1, 2) and len(IndexReader.open(out, storage).ids) > 0
    assert landed, "the gate run finished before its kill moment"
    if read_current(storage, out) == 1:
        done = index(cfg, str(same), catalog, out, before_publish=gate)
        assert done.manifest is not None and "passed" in done.message
    live = read_current(storage, out)
    assert live == 2 and json.loads((tmp_path / "index" / "v2" / GATE_FILE).read_text())["published"]
    assert versions(storage, out) == [1, 2]
