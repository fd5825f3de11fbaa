"""`bench analyze bias`: the chapter 5 bias analysis of a finished segmentation run, written beside its record.

Reads the record and its per-sample CSV (columns ``model``, ``arm``, ``id``, ``iou``; a ``split`` column,
when present, selects the ``test`` rows), reloads the record's test split with the record's own task
config, computes the attributes of every test image, and for each segmenter compares S_x = {IoU < x}
with the full set. Writes ``<run_id>.bias-<model>.png`` (one per segmenter) and ``<run_id>.attributes.csv``
beside the record, ``../analysis/<run_id>.bias.json`` (every test statistic; outside the records folder,
whose JSON files are all read as records), lists them in the record's ``artifacts`` and a
summary under ``comparisons["bias"]``, and rewrites the record atomically (schema-validated).

The analysed arm defaults to the reference arm of the run (``real-only``: the pretrained segmenters of
lowcontrast, the real-only arm of seg-aug), since the bias is a property of models trained on real data.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis.bias import DEFAULT_THRESHOLDS, compare_subsets, plot_model
from bench.analysis.records import AnalysisError, find_record  # noqa: F401 (the CLI imports them from here)

logger = logging.getLogger(__name__)

REFERENCE_ARM = "real-only"


@dataclass
class BiasReport:
    record_path: Path
    stats_path: Path
    plots: dict[str, Path]
    summary: dict[str, Any]


def load_test_samples(record: dict[str, Any], data_root: Path | None) -> Sequence[Any]:
    """The record's test split, loaded with the record's task config (dataset, options, image size)."""
    from bench import config as cfg
    from bench.data.base import DataError
    from bench.interface import RunContext
    from bench.registry import TASKS, UnknownEntryError
    from bench.tasks.common import open_dataset

    try:
        task_cls = TASKS.get(record["task"]["id"])
        task_config = cfg.build(task_cls.Config, dict(record["config"]["task"]), "task")
    except (UnknownEntryError, cfg.ConfigError) as exc:
        raise AnalysisError(f"cannot rebuild the record's task config: {exc}") from None
    dataset = getattr(task_config, "dataset", None)
    if dataset is None:
        raise AnalysisError(f"task '{task_cls.id}' names no dataset")
    ctx = RunContext(data_root=data_root)
    try:
        ds = open_dataset(dataset, getattr(task_config, "dataset_options", {}), getattr(task_config, "image_size", None), ctx)
        samples = ds.load("test")
        checksum = ds.split_checksum("test")
    except DataError as exc:
        raise AnalysisError(str(exc)) from None
    recorded = record["dataset"]["splits"].get("test")
    if recorded and recorded != checksum:
        raise AnalysisError(f"the test split of '{dataset}' differs from the one the record was run on "
                            f"(checksum {checksum[:8]} != {recorded[:8]})")
    return samples


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", name)


def analyze_bias(record_path: Path, data_root: Path | None = None, arm: str | None = None,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, skin_tone_run: str | None = None) -> BiasReport:
    """Run the bias analysis of one record and update the record (see module doc).

    Args:
        record_path: the record JSON (in ``<work_dir>/records``).
        data_root: folder of real datasets when the record's dataset is read from disk.
        arm: per-sample arm to analyse (default ``real-only`` when present, else the only arm).
        thresholds: x of each S_x = {IoU < x}.
        skin_tone_run: a finished ``skin-tone`` run (id or record path, in the same work dir) whose fitted annotator
            labels the skin-tone groups (thesis: the Fitzpatrick17k ensemble); None: groups from ITA thresholds.
    """
    import pandas as pd

    from bench.analysis.attributes import dataset_attributes
    from bench.store import RecordError, atomic_write_text, read_record, write_record

    try:
        record = read_record(record_path)
    except RecordError as exc:
        raise AnalysisError(str(exc)) from None
    folder = Path(record_path).parent
    if not record.get("per_sample_file"):
        raise AnalysisError(f"record {record['run_id']} has no per-sample scores (per_sample_file)")
    csv = folder / record["per_sample_file"]
    if not csv.is_file():
        raise AnalysisError(f"per-sample file {csv} is missing")
    scores = pd.read_csv(csv)
    missing = {"model", "id", "iou"} - set(scores.columns)
    if missing:
        raise AnalysisError(f"{csv.name} lacks column(s) {', '.join(sorted(missing))}")
    if "split" in scores.columns:
        scores = scores[scores["split"] == "test"]
    if "arm" in scores.columns:
        arms = sorted(set(scores["arm"]))
        chosen = arm or (REFERENCE_ARM if REFERENCE_ARM in arms else arms[0] if len(arms) == 1 else None)
        if chosen is None or chosen not in arms:
            raise AnalysisError(f"choose an arm with --arm: the scores hold {', '.join(arms)}")
        scores = scores[scores["arm"] == chosen]
    else:
        chosen = arm or "all"
    scores = scores.assign(id=scores["id"].astype(str))

    samples = load_test_samples(record, data_root)
    task_config = record["config"]["task"]  # ITA as the run computed it (lowcontrast's options; defaults otherwise)
    ita_options = {"aggregation": task_config.get("ita_aggregation", "region_mean"),
                   "angle": task_config.get("ita_angle", "arctan")}
    table = dataset_attributes(samples, **ita_options)
    skin_tone_source = "ita"
    if skin_tone_run:
        from bench.analysis.skin_tone import annotate, load_annotator

        annotator, skin_tone_source = load_annotator(skin_tone_run, folder.parent)
        table["skin_tone"] = annotate(samples, annotator)
    run_id = record["run_id"]
    attributes_name = f"{run_id}.attributes.csv"
    atomic_write_text(folder / attributes_name, table.to_csv(index=False))

    stats: dict[str, Any] = {"run_id": run_id, "arm": chosen, "thresholds": list(thresholds),
                             "skin_tone_source": skin_tone_source, "ita": ita_options, "models": {}}
    plots: dict[str, Path] = {}
    index = {sid: k for k, sid in enumerate(table["id"])}
    for model, part in scores.groupby("model", sort=True):
        unknown = set(part["id"]) - set(index)
        if unknown:
            raise AnalysisError(f"{len(unknown)} scored ids of model {model} are not in the test split "
                                f"(e.g. {sorted(unknown)[0]})")
        order = [index[i] for i in part["id"]]
        sub = table.iloc[order].reset_index(drop=True)
        iou = part["iou"].to_numpy(dtype=float)
        stats["models"][str(model)] = compare_subsets(sub, iou, thresholds)
        plots[str(model)] = plot_model(sub, iou, folder / f"{run_id}.bias-{_safe(str(model))}.png",
                                       f"{run_id}: {model} ({chosen})", thresholds)
    # Not beside the record: every *.json under a records folder is read as a record.
    stats_path = folder.parent / "analysis" / f"{run_id}.bias.json"
    atomic_write_text(stats_path, json.dumps(stats, indent=1))

    summary = summarize(stats)
    artifacts = dict(record.get("artifacts") or {})
    artifacts.update({f"bias-{_safe(m)}": p.name for m, p in plots.items()})
    artifacts["bias-stats"] = f"../analysis/{stats_path.name}"
    artifacts["attributes"] = attributes_name
    record["artifacts"] = artifacts
    record.setdefault("comparisons", {})["bias"] = summary
    write_record(record, folder)
    return BiasReport(Path(record_path), stats_path, plots, summary)


def summarize(stats: dict[str, Any]) -> dict[str, Any]:
    """The part of the statistics kept in the record: per model and S_x, size and the ITA-difference shift."""
    out: dict[str, Any] = {"arm": stats["arm"], "stats_file": f"../analysis/{stats['run_id']}.bias.json", "models": {}}
    for model, m in stats["models"].items():
        row = {}
        for name, s in m["subsets"].items():
            d = s["attributes"]["ita_difference"]["vs_complement"]
            row[name] = {"n": s["n"], "ita_difference_median": d["median"], "ita_difference_median_other": d["median_other"],
                         "ks_p": d["ks"]["p"] if d["ks"] else None,
                         "mannwhitney_p": d["mannwhitney"]["p"] if d["mannwhitney"] else None,
                         "rank_biserial": d["mannwhitney"]["rank_biserial"] if d["mannwhitney"] else None}
        out["models"][model] = row
    return out
