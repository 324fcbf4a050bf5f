"""The report's tables from small hand-made Results: the numbers in the Markdown are the results' numbers, the best
of each column is marked, a baseline two files hold appears once, examples only of model runs; a file with
bootstrap intervals shows them (± cells, their ends in the HTML titles, the headline's paired interval), one without
renders as before."""

import io
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from eval.report import build_report, curve_styles, curves_png, headline_text, render_html, render_markdown
from eval.results import Results
from fsnet.errors import FsnetError


def results(model: str, color: list[float], size: list[float], examples: int = 1) -> Results:
    """One results.json: the model's run and an attr_logp baseline, curves over K = 1..3."""

    def curves(top_k: list[float]) -> dict:
        return {"count": 4, "top_k": top_k, "ndcg_full": [0.1, 0.2, 0.3], "ndcg_attribute": [0.4, 0.5, 0.6]}

    def run(method: str, role: str, color: list[float], size: list[float]) -> dict:
        average = [(a + b) / 2 for a, b in zip(color, size)]
        return {
            "method": method,
            "role": role,
            "k": [1, 2, 3],
            "groups": {"color": curves(color), "size": curves(size)},
            "average": curves(average) | {"ndcg_full": [0.2, 0.3, 0.35], "ndcg_attribute": [0.6, 0.7, 0.8]},
        }

    return Results.model_validate(
        {
            "runs": [run(model, "model", color, size), run("attr_logp", "baseline", [0.0, 0.1, 0.2], [0.1, 0.1, 0.1])],
            "dataset": {
                "catalog": "/c",
                "queries": 3,
                "gallery": 9,
                "manipulations": 4,
                "gallery_missing": {"count": 1},
            },
            "model": {"backbone": "tiny", "image_size": 64, "variant": model},
            "index": {"images_per_s": 50.0},
            "hardware": {"machine": "x86_64", "cpus": 2, "gpu": None},
            "throughput": {"manipulations_per_s": 1234.0},
            "training": {"seconds": {"stage1": 10.0, "stage2": 5.0}},
            "examples": [
                {"method": model, "query": f"q{n}", "change": "color: red -> blue", "results": [], "png": ""}
                for n in range(examples)
            ],
        }
    )


def table_rows(markdown: str, title: str) -> dict[str, list[str]]:
    """The rows of the Markdown table under ``## title``: first cell -> the other cells."""
    lines = markdown.split(f"## {title}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: row[1:] for row in cells}


def test_markdown_numbers_are_the_results_numbers():
    full = results("full", color=[0.25, 0.5, 0.75], size=[0.5, 0.5, 1.0], examples=2)
    rank = results("rank_lg", color=[0.5, 0.625, 0.875], size=[0.25, 0.25, 0.5])
    report = build_report([("a.json", full), ("b.json", rank)])
    md = render_markdown(report)

    assert report.k == 3 and report.groups == ["color", "size", "average"]
    top = table_rows(md, "Top-3 accuracy per attribute")
    assert list(top) == ["full", "attr_logp", "rank_lg"]  # the baseline both files hold: once, from the first
    # K = 3: full (0.75, 1.0, avg 0.875), rank_lg (0.875, 0.5, avg 0.6875), attr_logp (0.2, 0.1, 0.15); best bold
    assert top["full"] == ["0.750", "**1.000**", "**0.875**"]
    assert top["rank_lg"] == ["**0.875**", "0.500", "0.688"]
    assert top["attr_logp"] == ["0.200", "0.100", "0.150"]

    ndcg = table_rows(md, "NDCG@3 (average)")  # NDCG@10 asked, the curves end at 3
    assert ndcg["full"] == ["0.350", "0.800"] and ndcg["attr_logp"] == ["0.350", "0.800"]

    facts = table_rows(md, "Runs")
    assert facts["variant"] == ["full", "baseline (model of full)", "rank_lg"]
    assert facts["training time"] == ["15 s", "–", "15 s"]
    assert facts["evaluation throughput"] == ["1,234 manipulations/s", "–", "1,234 manipulations/s"]
    assert facts["queries / gallery / manipulations"] == ["3 / 9 / 4"] * 3
    assert facts["gallery images not indexed"] == ["1"] * 3

    assert [(r.label, x.query) for r, x in report.examples] == [("full", "q0"), ("full", "q1"), ("rank_lg", "q0")]
    assert "![example](example-02.png)" in md and "example-03.png" not in md
    assert [c.label for c in report.curves["size"]] == ["full", "attr_logp", "rank_lg"]
    assert report.curves["average"][0].top_k == full.runs[0].average.top_k


def test_a_single_run_marks_nothing_and_two_models_of_one_name_are_told_apart():
    alone = results("full", [0.1, 0.2, 0.3], [0.2, 0.2, 0.2])
    alone = alone.model_copy(update={"runs": alone.runs[:1]})  # the model's run only (eval.baselines=[])
    one = render_markdown(build_report([("a.json", alone)]))
    assert "**" not in table_rows(one, "Top-3 accuracy per attribute")["full"][0]
    twice = build_report(
        [("a.json", results("full", [0.1, 0.2, 0.3], [0.2] * 3)), ("b.json", results("full", [0.3] * 3, [0.2] * 3))]
    )
    assert [r.label for r in twice.runs] == ["full", "attr_logp", "full (b.json)"]


def test_no_runs_is_one_line():
    empty = results("full", [0.1] * 3, [0.1] * 3).model_copy(update={"runs": []})
    with pytest.raises(FsnetError, match="^no runs in a.json$"):
        build_report([("a.json", empty)])


def with_probe(base: Results, probe_color: list[float], probe_size: list[float]) -> Results:
    """``base`` with a probe run and the probe's facts, and the model's held-out accuracy."""
    probe_run = results("probe", probe_color, probe_size).runs[0].model_copy(update={"role": "baseline"})
    facts = {
        "backbone": "tiny",
        "weights": "none",
        "image_size": 64,
        "features": 8,
        "cache": "/c/trunk-features/x",
        "fit_images": 90,
        "validation_images": 10,
        "strength": {"color": 0.1, "size": None},
        "validation_accuracy": {"color": 0.5, "size": 1.0},
        "accuracy": {"color": 0.5, "size": 0.75},
        "mean_accuracy": 0.625,
        "fit_s": 1.5,
        "gallery_rejected": {"count": 2},
        "queries_rejected": {"count": 0},
    }
    model = base.model.model_copy(update={"accuracy": {"color": 0.25, "size": None}, "mean_accuracy": 0.25})
    return Results.model_validate(
        base.model_dump()
        | {"runs": [*base.model_dump()["runs"], probe_run.model_dump()], "probe": facts}
        | {"model": model.model_dump()}
    )


def test_every_run_against_its_own_evaluations_probe_and_the_accuracies():
    full = with_probe(results("full", [0.25, 0.5, 0.75], [0.5, 0.5, 1.0]), [0.5] * 3, [0.5] * 3)
    rank = with_probe(results("rank_lg", [0.5, 0.625, 0.875], [0.25, 0.25, 0.5]), [0.25] * 3, [0.25] * 3)
    md = render_markdown(build_report([("a.json", full), ("b.json", rank)]))
    top = table_rows(md, "Top-3 accuracy per attribute")
    # K = 3 averages: full 0.875, attr_logp 0.15, probe of a.json 0.5; rank_lg 0.6875, probe of b.json 0.25
    assert top["full"][-1] == "+0.375" and top["rank_lg"][-1] == "+0.438" and top["attr_logp"][-1] == "-0.350"
    assert top["probe"][-1] == "–" and "| method | color | size | average | vs probe |" in md
    accuracy = table_rows(md, "Held-out classifier accuracy")
    assert accuracy == {
        "full": ["0.250", "–", "0.250"],
        "rank_lg": ["0.250", "–", "0.250"],
        "probe": ["0.500", "0.750", "0.625"],
    }
    assert "probe: tiny (none) frozen at 64 px, 8 pooled features" in md and "(color 0.1, size –)" in md
    assert "2 gallery images without trunk features ranked last" in md
    unavailable = results("full", [0.1] * 3, [0.1] * 3).model_copy(update={"probe_unavailable": "probe: no labels"})
    md = render_markdown(build_report([("c.json", unavailable)]))
    assert "vs probe" not in md and "c.json: probe: no labels" in md and "Held-out" not in md


def test_each_method_has_its_own_colour_and_its_fused_twin_that_colour_dashed():
    labels = ["wo_rank", "wo_rank+logp", "rank", "rank+logp", "rank_l", "rank_lg", "full", "full+logp", "full_ff"]
    labels += ["full_ff+logp", "adde", "adde+logp", "attribute_only", "attr_logp", "probe", "probe_attributes"]
    styles = curve_styles(labels)
    methods = [label for label in labels if not label.endswith("+logp")]
    assert len({styles[m][0] for m in methods}) == len(methods) == 11  # the default cycle has ten colours
    assert all(styles[m][1] == "-" for m in methods)
    for fused in (label for label in labels if label.endswith("+logp")):
        assert styles[fused] == (styles[fused.removesuffix("+logp")][0], "--")


def test_the_headline_puts_each_models_best_ranking_against_its_probe():
    base = with_probe(results("full", [0.25, 0.5, 0.75], [0.5, 0.5, 1.0]), [0.5] * 3, [0.25] * 3)
    fused = base.runs[0].model_copy(update={"method": "full+logp"}, deep=True)
    fused.average.top_k = [0.5, 0.75, 0.9375]
    assert base.runs[0].average.top_k[-1] == 0.875
    with_fused = base.model_copy(update={"runs": [base.runs[0], fused, *base.runs[1:]]})
    report = build_report([("a.json", with_fused), ("b.json", results("rank_lg", [0.5] * 3, [0.5] * 3))])
    first, second = report.headlines
    # K = 3: full+logp 0.9375 (its fused row, not the model's own 0.875) against the probe's (0.5 + 0.25) / 2
    assert (first.method, first.top, first.probe) == ("full+logp", 0.9375, 0.375)
    assert first.difference == pytest.approx(0.5625)
    assert (second.method, second.probe) == ("rank_lg", None)  # no probe in that evaluation: said, not invented
    md = render_markdown(report)
    head = md.split("## Top-3", 1)[0]
    assert (
        "**full+logp: Top-3 0.938 against the probe's 0.375 (frozen tiny at 64 px + logistic regression): +0.562**"
        in head
    )
    assert "**rank_lg: Top-3 0.500 (no probe in this evaluation)**" in head


def with_intervals(base: Results, resamples: int = 1000) -> Results:
    """``base`` as evaluate writes it with eval.resamples > 0: every curve's interval from 0.03 below it to 0.01
    above (± 0.020), the bootstrap's facts, and, when it has a probe run, the model's paired headline at K = 3."""
    data = base.model_dump()
    for run in data["runs"]:
        for curves in [*run["groups"].values(), run["average"]]:
            curves["interval"] = {
                key: {"low": [x - 0.03 for x in curves[key]], "high": [x + 0.01 for x in curves[key]]}
                for key in ("top_k", "ndcg_full", "ndcg_attribute")
            }
    data["bootstrap"] = {"resamples": resamples, "confidence": 0.95, "seed": 0, "unit": "query"}
    runs = {run["method"]: run for run in data["runs"]}
    if "probe" in runs:
        model, probe = data["runs"][0], runs["probe"]
        value, reference = model["average"]["top_k"][2], probe["average"]["top_k"][2]
        data["headline"] = {
            "method": model["method"],
            "against": "probe",
            "k": 3,
            "value": value,
            "reference": reference,
            "difference": value - reference,
            "low": 0.3,
            "high": 0.45,
            "share_not_above": 0.0,
        }
    return Results.model_validate(data)


class Cells(HTMLParser):
    """The attributes and text of every <td> of an HTML page, and the text of each <p class=...> by class."""

    def __init__(self):
        super().__init__()
        self.cells, self.paragraphs, self._open = [], {}, None

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self.cells.append(dict(attrs) | {"text": ""})
            self._open = self.cells[-1]
        elif tag == "p":
            self._open = {"text": ""}
            self.paragraphs.setdefault(dict(attrs).get("class"), []).append(self._open)

    def handle_endtag(self, tag):
        if tag in ("td", "p"):
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data


def test_intervals_show_as_plus_minus_half_their_width_and_the_headline_as_its_paired_interval():
    full = with_intervals(with_probe(results("full", [0.25, 0.5, 0.75], [0.5, 0.5, 1.0]), [0.5] * 3, [0.5] * 3))
    rank = results("rank_lg", [0.5, 0.625, 0.875], [0.25, 0.25, 0.5])  # written before intervals were
    report = build_report([("a.json", full), ("b.json", rank)])
    md = render_markdown(report)

    top = table_rows(md, "Top-3 accuracy per attribute")
    # K = 3: full (0.75, 1.0, avg 0.875), probe (0.5, 0.5, 0.5); each from 0.03 below to 0.01 above: ± 0.020
    assert top["full"] == ["0.750 ± 0.020", "**1.000 ± 0.020**", "**0.875 ± 0.020**", "+0.375 [+0.300, +0.450]"]
    assert top["probe"] == ["0.500 ± 0.020", "0.500 ± 0.020", "0.500 ± 0.020", "–"]
    assert top["attr_logp"][-1] == "-0.350"  # no paired interval: the headline is the model's alone
    assert top["rank_lg"] == ["**0.875**", "0.500", "0.688", "+0.188"]  # its file has none: as before
    ndcg = table_rows(md, "NDCG@3 (average)")
    assert ndcg["full"] == ["0.350 ± 0.020", "0.800 ± 0.020"] and ndcg["rank_lg"] == ["0.350", "0.800"]
    note = (
        "±: half the 95% interval from a bootstrap over queries (every manipulation of a drawn query together, "
        "1,000 resamples)."
    )
    assert note in md and "[low, high] in vs probe: the difference's interval from a paired bootstrap" in md
    first, second = report.headlines
    sentence = (
        "full: Top-3 0.875 against the probe's 0.500 (frozen tiny at 64 px + logistic regression): +0.375, "
        "95% interval +0.300 to +0.450 (paired bootstrap over 3 queries, 1,000 resamples)"
    )
    assert f"**{sentence}**" in md.split("## Top-3", 1)[0] and headline_text(first, report.k) == sentence
    assert (
        second.paired is None
        and headline_text(second, report.k) == "rank_lg: Top-3 0.688 (no probe in this evaluation)"
    )

    page = Cells()
    page.feed(render_html(report, b""))
    cell = next(c for c in page.cells if c.get("data-method") == "full" and c.get("data-group") == "color")
    assert cell["text"] == "0.750 ± 0.020" and cell["title"] == "95% interval 0.720–0.760"
    assert float(cell["data-value"]) == 0.75 and float(cell["data-low"]) == pytest.approx(0.72)
    best = next(c for c in page.cells if c.get("data-method") == "full" and c.get("data-group") == "average")
    assert best["text"] == "0.875 ± 0.020"  # in <b>: the column's best
    vs = next(c for c in page.cells if c.get("data-vs-probe") == "full")
    assert vs["text"] == "+0.375 [+0.300, +0.450]" and vs["title"] == "95% interval +0.300 to +0.450"
    plain = next(c for c in page.cells if c.get("data-method") == "rank_lg" and c.get("data-group") == "color")
    assert plain["text"] == "0.875" and "title" not in plain
    assert [p["text"] for p in page.paragraphs["interval"]][0] == note
    assert page.paragraphs["headline"][0]["text"] == sentence
    assert any(c["text"] == "0.800 ± 0.020" and c["title"] == "95% interval 0.770–0.810" for c in page.cells)


def test_a_headline_at_another_k_or_of_another_run_adds_no_interval():
    base = with_intervals(with_probe(results("full", [0.25, 0.5, 0.75], [0.5, 0.5, 1.0]), [0.5] * 3, [0.5] * 3))
    for update in ({"k": 20}, {"method": "full+logp"}):
        other = base.model_copy(update={"headline": base.headline.model_copy(update=update)})
        report = build_report([("a.json", other)])
        assert report.headlines[0].paired is None and report.vs_probe_interval == [None] * 3
        assert table_rows(render_markdown(report), "Top-3 accuracy per attribute")["full"][-1] == "+0.375"
    unknown = with_intervals(results("full", [0.1] * 3, [0.1] * 3)).model_copy(update={"bootstrap": None})
    md = render_markdown(build_report([("a.json", unknown)]))  # a hand-made file: intervals, no bootstrap facts
    assert "0.100 ± 0.020" in md and "(every manipulation of a drawn query together)." in md


def test_without_intervals_nothing_changes():
    full = with_probe(results("full", [0.25, 0.5, 0.75], [0.5, 0.5, 1.0]), [0.5] * 3, [0.5] * 3)
    report = build_report([("a.json", full)])
    md, page = render_markdown(report), render_html(report, b"")
    assert "±" not in md and "±" not in page and "title=" not in page and "[low, high]" not in md
    assert report.interval_note is None and report.vs_probe_interval == [None] * 3
    assert table_rows(md, "Top-3 accuracy per attribute")["full"] == ["**0.750**", "**1.000**", "**0.875**", "+0.375"]


def test_the_curves_draw_each_interval_as_a_band():
    plain = with_probe(results("full", [0.25, 0.5, 0.75], [0.5, 0.5, 1.0]), [0.5] * 3, [0.5] * 3)
    banded = with_intervals(plain)
    report = build_report([("a.json", banded)])
    assert report.curves["average"][0].band.low == banded.runs[0].average.interval["top_k"].low
    without, with_bands = (
        np.asarray(Image.open(io.BytesIO(curves_png(build_report([("a.json", x)]))))) for x in (plain, banded)
    )
    assert without.shape == with_bands.shape and (without != with_bands).any()
