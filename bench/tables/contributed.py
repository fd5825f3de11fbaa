"""Contributed methods as extra columns (or rows) of a paper table: ``bench table ID --with METHOD``.

A paper table lays its methods along one axis (thesis 4.5: columns real-only, Pix2PixHD, ..., DiDGen). A contributed
method gets one more entry on that axis, whose cells ask what the paper methods' cells ask (task, dataset, model,
metric, the row's settings such as ``n_real``) with the method swapped in; method-specific settings of the paper's
entries (a column's ``n_generated``) are not carried over. A cell takes the method's records only from the
protocols of the paper cells it sits beside (the same row, for methods in columns): a record of another protocol
(a plain run next to the S_1k twin) is never shown as comparable. Where no paper cell beside it is reproduced,
the method's matching records fill it with a note saying the protocol could not be compared.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from bench.tables.paper import Axis, PaperTable
from bench.tables.reproduce import CellResult, TableResult, reproduce_cell

CONTRIBUTED = "contributed"  # Axis.extra flag of an entry added for a contributed method


class WithError(ValueError):
    """``--with`` cannot apply to this table (one line)."""


def method_axis(table: PaperTable) -> str | None:
    """``"columns"`` or ``"rows"``: the axis whose entries name methods; None for a table of one method."""
    if any("method" in c.query for c in table.columns):
        return "columns"
    if any("method" in r.query for r in table.rows):
        return "rows"
    return None


def axis_methods(table: PaperTable) -> set[str]:
    axis = method_axis(table)
    entries = table.columns if axis == "columns" else table.rows if axis == "rows" else ()
    return {e.query["method"] for e in entries if isinstance(e.query.get("method"), str)}


def _residual(axis: Axis) -> dict[str, Any]:
    return {k: v for k, v in axis.query.items() if k not in ("method", "setting")}


def _groups(entries: Sequence[Axis]) -> list[tuple[dict[str, Any], list[Axis]]]:
    """Method entries grouped by what else they ask (a model, a dataset): one contributed entry per group."""
    out: dict[str, tuple[dict[str, Any], list[Axis]]] = {}
    for entry in entries:
        if "method" not in entry.query:
            continue
        residual = _residual(entry)
        out.setdefault(json.dumps(residual, sort_keys=True, default=str), (residual, []))[1].append(entry)
    return list(out.values())


def _group_label(residual: dict[str, Any]) -> str:
    parts = []
    for value in residual.values():
        if isinstance(value, dict):  # per profile: the mini value reads as well as any
            value = value.get("mini", next(iter(value.values()), ""))
        parts.append(str(value))
    return " · ".join(parts)


def with_methods(result: TableResult, methods: Sequence[str], records: Sequence[dict[str, Any]]) -> TableResult:
    """``result`` with one more entry per method (and group) on the table's method axis, filled from ``records``."""
    table = result.table
    axis = method_axis(table)
    if axis is None:
        raise WithError(f"{table.id} compares settings of one method; --with needs a table whose rows or columns "
                        "are methods")
    present = axis_methods(table)
    for method in methods:
        if method in present:
            raise WithError(f"{method} is already a {axis[:-1]} of {table.id}")
    entries = table.columns if axis == "columns" else table.rows
    groups = _groups(entries)
    added: list[tuple[Axis, list[Axis]]] = []
    for method in methods:
        for residual, members in groups:
            suffix = f" · {_group_label(residual)}" if len(groups) > 1 and residual else ""
            key = f"with:{method}" + (f":{len(added)}" if len(groups) > 1 else "")
            entry = Axis(key=key, label=f"{method}{suffix}", query={**residual, "method": method}, spec=None,
                         higher_is_better=members[0].higher_is_better, extra={CONTRIBUTED: True})
            added.append((entry, members))
    new_entries = tuple(entries) + tuple(e for e, _ in added)
    augmented = dataclasses.replace(table, **{axis: new_entries})
    relevant = [r for r in records if r["profile"] == result.profile]
    cells = dict(result.cells)
    cross = table.rows if axis == "columns" else table.columns
    for entry, members in added:
        for other in cross:
            row, col = (other.key, entry.key) if axis == "columns" else (entry.key, other.key)
            beside = [result.cell(other.key, m.key) if axis == "columns" else result.cell(m.key, other.key)
                      for m in members]
            cells[(row, col)] = _contributed_cell(augmented, row, col, result.profile, relevant, beside)
    return TableResult(table=augmented, profile=result.profile, cells=cells, n_records=result.n_records)


def _contributed_cell(table: PaperTable, row: str, col: str, profile: str, records: Sequence[dict[str, Any]],
                      beside: Sequence[CellResult]) -> CellResult:
    protocols = {c.protocol for c in beside if c.status == "ok" and c.protocol}
    if not protocols:
        cell = reproduce_cell(table, row, col, profile, records)
        if cell.status == "ok":
            note = "no paper cell beside it is reproduced: its protocol is not compared"
            return dataclasses.replace(cell, note="; ".join(x for x in (cell.note, note) if x))
        return cell
    same = [r for r in records if r["protocol_hash"] in protocols]
    cell = reproduce_cell(table, row, col, profile, same)
    if cell.status == "no-run":
        others = reproduce_cell(table, row, col, profile, records)
        if others.status == "ok":
            named = ", ".join(sorted(p[:8] for p in protocols))
            return dataclasses.replace(cell, note=f"records of {others.protocol[:8]} only, not of the paper cells' "
                                                  f"protocol {named}")
    return cell


def contributed_methods(result: TableResult, records: Sequence[dict[str, Any]]) -> list[str]:
    """Methods with records of this profile that are not on the table's method axis but fill one of its cells
    beside a paper cell of the same protocol (what the leaderboard's paper-table page adds)."""
    table = result.table
    if method_axis(table) is None:
        return []
    present = axis_methods(table)
    candidates = sorted({r["method"]["id"] for r in records if r["profile"] == result.profile} - present)
    out = []
    for method in candidates:
        extended = with_methods(result, [method], records)
        if any(c.status == "ok" and not c.note.startswith("no paper cell")
               for (row, col), c in extended.cells.items() if (row, col) not in result.cells):
            out.append(method)
    return out


def is_contributed(axis: Axis) -> bool:
    return bool(axis.extra.get(CONTRIBUTED))
