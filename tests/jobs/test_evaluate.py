"""fsnet evaluate on a real local Ray, local and S3 storage: the protocol's counts, the runs, --check, queries embedded
when the index holds the gallery only. The report is tested in test_report.py, the ablation in test_ablation.py."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from eval.protocol import build_manipulations
from eval.report import build_report, render_markdown
from eval.results import read_results
from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.model import build_model, load_model, save_model
from fsnet.storage import Storage, join
from jobs.evaluate import EvaluationMismatch, evaluate
from jobs.index import index
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, ray_cluster):
    """A tiny synthetic catalog, an untrained tiny model, and two indexes: the gallery only, and every split."""
    made = tiny_catalog_and_model(tmp_path_factory.mktemp("evaluate"))
    cfg, root = load_config(["tiny"]), made["root"]
    index(cfg, made["model"], made["catalog"], str(root / "gallery-index"), split="gallery")
    index(cfg, made["model"], made["catalog"], str(root / "all-index"), split="all")
    return made


def test_evaluate_counts_checks_and_writes_results(indexed, location):
    cfg = load_config(["tiny"], location.sets)
    out = location.url("eval")
    results = evaluate(cfg, str(indexed["root"] / "all-index"), indexed["catalog"], out, check=True)
    saved = json.loads(Storage(cfg.storage).read_text(join(out, "results.json")))
    assert saved["runs"] == json.loads(json.dumps(results["runs"]))
    assert saved["check"]["identical"] is True

    # the protocol's counts, recomputed from the catalog's labels
    catalog = Catalog.open(indexed["catalog"], indexed["storage"])
    names = catalog.schema.names
    q = catalog.rows(catalog.split_ids("query").tolist(), ["id", *names])
    g = catalog.rows(catalog.split_ids("gallery").tolist(), ["id", *names])
    expected = build_manipulations(
        np.stack([q[n] for n in names], 1).astype(int),
        np.stack([g[n] for n in names], 1).astype(int),
        names,
        catalog.schema.num_values,
    )
    assert saved["dataset"]["manipulations"] == len(expected) > 0
    assert saved["dataset"]["counts"] == expected.counts()
    assert saved["dataset"]["queries"] == len(q["id"]) and saved["dataset"]["gallery"] == len(g["id"])

    methods = [r["method"] for r in saved["runs"]]
    assert methods == ["full", "attribute_only", "attr_logp", "probe", "probe_attributes"]
    assert saved["format"] == 2 and [r["role"] for r in saved["runs"]] == ["model", *["baseline"] * 4]
    steps = ["load", "trunk_features", "probe_fit", "protocol", "topk", *methods[1:], "brute_force", "metrics"]
    assert list(saved["timings"]) == [*steps, "examples", "total"]
    # the probe: the tiny backbone has no pretrained weights, so a seeded random trunk's features (fit on them)
    probe = saved["probe"]
    assert (probe["backbone"], probe["weights"], probe["image_size"]) == ("tiny", "none", 64)
    assert set(probe["strength"]) == set(names) and set(probe["strength"].values()) <= set(cfg.probe.regularization)
    assert probe["fit_images"] + probe["validation_images"] == len(catalog.split_ids("train"))
    assert 0 < probe["mean_accuracy"] <= 1 and 0 < saved["model"]["mean_accuracy"] <= 1
    assert probe["gallery_rejected"]["count"] == 0 and probe["queries_rejected"]["count"] == 0
    top = table_rows(render_markdown(build_report([(out, read_results(json.dumps(saved), out))])), "Top-20")
    assert top["header"][-1] == "vs probe" and top["probe"][-1] == "–"
    assert float(top["full"][-1].split()[0]) == pytest.approx(at_20(saved, "full") - at_20(saved, "probe"), abs=1e-3)
    assert read_results(Storage(cfg.storage).read_text(join(out, "results.json")), out).model_dump(mode="json") == saved
    for run in saved["runs"]:
        assert run["k"] == list(range(1, cfg.eval.k_max + 1))
        top = np.array(run["average"]["top_k"])
        assert (np.diff(top) >= 0).all() and 0 <= top[0] and top[-1] <= 1  # a hit at K is a hit at K + 1
        assert set(run["groups"]) <= set(names)
    assert len(saved["examples"]) == cfg.report.examples
    example = saved["examples"][0]
    assert Image.open(io.BytesIO(base64.b64decode(example["png"]))).size[0] > 100
    assert len(example["results"]) == 4 and " -> " in example["change"]
    assert saved["model"]["variant"] == "full" and saved["index"]["version"] == 1


def at_20(results: dict, method: str) -> float:
    return next(r for r in results["runs"] if r["method"] == method)["average"]["top_k"][19]


def table_rows(markdown: str, title: str) -> dict[str, list[str]]:
    """The Markdown table under the heading that starts with ``## title``: its header row as "header", then first
    cell -> the other cells."""
    lines = markdown.split(f"## {title}", 1)[1].split("\n\n", 2)[1].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return {"header": cells[0][1:], **{row[0]: row[1:] for row in cells[2:]}}


def test_queries_embedded_when_the_index_holds_the_gallery_only(indexed, tmp_path):
    """Both ways of embedding them: in this process (a split within index.in_process_max), and on the actor pool."""
    cfg = load_config(["tiny"])
    a = evaluate(cfg, str(indexed["root"] / "all-index"), indexed["catalog"], str(tmp_path / "a"))
    for way, sets in (("here", []), ("pool", ["index.in_process_max=0"])):
        b = evaluate(
            load_config(["tiny"], sets), str(indexed["root"] / "gallery-index"), indexed["catalog"], str(tmp_path / way)
        )
        assert a["dataset"]["manipulations"] == b["dataset"]["manipulations"] > 0
        assert b["dataset"]["queries"] == a["dataset"]["queries"]
        for x, y in zip(a["runs"], b["runs"], strict=True):
            np.testing.assert_allclose(x["average"]["top_k"], y["average"]["top_k"])


def test_check_fails_loudly_on_a_disagreement(indexed, tmp_path, monkeypatch):
    import jobs.evaluate as job

    real = job.brute_force_topk

    def shifted(*args, **kwargs):
        top = real(*args, **kwargs)
        top.positions[0] = top.positions[0][::-1]
        return top

    monkeypatch.setattr(job, "brute_force_topk", shifted)
    with pytest.raises(EvaluationMismatch, match="differ for 1 of"):
        evaluate(
            load_config(["tiny"]), str(indexed["root"] / "all-index"), indexed["catalog"], str(tmp_path), check=True
        )


def test_a_model_with_a_fusion_weight_gets_its_fused_row(indexed, tmp_path):
    """model.pt's logp_weight (chosen by training, eval/fused_logp.py) adds a <method>+logp model row; at weight 0 it
    is the model's own ranking, so the wiring (its query and gallery arrays) is checked against the model's row."""
    storage = indexed["storage"]
    model = load_model(indexed["model"], storage)
    model.logp_weight = 0.0
    save_model(model, str(tmp_path / "fused.pt"), storage)
    cfg = load_config(["tiny"])
    index(cfg, str(tmp_path / "fused.pt"), indexed["catalog"], str(tmp_path / "index"), split="all")
    saved = evaluate(cfg, str(tmp_path / "index"), indexed["catalog"], str(tmp_path / "eval"))
    roles = [(r["method"], r["role"]) for r in saved["runs"]]
    assert roles[:3] == [("full", "model"), ("full+logp", "model"), ("attribute_only", "baseline")]
    assert saved["runs"][1]["average"]["top_k"] == saved["runs"][0]["average"]["top_k"]
    assert "full+logp" in saved["timings"]
    report = build_report([(str(tmp_path / "eval"), read_results(json.dumps(saved), "eval"))])
    assert [row for row, _ in report.accuracy][:1] == ["full"] and "full+logp" not in dict(report.accuracy)


def test_a_model_file_swapped_under_its_index_is_refused_by_evaluate_and_search(indexed, tmp_path):
    """The manifest records the model's sha256: evaluate and search check the file's bytes against it before they
    rank, whether the swapped model has the same shapes (it would give other figures) or others (it would fail in
    a reshape), and exit 2 naming both hashes."""
    import hashlib
    import subprocess
    import sys

    from fsnet.index.reader import ModelMismatch
    from tests.jobs.tiny_model import make_model

    storage, cfg = indexed["storage"], load_config(["tiny"])
    model_url = str(tmp_path / "model.pt")
    storage.write_bytes(model_url, storage.read_bytes(indexed["model"]))
    index(cfg, model_url, indexed["catalog"], str(tmp_path / "index"), split="all")
    recorded = "sha256:" + hashlib.sha256(storage.read_bytes(model_url)).hexdigest()
    catalog = Catalog.open(indexed["catalog"], storage)

    make_model(catalog, model_url, storage, seed=1)  # the same shapes, other weights
    swapped = "sha256:" + hashlib.sha256(storage.read_bytes(model_url)).hexdigest()
    with pytest.raises(ModelMismatch, match=rf"its sha256 is {swapped[:19]}\.\.\., .* records {recorded[:19]}\.\.\."):
        evaluate(cfg, str(tmp_path / "index"), indexed["catalog"], str(tmp_path / "eval"))
    assert not (tmp_path / "eval" / "results.json").exists()

    other = build_model(load_config(["tiny"], ["model.embed_dim=8"]).model, catalog.schema)  # other shapes
    save_model(other, model_url, storage)  # refused before anything reshapes
    for command in (
        ["jobs.evaluate", "--index", str(tmp_path / "index"), "--catalog", indexed["catalog"], "--out", str(tmp_path)],
        ["jobs.search", "--index", str(tmp_path / "index"), "--id", catalog.split_ids("gallery")[0], "-k", "3"],
    ):
        done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=300)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "is not the model" in lines[0] and recorded[:19] in lines[0], lines[0]


def test_a_catalog_packed_only_to_evaluate_on_is_evaluated_and_refused_for_training(indexed, tmp_path):
    """Every image a query or gallery image: a model trained on another catalog is evaluated on it (the probe, with
    nothing to fit on, says so in one line and is left out); training on it is one line before anything is
    written."""
    from fsnet.errors import CatalogError
    from jobs.pack import pack
    from jobs.train import train

    source = str(indexed["root"] / "synth")
    catalog_url = str(tmp_path / "eval-only")
    pack(load_config(["tiny"], [f"source.path={source}", "split.n_query=0.5", "split.n_gallery=0.5"]), catalog_url)
    catalog = Catalog.open(catalog_url, indexed["storage"])
    assert not len(catalog.split_ids("train"))
    cfg = load_config(["tiny"])
    index(cfg, indexed["model"], catalog_url, str(tmp_path / "index"))
    saved = evaluate(cfg, str(tmp_path / "index"), catalog_url, str(tmp_path / "eval"))
    assert "training split is empty" in saved["probe_unavailable"]
    assert [r["method"] for r in saved["runs"]] == ["full", "attribute_only", "attr_logp"]
    with pytest.raises(CatalogError, match=r"eval-only: no training images .* it can evaluate a model trained on"):
        train(cfg, catalog_url, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
