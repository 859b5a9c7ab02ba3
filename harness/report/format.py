"""The one number formatter and the markdown building blocks every report uses.

Undefined numbers (None, NaN, inf) print as "n/a", never as NaN; text from records or a
spec is made safe for a table cell.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.report.data import RunData


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        text = f"{value:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return str(value)


def fmt_p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def fmt_usd(value: float | None) -> str:
    """Dollars: n/a when unknown (no price for the model), 4 decimals below $1."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def fmt_usage(usage: Mapping[str, Any]) -> str:
    """A judge's calls, tokens and cost (its manifest ``usage``) on one line."""
    text = (
        f"{usage.get('calls', 0)} calls ({usage.get('cache_hits', 0)} from the cache), "
        f"{usage.get('input_tokens', 0):,} input + {usage.get('output_tokens', 0):,} output "
        f"tokens, cost {fmt_usd(usage.get('cost_usd'))}"
    )
    if usage.get("price") is None:
        return text + " (no price for this model)"
    return (
        text + f" (all at the online price {fmt_usd(usage.get('cost_online_usd'))}, "
        f"at the batch price {fmt_usd(usage.get('cost_batch_usd'))})"
    )


_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+!|~>-])")


def md_text(text: str) -> str:
    """Text from a spec or records (a description, a name, a prompt) shown as itself in
    markdown: HTML tags, links, emphasis and headings in it are escaped, not rendered."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\r", ""))


def cell(text: str, limit: int | None = None) -> str:
    """Text made safe for one markdown table cell (HTML tags in it are escaped)."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "")
        .replace("\n", "<br>")
        or " "
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def figure_md(ref: Any) -> str:
    """A figure linked in place (``ref``: harness.report.figures.FigureRef), with the notes on
    what it leaves out; a figure that could not be drawn is named with the reason."""
    lines = [f"![{ref.title}]({ref.path})" if ref.path else f"*{ref.title}: not drawn.*"]
    if ref.notes:
        lines += ["", "Not drawn or left out: " + "; ".join(ref.notes) + "."]
    return "\n".join(lines)


def by_scorer(
    run: RunData,
    comps: Sequence[Mapping[str, Any]],
    header: Sequence[str],
    rows: Callable[[Sequence[Mapping[str, Any]]], list[list[str]]],
    after: Callable[[str], str] | None = None,
) -> list[str]:
    """One table for a single scorer; with several, one ``### scorer`` table each (so a
    report with many metrics stays readable). ``after(scorer)`` adds text below a table."""
    scorers = list(dict.fromkeys(str(c["scorer"]) for c in comps))
    if len(scorers) <= 1:
        out = [table(header, rows(comps))]
        extra = after(scorers[0]) if after and scorers else ""
        return out + (["", extra] if extra else [])
    out = []
    for s in scorers:
        out += ["", f"### {s}", "", table(header, rows([c for c in comps if c["scorer"] == s]))]
        extra = after(s) if after else ""
        if extra:
            out += ["", extra]
    return out[1:]
