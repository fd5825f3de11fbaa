"""Configs: typed dataclasses filled from per-profile YAML, a ``--config`` file and ``--set`` overrides.

Every method and task has a frozen dataclass ``Config`` and a YAML file with
``version`` and one section per profile::

    version: 1
    mini: {lr: 1.0e-3, epochs: 20}
    paper: {lr: 1.0e-4, epochs: 200}
    smoke: {epochs: 1}          # merged on top of mini

Resolution order: dataclass defaults < profile section (smoke = mini + smoke) <
``--config FILE`` (sections ``task:`` and ``method:``) < ``--set key=value``.
Unknown keys are errors that name the key, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("smoke", "mini", "paper")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A config file, key or value is wrong (the message is one line naming it)."""


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; name a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:  # unreadable (permissions) or not text
        raise ConfigError(f"config file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def profile_section(path: Path | None, profile: str) -> dict[str, Any]:
    """The values of ``profile`` in a per-profile YAML file (smoke is merged on top of mini)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}'; valid profiles: {', '.join(PROFILES)}")
    if path is None or not Path(path).exists():
        return {}
    data = read_yaml(path)
    unknown = set(data) - {"version", *PROFILES}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; expected version, {', '.join(PROFILES)}")
    for name in PROFILES:
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise ConfigError(f"{path}: section '{name}' must be a mapping")
    if profile == "smoke":
        return {**(data.get("mini") or {}), **(data.get("smoke") or {})}
    return dict(data.get(profile) or {})


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a (simple) type annotation, converting where lossless."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list, Sequence) or annotation in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args and (len(args) == 1 or args[-1] is Ellipsis) else None
        items = [_coerce(v, inner, key) if inner is not None else v for v in value]
        return tuple(items) if (origin is tuple or annotation is tuple) else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, type-checked, naming any unknown key."""
    names = field_names(cls)
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"unknown {where} config key '{unknown[0]}'; valid keys: {', '.join(names) or '(none)'}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k, Any), f"{where}.{k}") for k, v in values.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where} config: {exc}") from None
    for key, value in values.items():
        _check_bound(key, kwargs[key], f"{where}.{key}")
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


#: Lower bounds of numeric keys that tasks and methods share: a value outside is a typo or a misunderstanding
#: (``max_epochs=-3`` trained nothing and wrote a record). (bound, inclusive)
NUMERIC_BOUNDS: dict[str, tuple[float, bool]] = {
    "max_epochs": (1, True), "epochs": (1, True), "batch_size": (1, True), "patience": (0, True),
    "steps": (0, True), "n_generate": (0, True), "n_real": (0, True), "image_size": (8, True), "resolution": (8, True),
    "lr": (0, False), "guidance_scale": (0, True), "num_inference_steps": (1, True), "grid_size": (0, True),
}


def _check_bound(key: str, value: Any, where: str) -> None:
    bound = NUMERIC_BOUNDS.get(key)
    if bound is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, inclusive = bound
    if value < low or (value == low and not inclusive):
        raise ConfigError(f"{where}={value}: must be {'>=' if inclusive else '>'} {low:g}")


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-ready dict (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def parse_set(items: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings; values are YAML scalars/lists (``lr=1e-3``, ``models=[unet]``)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set '{item}': expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set '{item}': empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        out.append((key, value))
    return out


def split_overrides(pairs: Sequence[tuple[str, Any]], task_cls: type, method_cls: type) -> tuple[dict, dict]:
    """Route ``--set`` keys to the task or method config.

    ``task.key`` and ``method.key`` are explicit; a bare ``key`` goes where it exists, and is an
    error when it exists in both or neither.
    """
    task_keys, method_keys = set(field_names(task_cls)), set(field_names(method_cls))
    task_over: dict[str, Any] = {}
    method_over: dict[str, Any] = {}
    for key, value in pairs:
        scope, _, name = key.partition(".") if key.startswith(("task.", "method.")) else ("", "", key)
        if scope == "task" or (not scope and name in task_keys and name not in method_keys):
            if name not in task_keys:
                raise ConfigError(f"unknown --set key '{key}': task has no key '{name}'; task keys: {', '.join(sorted(task_keys))}")
            task_over[name] = value
        elif scope == "method" or (not scope and name in method_keys and name not in task_keys):
            if name not in method_keys:
                raise ConfigError(f"unknown --set key '{key}': method has no key '{name}'; method keys: {', '.join(sorted(method_keys)) or '(none)'}")
            method_over[name] = value
        elif name in task_keys and name in method_keys:
            raise ConfigError(f"--set key '{key}' is ambiguous: write task.{name} or method.{name}")
        else:
            raise ConfigError(f"unknown --set key '{key}'; task keys: {', '.join(sorted(task_keys))}; "
                              f"method keys: {', '.join(sorted(method_keys)) or '(none)'}")
    return task_over, method_over


def config_file_sections(path: Path | None) -> tuple[dict, dict]:
    """The ``task:`` and ``method:`` sections of a ``--config`` file."""
    if path is None:
        return {}, {}
    data = read_yaml(path)
    unknown = set(data) - {"task", "method"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; expected task, method")
    for k in ("task", "method"):
        if data.get(k) is not None and not isinstance(data[k], dict):
            raise ConfigError(f"{path}: section '{k}' must be a mapping")
    return dict(data.get("task") or {}), dict(data.get("method") or {})


def method_config_file(method_cls: type) -> Path | None:
    """``config.yaml`` beside the module defining the method, if any."""
    import inspect

    try:
        return Path(inspect.getfile(method_cls)).parent / "config.yaml"
    except (TypeError, OSError):
        return None


def recorded_overrides(task_cls: type, method_cls: type, profile: str, config_file: Path | None,
                       sets: Sequence[str], dataset: str | None,
                       portable: typing.Callable[[dict[str, Any]], dict[str, Any]] = dict,
                       protocol: str | None = None) -> dict[str, dict[str, Any]]:
    """What a run put over its profile's defaults (the leaderboard protocol's task settings, the ``--config``
    sections, ``--dataset``, the ``--set`` values; later layers win), such that building ``Config`` from the profile
    section plus these values gives the run's config again (``bench.runner.resolve`` applies the same layers). A
    record states them, so that its profile is checkable: the configs must be that profile's defaults plus these
    overrides. ``portable`` rewrites the task values as the record states its task config (a mask source's path
    becomes a run id). ``protocol``: the ``--protocol`` name (None: the default of the task and profile)."""
    from bench import protocols

    proto = protocols.for_run(task_cls, profile, protocol, dataset)
    file_task, file_method = config_file_sections(config_file)
    set_task, set_method = split_overrides(parse_set(sets), task_cls.Config, method_cls.Config)
    task = {**(proto.settings if proto else {}), **file_task}
    if dataset is not None:
        profile_task = {**profile_section(task_cls.config_file(), profile), **task}
        if dataset != profile_task.get("dataset") and "dataset_options" not in task and \
                "dataset_options" in profile_task:
            # resolve drops the profile's options of another dataset: the field's default applies
            default = {f.name: f for f in dataclasses.fields(task_cls.Config)}["dataset_options"]
            task["dataset_options"] = default.default_factory() if callable(default.default_factory) else default.default
        task["dataset"] = dataset
    task.update(set_task)
    return {"task": portable(task), "method": {**file_method, **set_method}}
