"""Fill a paper table's cells from result records: matching, seed aggregation, deltas.

A record matches a cell query when its task, dataset, method and profile equal the
query's and every ``setting`` key holds in the record (resolved task config, then
method config, then the counts ``n``). The value is ``per_model[model][metric]``
for a downstream-model query, else ``metrics[metric]``; a metric without brackets
also matches a record's single bracketed variant of the same family.

Records with different protocol hashes are never averaged together. A cell reads the protocol whose runs are
closest to the method's defaults, then the one filling most cells of the table (so that the cells a reader compares,
and the derived claims, read one protocol while a new protocol's campaign is under way), then the one with most
seeds, then the newest; the others are counted in the cell's note. A seed run twice keeps the record whose method config is
closest to the method's defaults for the profile (an ablation such as DiDGen
``ca_guidance=false`` shares the protocol of the default run but does not fill the
default's cells unless the query asks for it), then the newest. A query with ``best_of``
instead keeps, per seed, the trial with the best value of that metric (a sweep's best
trial, selected on the reported metrics as the source did); every row of a column then
comes from the same trial. A cross-validated arm run one fold per record (DiffBoost) fills a cell once all its
folds are there, with the mean of the fold values (`combine_folds`).
"""
from __future__ import annotations

import logging
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.tables.paper import CellQuery, PaperTable, Reported
from bench.variants import later_defaults, method_changes, method_defaults, same_value, variant_label  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

# query setting key -> key in the record's ``n`` counts, used when no config holds the key
SETTING_COUNT_ALIASES = {"n_real": "real_train", "n_generated": "generated", "n_test": "test"}


@dataclass(frozen=True)
class CellResult:
    """Reported and reproduced value of one cell.

    Attributes:
        status: ``"ok"`` (reproduced), ``"no-run"`` (no matching record) or ``"n/a"``
            (the cell does not apply to this profile).
        mean, std: reproduced value over seeds in the paper's units (std None for one seed).
        seeds: seeds that contributed.
        delta: ``mean - reported.value`` (None if either is missing).
        protocol: protocol hash of the contributing records.
        run_ids: contributing records.
        note: e.g. how many records of other protocols were ignored.
    """

    row: str
    col: str
    reported: Reported | None
    query: CellQuery | None
    status: str
    mean: float | None = None
    std: float | None = None
    seeds: tuple[int, ...] = ()
    delta: float | None = None
    protocol: str | None = None
    run_ids: tuple[str, ...] = ()
    note: str = ""
    records: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)
    values: tuple[float, ...] = ()
    """The reproduced value of each seed (paper units), in ``seeds`` order."""

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


def default_record_dirs() -> list[Path]:
    """The run work dir's records (``bench-runs/records``) and the accepted records (``leaderboard_dirs``)."""
    from bench.paths import leaderboard_dirs

    return [Path("bench-runs") / "records", *leaderboard_dirs()]


def load_records(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """Every valid record under the folders (invalid ones are skipped with a warning).

    Each record gets a private ``_path`` key (its file), used for links and artefacts.
    The same run id found twice (e.g. in the work dir and the leaderboard) is kept once.
    """
    from bench.store import iter_records

    seen: dict[str, dict[str, Any]] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            logger.debug("records folder %s does not exist", folder)
            continue
        for path, record in iter_records(folder):
            if record["run_id"] in seen:
                continue
            seen[record["run_id"]] = {**record, "_path": str(path)}
    return list(seen.values())


def setting_value(record: dict[str, Any], key: str) -> tuple[bool, Any]:
    """Find a setting in the record.

    Count settings (``n_real``, ``n_generated``, ``n_test``) are read from the counts the
    run actually used (``n.real_train`` ...), since a config may say ``n_real: null``
    for "all"; any other key from the resolved task config, then the method config. ``task.<key>`` and
    ``method.<key>`` look in that config only (derm-quality's task and DiDGen both have a ``prompt``). A key added
    to the task or method after the record was written reads as the value that keeps the record's behaviour
    (``bench.variants.with_later_keys``).
    """
    counts = record.get("n") or {}
    ids = [(record.get(part) or {}).get("id") for part in ("task", "method")]
    later = dict(zip(("task", "method"), later_defaults(*ids) if all(ids) else ({}, {})))
    scope, _, name = key.partition(".")
    if name and scope in ("task", "method"):
        section = {**later[scope], **((record.get("config", {}) or {}).get(scope) or {})}
        return (True, section[name]) if name in section else (False, None)
    if key in SETTING_COUNT_ALIASES and SETTING_COUNT_ALIASES[key] in counts:
        return True, counts[SETTING_COUNT_ALIASES[key]]
    config = record.get("config", {})
    for part in ("task", "method"):
        section = config.get(part) or {}
        if key in section:
            return True, section[key]
    if key in counts:
        return True, counts[key]
    for part in ("task", "method"):
        if key in later[part]:
            return True, later[part][key]
    return False, None


def resolve_metric(values: dict[str, Any], metric: str) -> str | None:
    """The key of ``values`` that ``metric`` names (exact, or the single key of its bracket family)."""
    if metric in values:
        return metric
    if "[" in metric:
        return None
    family = [k for k in values if k.split("[", 1)[0] == metric]
    return family[0] if len(family) == 1 else None


def record_value(record: dict[str, Any], query: CellQuery) -> float | None:
    """The record's value for the query (raw units), or None if it does not report it."""
    if query.model:
        values = (record.get("per_model") or {}).get(query.model) or {}
    else:
        values = record.get("metrics") or {}
    key = resolve_metric(values, query.metric)
    value = values.get(key) if key else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def matches(record: dict[str, Any], query: CellQuery) -> bool:
    """Whether the record is a run of the cell's task, dataset, method, profile and settings."""
    if (record["task"]["id"], record["dataset"]["id"], record["method"]["id"], record["profile"]) != (
            query.task, query.dataset, query.method, query.profile):
        return False
    for key, expected in query.setting:
        found, value = setting_value(record, key)
        if not found or not same_value(value, expected):
            return False
    return True


def _fold_of(record: dict[str, Any]) -> tuple[int, int] | None:
    """``(folds, fold)`` of a one-fold cross-validation run (seg-aug ``task.folds`` k with ``task.fold`` i), else None."""
    task = (record.get("config") or {}).get("task") or {}
    folds, fold = task.get("folds"), task.get("fold")
    return (int(folds), int(fold)) if isinstance(folds, int) and isinstance(fold, int) else None


def _mean_values(values: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = set.intersection(*(set(v) for v in values)) if values else set()
    out = {}
    for key in sorted(keys):
        nums = [v[key] for v in values]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in nums):
            out[key] = statistics.fmean(float(x) for x in nums)
    return out


def combine_folds(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """One entry per cross-validated arm run fold by fold (DiffBoost fits a generator per fold: spec B.6/B.9).

    The one-fold records of one seed whose configs differ only in ``task.fold`` become one record whose metrics and
    per-model values are the mean over the folds (B.9's mean of fold means, as a run of all folds reports it); it
    keeps fold 0's run id, protocol hash and created time, drops the per-fold comparisons and lists its records in
    ``_fold_run_ids``. An arm with a fold missing is left out, and the note says which. Other records pass as they are.
    """
    import json

    passed: list[dict[str, Any]] = []
    groups: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}
    for rec in records:
        fold = _fold_of(rec)
        if fold is None:
            passed.append(rec)
            continue
        config = rec.get("config") or {}
        task = {k: v for k, v in (config.get("task") or {}).items() if k != "fold"}
        key = (rec["seed"], fold[0], json.dumps([task, config.get("method")], sort_keys=True, default=str))
        slot = groups.setdefault(key, {})
        if fold[1] not in slot or rec.get("created", "") > slot[fold[1]].get("created", ""):
            slot[fold[1]] = rec
    notes = []
    for (seed, n_folds, _), by_fold in groups.items():
        missing = sorted(set(range(n_folds)) - set(by_fold))
        if missing:
            notes.append(f"seed {seed}: fold(s) {', '.join(map(str, missing))} of {n_folds} not run, its other "
                         "fold(s) left out")
            continue
        folds = [by_fold[i] for i in range(n_folds)]
        models = set.intersection(*(set(r.get("per_model") or {}) for r in folds))
        passed.append({**folds[0], "comparisons": {},
                       "metrics": _mean_values([r.get("metrics") or {} for r in folds]),
                       "per_model": {m: _mean_values([r["per_model"][m] for r in folds]) for m in sorted(models)},
                       "_fold_run_ids": [r["run_id"] for r in folds]})
    return passed, "; ".join(notes)


def select_runs(records: Sequence[dict[str, Any]], best_of: tuple[str, bool] | None = None,
                coverage: dict[str, int] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Keep one protocol and one record per seed (closest to the defaults, then newest; with ``best_of = (metric,
    higher_is_better)`` the best trial by that metric).

    The protocol: the one whose runs are closest to the method's defaults (an ablation run under another protocol,
    such as cxr-irgen's condition_dropout in the image protocol, never displaces the default run's protocol); then
    the one filling most cells of the table (``coverage``: protocol hash -> cells, from `reproduce_table`), so that
    the cells a reader compares (a column against the Original column, a derived claim) read one protocol while a
    new protocol's campaign is under way; then most seeds; then the newest."""
    def preference(rec: dict[str, Any]) -> tuple[Any, ...]:
        if best_of is not None:
            value = (rec.get("metrics") or {}).get(best_of[0])
            value = float(value) if isinstance(value, (int, float)) else float("-inf") if best_of[1] else float("inf")
            return (value if best_of[1] else -value), rec.get("created", "")
        return -len(method_changes(rec)), rec.get("created", "")

    by_protocol: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in records:
        seeds = by_protocol.setdefault(rec["protocol_hash"], {})
        old = seeds.get(rec["seed"])
        if old is None or preference(rec) > preference(old):
            seeds[rec["seed"]] = rec

    def protocol_rank(item: tuple[str, dict[int, dict[str, Any]]]) -> tuple[Any, ...]:
        proto, runs = item
        closest = 0 if best_of is not None else max(-len(method_changes(r)) for r in runs.values())
        return closest, (coverage or {}).get(proto, 0), len(runs), max(r.get("created", "") for r in runs.values())

    ranked = sorted(by_protocol.items(), key=protocol_rank, reverse=True)
    chosen = sorted(ranked[0][1].values(), key=lambda r: r["seed"])
    note = ""
    if len(ranked) > 1:
        others = sum(len(v) for _, v in ranked[1:])
        note = f"{others} record(s) of {len(ranked) - 1} other protocol(s) not averaged in"
    return chosen, note


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _cell_candidates(table: PaperTable, row: str, col: str, profile: str, records: Sequence[dict[str, Any]]
                     ) -> tuple[CellQuery | None, list[dict[str, Any]], str]:
    """The cell's query and the records (cross-validation folds combined) that report its value."""
    query = table.cell_query(row, col, profile)
    if query is None:
        return None, [], ""
    candidates, fold_note = combine_folds([r for r in records if matches(r, query)])
    return query, [r for r in candidates if record_value(r, query) is not None], fold_note


def reproduce_cell(table: PaperTable, row: str, col: str, profile: str, records: Sequence[dict[str, Any]],
                   coverage: dict[str, int] | None = None) -> CellResult:
    return _cell_result(table, row, col, profile, *_cell_candidates(table, row, col, profile, records), coverage)


def _cell_result(table: PaperTable, row: str, col: str, profile: str, query: CellQuery | None,
                 candidates: list[dict[str, Any]], fold_note: str, coverage: dict[str, int] | None) -> CellResult:
    reported = table.reported(row, col)
    if query is None:
        return CellResult(row, col, reported, None, "n/a", note=f"no query for profile '{profile}'")
    if not candidates:
        return CellResult(row, col, reported, query, "no-run", note=fold_note)
    runs, note = select_runs(candidates, query.best_of, coverage)
    note = "; ".join(x for x in (note, fold_note) if x)
    if query.best_of is not None:
        trials = len({r["run_id"] for r in candidates})
        chosen = ", ".join(variant_label(r) or "defaults" for r in runs)
        note = "; ".join(x for x in (note, f"best of {trials} trial(s) by {query.best_of[0]} on the test metrics: "
                                           f"{chosen}") if x)
    values = [record_value(r, query) * query.reported_scale for r in runs]
    mean, std = mean_std(values)
    delta = mean - reported.value if reported is not None else None
    return CellResult(row, col, reported, query, "ok", mean=mean, std=std, seeds=tuple(r["seed"] for r in runs),
                      delta=delta, protocol=runs[0]["protocol_hash"],
                      run_ids=tuple(i for r in runs for i in r.get("_fold_run_ids", [r["run_id"]])),
                      note=note, records=tuple(runs), values=tuple(values))


@dataclass(frozen=True)
class TableResult:
    """A table with every cell filled for one profile."""

    table: PaperTable
    profile: str
    cells: dict[tuple[str, str], CellResult]
    n_records: int

    def cell(self, row: str, col: str) -> CellResult:
        return self.cells[(row, col)]

    @property
    def n_reproduced(self) -> int:
        return sum(1 for c in self.cells.values() if c.status == "ok")


def reproduce_table(table: PaperTable, profile: str, records: Sequence[dict[str, Any]]) -> TableResult:
    """Fill every cell of the layout (reported or not) from ``records``."""
    relevant = [r for r in records if r["profile"] == profile]
    found = {(r.key, c.key): _cell_candidates(table, r.key, c.key, profile, relevant)
             for r in table.rows for c in table.columns}
    coverage = Counter(h for _, candidates, _ in found.values() for h in {rec["protocol_hash"] for rec in candidates})
    cells = {key: _cell_result(table, *key, profile, *cell, coverage) for key, cell in found.items()}
    return TableResult(table=table, profile=profile, cells=cells, n_records=len(relevant))
