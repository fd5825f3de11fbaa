"""Self-consistency of a submitted record: what its own content must agree with.

Each check raises `SubmissionError` with one line. They catch a record edited by hand after its run:
headline metrics that no longer follow from the per-sample scores, a per-model breakdown that disagrees with the
headline, comparisons that do not recompute, scores for other images than the protocol's test split, a profile,
dataset, method or seed that disagrees with the run id or with the resolved configs, and content hashes
(`bench.store.check_provenance`) that no longer match.
"""
from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.leaderboard.submit import SubmissionError
from bench.variants import with_later_keys

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


def _slug(method_id: str) -> str:
    """The method as `bench.runner.run_one` writes it into a run id (a module:Class path made file-name safe)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", ".", method_id)


def check_identity(record: dict[str, Any]) -> str:
    """Run id fields, dataset and profile agree with each other and with the resolved configs; returns a note."""
    parts = record["run_id"].split("__")
    if len(parts) != 6:
        raise SubmissionError(f"run_id '{record['run_id']}' is not task__method__dataset__profile__sSEED__hash")
    task, method, dataset, profile, seed, _ = parts
    stated = {"task": (task, record["task"]["id"]), "method": (method, _slug(record["method"]["id"])),
              "dataset": (dataset, record["dataset"]["id"]), "profile": (profile, record["profile"]),
              "seed": (seed, f"s{record['seed']}")}
    for what, (in_id, in_record) in stated.items():
        if in_id != in_record:
            raise SubmissionError(f"the run id says {what} '{in_id}', the record says '{in_record}'")
    config_dataset = (record["config"].get("task") or {}).get("dataset")
    if config_dataset is not None and config_dataset != record["dataset"]["id"]:
        raise SubmissionError(f"the record says dataset '{record['dataset']['id']}', its task config ran "
                              f"'{config_dataset}'")
    return check_profile(record)


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _resolved(task_cls: type, method_cls: type, profile: str, task_over: dict[str, Any],
              method_over: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The configs ``profile`` resolves to with these values on top, as a record states them (JSON types)."""
    from bench import config as cfg

    task = cfg.build(task_cls.Config, {**cfg.profile_section(task_cls.config_file(), profile), **task_over}, "task")
    method = cfg.build(method_cls.Config, {**cfg.profile_section(cfg.method_config_file(method_cls), profile),
                                           **method_over}, "method")
    return json.loads(json.dumps({"task": cfg.to_dict(task), "method": cfg.to_dict(method)}))


def _differences(config: dict[str, Any], expected: dict[str, dict[str, Any]],
                 keys: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The (section, key) pairs where ``config`` differs from ``expected`` (all keys of either, or ``keys``)."""
    from bench.variants import same_value

    missing = object()
    if keys is None:
        keys = [(s, k) for s in ("task", "method") for k in dict.fromkeys([*expected[s], *(config.get(s) or {})])]
    return [(section, key) for section, key in keys
            if not same_value((config.get(section) or {}).get(key, missing), expected[section].get(key, missing))]


def _refuse_profile(record: dict[str, Any], expected: dict[str, dict[str, Any]], diffs: list[tuple[str, str]],
                    others: dict[str, dict[str, dict[str, Any]]], given: str) -> None:
    """One line for configs that are not the stated profile's: name the profile they are, when they are one."""
    config, profile = record["config"], record["profile"]
    as_other = {p: [d for d in diffs if not _differences(config, o, [d])] for p, o in others.items()}
    other = max(as_other, key=lambda p: len(as_other[p]), default=None)
    if other is not None and as_other[other]:
        keys = as_other[other]
        listed = ", ".join(f"{s}.{k}" for s, k in keys[:4]) + (" ..." if len(keys) > 4 else "")
        raise SubmissionError(f"the record is labelled profile '{profile}' but its configs are the '{other}' "
                              f"profile's ({listed})")
    section, key = diffs[0]
    raise SubmissionError(f"config.{section}.{key} is {_show(config[section].get(key))}, profile '{profile}' "
                          f"{given} gives {_show(expected[section].get(key))}")


@lru_cache(maxsize=1)
def campaign_sections() -> tuple[tuple[str, dict[str, Any], dict[str, Any]], ...]:
    """``(name, task, method)`` of the committed campaign config files (``docs/reproduce/*.yaml`` that are
    ``--config`` files), which the shipped records were run with before records stated their overrides."""
    from bench import config as cfg
    from bench.paths import project_dir

    out = []
    for path in sorted((project_dir() / "docs" / "reproduce").glob("*.yaml")):
        try:
            task, method = cfg.config_file_sections(path)
        except cfg.ConfigError:
            continue  # a sweep file, not a --config file
        out.append((path.name, task, method))
    return tuple(out)


def check_profile(record: dict[str, Any]) -> str:
    """A profile is not a label: the record's task and method configs must be the stated profile's resolved
    defaults plus the recorded ``overrides`` (``bench run`` writes the --config sections, --dataset and --set
    values there). Returns a note for the verdict.

    A record without ``overrides`` (written before the field existed) is held to its profile's own settings:
    every config key whose default differs between the stated profile and another one must hold the stated
    profile's value, or the value a committed campaign config file (`campaign_sections`) gives it; keys that
    every profile sets alike (conditioning, prompts, n_real), and the task's or method's ``user_choices`` (keys whose
    profiles differ only in the default choice, e.g. DiDGen's ``prompt``), are choices a user may override.
    """
    from bench import config as cfg
    from bench.registry import METHODS, TASKS

    profile, config = record["profile"], record["config"]
    try:
        task_cls, method_cls = TASKS.get(record["task"]["id"]), METHODS.get(record["method"]["id"])
    except Exception:  # noqa: BLE001 - an external method this install cannot load
        return f"configs not checked against profile '{profile}': method '{record['method']['id']}' is not installed"
    config = with_later_keys(config, task_cls, method_cls)
    record = {**record, "config": config}
    others = {p: _resolved(task_cls, method_cls, p, {}, {}) for p in cfg.PROFILES if p != profile}
    overrides = record.get("overrides")
    if overrides is not None:
        try:
            expected = _resolved(task_cls, method_cls, profile, overrides.get("task") or {}, overrides.get("method") or {})
        except cfg.ConfigError as exc:
            raise SubmissionError(f"the recorded overrides do not apply to profile '{profile}': {exc}") from None
        diffs = _differences(config, expected)
        if diffs:
            _refuse_profile(record, expected, diffs, others, "with the recorded overrides")
        return ""
    stated = _resolved(task_cls, method_cls, profile, {}, {})
    choices = {"task": set(getattr(task_cls, "user_choices", ())), "method": set(getattr(method_cls, "user_choices", ()))}
    own_keys = [(s, k) for s in ("task", "method") for k in stated[s] if k not in choices[s]
                and any(_differences(o, stated, [(s, k)]) for o in others.values())]
    for name, task_over, method_over in campaign_sections():
        try:
            campaign = _resolved(task_cls, method_cls, profile, task_over, method_over)
        except cfg.ConfigError:
            continue  # a campaign of another task
        if not _differences(config, campaign, own_keys):
            return f"no recorded overrides: configs match profile '{profile}' with {name}"
    diffs = _differences(config, stated, own_keys)
    if diffs:
        _refuse_profile(record, stated, diffs, others, "(the record states no overrides)")
    return f"no recorded overrides: configs match profile '{profile}'s own settings"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _float(cell: str) -> float:
    """A CSV score; an empty cell is NaN (pandas writes NaN so: an HD95 with both masks empty)."""
    return float(cell) if cell not in ("", None) else float("nan")


def _score_mean(values: list[float]) -> float:
    """The mean of per-sample scores, NaN left out (as the task's means do); exact `_mean` when there is none."""
    kept = [v for v in values if not math.isnan(v)]
    return _mean(kept) if kept else float("nan")


def _model_value(rows: list[dict[str, str]], column: str, record: dict[str, Any]) -> float:
    """One model's value of ``column`` from its rows: the mean over rows, or with cross-validation rows (a ``fold``
    column) and ``comparisons.folds.aggregate == "mean-of-folds"`` the mean of the per-fold means."""
    folds = (record.get("comparisons") or {}).get("folds") or {}
    if rows and rows[0].get("fold", "") != "" and folds.get("aggregate") == "mean-of-folds":
        by_fold: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            by_fold[r["fold"]].append(_float(r[column]))
        return _score_mean([_score_mean(v) for _, v in sorted(by_fold.items(), key=lambda kv: int(kv[0]))])
    return _score_mean([_float(r[column]) for r in rows])


def _columns(record: dict[str, Any], spec: Any) -> tuple[str, ...]:
    """The per-sample columns this record's headline recomputes from: the task's, plus its optional ones the
    record reports (seg-aug's surface metrics)."""
    optional = getattr(spec, "optional_columns", ())
    return (*spec.columns, *(c for c in optional if c in record["metrics"]))


def check_scores(record: dict[str, Any], rows: list[dict[str, str]] | None, folder: Path | None = None) -> str:
    """Headline, per-model values and comparisons recompute from the per-sample rows. Returns a note for the
    verdict ('' or why nothing could be recomputed)."""
    from bench.registry import TASKS

    task_id = record["task"]["id"]
    spec = getattr(TASKS.get(task_id), "sample_scores", None)
    if spec is None:
        raise SubmissionError(f"task {task_id} does not declare which of its metrics recompute from per-sample "
                              "scores (Task.sample_scores): its records cannot be checked")
    recomputed = _check_confusion(record, spec, rows) if spec.confusion and rows is not None else set()
    if spec.metric_rows and rows is not None:
        recomputed |= _check_metric_rows(record, spec, rows)
    if spec.fd_stats and folder is not None:
        recomputed |= _check_fd_stats(record, spec, Path(folder))
    if spec.split_metrics and rows and "split" in rows[0]:
        recomputed |= _check_split_metrics(record, spec, rows)
    columns = _columns(record, spec)
    unchecked = [k for k in record["metrics"] if k not in columns and k not in recomputed]
    declared = (*spec.not_recomputed, *spec.metric_rows, *(("fd[*",) if spec.fd_stats else ()))
    undeclared = [k for k in unchecked if not any(_matches(k, pattern) for pattern in declared)]
    if undeclared:
        raise SubmissionError(f"metric '{undeclared[0]}' of task {task_id} is neither recomputed from the per-sample "
                              "scores nor declared as not recomputable (Task.sample_scores)")
    note = f"not recomputable from per-sample scores: {', '.join(unchecked)}" if unchecked else ""
    if rows is None:
        if spec.has_file:
            raise SubmissionError(f"no per-sample file: task {task_id}'s metrics must recompute from one" if spec.columns
                                  else f"no per-sample file: task {task_id} writes one with every run")
        return note
    if not spec.columns:
        return note
    if spec.split is not None and rows and "split" in rows[0]:  # legacy files hold the headline split only
        rows = [r for r in rows if r.get("split") == spec.split]
    missing = [c for c in ("model", "arm", "id", *columns) if rows and c not in rows[0]]
    if missing or not rows:
        raise SubmissionError(f"the per-sample file lacks {', '.join(missing) or 'rows'}")
    is_reference, mine, reference, checked_ids = _arms(record, spec, rows)
    if not checked_ids:
        note = "; ".join(filter(None, [note, "per-sample ids not checked: the test split's ids need the data"]))
    means = {m: {c: _model_value(model_rows, c, record) for c in columns} for m, model_rows in mine.items()}
    for model, values in means.items():
        for column, value in values.items():
            if not _close(value, record["per_model"][model].get(column)):
                raise SubmissionError(f"per_model.{model}.{column} is {record['per_model'][model].get(column)}, its "
                                      f"per-sample scores average {value}")
    for column in columns:
        headline = _mean([v[column] for v in means.values()])
        if not _close(headline, record["metrics"].get(column)):
            raise SubmissionError(f"metrics.{column} is {record['metrics'].get(column)}, the mean of its per-model "
                                  f"values is {headline}")
    if not is_reference:
        _check_comparisons(record, spec, mine, reference)
    return note


def _arms(record: dict[str, Any], spec: Any, rows: list[dict[str, str]]
          ) -> tuple[bool, dict[str, list[dict[str, str]]], dict[str, list[dict[str, str]]], bool]:
    """The rows per model of the record's own arm and of the reference arm, after checking that the models are the
    record's and each model's ids are the protocol's test split. Returns (the record is the reference arm, its
    rows, the reference rows, whether the ids could be checked)."""
    groups: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[r["arm"]][r["model"]].append(r)
    is_reference = record["method"]["id"] == spec.reference_arm
    mine, reference = groups.get(spec.reference_arm if is_reference else spec.arm, {}), groups.get(spec.reference_arm, {})
    if set(mine) != set(record["per_model"]):
        raise SubmissionError(f"the per-sample file scores models {sorted(mine)}, the record reports {sorted(record['per_model'])}")
    expected_ids = scored_ids(record)
    for model, model_rows in mine.items():
        if expected_ids is not None and sorted(r["id"] for r in model_rows) != expected_ids:
            raise SubmissionError(f"the per-sample ids of model {model} are not the protocol's test split")
    return is_reference, mine, reference, expected_ids is not None


def _check_split_metrics(record: dict[str, Any], spec: Any, rows: list[dict[str, str]]) -> set[str]:
    """Scores on another split (``dice[ph2]``: a transfer set) recompute from the rows of that split, per model
    and as the mean over models."""
    is_reference = record["method"]["id"] == spec.reference_arm
    arm = spec.reference_arm if is_reference else spec.arm
    checked = set()
    for key, stated in record["metrics"].items():
        column, _, rest = key.partition("[")
        split = rest[:-1] if rest.endswith("]") else ""
        if column not in spec.columns or not split or split == spec.split:
            continue
        by_model: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            if r.get("split") == split and r["arm"] == arm:
                by_model[r["model"]].append(float(r[column]))
        if not by_model:
            raise SubmissionError(f"metrics.{key} has no '{split}' rows in the per-sample file")
        means = {m: _mean(v) for m, v in by_model.items()}
        for model, value in means.items():
            given = (record["per_model"].get(model) or {}).get(key)
            if not _close(value, given):
                raise SubmissionError(f"per_model.{model}.{key} is {given}, its per-sample scores average {value}")
        if not _close(_mean(list(means.values())), stated):
            raise SubmissionError(f"metrics.{key} is {stated}, the mean of its per-model values is "
                                  f"{_mean(list(means.values()))}")
        checked.add(key)
    return checked


def _check_metric_rows(record: dict[str, Any], spec: Any, rows: list[dict[str, str]]) -> set[str]:
    """Metrics that are means over pairs: each equals the mean ``value`` of the rows naming it."""
    if rows and any(c not in rows[0] for c in ("metric", "id", "value")):
        raise SubmissionError("the per-sample file lacks the metric/id/value columns of its per-pair scores")
    checked = set()
    for key, stated in record["metrics"].items():
        if not any(_matches(key, p) for p in spec.metric_rows):
            continue
        values = [float(r["value"]) for r in rows if r["metric"] == key]
        if not values:
            raise SubmissionError(f"metrics.{key} has no per-pair rows in the per-sample file")
        if not _close(_mean(values), stated):
            raise SubmissionError(f"metrics.{key} is {stated}, its {len(values)} per-pair scores average {_mean(values)}")
        checked.add(key)
    return checked


def _check_fd_stats(record: dict[str, Any], spec: Any, folder: Path) -> set[str]:
    """Every ``fd[...]`` metric recomputes from the two sets' feature statistics stored beside the record."""
    from bench.metrics.image import fd_from_stats_file

    keys = [k for k in record["metrics"] if k.startswith("fd[")]
    name = (record.get("artifacts") or {}).get(spec.fd_stats)
    if not keys or (not name and "provenance" not in record):
        return set()  # nothing to check, or a legacy record written before FD statistics were stored
    if not name or not (folder / name).is_file():
        raise SubmissionError(f"no '{spec.fd_stats}' artefact beside the record: its {keys[0]} cannot be recomputed")
    try:
        value = fd_from_stats_file(folder / name)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise SubmissionError(f"the '{spec.fd_stats}' artefact cannot be read: {exc}") from None
    for key in keys:
        if not _close(value, record["metrics"][key], 1e-6):
            raise SubmissionError(f"metrics.{key} is {record['metrics'][key]}, its feature statistics give {value}")
    return set(keys)


def _class_names(record: dict[str, Any]) -> list[str]:
    """The class names in the order the run scored them: the ``f1[<class>]`` keys of its per-class F1."""
    per_model = record.get("per_model") or {}
    keys = next(iter(per_model.values()), None) if per_model else record["metrics"]
    return [k[3:-1] for k in (keys or {}) if k.startswith("f1[") and k.endswith("]")]


def _check_confusion(record: dict[str, Any], spec: Any, rows: list[dict[str, str]]) -> set[str]:
    """Every confusion-matrix metric recomputes from the rows' true and predicted classes: per model and arm (and
    the comparisons built on them) where the rows name models, the headline for the whole file otherwise. Returns
    the headline keys so checked."""
    from bench.metrics.classification import classification_scores

    truth, pred = spec.confusion
    names = _class_names(record)
    if not names:
        raise SubmissionError("the record has no per-class f1[<class>] scores, so its classes are unknown")
    if rows and any(c not in rows[0] for c in (truth, pred)):
        raise SubmissionError(f"the per-sample file lacks the '{truth}'/'{pred}' columns of its class predictions")
    labels = list(range(len(names)))

    def scores(group: list[dict[str, str]]) -> dict[str, float]:
        try:
            return classification_scores([int(r[truth]) for r in group], [int(r[pred]) for r in group],
                                         labels=labels, class_names=names)
        except ValueError as exc:
            raise SubmissionError(f"the per-sample class predictions cannot be scored: {exc}") from None

    def compare(stated: dict[str, Any], computed: dict[str, float], where: str) -> None:
        for key, value in computed.items():
            if key in stated and not _close(value, stated[key]):
                raise SubmissionError(f"{where}.{key} is {stated[key]}, its per-sample predictions give {value}")

    if not record.get("per_model"):
        headline = scores(rows)
        compare(record["metrics"], headline, "metrics")
        return set(headline) & set(record["metrics"])
    is_reference, mine, reference, _ = _arms(record, spec, rows)
    per_model = {}
    for model, model_rows in mine.items():
        per_model[model] = scores(model_rows)
        compare(record["per_model"][model], per_model[model], f"per_model.{model}")
    headline = {k: _mean([v[k] for v in per_model.values()]) for k in next(iter(per_model.values()))}
    compare(record["metrics"], headline, "metrics")
    comparisons = record.get("comparisons") or {}
    if not is_reference and reference:
        _check_confusion_comparisons(comparisons, per_model, {m: scores(rs) for m, rs in reference.items()}, compare)
    return set(headline) & set(record["metrics"])


def _check_confusion_comparisons(comparisons: dict[str, Any], ours: dict[str, dict[str, float]],
                                 theirs: dict[str, dict[str, float]], compare: Any) -> None:
    """The reference arm's per-model scores and the relative gains over it recompute from the reference rows."""
    from bench.metrics.stats import relative_gain_or_none

    if set(theirs) != set(ours):
        raise SubmissionError(f"the record compares with the reference arm, but the per-sample file holds its "
                              f"predictions for {sorted(theirs)} only")
    for model, values in theirs.items():
        compare((comparisons.get("reference_per_model") or {}).get(model, {}), values,
                f"comparisons.reference_per_model.{model}")
    for key, stated in (comparisons.get("relative_gain") or {}).items():
        if key in next(iter(ours.values())):
            value = relative_gain_or_none({m: v[key] for m, v in ours.items()}, {m: theirs[m][key] for m in ours})
            if not _close(value, stated, 1e-6):
                raise SubmissionError(f"comparisons.relative_gain.{key} is {stated}, the per-sample predictions give {value}")


def _matches(key: str, pattern: str) -> bool:
    return key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern


def scored_ids(record: dict[str, Any]) -> list[str] | None:
    """The ids a seg-aug-style record scores, sorted: the test split's, or with ``task.folds`` every labelled sample's
    (train + val + test pooled), of fold ``task.fold`` only when it is set (the task's case-level KFold); case ids
    instead of sample ids with ``task.eval_unit: case``. None when the dataset cannot say without its data."""
    from bench.tasks.derm_seg import case_folds

    task = record["config"].get("task") or {}
    folds, fold, unit = task.get("folds"), task.get("fold"), task.get("eval_unit", "image")
    splits = ("train", "val", "test") if folds else ("test",)
    if fold is None and unit == "image":
        return test_split_ids(record, splits)
    try:
        dataset = _dataset(record)
        ids = [i for name in splits for i in dataset.split_ids(name)]
        per_split = [dataset.sample_cases(name) for name in splits]
    except Exception:  # noqa: BLE001 - no dataset, or a real one whose ids live in its files
        return None
    if any(c is None for c in per_split):  # cases that only the data gives
        return None
    cases = [c for split_cases in per_split for c in split_cases]
    keys = [f"case:{c}" if c is not None else f"id:{i}" for i, c in zip(ids, cases)]
    if fold is not None:
        _, held = case_folds(keys, int(folds))[int(fold)]
        ids, keys = [ids[i] for i in held], [keys[i] for i in held]
    return sorted({k.split(":", 1)[1] for k in keys}) if unit == "case" else sorted(ids)


def _dataset(record: dict[str, Any]) -> Any:
    """The record's dataset source, built without a data folder (procedural worlds; real ones fail on use)."""
    from bench.registry import DATASETS

    task = record["config"].get("task") or {}
    dataset = DATASETS.get(task.get("dataset") or record["dataset"]["id"])
    return dataset(root=None, image_size=task.get("image_size"), **(task.get("dataset_options") or {}))


def test_split_ids(record: dict[str, Any], splits: tuple[str, ...] = ("test",)) -> list[str] | None:
    """The test split's ids, sorted, from the dataset definition alone: procedural worlds generate them, real
    datasets with a committed split file (``datasets/splits/<id>.csv``) list them; None when they cannot be known
    without the data. The protocol-hash check ties this definition to the record's split checksum. ``splits``: the
    splits whose ids are scored (cross-validation scores every labelled sample: train, val and test)."""
    from bench.data.cards import split_file
    from bench.data.splits import read_split_csv
    from bench.registry import DATASETS

    task = record["config"].get("task") or {}
    dataset_id = task.get("dataset") or record["dataset"]["id"]
    try:
        dataset = DATASETS.get(dataset_id)
    except Exception:  # noqa: BLE001 - unknown here (the task check refuses it)
        return None
    if getattr(dataset, "split_mode", None) == "committed":
        try:
            table = read_split_csv(split_file(dataset_id))
            return sorted(i for name in splits for i in table[name])
        except Exception:  # noqa: BLE001 - no committed file in this install
            return None
    try:
        return sorted(i for name in splits for i in _dataset(record).split_ids(name))
    except Exception:  # noqa: BLE001 - a real dataset whose ids live in its files
        return None


def _check_comparisons(record: dict[str, Any], spec: Any, mine: dict[str, list], reference: dict[str, list]) -> None:
    from bench.metrics.stats import paired_ttest, relative_gain_or_none, relative_gain_over_defined

    comparisons = record.get("comparisons") or {}
    gains, tests = comparisons.get("relative_gain") or {}, comparisons.get("paired_ttest") or {}
    if (gains or tests) and set(reference) != set(mine):
        raise SubmissionError(f"the record compares with {spec.reference_arm}, but the per-sample file holds that "
                              f"arm's scores for {sorted(reference)} only")
    for column in _columns(record, spec):
        ours = {m: _model_value(rs, column, record) for m, rs in mine.items()}
        theirs = {m: _model_value(rs, column, record) for m, rs in reference.items()}
        if column in gains:
            stated = gains[column]
            rule = relative_gain_over_defined if spec.gain_over_defined_models else relative_gain_or_none
            try:
                value = rule(ours, theirs)
            except (ValueError, TypeError, ZeroDivisionError):
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


def check_provenance(record: dict[str, Any], folder: Path) -> None:
    """Refuse a record without content hashes or whose hashes no longer match its content and files."""
    from bench.store import check_provenance as problems_of

    problems = problems_of(record, folder)
    if problems:
        raise SubmissionError(problems[0])


def self_consistency(record: dict[str, Any], folder: Path) -> list[str]:
    """Every check above; returns the notes for the verdict."""
    notes = [check_identity(record)]
    check_provenance(record, folder)
    notes.append(check_scores(record, read_scores(record, folder), folder))
    return [n for n in notes if n]
