"""Write a benchmark's figures as one JSON under bench/results/, with the machine, date, command and code version
inside, so that the docs render their tables from the file (bench/render_docs.py) and never from hand-copied text.

    from record import Table, add_record_options, write_result   # in a bench script (bench/ is on sys.path)

    parser = argparse.ArgumentParser(); add_record_options(parser, "pack_bench"); args = parser.parse_args()
    ...
    write_result(args, "pack_bench", "Pack throughput", [Table("main", ["measurement", "figure"], rows)])

The file (format 1; `bench/results/*.json`, one per benchmark or result):

    {
      "format": 1,
      "name": "pack_bench",                      # the file's stem; docs markers name it: <!-- results:pack_bench -->
      "title": "...",                            # one line: what was measured
      "machine": {"cpu": "x86_64", "cores": 2, "gpu": null, "python": "3.11.7", "torch": "2.14.1", "ray": "2.60.0",
                  "load": null},                 # what is known; null where not (load: a note on other work running)
      "date": "YYYY-MM-DD",                      # UTC, the day the run ended
      "command": "python bench/pack_bench.py",   # as typed; "command_note": optional words on it
      "code_version": "<commit>" | null,         # git rev-parse HEAD ("+local changes" when the tree differed)
      "source": "written by bench/pack_bench.py" | "transcribed from the run's printed output",
      "notes": ["..."],                          # sentences about the figures, rendered under the table
      "tables": [{"name": "main", "title": null, "columns": [...], "formats": [null, ".3f", ...] | null,
                  "rows": [[cell, ...], ...]}],  # cell: string, number or null (rendered as an en dash)
      "figures": {...}                           # optional: the same figures as named values, for programs
    }

Only the standard library is imported at module level (the GPU bundle's Python runs bench/gpu_check.py); torch, ray
and faiss versions are read from modules already imported, or imported here when installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WRITTEN = "written by {script}"
TRANSCRIBED = "transcribed from the run's printed output"


@dataclass
class Table:
    """One table of figures: column names, and rows of cells (str, int, float or None)."""

    name: str
    columns: list[str]
    rows: list[list[Any]]
    title: str | None = None
    formats: list[str | None] | None = None  # per column, a format spec for numbers (".3f", ",.0f", "+.3f")
    notes: list[str] = field(default_factory=list)


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - not installed, or broken: the version is simply unknown
            return None
    return getattr(mod, "__version__", None)


def _gpu() -> str | None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - a CUDA query that fails means no usable GPU
        return None
    return None


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 1)
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """This machine as the JSON records it: architecture, cores, GPU, versions; the 1-minute load average at the end
    of the run (other work on the cores changes timings)."""
    return {
        "cpu": platform.machine() or None,
        "cores": os.cpu_count(),
        "gpu": _gpu(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "faiss": _version("faiss"),
        "platform": platform.platform(),
        "load": f"load average {_load()} at the end" if _load() is not None else None,
    }


def code_version() -> str:
    """The checkout's commit, "+local changes" when tracked files differ from it; "unknown" outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT, timeout=30).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+local changes" if dirty else head


def script_name(argv: list[str] | None = None) -> str:
    """The running script, relative to the repository when inside it."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0]:
        return "?"
    try:
        return str(Path(argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        return argv[0]


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: `python <script> <arguments>`, with the BLAS thread variables that were set."""
    argv = list(sys.argv if argv is None else argv)
    shown = script_name(argv)
    threads = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ]
    return shlex.join([*threads, "python", shown, *argv[1:]])


def add_record_options(parser: argparse.ArgumentParser, name: str) -> None:
    """--out (default bench/results/<name>.json) and --no-record, on a bench script's parser."""
    parser.add_argument(
        "--out", type=Path, default=RESULTS / f"{name}.json", help="the JSON of the figures (bench/results/<name>.json)"
    )
    parser.add_argument("--no-record", action="store_true", help="print the figures only; write no JSON")


def result_document(
    name: str,
    title: str,
    tables: list[Table],
    *,
    notes: list[str] | None = None,
    figures: dict[str, Any] | None = None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON document of one run, machine, date, command and code version filled in from here and now."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "title": title,
        "machine": machine_info(),
        "date": dt.datetime.now(dt.timezone.utc).date().isoformat(),
        "command": command_line(argv),
        "code_version": code_version(),
        "source": WRITTEN.format(script=script_name(argv)),
        "notes": list(notes or []),
        "tables": [
            {
                "name": t.name,
                "title": t.title,
                "columns": t.columns,
                "formats": t.formats,
                "rows": t.rows,
                "notes": t.notes,
            }
            for t in tables
        ],
    }
    if figures is not None:
        doc["figures"] = figures
    return doc


def to_json(doc: dict[str, Any]) -> str:
    """The document as indented JSON with each table row on one line, so a diff shows which figure changed."""
    rows: list[str] = []

    def compact(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (placeholder(v) if k == "rows" else compact(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [compact(v) for v in value]
        return value

    def placeholder(table_rows: list[list[Any]]) -> list[str]:
        out = []
        for row in table_rows:
            rows.append(json.dumps(row, ensure_ascii=False))
            out.append(f"\x00{len(rows) - 1}\x00")
        return out

    text = json.dumps(compact(doc), indent=1, ensure_ascii=False)
    for i, row in enumerate(rows):
        text = text.replace(json.dumps(f"\x00{i}\x00"), row, 1)
    return text + "\n"


def write_result(
    args: argparse.Namespace,
    name: str,
    title: str,
    tables: list[Table],
    *,
    notes: list[str] | None = None,
    figures: dict[str, Any] | None = None,
) -> Path | None:
    """Write the run's JSON to args.out (unless --no-record) and say where; returns the path."""
    if getattr(args, "no_record", False):
        return None
    out = Path(args.out)
    doc = result_document(name, title, tables, notes=notes, figures=figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(doc))
    print(f"\nfigures written to {out}; render the docs with: python bench/render_docs.py")
    return out


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """date, command and code_version alone, for a bench whose JSON has a layout of its own (gpu_check, scale_bench)."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).date().isoformat(),
        "command": command_line(argv),
        "code_version": code_version(),
    }
