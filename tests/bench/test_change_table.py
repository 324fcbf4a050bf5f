"""bench/change_table.py: several results.json files become one bench/results table of Top-K and the two NDCGs at
K, each with half its recorded interval, and each figure minus the probe's of the same evaluation."""

import copy
import json
import subprocess
import sys
from pathlib import Path

from tests.eval.test_results import results_dict

ROOT = Path(__file__).resolve().parents[2]


def evaluation(folder: Path, probe_ndcg_attribute: list[float]) -> str:
    """A results.json with full, full+logp and probe runs; the probe's changed-attribute NDCG as given."""
    data = results_dict()
    run = data["runs"][0]
    probe = copy.deepcopy({**run, "method": "probe", "role": "baseline"})
    probe["average"]["ndcg_attribute"] = probe_ndcg_attribute
    data["runs"] = [run, {**run, "method": "full+logp"}, probe]
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    return str(folder / "results.json")


def test_evaluations_become_one_table_with_differences_to_their_probe(tmp_path):
    first = evaluation(tmp_path / "a", [0.5, 0.9])
    second = evaluation(tmp_path / "b", [0.5, 0.6])
    out = tmp_path / "table.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "change_table.py"), "--name", "t", "--out", str(out), "--k", "2"]
        + ["--run", f"seed 0={first}", "--run", f"seed 1={second}", "--methods", "full,probe,attr_logp"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = json.loads(out.read_text())["tables"][0]
    rows = [dict(zip(table["columns"], row)) for row in table["rows"]]
    # attr_logp is not in these evaluations: left out; full+logp not asked for
    assert [(r["evaluation"], r["method"]) for r in rows] == [
        ("seed 0", "full"),
        ("seed 0", "probe"),
        ("seed 1", "full"),
        ("seed 1", "probe"),
    ]
    # the fixture's curves at K = 2: Top-2 1.0 (interval [1, 1]), NDCG changed attribute 0.7, target 0.6
    assert rows[0]["Top-2"] == "1.000 ± 0.000" and rows[0]["NDCG@2, changed attribute"] == "0.700 ± 0.000"
    assert rows[0]["NDCG@2, changed attribute minus the probe's"] == "−0.200"
    assert rows[2]["NDCG@2, changed attribute minus the probe's"] == "+0.100"
    assert rows[0]["NDCG@2, target minus the probe's"] == "+0.000" and rows[1]["Top-2 minus the probe's"] is None
