"""The report's tables from small hand-made Results: the numbers in the Markdown are the results' numbers, the best
of each column is marked, a baseline two files hold appears once, examples only of model runs."""

import pytest

from eval.report import build_report, curve_styles, render_markdown
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
