"""fsnet evaluate / report / demo on a real local Ray, local and S3 storage, and the report in headless Chromium."""

import base64
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from eval.protocol import build_manipulations
from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.storage import Storage, join
from jobs.cli import app
from jobs.evaluate import EvaluationMismatch, evaluate
from jobs.index import index
from jobs.report import report
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
    assert methods == ["full", "attribute_only", "attr_logp"]
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


def test_queries_embedded_when_the_index_holds_the_gallery_only(indexed, tmp_path):
    cfg = load_config(["tiny"])
    a = evaluate(cfg, str(indexed["root"] / "all-index"), indexed["catalog"], str(tmp_path / "a"))
    b = evaluate(cfg, str(indexed["root"] / "gallery-index"), indexed["catalog"], str(tmp_path / "b"))
    assert a["dataset"]["manipulations"] == b["dataset"]["manipulations"]
    for x, y in zip(a["runs"], b["runs"]):
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


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.cells, self.open = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("meta", "img", "br"):
            self.open.append(tag)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "td" and "data-group" in attrs:
            self.cells.append(attrs)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def test_report_html_markdown_and_chromium(indexed, tmp_path):
    cfg = load_config(["tiny"])
    evaluate(cfg, str(indexed["root"] / "all-index"), indexed["catalog"], str(tmp_path / "eval"))
    results_url = str(tmp_path / "eval" / "results.json")
    second = json.loads(open(results_url).read())
    second["runs"] = [dict(second["runs"][0], method="rank_lg")] + second["runs"][
        1:
    ]  # a second run, as an ablation has
    (tmp_path / "eval2").mkdir()
    (tmp_path / "eval2" / "results.json").write_text(json.dumps(second))
    page = report(
        Storage(cfg.storage), [results_url, str(tmp_path / "eval2" / "results.json")], str(tmp_path / "report")
    )

    text = open(page).read()
    parser = Collect()
    parser.feed(text)
    parser.close()
    assert not parser.open and parser.tags[0] == "html"
    assert parser.images and all(src.startswith("data:image/png;base64,") for src in parser.images)  # self-contained
    results = json.loads(open(results_url).read())
    k = min(20, cfg.eval.k_max)
    by_method = {
        "full": results["runs"][0],
        "rank_lg": results["runs"][0],
        "attribute_only": results["runs"][1],
        "attr_logp": results["runs"][2],
    }
    assert {c["data-method"] for c in parser.cells} == set(by_method)  # each baseline once, though both files hold them
    for cell in parser.cells:
        run = by_method[cell["data-method"]]
        curve = (
            run["average"]["top_k"] if cell["data-group"] == "average" else run["groups"][cell["data-group"]]["top_k"]
        )
        assert float(cell["data-value"]) == curve[k - 1]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "![Top-K curves](curves.png)" in md and (tmp_path / "report" / "curves.png").exists()
    assert f"{results['runs'][0]['average']['top_k'][k - 1]:.3f}" in md

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:  # the README's test command on a fresh machine: CI (CI=true) installs it and requires it
        assert not os.environ.get("CI"), "headless Chromium renders the report: .ci/run installs Debian's chromium"
        pytest.skip("headless Chromium is not installed (apt-get install chromium); the report's HTML was checked")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            f"file://{page}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # text and plots drawn, not a blank page


@pytest.mark.s3
def test_ablation_shares_stages_and_reports(indexed, s3_endpoint):
    """The comparison command: two FSN variants (sharing stages), the ADDE-style model and one baseline, one report."""
    from tests.conftest import BUCKET, s3_sets

    sets = [
        *s3_sets(s3_endpoint),
        "train.stage1.epochs=1",
        "train.stage2.epochs=1",
        "train.stage3.epochs=1",
        "train.adde.epochs=1",
        "report.examples=1",
    ]
    out = f"s3://{BUCKET}/ablation"
    result = CliRunner().invoke(
        app,
        [
            "ablation",
            "--config",
            "tiny",
            "--catalog",
            indexed["catalog"],
            "--variants",
            "rank_lg,full,attr_logp,adde",
            "--out",
            out,
            *[x for s in sets for x in ("--set", s)],
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "stage1 shared from" in result.output and "memory shared from" in result.output
    )  # rank_lg trains stage 3 only
    assert "adde/run: stage1 shared" not in result.output  # another network: nothing shared
    storage = Storage(load_config([], s3_sets(s3_endpoint)).storage)
    html = storage.read_text(f"{out}/report/report.html")
    for method in ("rank_lg", "full", "adde", "attr_logp"):
        assert f'data-method="{method}"' in html, method
    assert 'data-method="attribute_only"' not in html  # only the baselines named
    rank_lg = json.loads(storage.read_text(f"{out}/rank_lg/eval/results.json"))
    assert rank_lg["model"]["variant"] == "rank_lg" and rank_lg["training"]["variant"] == "rank_lg"
    adde = json.loads(storage.read_text(f"{out}/adde/eval/results.json"))
    assert (
        adde["runs"][0]["method"] == "adde"
        and adde["training"]["kind"] == "adde"
        and [r["method"] for r in adde["runs"]] == ["adde", "attr_logp"]
    )
    assert adde["model"]["global_dim"] == 5 * load_config(["tiny"]).model.embed_dim  # the concatenated chunks
    # its factorized Top-K (additive memory, the queries' labels as old values) equals faiss on explicit F + M i
    cfg = load_config(["tiny"], [*s3_sets(s3_endpoint), "report.examples=0"])
    checked = evaluate(cfg, f"{out}/adde/index", indexed["catalog"], f"{out}/adde/eval-check", check=True)
    assert checked["check"]["identical"]
