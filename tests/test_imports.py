"""The import picture, read from the source with ``ast`` (nothing is imported, so no import has side effects):
no cycles, and each layer imports only the layers below it (fsnet/ <- eval/ <- jobs/, cluster/ beside jobs/).

Every import counts: at the top of a module, inside a function, under ``if TYPE_CHECKING:`` (two modules that
name each other's types are still two modules that cannot be read, or moved, one without the other)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fsnet", "eval", "jobs", "cluster")

# What each layer may not import: the library knows nothing of evaluation, jobs or clusters; the evaluation library
# nothing of jobs or clusters; cluster/ only submits (`python -m jobs.<name>` is a string, not an import).
FORBIDDEN = {
    "fsnet": ("jobs", "eval", "cluster"),
    "eval": ("jobs", "cluster"),
    "cluster": ("jobs",),
}
SHARED = {  # modules of jobs/ that are not jobs: what every job may import
    "jobs.command": "the command line every job shares (--config / --set, errors as one line)",
    "jobs.ray_runtime": "starting or joining Ray, in one place",
    "jobs.worker_setup": "what every worker process of a local Ray runs first (pinned to its Ray, quiet logs)",
    "jobs.interrupt": "Ctrl-C: what a job kept",
    "jobs.embed_rows": "catalog rows -> embedding rows on Ray Data actors: train, index and evaluate all embed",
    "jobs.trunk_cache": "the frozen trunk's cached features: train (frozen trunk), the embed path, the probe",
    "jobs.tables": "tables fitted to the terminal's width",
    "jobs.progress": "progress bars with the time left, following Ray Data pipelines",
    "jobs.epoch_progress": "a training stage's epochs as the driver shows them",
}
PARTS = {  # modules of jobs/ that are parts of one job, split out to keep it readable: only that job imports them
    "jobs.train_loop": "jobs.train",  # the Ray Train workers' loops
    "jobs.memory_stage": "jobs.train",  # the memory stage: fixed features and M
    "jobs.training_split": "jobs.train",  # the training images and their validation set
    "jobs.injected_fault": "jobs.train",  # test only: a worker that dies at a chosen step
    "jobs.train_checks": "jobs.train",  # what train refuses before it starts
    "jobs.training_estimate": "jobs.train",  # how long the stages will take, printed before they start
    "jobs.probe_expert_fit": "jobs.train",  # the pretrained trunk's probe joined to the classifiers after the stages
}
COMPOSITES = {  # modules of jobs/ that exist to call jobs
    "jobs.pipeline": "pack -> train -> index -> evaluate -> report in one job",
    "jobs.demo": "the pipeline on a small catalog with a local Ray",
    "jobs.ablation": "the pipeline once per variant, then one report",
    "jobs.reindex": "index (only new or changed shards) after verify, through the gate",
    "jobs.gate": "evaluate a new index version and compare it with the live one's before it is published",
    "jobs.cli": "the fsnet command: every job's cli (a command imports its own job's alone)",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file; ``from a.b import c`` names a.b.c when c is a
    module, else a.b."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


MODULES = project_modules()
GRAPH = {name: imports_of(name, path, MODULES) for name, path in MODULES.items()}


def test_the_packages_are_read():
    assert {"fsnet.config", "eval.topk", "jobs.index", "jobs.embed_rows", "cluster.submit"} <= set(MODULES)
    assert "jobs.embed_rows" in GRAPH["jobs.index"] and "fsnet.embedding" in GRAPH["jobs.embed_rows"]
    assert set(SHARED) | set(PARTS) | set(COMPOSITES) <= set(MODULES)


def test_no_import_cycles():
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_no_layer_above_it(layer):
    wrong = [
        f"{name} imports {target}"
        for name, targets in sorted(GRAPH.items())
        if name.split(".")[0] == layer
        for target in sorted(targets)
        if target.split(".")[0] in FORBIDDEN[layer]
    ]
    assert wrong == []


def test_a_job_imports_no_other_job():
    jobs = {name for name in MODULES if name.startswith("jobs.")} - set(SHARED) - set(COMPOSITES) - set(PARTS)
    assert {"jobs.train", "jobs.index", "jobs.evaluate", "jobs.search"} <= jobs
    wrong = [
        f"{name} imports {target}"
        for name in sorted(jobs | set(PARTS))
        for target in sorted(GRAPH[name])
        if target.startswith("jobs.") and target not in SHARED and PARTS.get(target) != PARTS.get(name, name)
    ]
    assert wrong == []


def test_no_private_name_is_imported_across_modules():
    """A name with a leading underscore is its module's own: what another module needs is public (bench/ and the
    tests included)."""
    wrong = []
    for path in sorted(p for folder in (*PACKAGES, "bench", "tests") for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (*PACKAGES, "bench"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                wrong += [f"{path.relative_to(ROOT)}: from {node.module} import {name}" for name in private]
    assert wrong == []


def test_bench_patches_nothing():
    """Benchmarks time what the product runs, as it runs it: no mock."""
    users = [p.name for p in sorted((ROOT / "bench").glob("*.py")) if re.search(r"\bmock\b", p.read_text())]
    assert users == []
