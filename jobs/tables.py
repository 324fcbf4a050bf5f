"""Tables that fit the terminal they are printed in, whatever its width: a name or a number is never cut.

rich shrinks a table that is wider than the console by cutting its cells (``product_ty…``, ``0.3…``). ``show``
prints a table with every column at its natural width instead: the columns that do not fit are left out from the
right (a job puts its summary columns first), and one line says which were left out and where they all are
(results.json, train_metrics.jsonl). A table whose kept columns still do not fit (a long path in a two-column
summary) folds its text onto more lines rather than cutting it. A title wider than the table is printed above it.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

CELL_PADDING = 2  # rich's default (0, 1) padding: a space either side of each cell


def natural_widths(table: Table, console: Console) -> list[int]:
    """Each column's width with no cell wrapped: its widest cell or header."""
    options = console.options
    widths = []
    for column in table.columns:
        renderables = [column.header, *column.cells]
        widths.append(max(Measurement.get(console, options, r).maximum for r in renderables if r is not None))
    return widths


def table_width(widths: list[int], table: Table) -> int:
    """The printed width of columns of ``widths``: cell padding plus the box's vertical lines."""
    lines = len(widths) + 1 if table.show_edge else len(widths) - 1
    return sum(w + CELL_PADDING for w in widths) + (max(lines, 0) if table.box is not None else 0)


def fitted(table: Table, width: int, keep: int = 1, console: Console | None = None) -> tuple[Table, list[str]]:
    """(a copy of ``table`` holding the columns that fit ``width`` at their natural widths, the left-out columns'
    headers). The first ``keep`` columns always stay; when even they do not fit, their text folds."""
    console = console or Console(width=width)
    widths = natural_widths(table, console)
    count = len(widths)
    while count > keep and table_width(widths[:count], table) > width:
        count -= 1
    folds = table_width(widths[:count], table) > width
    out = Table(
        title=table.title,
        caption=table.caption,
        show_header=table.show_header,
        show_edge=table.show_edge,
        box=table.box,
        title_justify=table.title_justify,
    )
    for column, natural in zip(table.columns[:count], widths):
        out.add_column(
            column.header,
            justify=column.justify,
            style=column.style,
            header_style=column.header_style,
            no_wrap=not folds,
            overflow="fold",
            min_width=None if folds else natural,
        )
    for row in zip(*(list(c.cells) for c in table.columns[:count])):
        out.add_row(*row)
    if out.title is not None and Measurement.get(console, console.options, out.title).maximum > min(
        width, table_width(widths[:count], table)
    ):
        out.title = None  # printed above the table by ``show``: rich would wrap it to the table's width
    return out, [str(c.header) for c in table.columns[count:]]


def show(console: Console, table: Table, *, keep: int = 1, where: str | None = None) -> None:
    """Print ``table`` fitted to the console's width (``fitted``); a line names the columns left out and
    ``where`` the full figures are."""
    out, left_out = fitted(table, console.width, keep, console)
    if out.title is None and table.title is not None:
        console.print(table.title, style="italic", highlight=False)
    console.print(out)
    if left_out:
        more = f"; all of them in {where}" if where else ""
        console.print(f"(not shown at this width: {', '.join(left_out)}{more})", highlight=False)
