"""compare.html: a comparison (eval/comparison.py) as a self-contained page, in the report's style: the summary
sentence, then per group and averaged each K's difference with its interval; a difference whose interval excludes
0 is bold."""

from __future__ import annotations

import html

from eval.comparison import AVERAGE, Comparison, Figure, difference_text

COMPARISON_PAGE = "compare.html"
STYLE = (
    "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.headline{font-size:1.15em;background:#f1f7f1;"
    "border-left:4px solid #3a7d3a;padding:.6em 1em}</style>"
)


def render_comparison(c: Comparison, summary: str, head: int) -> str:
    e = html.escape
    groups = [g for g in c.top_k[f"top_{c.ks[0]}"] if g != AVERAGE] + [AVERAGE]
    header = "".join(f"<th>Top-{k}</th>" for k in c.ks) + f"<th>resamples ≤ 0 (Top-{head})</th>"
    rows = []
    for g in groups:
        cells = "".join(_cell(c.figure(k, g)) for k in c.ks)
        name = f"<strong>{e(g)}</strong>" if g == AVERAGE else e(g)
        rows.append(f"<tr><td>{name}</td>{cells}<td>{c.figure(head, g).share_not_above:.1%}</td></tr>")
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(c.new['method'])} against {e(c.base['method'])}</title>{STYLE}</head><body>",
            f"<h1>{e(c.new['method'])} against {e(c.base['method'])}</h1>",
            f'<p class="headline"><strong>{e(summary)}</strong></p>',
            f"<p>new: {e(c.new['method'])} of {e(c.new['results'])}<br>base: {e(c.base['method'])} of "
            f"{e(c.base['results'])}</p>",
            f"<table><tr><th>group</th>{header}</tr>",
            *rows,
            "</table>",
            f"<p>Each cell: new minus base, [{c.confidence:.0%} interval] from a {c.pairing} bootstrap over queries "
            f"(every manipulation of a drawn query together; {c.resamples:,} resamples, seed {c.seed}); bold where "
            "the interval leaves out 0. Manipulations: "
            + " and ".join(f"{m:,}" for m in dict.fromkeys(c.manipulations))
            + ".</p>",
            "</body></html>",
        ]
    )


def _cell(f: Figure) -> str:
    text = difference_text(f)
    clear = f.low > 0 or f.high < 0
    return f'<td title="base {f.base:.3f}, new {f.new:.3f}">{"<strong>" + text + "</strong>" if clear else text}</td>'
