"""Named leaderboard protocols: task settings per task and profile, found again from a record's protocol hash.

``bench/protocols.yaml`` names the task settings that records are ranked under (``seg-aug/mini@v1``, "S_1k twin,
4 segmenters"). ``bench run`` resolves a task config as profile section -> protocol settings -> ``--config`` ->
``--dataset`` -> ``--set``; without ``--protocol`` it runs the default protocol of the task and profile (the one the
shipped records use), so a contributor's plain run lands in the same leaderboard section as the shipped methods.

A record carries only the protocol hash; :func:`name_of` finds the protocol whose settings give that hash with the
record's split checksums. A task and profile with no entry in the file has one implicit default protocol,
``<task>/<profile>@v<task version>``: the profile's own settings. The naming follows lm-evaluation-harness's task names with a
version: a change that moves a protocol's hash gets a new version, never the old name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

PROTOCOLS_FILE = Path(__file__).with_name("protocols.yaml")
NAME = re.compile(r"^(?P<task>[a-z0-9][a-z0-9-]*)/(?P<profile>smoke|mini|paper)(?:-(?P<variant>[A-Za-z0-9.][A-Za-z0-9.-]*))?"
                  r"@v(?P<version>[1-9][0-9]*)$")


class ProtocolError(ValueError):
    """An unknown protocol name, or one that does not fit the run (one line)."""


@dataclass(frozen=True)
class Protocol:
    """One named protocol: task-config values put over the profile's own for ``task`` and ``profile``."""

    name: str
    task: str
    profile: str
    title: str
    about: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    default: bool = False
    hash: str | None = None  # the hash's first 8 characters, as pinned in the file (None: not pinned)
    implicit: bool = False
    vary: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Task keys whose listed values each keep the protocol's name (a family: MedDiff-FT's +150 / +275 pairs,
    DiffBoost's folds); every combination is its own hash, and so its own leaderboard section."""
    values: dict[str, Any] = field(default_factory=dict)
    """The ``vary`` values of one member of the family (set by `name_of` for a record)."""

    @property
    def label(self) -> str:
        """``name (title)``, e.g. ``seg-aug/mini@v1 (S_1k twin, 4 segmenters)``."""
        return f"{self.display_name} ({self.title})"

    @property
    def display_name(self) -> str:
        """The name, with the member's ``vary`` values: ``seg-aug/mini-meddiff-busi@v1[n_generate=150]``."""
        if not self.values:
            return self.name
        return self.name + "[" + ",".join(f"{k}={_plain(v)}" for k, v in sorted(self.values.items())) + "]"

    def members(self) -> list[Protocol]:
        """The protocol itself (its settings as listed) and one protocol per combination of its ``vary`` values."""
        import itertools

        keys = sorted(self.vary)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(self.vary[k] for k in keys))] if keys else []
        return [self, *(replace(self, settings={**self.settings, **combo}, values=combo) for combo in combos)]


def _plain(value: Any) -> str:
    return "null" if value is None else str(value)


@lru_cache(maxsize=4)
def load(path: Path = PROTOCOLS_FILE) -> dict[str, Protocol]:
    """The protocols of ``path`` by name (the file is checked: names, keys, one default per task and profile)."""
    from bench.config import read_yaml

    data = read_yaml(path) or {}
    out: dict[str, Protocol] = {}
    defaults: dict[tuple[str, str], str] = {}
    for name, entry in data.items():
        match = NAME.match(str(name))
        if not match:
            raise ProtocolError(f"{path}: protocol name '{name}' is not <task>/<profile>[-<variant>]@v<N>")
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            raise ProtocolError(f"{path}: protocol '{name}' needs a mapping with a string 'title'")
        unknown = set(entry) - {"title", "about", "task", "default", "hash", "vary"}
        if unknown:
            raise ProtocolError(f"{path}: protocol '{name}': unknown key(s) {', '.join(sorted(unknown))}")
        vary = entry.get("vary") or {}
        if not isinstance(vary, dict) or not all(isinstance(v, list) and v for v in vary.values()):
            raise ProtocolError(f"{path}: protocol '{name}': 'vary' must map task keys to non-empty lists of values")
        proto = Protocol(name=name, task=match["task"], profile=match["profile"], title=entry["title"],
                         about=entry.get("about", ""), settings=dict(entry.get("task") or {}),
                         default=bool(entry.get("default", False)), hash=entry.get("hash"),
                         vary={k: tuple(v) for k, v in vary.items()})
        if proto.default:
            key = (proto.task, proto.profile)
            if key in defaults:
                raise ProtocolError(f"{path}: '{defaults[key]}' and '{name}' are both the default of {key[0]} "
                                    f"({key[1]})")
            defaults[key] = name
        out[name] = proto
    return out


def implicit(task: str, profile: str) -> Protocol:
    """The profile's own settings, versioned with the task (a new task version moves every hash of the task)."""
    from bench.registry import TASKS

    version = TASKS.get(task).version if task in TASKS.names() else 1
    return Protocol(name=f"{task}/{profile}@v{version}", task=task, profile=profile,
                    title=f"the {profile} profile's own settings", default=True, implicit=True)


def of_task(task: str, profile: str) -> list[Protocol]:
    """The protocols of a task and profile, the default first (an implicit one when the file lists none)."""
    listed = [p for p in load().values() if p.task == task and p.profile == profile]
    if not any(p.default for p in listed):
        listed.insert(0, implicit(task, profile))
    return sorted(listed, key=lambda p: not p.default)


def default(task: str, profile: str) -> Protocol:
    """The leaderboard protocol of a task and profile: what a plain ``bench run`` runs."""
    return of_task(task, profile)[0]


def get(name: str, task: str, profile: str) -> Protocol:
    """The protocol ``name`` for a run of ``task`` in ``profile`` (ProtocolError naming the valid ones)."""
    known = {p.name: p for p in of_task(task, profile)}
    if name in known:
        return known[name]
    other = load().get(name)
    if other is not None:
        raise ProtocolError(f"--protocol {name} is a protocol of task {other.task} in the {other.profile} profile, "
                            f"not of {task} ({profile}); use one of {', '.join(known)}")
    raise ProtocolError(f"unknown protocol '{name}' for task {task} ({profile}); use one of {', '.join(known)}")


def for_run(task_cls: type, profile: str, name: str | None, dataset: str | None) -> Protocol | None:
    """The protocol a run applies: ``name``, else the default of the task and profile. None when no name was given
    and ``dataset`` (``--dataset``) is not the default protocol's dataset: a protocol is defined on its dataset,
    and a run on another one ranks with no shipped record."""
    from bench import config as cfg

    proto = get(name, task_cls.id, profile) if name else default(task_cls.id, profile)
    own = proto.settings.get("dataset", cfg.profile_section(task_cls.config_file(), profile).get("dataset"))
    if dataset is not None and dataset != own:
        if name:
            raise ProtocolError(f"--protocol {name} runs on dataset '{own}', not '{dataset}'")
        return None
    return proto


def task_values(task_cls: type, proto: Protocol) -> dict[str, Any]:
    """The task-config values of a protocol: the profile section with the protocol's settings on top."""
    from bench import config as cfg

    return {**cfg.profile_section(task_cls.config_file(), proto.profile), **proto.settings}


def hash_for(proto: Protocol, checksums: dict[str, str]) -> str:
    """The protocol hash of ``proto`` with these split checksums."""
    from bench import config as cfg
    from bench.registry import TASKS
    from bench.store import protocol_hash, protocol_of

    task_cls = TASKS.get(proto.task)
    config = cfg.build(task_cls.Config, task_values(task_cls, proto), "task")
    return protocol_hash(task_cls.id, task_cls.version, protocol_of(config, task_cls), checksums)


def name_of(task: str, profile: str, protocol_hash: str, checksums: dict[str, str]) -> Protocol | None:
    """The protocol of ``task`` and ``profile`` whose settings give ``protocol_hash`` with these split checksums."""
    for proto in of_task(task, profile):
        for member in proto.members():
            try:
                full = _hash_cached(proto.name, task, profile, tuple(sorted(checksums.items())),
                                    repr(sorted(member.values.items())))
            except Exception:  # noqa: BLE001 - a task this install cannot build (a plugin's, an invalid entry)
                continue
            if full.startswith(protocol_hash) or protocol_hash.startswith(full):
                return member
    return None


@lru_cache(maxsize=2048)
def _hash_cached(name: str, task: str, profile: str, checksums: tuple[tuple[str, str], ...], values: str) -> str:
    member = next(m for m in get(name, task, profile).members() if repr(sorted(m.values.items())) == values)
    return hash_for(member, dict(checksums))


def record_protocol(record: dict[str, Any]) -> Protocol | None:
    """The named protocol of a record (None: its settings are no named protocol's)."""
    return name_of(record["task"]["id"], record["profile"], record["protocol_hash"],
                   dict(record["dataset"].get("splits") or {}))


def describe(record: dict[str, Any], width: int = 8) -> str:
    """``seg-aug/mini@v1 "S_1k twin, 4 segmenters" (c0ccbbf7)``, or ``c0ccbbf7 (unnamed)``."""
    proto = record_protocol(record)
    short = record["protocol_hash"][:width]
    return f"{proto.display_name} \"{proto.title}\" ({short})" if proto else f"{short} (no named protocol)"

