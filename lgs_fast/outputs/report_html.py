"""The report's HTML building blocks: escaped text, tables, cards, sections, charts and folded details."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

import polars as pl

from lgs_fast.config import (
    currency,
)
from lgs_fast.outputs.wording import (
    headline,
)

if TYPE_CHECKING:
    pass


Tables = dict[str, pl.DataFrame]


RENDER_SCRIPT = """
for (const el of document.querySelectorAll("[data-spec]")) {
  const spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
  vegaEmbed(el, spec, {renderer: "svg", actions: false}).catch((err) => console.error(err));
}
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def html_table(frame: pl.DataFrame, columns: dict[str, str], numeric: dict[str, str]) -> str:
    """An HTML table of `frame`: `columns` maps column → heading, `numeric` column → format."""
    head = "".join(
        f'<th class="{"n" if c in numeric else ""}">{esc(t)}</th>' for c, t in columns.items()
    )
    rows = []
    for row in frame.select(list(columns)).iter_rows(named=True):
        cells = []
        for c in columns:
            value = row[c]
            if isinstance(value, bool):
                cells.append(f"<td>{'yes' if value else 'no'}</td>")
            elif c in numeric and value is not None:
                cells.append(f'<td class="n">{esc(format(value, numeric[c]))}</td>')
            else:
                cells.append(f"<td>{esc(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_cards(tables: Tables) -> str:
    """Two rows of cards: the counts, then the money."""
    figures = headline(tables)
    rows = ([f for f in figures if not f.money], [f for f in figures if f.money])
    return "".join(
        '<div class="cards">'
        + "".join(
            f'<div class="card">{esc(f.label)}<b>{esc(f.value)}</b>'
            + (f"<small>{esc(f.detail)}</small>" if f.detail else "")
            + "</div>"
            for f in row
        )
        + "</div>"
        for row in rows
    )


def spec_json(spec: dict[str, Any]) -> str:
    text = json.dumps(spec, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


MONEY_CELL = ",.2f"


def anchored(anchor: str, html: str) -> str:
    """A section's HTML with its first heading given `anchor` as id (for the contents)."""
    return html.replace("<h2>", f'<h2 id="{anchor}">', 1)


def pounds(value: float) -> str:
    """Money in prose: whole pounds (a forecast is not exact to the penny)."""
    return f"-{currency()}{-value:,.0f}" if value < 0 else f"{currency()}{value:,.0f}"


def html_section(
    title: str, sentences: list[str], specs: dict[str, dict[str, Any]], chart: str
) -> str:
    """A report section: its heading, a paragraph per sentence, then its chart."""
    parts = [
        f"<h2>{esc(title)}</h2>",
        *(f"<p>{esc(s)}</p>" for s in sentences),
        html_chart(chart, specs),
    ]
    return "\n".join(p for p in parts if p)


def html_chart(name: str, specs: dict[str, dict[str, Any]]) -> str:
    return f'<div class="chart" data-spec="spec-{esc(name)}"></div>' if name in specs else ""


def html_details(summary: str, parts: list[str]) -> str:
    """Technical detail folded under a one-line summary, for analysts."""
    body = "\n".join(p for p in parts if p)
    return f"<details><summary>{esc(summary)}</summary>\n{body}\n</details>" if body else ""
