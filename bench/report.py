"""Output shared by the benchmark scripts: their tables are Markdown, to paste into the README."""

from __future__ import annotations

from decimal import Decimal


def number(value: float | Decimal) -> str:
    """A whole number as it is, anything else with two decimals."""
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, each column padded to its widest cell."""
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    text.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(text)
