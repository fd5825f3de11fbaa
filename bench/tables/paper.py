"""Paper tables as data: loading ``results/paper/<id>.json`` and resolving each cell's query.

A table file holds the caption and source of one published table, its layout
(rows and columns, each with a partial query), the reported values with the
string exactly as printed, notes on known inconsistencies, and the paper's derived
claims (average relative gains, p-values). A cell's query is the merge of, in
order, the table's ``query``, the row's ``query``, the column's ``query`` and the
cell's own ``query`` (later wins; ``setting`` dicts merge key by key).

Any query value may depend on the profile: ``{"paper": "fd[inception]", "mini":
"fd[mini-clip]"}``. ``smoke`` falls back to ``mini``; a profile with no entry
makes the cell not applicable ("n/a") in that profile.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROFILES = ("smoke", "mini", "paper")
QUERY_FIELDS = ("task", "dataset", "method", "model", "metric", "setting", "reported_scale", "best_of")
PAPER_DIR_ENV = "BENCH_PAPER_TABLES"


class TableError(ValueError):
    """A paper table file is missing or malformed (one line naming the file and the problem)."""


def default_paper_dir() -> Path:
    """``results/paper`` of the source tree (overridable with the ``BENCH_PAPER_TABLES`` variable)."""
    if os.environ.get(PAPER_DIR_ENV):
        return Path(os.environ[PAPER_DIR_ENV])
    from bench.paths import read_only_dir

    return read_only_dir("results", "paper")


@dataclass(frozen=True)
class Reported:
    """One reported number as printed in the source.

    Attributes:
        printed: the string as printed, e.g. ``"0.775"`` or ``"88.1"`` (precision kept).
        value: ``float(printed)``.
        decimals: number of printed decimals.
        std: the printed spread (``"78.46 ± 10.36"`` -> 10.36) where the source gives one.
        std_printed: that spread as printed.
        mark: ``"bold"`` (best) or ``"underline"`` (second best) where the source marks it.
    """

    printed: str
    value: float
    decimals: int
    std: float | None = None
    std_printed: str | None = None
    mark: str | None = None
    spec: dict[str, Any] | None = None


@dataclass(frozen=True)
class Axis:
    """A row or a column of a table layout."""

    key: str
    label: str
    query: dict[str, Any]
    spec: Any
    higher_is_better: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellQuery:
    """What a cell asks of the result records, resolved for one profile.

    Attributes:
        task, dataset, method: record ``task.id``, ``dataset.id``, ``method.id``.
        model: downstream model id (reads ``per_model[model][metric]``), or None for
            the headline ``metrics[metric]``.
        metric: metric key, e.g. ``"iou[S_0.6]"``.
        setting: key -> value that must hold in the record's resolved task or method
            config (or its counts ``n``: ``n_real`` is ``n.real_train``).
        profile: the record profile.
        reported_scale: factor taking a record value to the paper's units (100 when
            the paper prints Dice in percent).
        best_of: ``(metric, higher_is_better)``: the matching records are trials of a
            hyperparameter sweep and, per seed, the one with the best value of ``metric``
            fills the cell (the thesis' "best trial", Table 3.1); None: ordinary selection.
    """

    task: str
    dataset: str
    method: str
    metric: str
    profile: str
    model: str | None = None
    setting: tuple[tuple[str, Any], ...] = ()
    reported_scale: float = 1.0
    best_of: tuple[str, bool] | None = None

    def describe(self) -> str:
        parts = [f"task={self.task}", f"dataset={self.dataset}", f"method={self.method}"]
        if self.model:
            parts.append(f"model={self.model}")
        parts += [f"{k}={v}" for k, v in self.setting]
        parts += [f"metric={self.metric}", f"profile={self.profile}"]
        if self.best_of:
            parts.append(f"best-trial-by={self.best_of[0]}")
        return " ".join(parts)


def for_profile(value: Any, profile: str) -> Any:
    """Pick the profile's entry of a per-profile value; plain values pass through.

    Returns None when the value is per-profile and has no entry for ``profile``
    (``smoke`` falls back to ``mini``).
    """
    if isinstance(value, dict) and value and set(value) <= set(PROFILES):
        if profile in value:
            return value[profile]
        if profile == "smoke":
            return value.get("mini")
        return None
    return value


def merge_queries(*parts: dict[str, Any]) -> dict[str, Any]:
    """Merge partial queries left to right; ``setting`` merges key by key."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in (part or {}).items():
            if key == "setting":
                out["setting"] = {**out.get("setting", {}), **value}
            else:
                out[key] = value
    return out


@dataclass(frozen=True)
class PaperTable:
    """One published table: layout, reported values, notes and claims (see module doc)."""

    id: str
    caption: str
    source: dict[str, Any]
    rows: tuple[Axis, ...]
    columns: tuple[Axis, ...]
    cells: dict[str, dict[str, Reported]]
    query: dict[str, Any]
    notes: tuple[str, ...] = ()
    claims: tuple[dict[str, Any], ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def row(self, key: str) -> Axis:
        return next(r for r in self.rows if r.key == key)

    def column(self, key: str) -> Axis:
        return next(c for c in self.columns if c.key == key)

    def reported(self, row: str, col: str) -> Reported | None:
        return self.cells.get(row, {}).get(col)

    def raw_query(self, row: str, col: str) -> dict[str, Any]:
        return merge_queries(self.query, self.row(row).query, self.column(col).query)

    def cell_query(self, row: str, col: str, profile: str) -> CellQuery | None:
        """The cell's query for ``profile``, or None if the cell does not apply to it."""
        raw = self.raw_query(row, col)
        resolved: dict[str, Any] = {}
        for key in ("task", "dataset", "method", "model", "metric"):
            value = for_profile(raw.get(key), profile)
            if value is None and key != "model":
                return None
            resolved[key] = value
        setting = []
        for key, value in sorted(raw.get("setting", {}).items()):
            value = for_profile(value, profile)
            if value is None:
                return None
            setting.append((key, value))
        scale = for_profile(raw.get("reported_scale", 1.0), profile)
        best_of = None
        if raw.get("best_of"):
            metric = for_profile(raw["best_of"].get("metric"), profile)
            if metric is None:
                return None
            best_of = (str(metric), bool(raw["best_of"].get("higher_is_better", True)))
        return CellQuery(profile=profile, setting=tuple(setting), reported_scale=float(scale or 1.0),
                         best_of=best_of, **resolved)

    def higher_is_better(self, row: str, col: str) -> bool | None:
        r, c = self.row(row), self.column(col)
        return c.higher_is_better if c.higher_is_better is not None else r.higher_is_better

    @property
    def title(self) -> str:
        short = self.source.get("short") or self.source.get("document", "")
        where = ", ".join(str(x) for x in (self.source.get("section"), self.source.get("page")) if x)
        return f"{short} Table {self.source.get('table')}" + (f" ({where})" if where else "")


def _axis(data: dict[str, Any], kind: str, where: str) -> Axis:
    for key in ("key", "label"):
        if not isinstance(data.get(key), str):
            raise TableError(f"{where}: a {kind} has no string '{key}'")
    query = data.get("query", {})
    unknown = set(query) - set(QUERY_FIELDS)
    if unknown:
        raise TableError(f"{where}: {kind} '{data['key']}' has unknown query field(s) {sorted(unknown)}")
    known = {"key", "label", "query", "spec_row", "spec_col", "higher_is_better"}
    return Axis(key=data["key"], label=data["label"], query=query, spec=data.get("spec_row", data.get("spec_col")),
                higher_is_better=data.get("higher_is_better"), extra={k: v for k, v in data.items() if k not in known})


def _reported(data: dict[str, Any], where: str) -> Reported:
    try:
        rep = Reported(**data)
    except TypeError as exc:
        raise TableError(f"{where}: {exc}") from None
    if float(rep.printed) != rep.value:
        raise TableError(f"{where}: value {rep.value} does not match printed '{rep.printed}'")
    return rep


def parse_table(data: dict[str, Any], path: Path | None = None) -> PaperTable:
    """Build a PaperTable from its JSON object, checking the layout is consistent."""
    where = str(path or data.get("id", "<table>"))
    for key in ("id", "caption", "source", "rows", "columns", "cells"):
        if key not in data:
            raise TableError(f"{where}: missing '{key}'")
    rows = tuple(_axis(r, "row", where) for r in data["rows"])
    cols = tuple(_axis(c, "column", where) for c in data["columns"])
    for kind, axes in (("row", rows), ("column", cols)):
        keys = [a.key for a in axes]
        if len(set(keys)) != len(keys):
            raise TableError(f"{where}: duplicate {kind} keys")
    row_keys, col_keys = {r.key for r in rows}, {c.key for c in cols}
    cells: dict[str, dict[str, Reported]] = {}
    for rk, by_col in data["cells"].items():
        if rk not in row_keys:
            raise TableError(f"{where}: cell row '{rk}' is not a row of the layout")
        for ck, cell in by_col.items():
            if ck not in col_keys:
                raise TableError(f"{where}: cell column '{ck}' is not a column of the layout")
            cells.setdefault(rk, {})[ck] = _reported(cell, f"{where} [{rk}][{ck}]")
    if path is not None and path.stem != data["id"]:
        raise TableError(f"{where}: file name does not match id '{data['id']}'")
    return PaperTable(id=data["id"], caption=data["caption"], source=data["source"], rows=rows, columns=cols,
                      cells=cells, query=data.get("query", {}), notes=tuple(data.get("notes", ())),
                      claims=tuple(data.get("claims", ())), spec=data.get("spec", {}), path=path)


def load_table(table_id: str, paper_dir: Path | None = None) -> PaperTable:
    """Load ``<paper_dir>/<table_id>.json``; an unknown id lists the valid ones."""
    folder = Path(paper_dir) if paper_dir else default_paper_dir()
    path = folder / f"{table_id}.json"
    if "/" in table_id or "\\" in table_id or not path.is_file():
        import difflib

        ids = table_ids(folder)
        close = difflib.get_close_matches(table_id, ids, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise TableError(f"Unknown table '{table_id}'.{hint} Valid tables: {', '.join(ids) or '(none found in ' + str(folder) + ')'}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}: not valid JSON ({exc})") from None
    return parse_table(data, path)


DOCUMENT_ORDER = ("thesis", "meddiff-ft", "diffboost")


def _sort_key(table_id: str) -> tuple[Any, ...]:
    head, _, tail = table_id.rpartition("-")
    rank = DOCUMENT_ORDER.index(head) if head in DOCUMENT_ORDER else len(DOCUMENT_ORDER)
    return (rank, head, *[(0, int(p)) if p.isdigit() else (1, p) for p in tail.split(".")])


def table_ids(paper_dir: Path | None = None) -> list[str]:
    """Ids of every table under ``paper_dir``, in document order (thesis-3.1, ..., diffboost-2)."""
    folder = Path(paper_dir) if paper_dir else default_paper_dir()
    if not folder.is_dir():
        return []
    return sorted((p.stem for p in folder.glob("*.json")), key=_sort_key)


def load_all(paper_dir: Path | None = None) -> list[PaperTable]:
    return [load_table(t, paper_dir) for t in table_ids(paper_dir)]
