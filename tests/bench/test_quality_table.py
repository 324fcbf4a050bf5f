"""bench/quality_table.py: a results.json with its outcomes becomes a bench/results table whose cells carry the
intervals fsnet evaluate recorded and whose vs-probe column holds each run's paired difference to the probe."""

import json
import subprocess
import sys
from pathlib import Path

from tests.jobs.test_compare import evaluation

ROOT = Path(__file__).resolve().parents[2]


def test_a_results_file_becomes_a_table_with_intervals(tmp_path):
    folder = evaluation(tmp_path / "eval")
    out = tmp_path / "table.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality_table.py"), f"{folder}/results.json", "--name", "t"]
        + ["--out", str(out), "--resamples", "200"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    table = doc["tables"][0]
    rows = {row[0]: dict(zip(table["columns"], row)) for row in table["rows"]}
    assert set(rows) == {"full", "full+logp", "probe"}
    # the fixture's curves hold K = 1, 2 (Top-K 0.5, 1.0; the interval [0, 1], then [1, 1])
    assert table["columns"][:3] == ["method", "Top-1", "vs probe (Top-2, paired)"]
    assert rows["full"]["Top-1"] == "0.500 ± 0.500" and rows["full"]["color"] == "1.000 ± 0.000"
    paired = rows["full+logp"]["vs probe (Top-2, paired)"]
    assert paired.startswith("+") and "[" in paired and rows["probe"]["vs probe (Top-2, paired)"] is None
    assert any("The model: full" in note for note in doc["notes"]) and doc["name"] == "t"
