"""Code and configs say what and why: no dates, commit hashes or issue numbers in comments, docstrings or strings of
the non-test sources (fsnet/, jobs/, eval/, cluster/, bench/, configs/, ray_config.yaml). Those rot the day they are
written; the experiment log (docs/experiments.md) and bench/results/*.json keep them. Every offending file:line is
listed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
# a commit-like token: 7-40 hex digits with at least one digit and one letter (words and plain numbers are not)
COMMIT = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
ISSUE = re.compile(r"\bissues?\s*#?\s*\d+", re.I)
PATTERNS = {"date": DATE, "commit hash": COMMIT, "issue number": ISSUE}

# (path, the matched text) -> why it is not what the rule is about. Keep this short: rewrite the line instead.
ALLOWED: dict[tuple[str, str], str] = {}


def sources() -> list[Path]:
    files = {p for d in ("fsnet", "jobs", "eval", "cluster", "bench") for p in (ROOT / d).rglob("*.py")}
    files |= set((ROOT / "configs").glob("*.yaml"))
    files |= {p for p in (ROOT / "cluster").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files.add(ROOT / "ray_config.yaml")
    return sorted(p for p in files if p.exists() and p.suffix not in (".pyc", ".png", ".json"))


def test_sources_carry_no_dates_commit_hashes_or_issue_numbers():
    found = []
    for path in sources():
        name = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for what, pattern in PATTERNS.items():
                for match in pattern.finditer(line):
                    if (name, match.group(0)) not in ALLOWED:
                        found.append(f"{name}:{number}: {what} {match.group(0)!r}: {line.strip()[:110]}")
    assert not found, (
        f"{len(found)} lines to rewrite (say what and why; dates and figures go to docs/experiments.md):\n"
        + "\n".join(found)
    )


def test_the_file_list_covers_every_source_folder():
    names = {str(p.relative_to(ROOT)).split("/")[0] for p in sources()}
    assert {"fsnet", "jobs", "eval", "cluster", "bench", "configs", "ray_config.yaml"} <= names
