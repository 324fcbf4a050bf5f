"""Tables fitted to the terminal's width (jobs/tables.py): at 80 and at 200 columns no name or number is cut;
columns that do not fit are left out from the right and named, and a long text folds."""

import io

import pytest
from rich.console import Console
from rich.table import Table

from jobs.tables import show

ATTRIBUTES = ["product_type", "pattern", "colour", "customer_group", "articleType", "baseColour", "season"]
METHODS = ["full", "full+logp", "attribute_only", "attr_logp", "probe", "probe_attributes"]


def printed(table: Table, width: int, **kwargs) -> str:
    out = io.StringIO()
    show(Console(file=out, width=width), table, **kwargs)
    return out.getvalue()


def top20() -> Table:
    table = Table(title="Top-20 accuracy (25,892 manipulations, 1,000 queries, 4,000 gallery images)")
    table.add_column("method")
    table.add_column("average", justify="right")
    for name in ATTRIBUTES:
        table.add_column(name, justify="right")
    for n, method in enumerate(METHODS):
        table.add_row(method, f"0.{n}23", *(f"0.{n}{a}5" for a in range(len(ATTRIBUTES))))
    return table


@pytest.mark.parametrize("width", [80, 200])
def test_every_shown_name_and_number_is_whole_and_the_left_out_columns_are_named(width):
    text = printed(top20(), width, where="results.json")
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    header = next(line for line in text.splitlines() if "method" in line)
    shown = [a for a in ATTRIBUTES if f" {a} " in header]
    for n, method in enumerate(METHODS):
        assert method in text and f"0.{n}23" in text  # the method and its average always stay
        assert all(f"0.{n}{ATTRIBUTES.index(a)}5" in text for a in shown)
    left_out = [a for a in ATTRIBUTES if a not in shown]
    if width == 200:
        assert not left_out and "not shown" not in text
    else:
        assert shown == ATTRIBUTES[: len(shown)] and left_out  # dropped from the right
        assert f"(not shown at this width: {', '.join(left_out)}; all of them in results.json)" in " ".join(
            text.split()
        ).replace("( ", "(")
    assert "Top-20 accuracy (25,892 manipulations" in text  # a title wider than the table is printed whole above it


@pytest.mark.parametrize("width", [80, 200])
def test_a_two_column_summary_folds_its_long_text_instead_of_cutting_it(width):
    path = "s3://bucket/catalogs/" + "/".join(f"level{n}" for n in range(12)) + "/catalog"
    table = Table(title="index v3", show_header=False)
    table.add_row("catalog", f"{path} (gallery)")
    table.add_row("indexed", "1,234,567 rows, faiss flat, dimension 256")
    text = printed(table, width, keep=2)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    joined = "".join(line.strip("│ ") for line in text.splitlines())
    assert path.replace(" ", "") in joined.replace(" ", "") and "1,234,567 rows" in text
