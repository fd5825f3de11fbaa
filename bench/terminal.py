"""Plain-text layout that fits the terminal: wrapped lists and matrices split into column blocks.

Width is ``$COLUMNS`` when set (what shells export and what tests set), else the terminal's, else 120.
"""
from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Sequence


def width() -> int:
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) >= 40:
        return int(env)
    return max(40, shutil.get_terminal_size((120, 24)).columns)


def wrapped(label: str, items: Sequence[str], total: int | None = None) -> list[str]:
    """``label: a, b, c`` wrapped under the label's indent."""
    total = total or width()
    return textwrap.wrap(", ".join(items), total, initial_indent=f"{label}: ",
                         subsequent_indent=" " * (len(label) + 2), break_on_hyphens=False) or [f"{label}:"]


def described(rows: Sequence[tuple[str, str]], indent: int = 2, total: int | None = None) -> list[str]:
    """``name  description`` rows, names padded to one column, descriptions wrapped under themselves."""
    total = total or width()
    name_w = max((len(n) for n, _ in rows), default=0)
    lead = " " * indent
    out = []
    for name, text in rows:
        first = f"{lead}{name.ljust(name_w)}  "
        out.extend(textwrap.wrap(text, total, initial_indent=first, subsequent_indent=" " * len(first),
                                 break_on_hyphens=False) or [first.rstrip()])
    return out


def matrix(row_names: Sequence[str], col_names: Sequence[str], cells: dict[tuple[str, str], str],
           total: int | None = None) -> list[str]:
    """A row x column table of short marks; columns that do not fit the width go to a further block."""
    total = total or width()
    name_w = max((len(r) for r in row_names), default=0)
    blocks: list[list[str]] = [[]]
    used = name_w
    for col in col_names:
        need = len(col) + 2
        if blocks[-1] and used + need > total:
            blocks.append([])
            used = name_w
        blocks[-1].append(col)
        used += need
    out: list[str] = []
    for k, block in enumerate(blocks):
        if k:
            out.append("")
        out.append(" " * name_w + "".join(f"  {c}" for c in block))
        for row in row_names:
            out.append(row.ljust(name_w) + "".join(f"  {cells.get((row, c), '').center(len(c))}" for c in block))
    return [line.rstrip() for line in out]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], keys: int = 1, wrap: dict[int, int] | None = None,
          total: int | None = None) -> list[str]:
    """A left-aligned text table that fits the width.

    The first ``keys`` columns are repeated in every block; the other columns go to further blocks when they do not
    fit. ``wrap`` maps a column index to its maximum width; longer cells there continue on following lines.
    """
    total = total or width()
    wrap = wrap or {}
    cells = [[_wrap_cell(str(c), wrap[i]) if i in wrap else [str(c)] for i, c in enumerate(row)] for row in rows]
    widths = [max([len(headers[i])] + [len(line) for row in cells for line in row[i]]) for i in range(len(headers))]
    key_w = sum(widths[:keys]) + 2 * keys
    blocks: list[list[int]] = [[]]
    used = key_w
    for i in range(keys, len(headers)):
        if blocks[-1] and used + widths[i] + 2 > total:
            blocks.append([])
            used = key_w
        blocks[-1].append(i)
        used += widths[i] + 2
    out: list[str] = []
    for k, block in enumerate(blocks):
        cols = list(range(keys)) + block
        if k:
            out.append("")
        out.append("  ".join(headers[i].ljust(widths[i]) for i in cols).rstrip())
        out.append("  ".join("-" * widths[i] for i in cols))
        for row in cells:
            for n in range(max(len(row[i]) for i in cols)):
                out.append("  ".join((row[i][n] if n < len(row[i]) else "").ljust(widths[i]) for i in cols).rstrip())
    return out


def _wrap_cell(text: str, limit: int) -> list[str]:
    """Comma-separated items on lines of their own, each wrapped to ``limit``."""
    items = text.split(", ")
    lines = [line for k, item in enumerate(items)
             for line in textwrap.wrap(item + ("," if k < len(items) - 1 else ""), limit, break_on_hyphens=False)]
    return lines or [""]
