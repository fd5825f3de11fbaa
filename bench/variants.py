"""How a record's run differs from its method's and task's profile defaults (``ca_guidance=False``,
``task.conditioning=generated-masks``): the label that keeps config variants apart in tables, results and the site.

It sits beside the record it labels, below the runner and the tables (imports only config and the registries).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)


def same_value(a: Any, b: Any) -> bool:
    """Config values equal as a user means them: bools only equal bools, numbers within float noise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@lru_cache(maxsize=None)
def method_defaults(method_id: str, profile: str) -> dict[str, Any] | None:
    """The method's resolved config for the profile with no user overrides (None if the method is not installed).
    Cached: read-only."""
    from bench import config as cfg
    from bench.registry import METHODS

    try:
        method_cls = METHODS.get(method_id)
        values = cfg.profile_section(cfg.method_config_file(method_cls), profile)
        return cfg.to_dict(cfg.build(method_cls.Config, values, "method"))
    except Exception as exc:  # an external method or a stale config: its runs count as default runs
        logger.debug("no default config for method %s: %s", method_id, exc)
        return None


def later_option_defaults(method_cls: type) -> dict[str, Any]:
    """The Config defaults of the method's ``options_added_later`` (options added after records of it shipped; at
    these values they keep those records' behaviour), as plain config values (a dataclass as its dict)."""
    from bench import config as cfg

    config_cls = getattr(method_cls, "Config", None)
    later = getattr(method_cls, "options_added_later", frozenset())
    if not later or config_cls is None or not dataclasses.is_dataclass(config_cls):
        return {}
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.name in later:
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out[f.name] = cfg.to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def with_later_keys(config: dict[str, Any], task_cls: type, method_cls: type) -> dict[str, Any]:
    """A record's ``{"task": ..., "method": ...}`` configs with the keys added after it was written filled in at the
    values that keep its behaviour (the task's ``inputs_left_out_at`` and ``protocol_left_out_at``, the Config default of the method's
    ``options_added_later``), so that records shipped before a key existed compare with today's configs."""
    task = dict(config.get("task") or {})
    for key, value in {**getattr(task_cls, "inputs_left_out_at", {}), **getattr(task_cls, "protocol_left_out_at", {})}.items():
        task.setdefault(key, value)
    method = dict(config.get("method") or {})
    for key, value in later_option_defaults(method_cls).items():
        method.setdefault(key, json.loads(json.dumps(value)))
    return {**config, "task": task, "method": method}


@lru_cache(maxsize=None)
def later_defaults(task_id: str, method_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task and method keys added after the first records (``with_later_keys``) at the values that keep those
    records' behaviour; ({}, {}) for a task or method that is not installed. Cached: read-only."""
    from bench.registry import METHODS, TASKS, UnknownEntryError

    try:
        task_cls, method_cls = TASKS.get(task_id), METHODS.get(method_id)
    except UnknownEntryError:
        return {}, {}
    filled = with_later_keys({}, task_cls, method_cls)
    return filled["task"], filled["method"]


@lru_cache(maxsize=None)
def _task_input_defaults(task_id: str, profile: str) -> dict[str, Any]:
    """Default values of the task's generator inputs (the config keys outside the protocol that choose what the
    generator is given), or {} if the task is unknown. Cached: read-only."""
    from bench import config as cfg
    from bench.registry import TASKS

    try:
        task_cls = TASKS.get(task_id)
        values = cfg.to_dict(cfg.build(task_cls.Config, cfg.profile_section(task_cls.config_file(), profile), "task"))
    except Exception as exc:
        logger.debug("no default config for task %s: %s", task_id, exc)
        return {}
    return {k: values.get(k) for k in getattr(task_cls, "generator_inputs", ())}


def _changes(values: dict[str, Any], defaults: dict[str, Any] | None, prefix: str = "") -> list[str]:
    return [f"{prefix}{k}={values[k]}" for k in sorted(values) if defaults and k in defaults
            and not same_value(values[k], defaults[k])]


def method_changes(record: dict[str, Any]) -> list[str]:
    """``key=value`` for each method config key of the record that differs from the method's profile defaults."""
    config = (record.get("config") or {}).get("method") or {}
    return _changes(config, method_defaults(record["method"]["id"], record["profile"]))


def variant_label(record: dict[str, Any]) -> str:
    """How a run differs from its method's profile defaults and its task's default generator inputs, as
    ``key=value, ...`` ('' for a default run): DiDGen ``prompt=dermprompt`` or ``ca_guidance=False``, ControlNet
    on seg-aug with ``task.conditioning=generated-masks``."""
    task = (record.get("config") or {}).get("task") or {}
    task_changes = _changes(task, _task_input_defaults(record["task"]["id"], record["profile"]), "task.")
    # a value naming a run of the record's own seed (seg-aug's mask_source: the DiDGen run of that seed) reads the
    # seed as *, so that the seeds of one variant share its label
    return ", ".join(method_changes(record) + task_changes).replace(f"__s{record.get('seed')}__", "__s*__")



def newest_per_seed(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest record (by ``created``) of each seed, in seed order: a rerun replaces its seed's older record."""
    by_seed: dict[int, dict[str, Any]] = {}
    for rec in records:
        old = by_seed.get(rec["seed"])
        if old is None or rec.get("created", "") > old.get("created", ""):
            by_seed[rec["seed"]] = rec
    return [by_seed[s] for s in sorted(by_seed)]


def entries(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Leaderboard entries: the records grouped by (method id, `variant_label`), the newest record of each seed
    (`newest_per_seed`). A config variant (DiDGen with ``ca_guidance=False``) is an entry of its own, never a seed of
    the default run. Group records of one protocol first: an entry does not look at protocols."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["method"]["id"], variant_label(rec)), []).append(rec)
    return {key: newest_per_seed(recs) for key, recs in groups.items()}
