"""`fsnet compare`, run as a person runs it: a results file against itself differs by exactly 0 with zero-width
intervals; two runs of one file give the paired difference; evaluations of other protocols and files without
outcomes are refused in one line (exit 2) with nothing written."""

import json
from pathlib import Path

import numpy as np
import pytest

from eval.outcomes import OUTCOMES_FILE, outcomes_bytes
from eval.protocol import Manipulations
from fsnet.config import load_config
from fsnet.storage import Storage, join
from tests.eval.test_results import results_dict
from tests.jobs.test_bad_input import one_error_line, run_fsnet

QUERIES, PER_QUERY = 30, 4


def evaluation(folder, seed: int = 0, **dataset) -> str:
    """A results.json (full, full+logp and probe runs) and its outcomes.parquet in ``folder``; ``dataset`` overrides
    keys of its dataset block. Seeded ranks: the probe finds fewer targets."""
    rng = np.random.default_rng(seed)
    m = QUERIES * PER_QUERY
    manipulations = Manipulations(
        query=np.repeat(np.arange(QUERIES), PER_QUERY),
        change=np.zeros((m, 2), dtype=np.int16),
        target=np.zeros((m, 2), dtype=np.int16),
        group=np.tile([0, 1], m // 2),
        groups=["color", "sleeve"],
    )
    ranks = {
        "full": rng.integers(0, 30, m),
        "full+logp": rng.integers(0, 25, m),
        "probe": rng.integers(10, 51, m),
    }
    data = results_dict()
    run = data["runs"][0]
    data["runs"] = [run, {**run, "method": "full+logp"}, {**run, "method": "probe", "role": "baseline"}]
    data["dataset"].update({"queries": QUERIES, "manipulations": m, **dataset})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data))
    ids = np.array([f"q{i:03d}" for i in range(QUERIES)])
    (folder / OUTCOMES_FILE).write_bytes(outcomes_bytes(manipulations, ids, ranks, 50, data["created"]))
    return str(folder)


def test_a_file_against_itself_differs_by_exactly_zero(tmp_path, location):
    """On a local path and on S3: the files read from there, the JSON and the page written there."""
    storage = Storage(load_config(["tiny"], location.sets).storage)
    local = Path(evaluation(tmp_path / "a"))
    a = location.url("a")
    for name in ("results.json", OUTCOMES_FILE):
        storage.write_bytes(join(a, name), (local / name).read_bytes())
    sets = [x for item in location.sets for x in ("--set", item)]
    args = ["compare", a, f"{a}/results.json", "--json", location.url("cmp.json"), "--report", location.url("page")]
    done = run_fsnet(*args, *sets, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(storage.read_text(location.url("cmp.json")))
    assert out["pairing"] == "paired" and out["new"]["method"] == out["base"]["method"] == "full+logp"
    figures = [f for per_k in out["top_k"].values() for f in per_k.values()]
    assert {"average", "color", "sleeve"} <= set(out["top_k"]["top_20"]) and len(out["ks"]) == 4
    assert all(f["difference"] == f["low"] == f["high"] == 0.0 and f["share_not_above"] == 1.0 for f in figures)
    assert "+0.000, 95% interval +0.000 to +0.000" in done.stdout.replace("\n", " ")
    assert "<table>" in storage.read_text(location.url("page/compare.html"))


def test_two_runs_of_one_file_give_the_paired_difference(tmp_path):
    a = evaluation(tmp_path / "a")
    done = run_fsnet("compare", a, "--method", "full", "--against", "probe", "--json", "cmp.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    top20 = json.loads((tmp_path / "cmp.json").read_text())["top_k"]["top_20"]["average"]
    assert top20["new"] - top20["base"] == pytest.approx(top20["difference"])
    assert 0 < top20["low"] < top20["difference"] < top20["high"] and top20["share_not_above"] == 0.0


@pytest.mark.parametrize(
    "dataset, says",
    [
        ({"fingerprint": {"queries": "01", "gallery": "ff", "manipulations": "03"}}, "other gallery images"),
        ({"fingerprint": {"queries": "ee", "gallery": "02", "manipulations": "03"}}, "other query images"),
        (
            {"at_once": 2, "fingerprint": {"queries": "01", "gallery": "02", "manipulations": "dd"}},
            "eval.at_once 1 and 2",
        ),
        (
            {"catalog": "/other", "fingerprint": {"queries": "ee", "gallery": "02", "manipulations": "03"}},
            "other catalogs",
        ),
    ],
)
def test_evaluations_of_other_protocols_are_refused_in_one_line(tmp_path, dataset, says):
    a, b = evaluation(tmp_path / "a"), evaluation(tmp_path / "b", seed=1, **dataset)
    line = one_error_line(run_fsnet("compare", a, b, "--json", "out/cmp.json", cwd=tmp_path))
    assert says in line and "not comparable" in line
    assert not (tmp_path / "out").exists()


def test_outcomes_of_another_evaluation_are_refused_in_one_line(tmp_path):
    a, b = evaluation(tmp_path / "a"), evaluation(tmp_path / "b")
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    results["created"] = "2026-01-02T00:00:00+00:00"  # evaluated again, stopped before its outcomes were written
    (tmp_path / "b" / "results.json").write_text(json.dumps(results))
    line = one_error_line(run_fsnet("compare", a, b, cwd=tmp_path))
    assert "belongs to another evaluation" in line and "evaluate again" in line


def test_results_without_outcomes_are_refused_in_one_line(tmp_path):
    a, b = evaluation(tmp_path / "a"), evaluation(tmp_path / "b")
    (tmp_path / "b" / OUTCOMES_FILE).unlink()
    line = one_error_line(run_fsnet("compare", a, b, cwd=tmp_path))
    assert OUTCOMES_FILE in line and "evaluate again" in line
    assert "no run 'nope'" in one_error_line(
        run_fsnet("compare", a, "--method", "nope", "--against", "probe", cwd=tmp_path)
    )
