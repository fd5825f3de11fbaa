"""Self-consistency of a submitted record: what its own content must agree with.

Each check raises `SubmissionError` with one line. They catch a record edited by hand after its run:
headline metrics that no longer follow from the per-sample scores, a per-model breakdown that disagrees with the
headline, comparisons that do not recompute, scores for other images than the protocol's test split, a profile,
dataset, method or seed that disagrees with the run id or with the resolved configs, and content hashes
(`bench.store.check_provenance`) that no longer match.
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.leaderboard.submit import SubmissionError

#: Values recomputed from a CSV's decimal text must agree this closely (Python writes floats with repr: exact).
REL_TOL = 1e-9


def _close(a: Any, b: Any, rel: float = REL_TOL, abs_tol: float = 1e-12) -> bool:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def read_scores(record: dict[str, Any], folder: Path) -> list[dict[str, str]] | None:
    """The per-sample rows beside the record, or None when the record names no file."""
    name = record.get("per_sample_file")
    if not name:
        return None
    path = Path(folder) / name
    if not path.is_file():
        raise SubmissionError(f"the per-sample file {name} is not beside the record")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_identity(record: dict[str, Any]) -> None:
    """Run id fields, dataset and profile agree with each other and with the resolved configs."""
    parts = record["run_id"].split("__")
    if len(parts) != 6:
        raise SubmissionError(f"run_id '{record['run_id']}' is not task__method__dataset__profile__sSEED__hash")
    task, _method, dataset, profile, seed, _ = parts
    stated = {"task": (task, record["task"]["id"]), "dataset": (dataset, record["dataset"]["id"]),
              "profile": (profile, record["profile"]), "seed": (seed, f"s{record['seed']}")}
    for what, (in_id, in_record) in stated.items():
        if in_id != in_record:
            raise SubmissionError(f"the run id says {what} '{in_id}', the record says '{in_record}'")
    config_dataset = (record["config"].get("task") or {}).get("dataset")
    if config_dataset is not None and config_dataset != record["dataset"]["id"]:
        raise SubmissionError(f"the record says dataset '{record['dataset']['id']}', its task config ran "
                              f"'{config_dataset}'")
    check_profile(record)


def _profile_defaults(record: dict[str, Any], profile: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    from bench import config as cfg
    from bench.registry import METHODS, TASKS

    try:
        task_cls = TASKS.get(record["task"]["id"])
        task = cfg.to_dict(cfg.build(task_cls.Config, cfg.profile_section(task_cls.config_file(), profile), "task"))
        method_cls = METHODS.get(record["method"]["id"])
        method = cfg.to_dict(cfg.build(method_cls.Config, cfg.profile_section(cfg.method_config_file(method_cls),
                                                                             profile), "method"))
    except Exception:  # noqa: BLE001 - an external method or a config this install cannot build
        return None
    return task, method


def check_profile(record: dict[str, Any]) -> None:
    """A profile is not a label: refuse a record whose configs carry another profile's own settings.

    For each other profile, its *signature* is every config key whose default differs from the stated profile's.
    A record whose values on those keys agree with the other profile more often than with the stated one (smoke's
    tiny sizes, epoch counts and widths in a record labelled mini) ran that profile; overriding some keys (a
    campaign's --config, a few --set) keeps the majority with the profile the run used.
    """
    from bench.config import PROFILES
    from bench.variants import same_value

    stated = _profile_defaults(record, record["profile"])
    if stated is None:
        return
    config = record["config"]
    for other in PROFILES:
        if other == record["profile"]:
            continue
        defaults = _profile_defaults(record, other)
        if defaults is None:
            continue
        signature = [(section, key, value, d_stated[key])
                     for section, d_other, d_stated in (("task", defaults[0], stated[0]), ("method", defaults[1], stated[1]))
                     for key, value in d_other.items() if key in d_stated and not same_value(value, d_stated[key])]
        as_other = [(s, k) for s, k, value, _ in signature if same_value((config.get(s) or {}).get(k), value)]
        as_stated = [(s, k) for s, k, _, value in signature if same_value((config.get(s) or {}).get(k), value)]
        if len(as_other) > len(as_stated):
            keys = ", ".join(f"{s}.{k}" for s, k in as_other[:4]) + (" ..." if len(as_other) > 4 else "")
            raise SubmissionError(f"the record is labelled profile '{record['profile']}' but its configs are the "
                                  f"'{other}' profile's ({keys})")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def check_scores(record: dict[str, Any], rows: list[dict[str, str]] | None) -> str:
    """Headline, per-model values and comparisons recompute from the per-sample rows. Returns a note for the
    verdict ('' or why nothing could be recomputed)."""
    from bench.registry import TASKS

    spec = getattr(TASKS.get(record["task"]["id"]), "sample_scores", None)
    if spec is None:
        return f"headline metrics of task {record['task']['id']} are not per-sample means: not recomputed"
    if rows is None:
        raise SubmissionError(f"no per-sample file: task {record['task']['id']}'s metrics must recompute from one")
    if spec.split is not None:
        rows = [r for r in rows if r.get("split") == spec.split]
    missing = [c for c in ("model", "arm", "id", *spec.columns) if rows and c not in rows[0]]
    if missing or not rows:
        raise SubmissionError(f"the per-sample file lacks {', '.join(missing) or 'rows'}")
    is_reference = record["method"]["id"] == spec.reference_arm
    arm = spec.reference_arm if is_reference else spec.arm
    by_model: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_model[r["arm"]][r["model"]].append(r)
    mine, reference = by_model.get(arm, {}), by_model.get(spec.reference_arm, {})
    if set(mine) != set(record["per_model"]):
        raise SubmissionError(f"the per-sample file scores models {sorted(mine)}, the record reports {sorted(record['per_model'])}")
    expected_ids = test_split_ids(record)
    note = "" if expected_ids is not None else "per-sample ids not checked: the test split's ids need the data"
    for model, model_rows in mine.items():
        if expected_ids is not None and [r["id"] for r in model_rows] != expected_ids:
            raise SubmissionError(f"the per-sample ids of model {model} are not the protocol's test split")
    means = {m: {c: _mean([float(r[c]) for r in model_rows]) for c in spec.columns} for m, model_rows in mine.items()}
    for model, values in means.items():
        for column, value in values.items():
            if not _close(value, record["per_model"][model].get(column)):
                raise SubmissionError(f"per_model.{model}.{column} is {record['per_model'][model].get(column)}, its "
                                      f"per-sample scores average {value}")
    for column in spec.columns:
        headline = _mean([v[column] for v in means.values()])
        if not _close(headline, record["metrics"].get(column)):
            raise SubmissionError(f"metrics.{column} is {record['metrics'].get(column)}, the mean of its per-model "
                                  f"values is {headline}")
    if not is_reference:
        _check_comparisons(record, spec, mine, reference)
    return note


def test_split_ids(record: dict[str, Any]) -> list[str] | None:
    """The test split's ids from the dataset definition alone (procedural worlds, committed split files); None when
    they cannot be known without the data. The protocol-hash check ties this definition to the record's checksum."""
    from bench.registry import DATASETS

    task = record["config"].get("task") or {}
    try:
        dataset = DATASETS.get(task.get("dataset") or record["dataset"]["id"])
        return list(dataset(root=None, image_size=task.get("image_size"), **(task.get("dataset_options") or {}))
                    .split_ids("test"))
    except Exception:  # noqa: BLE001 - a real dataset whose ids live in its files
        return None


def _check_comparisons(record: dict[str, Any], spec: Any, mine: dict[str, list], reference: dict[str, list]) -> None:
    from bench.metrics.stats import paired_ttest, relative_gain

    comparisons = record.get("comparisons") or {}
    gains, tests = comparisons.get("relative_gain") or {}, comparisons.get("paired_ttest") or {}
    if (gains or tests) and set(reference) != set(mine):
        raise SubmissionError(f"the record compares with {spec.reference_arm}, but the per-sample file holds that "
                              f"arm's scores for {sorted(reference)} only")
    for column in spec.columns:
        ours = {m: _mean([float(r[column]) for r in rs]) for m, rs in mine.items()}
        theirs = {m: _mean([float(r[column]) for r in rs]) for m, rs in reference.items()}
        if column in gains:
            stated = gains[column]
            try:
                value = relative_gain(ours, theirs) if all(theirs.values()) else None
            except (ValueError, ZeroDivisionError):
                value = None
            if not _close(value, stated, 1e-6):
                raise SubmissionError(f"comparisons.relative_gain.{column} is {stated}, the per-sample scores give {value}")
        if isinstance(tests.get(column), dict):
            a = [float(r[column]) for m in sorted(mine) for r in mine[m]]
            b = [float(r[column]) for m in sorted(mine) for r in reference[m]]
            test = paired_ttest(a, b)
            p_ok = _close(test["p"], tests[column].get("p"), 1e-6, abs_tol=0.0)  # p-values of 1e-29 are meaningful
            if not p_ok or not _close(test["t"], tests[column].get("t"), 1e-6):
                raise SubmissionError(f"comparisons.paired_ttest.{column} (p = {tests[column].get('p')}) does not "
                                      f"recompute from the per-sample scores (p = {test['p']})")


def check_provenance(record: dict[str, Any], folder: Path) -> str:
    """Refuse a record whose content hashes no longer match; a legacy record without them gets a note."""
    from bench.store import check_provenance as problems_of

    if "provenance" not in record:
        return "no provenance hashes (legacy record)"
    problems = problems_of(record, folder)
    if problems:
        raise SubmissionError(problems[0])
    return ""


def self_consistency(record: dict[str, Any], folder: Path) -> list[str]:
    """Every check above; returns the notes for the verdict."""
    check_identity(record)
    notes = [check_provenance(record, folder), check_scores(record, read_scores(record, folder))]
    return [n for n in notes if n]
