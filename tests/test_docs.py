"""The documentation: its data-driven parts are up to date (bench/render_docs.py), the site builds with MkDocs in
strict mode, and README.md and docs/ stay guides — no dates, commit hashes, machine load or "code at" outside the
blocks rendered from bench/results/, which carry them in their captions. docs/experiments.md, the experiment log, is
the one page where dates and hashes belong. No Ray, no network."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import render_docs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LOG = DOCS / "experiments.md"  # the experiment log: dates and commit hashes belong there
MAX_README_LINES = 400

DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
# a commit-like token: 7-40 hex digits with at least one digit and one letter (plain words and numbers are not)
COMMIT = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
MACHINE_LOAD = re.compile(r"quiet cores|load average|\bcode at\b", re.I)


def outside_rendered_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of every line not inside a <!-- results:... --> ... <!-- /results --> block."""
    lines, inside = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if render_docs.START.match(line):
            inside = True
        elif line.strip() == render_docs.END:
            inside = False
        elif not inside:
            lines.append((number, line))
    return lines


def offences(path: Path, patterns: list[re.Pattern[str]]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r} in: {line.strip()[:120]}"
        for number, line in outside_rendered_blocks(path)
        for pattern in patterns
        for match in pattern.finditer(line)
    ]


def test_rendered_blocks_and_the_configuration_reference_are_up_to_date():
    files = render_docs.rendered()
    stale = [str(p.relative_to(ROOT)) for p, text in files.items() if not p.exists() or p.read_text() != text]
    assert not stale, f"out of date (run `python bench/render_docs.py`): {', '.join(stale)}"
    assert render_docs.main(["--check"]) == 0


def test_every_result_block_names_a_result_file():
    results = render_docs.load_results()
    for page in render_docs.pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            match = render_docs.START.match(line)
            if match:
                assert match["name"] in results, (
                    f"{page.relative_to(ROOT)}:{number}: no bench/results/{match['name']}.json"
                )


def test_the_site_builds_in_strict_mode(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mkdocs is not installed: CI installs the test extra, which has it")
        pytest.skip("mkdocs is not installed (pip install -e '.[test]' installs it)")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()


def test_readme_is_a_short_guide_with_both_command_blocks():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES, f"README.md has {len(text.splitlines())} lines"
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        assert re.search(re.escape(marker) + r"\s*```\w*\n.+?\n```", text, re.S), (
            f"README.md: no fenced block after {marker}"
        )
    found = [
        f"README.md:{number}: {match.group(0)!r} in: {line.strip()[:120]}"
        for number, line in enumerate(text.splitlines(), 1)  # its rendered block too: it has a short caption
        for pattern in (DATE, COMMIT, MACHINE_LOAD)
        for match in pattern.finditer(line)
    ]
    assert not found, "README.md:\n" + "\n".join(found)


def test_docs_pages_carry_no_dates_hashes_or_machine_load_outside_rendered_blocks():
    pages = sorted(p for p in DOCS.glob("*.md") if p != LOG)
    assert pages, "no docs pages"
    found = [o for page in pages for o in offences(page, [DATE, COMMIT, MACHINE_LOAD])]
    assert not found, "dates, hashes and run circumstances belong in docs/experiments.md:\n" + "\n".join(found)


def test_the_navigation_lists_every_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in DOCS.glob("*.md") if f": {p.name}" not in nav]
    assert not missing, f"mkdocs.yml's nav lacks {', '.join(missing)}"


def test_the_experiment_logs_tables_come_from_dated_result_files():
    """A benchmark re-run rewrites its bench/results/<name>.json and the pages rendered from it: the log's entries
    render from dated copies (<name>-YYYY-MM-DD.json), which nothing rewrites, so the history stays as measured."""
    undated = [
        f"docs/experiments.md:{number}: {line.strip()}"
        for number, line in enumerate(LOG.read_text().splitlines(), 1)
        if (match := render_docs.START.match(line)) and not re.search(r"-\d{4}-\d\d-\d\d$", match["name"])
    ]
    assert not undated, "copy the result to a dated file and render the log from it:\n" + "\n".join(undated)
