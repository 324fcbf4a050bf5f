"""Bad input a person may hand fsnet by hand ends in one line naming the file (and the key), and exit status 2:
`fsnet search --image` of a file that is not an image, `fsnet report` of a JSON file that is not a results.json.
Each runs the installed `fsnet` command as a subprocess, as a person would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import image_bytes, truncated

FSNET = Path(sys.executable).with_name("fsnet")


def run_fsnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(FSNET), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The one line of stderr (exit status 2); fails showing what came instead."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, f"exit {done.returncode}\n{done.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.jpg", b"", "empty: 0 bytes"),
        ("notes.jpg", b"shopping list: shirt, red\n" * 20, "undecodable: not a recognisable image"),
        ("cut.jpg", truncated(image_bytes(64, 64, "JPEG")), "truncated: JPEG ends after"),
    ],
)
def test_search_image_that_is_not_an_image(tmp_path, name, data, reason):
    """Checked before the index is opened: the index named here does not even exist."""
    (tmp_path / name).write_bytes(data)
    line = one_error_line(run_fsnet("search", "--index", "no-index-here", "--image", name, cwd=tmp_path))
    assert line.startswith("error: --image ") and f"{name}: {reason}" in line, (
        line
    )  # the path as given or made absolute


def results_file() -> dict:
    """The keys fsnet report reads, as fsnet evaluate writes them (values shortened)."""
    run = {
        "method": "full",
        "kind": "fsnet",
        "k": [1, 2],
        "groups": {"color": {"top_k": [0.1, 0.2]}},
        "average": {"top_k": [0.1, 0.2], "ndcg_full": [0.3, 0.4], "ndcg_attribute": [0.5, 0.6], "count": 4},
    }
    return {
        "runs": [run, {**run, "method": "attribute_only", "kind": "baseline"}],
        "hardware": {"machine": "test", "cpus": 2, "gpu": None},
        "dataset": {"catalog": "c", "queries": 2, "gallery": 3, "manipulations": 4, "gallery_missing": {"count": 0}},
        "model": {"backbone": "tiny", "image_size": 64, "variant": "full"},
        "index": {},
        "throughput": {"manipulations_per_s": 10.0},
        "examples": [],
    }


def without(data: dict, path: str) -> dict:
    """A copy of ``data`` without the dotted key ``path`` (``runs.1.method``: in the second run)."""
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return data


@pytest.mark.parametrize(
    "content, message",
    [
        ([{"method": "full"}], "not an fsnet results.json (a JSON list;"),
        ("just text", "not an fsnet results.json (a JSON str;"),
        (without(results_file(), "runs.1.method"), "runs[1] has no 'method'"),
        (without(results_file(), "runs.0.average.top_k"), "runs[0] has no 'average.top_k'"),
        (without(results_file(), "model.variant"), "no 'model.variant'"),
        ({**results_file(), "runs": {"full": {}}}, "'runs' is a dict, not a list"),
    ],
)
def test_report_of_a_file_that_is_not_a_results_json(tmp_path, content, message):
    (tmp_path / "results.json").write_text(json.dumps(content))
    line = one_error_line(run_fsnet("report", "results.json", "--out", "report", cwd=tmp_path))
    assert f"results.json: {message}" in line, line
    assert not (tmp_path / "report").exists()


def test_report_reads_a_complete_file(tmp_path):
    """The same file with every key: the report is written (the checks above refuse only what is missing)."""
    (tmp_path / "results.json").write_text(json.dumps(results_file()))
    done = run_fsnet("report", "results.json", "--out", "report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report" / "report.html").is_file()
