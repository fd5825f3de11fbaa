"""The sweep file: a campaign of ``bench run`` runs as data.

A sweep file is YAML::

    name: ch4-mini                       # default: the file name without .yaml
    description: ...                     # optional, free text
    tables: [thesis-4.5, thesis-4.6]     # the paper tables its records fill (bench table --list)
    defaults:                            # every run starts from these
      profile: mini
      seed: 0                            # or seeds: [0, 1, 2]
      threads: 1
      config: seg.yaml                   # relative to the sweep file
      set: {task.max_epochs: 40}         # --set overrides (merged key by key with a run's own)
    grid:                                # one block or a list of blocks: every combination is a run
      - task: seg-aug
        method: [real-only, didgen]      # a list is an axis; so are dataset, profile, config, seed(s)
        sets: {s2.5k: {}, s1k: {task.n_real: 200}}   # an axis of override sets (a mapping names them)
        name: "seg-{method}-{sets}"      # optional name template: {task} {method} {dataset} {profile} {seed} {sets}
    runs:                                # explicit runs
      - name: seg-controlnet-s1k
        task: seg-aug
        method: controlnet
        set: {task.conditioning: generated-masks, task.mask_source: "{run:seg-didgen-s1k}"}
        after: [seg-real-only-s1k]       # run only after these (no value passed; a template in a grid)
    launcher: {kind: local, workers: 2}  # or kind: submitit, partition, gpus, cpus, mem_gb, time, ...
    then: ["bench analyze bias --run {run:lc-real-only} --work-dir {work_dir}"]   # printed at the end

``{run:NAME}`` in a ``set`` value stands for the run id of the run named NAME once it has finished (seg-aug's
``task.mask_source`` accepts a run id); it makes the run depend on NAME, as ``after`` does. A name given to an
entry that expands to several seeds names each of its runs ``NAME@s<seed>``; ``{run:NAME}`` from a run with seed s
then means ``NAME@s<s>``. Nothing here imports torch: a malformed file is reported before anything heavy starts.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """A malformed sweep file or a run of it that cannot start: one line for ``error:``."""


TOP_KEYS = ("name", "description", "tables", "defaults", "grid", "runs", "launcher", "then")
#: Fields of a run (defaults, grid blocks and entries).
RUN_KEYS = ("task", "method", "dataset", "profile", "seed", "seeds", "config", "set", "threads", "shard_size",
            "device", "precision", "data_root")
ENTRY_KEYS = RUN_KEYS + ("name", "after")
GRID_KEYS = RUN_KEYS + ("name", "after", "sets")
#: Grid fields that may be lists (axes).
AXES = ("task", "method", "dataset", "profile", "config", "seed", "seeds")
LAUNCHER_KEYS = ("kind", "workers", "cluster", "partition", "gpus", "cpus", "mem_gb", "time", "array_parallelism",
                 "account", "qos")
LAUNCHERS = ("local", "submitit")
CLUSTERS = ("auto", "slurm", "local")
PRECISIONS = ("fp32", "fp16", "bf16")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+=@-]*")
PLACEHOLDER_RE = re.compile(r"\{run:([^{}]*)\}")
INT64 = (-(2 ** 63), 2 ** 63 - 1)


@dataclass
class RunSpec:
    """One run of the sweep, before its dependencies are resolved."""

    name: str
    where: str
    task: str
    method: str
    seed: int = 0
    profile: str = "mini"
    dataset: str | None = None
    config: Path | None = None
    set: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    shard_size: int = 64
    device: str = "auto"
    precision: str = "fp32"
    data_root: Path | None = None
    after: list[str] = field(default_factory=list)
    base: str = ""
    #: names of the runs this one waits for (``after`` and ``{run:...}`` references), resolved
    deps: list[str] = field(default_factory=list)

    def references(self) -> list[str]:
        """Run names referenced by ``{run:NAME}`` placeholders of this run's ``set`` values."""
        return sorted({m for value in self.set.values() for m in _placeholders(value)})

    def describe(self) -> str:
        return f"{self.task} {self.method} s{self.seed}"


@dataclass
class LauncherSpec:
    kind: str = "local"
    workers: int | None = None
    cluster: str = "auto"
    partition: str | None = None
    gpus: int = 0
    cpus: int | None = None
    mem_gb: float | None = None
    time: int | None = None
    array_parallelism: int | None = None
    account: str | None = None
    qos: str | None = None


@dataclass
class Sweep:
    path: Path
    name: str
    runs: list[RunSpec]
    tables: list[str] = field(default_factory=list)
    description: str = ""
    launcher: LauncherSpec = field(default_factory=LauncherSpec)
    then: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, RunSpec]:
        return {r.name: r for r in self.runs}

    def order(self) -> list[RunSpec]:
        """Runs with every run after the runs it depends on (file order otherwise)."""
        names = self.by_name()
        out: list[RunSpec] = []
        placed: set[str] = set()

        def place(run: RunSpec) -> None:
            if run.name in placed:
                return
            placed.add(run.name)
            for dep in run.deps:
                place(names[dep])
            out.append(run)

        for run in self.runs:
            place(run)
        return out

    def profiles(self) -> list[str]:
        return sorted({r.profile for r in self.runs})

    def only(self, patterns: list[str]) -> Sweep:
        """The sweep cut to the runs whose names match one of ``patterns`` (shell globs: ``seg-*``,
        ``cls-didgen@s1``) and the runs they depend on (``after``, ``{run:NAME}``), in the file's order."""
        names = [r.name for r in self.runs]
        for pattern in patterns:
            if not fnmatch.filter(names, pattern):
                raise SweepError(f"--only '{pattern}' matches no run of the sweep (its runs: "
                                 f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''})")
        keep = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
        by_name, todo = self.by_name(), list(keep)
        while todo:
            for dep in by_name[todo.pop()].deps:
                if dep not in keep:
                    keep.add(dep)
                    todo.append(dep)
        return dataclasses.replace(self, runs=[r for r in self.runs if r.name in keep])


# --- loading -------------------------------------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (PyYAML would keep the last silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key '{key}' given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_sweep(path: Path, table_ids: list[str] | None = None) -> Sweep:
    """Read and check a sweep file; raise SweepError (one line) on anything malformed.

    ``table_ids``: the known paper tables (``tables:`` is checked against them when given).
    """
    path = Path(path)
    if path.is_dir():
        raise SweepError(f"{path}: a folder, not a sweep file (.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"{path}: cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepError(f"{path}: not valid YAML: {problem}{where}") from None
    return parse_sweep(data, path, table_ids)


def parse_sweep(data: Any, path: Path, table_ids: list[str] | None = None) -> Sweep:
    path = Path(path)
    here = path.parent

    def fail(where: str, message: str) -> SweepError:
        return SweepError(f"{path}: {where}: {message}" if where else f"{path}: {message}")

    if not isinstance(data, dict):
        raise fail("", f"a sweep file is a mapping with keys {', '.join(TOP_KEYS)}; got {_kind(data)}")
    _check_keys(data, TOP_KEYS, "", fail)
    name = data.get("name", path.stem.removesuffix(".yaml"))
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise fail("name", f"expected a name of letters, digits and _.:+=@- ; got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", f"expected text, got {_kind(description)}")
    tables = _str_list(data.get("tables", []), "tables", fail)
    if table_ids is not None:
        for t in tables:
            if t not in table_ids:
                raise fail("tables", f"unknown table '{t}' (bench table --list shows them)")
    then = _str_list(data.get("then", []), "then", fail)

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise fail("defaults", f"expected a mapping of run fields, got {_kind(defaults)}")
    _check_keys(defaults, RUN_KEYS, "defaults", fail)
    base = _fields(defaults, "defaults", here, fail, axes=False)

    runs: list[RunSpec] = []
    grid = data.get("grid", [])
    blocks = [grid] if isinstance(grid, dict) else grid
    if not isinstance(blocks, list):
        raise fail("grid", f"expected a mapping or a list of mappings, got {_kind(grid)}")
    for k, block in enumerate(blocks):
        where = f"grid[{k}]" if isinstance(grid, list) else "grid"
        if not isinstance(block, dict):
            raise fail(where, f"expected a mapping, got {_kind(block)}")
        _check_keys(block, GRID_KEYS, where, fail)
        runs += _expand(block, base, where, here, fail, grid=True)
    entries = data.get("runs", [])
    if not isinstance(entries, list):
        raise fail("runs", f"expected a list of runs, got {_kind(entries)}")
    for k, entry in enumerate(entries):
        where = f"runs[{k}]"
        if not isinstance(entry, dict):
            raise fail(where, f"expected a mapping, got {_kind(entry)}")
        _check_keys(entry, ENTRY_KEYS, where, fail)
        runs += _expand(entry, base, where, here, fail, grid=False)
    if not runs:
        raise fail("", "no runs: give grid: or runs:")

    _name_runs(runs, fail)
    _resolve_dependencies(runs, fail)
    for command in then:
        for ref in PLACEHOLDER_RE.findall(command):
            if ref not in {r.name for r in runs}:
                raise fail("then", f"{{run:{ref}}} names no run of the sweep")
    launcher = _launcher(data.get("launcher", {}), fail)
    return Sweep(path, name, runs, tables, description, launcher, then)


# --- fields --------------------------------------------------------------------------------------------------------

def _check_keys(mapping: dict, allowed: tuple[str, ...], where: str, fail: Any) -> None:
    for key in mapping:
        if key not in allowed:
            hint = ""
            if key in ("grid", "runs", "defaults", "tables") and where:
                hint = " (a top-level key)"
            raise fail(where, f"unknown key '{key}'{hint}; expected one of {', '.join(allowed)}")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"text '{value}'", bool: f"{value}".lower()}.get(
        type(value), f"{type(value).__name__} {value!r}")


def _str_list(value: Any, where: str, fail: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(where, f"expected a list of text, got {_kind(value)}")
    return list(value)


def _text(value: Any, key: str, where: str, fail: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(where, f"{key}: expected text, got {_kind(value)}")
    return value


def _int(value: Any, key: str, where: str, fail: Any, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, f"{key}: expected an integer, got {_kind(value)}")
    if low is not None and value < low:
        raise fail(where, f"{key}: must be >= {low}, got {value}")
    if not INT64[0] <= value <= INT64[1]:
        raise fail(where, f"{key}: {value} does not fit in 64 bits")
    return value


def _seed(value: Any, key: str, where: str, fail: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, f"{key}: expected an integer, got {_kind(value)}")
    if not 0 <= value <= INT64[1]:
        raise fail(where, f"{key}: {value} is not a seed (an integer from 0 to 2**63 - 1)")
    return value


def _path(value: Any, key: str, where: str, here: Path, fail: Any, folder: bool) -> Path:
    text = _text(value, key, where, fail)
    path = Path(text).expanduser()
    path = path if path.is_absolute() else (here / path)
    if folder and not path.is_dir():
        raise fail(where, f"{key}: no such folder {path}")
    if not folder and not path.is_file():
        raise fail(where, f"{key}: {path} " + ("is a folder, not a config file" if path.is_dir() else "does not exist"))
    return path


def _set(value: Any, where: str, fail: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, f"set: expected a mapping of config keys to values, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str) or not key or "=" in key or key.strip() != key:
            raise fail(where, f"set: {key!r} is not a config key (task.KEY, method.KEY or KEY)")
    return dict(value)


def _fields(raw: dict, where: str, here: Path, fail: Any, axes: bool) -> dict[str, Any]:
    """Checked run fields of a defaults/grid/entry mapping; with ``axes``, axis fields are lists of values."""
    out: dict[str, Any] = {}
    if "seed" in raw and "seeds" in raw:
        raise fail(where, "give seed or seeds, not both")
    for key, value in raw.items():
        if key in ("name", "after", "sets"):
            continue
        values = value if axes and key in AXES and isinstance(value, list) else None
        if axes and key in AXES and isinstance(value, list) and not value:
            raise fail(where, f"{key}: an empty list gives no runs")
        if key in ("seed", "seeds"):
            seeds = value if isinstance(value, list) else [value]
            if not seeds:
                raise fail(where, f"{key}: an empty list gives no runs")
            seeds = [_seed(s, key, where, fail) for s in seeds]
            if len(set(seeds)) != len(seeds):
                raise fail(where, f"{key}: a seed is given twice")
            if key == "seed" and isinstance(value, list) and not axes:
                raise fail(where, "seed: expected one integer (seeds: takes a list)")
            out["seeds"] = seeds
            continue
        checked = [_field(key, v, where, here, fail) for v in values] if values is not None else \
            _field(key, value, where, here, fail)
        out[key] = checked
    return out


def _field(key: str, value: Any, where: str, here: Path, fail: Any) -> Any:
    if key in ("task", "method", "dataset", "profile", "device"):
        if key == "dataset" and value is None:
            return None
        return _text(value, key, where, fail)
    if key == "precision":
        text = _text(value, key, where, fail)
        if text not in PRECISIONS:
            raise fail(where, f"precision: '{text}' is not one of {', '.join(PRECISIONS)}")
        return text
    if key == "config":
        return None if value is None else _path(value, key, where, here, fail, folder=False)
    if key == "data_root":
        return None if value is None else _path(value, key, where, here, fail, folder=True)
    if key in ("threads", "shard_size"):
        return None if value is None and key == "threads" else _int(value, key, where, fail, low=1)
    if key == "set":
        return _set(value, where, fail)
    raise fail(where, f"unknown key '{key}'")  # pragma: no cover - keys are checked before


def _expand(raw: dict, base: dict[str, Any], where: str, here: Path, fail: Any, grid: bool) -> list[RunSpec]:
    own = _fields(raw, where, here, fail, axes=grid)
    merged = {**base, **own, "set": {**base.get("set", {}), **own.get("set", {})}}
    for key in ("task", "method"):
        if key not in merged:
            raise fail(where, f"no {key} (give it here or under defaults:)")
    after = _str_list(raw.get("after", []), f"{where}: after", fail)
    template = raw.get("name")
    if template is not None and not isinstance(template, str):
        raise fail(where, f"name: expected text, got {_kind(template)}")
    sets: list[tuple[str, dict[str, Any]]] = [("", {})]
    if grid and "sets" in raw:
        alternatives = raw["sets"]
        if isinstance(alternatives, dict):
            sets = [(str(label), alt) for label, alt in alternatives.items()]
        elif isinstance(alternatives, list):
            sets = [(str(k), alt) for k, alt in enumerate(alternatives)]
        else:
            raise fail(where, f"sets: expected a list or a mapping of override sets, got {_kind(alternatives)}")
        if not sets:
            raise fail(where, "sets: an empty list gives no runs")
        sets = [(label, _set({} if alt is None else alt, f"{where}: sets[{label}]", fail)) for label, alt in sets]
    axes = {key: (merged[key] if isinstance(merged.get(key), list) and key != "seeds" else [merged.get(key)])
            for key in ("task", "method", "dataset", "profile", "config")}
    seeds = merged.get("seeds", [0])
    several_seeds = len(seeds) > 1
    runs = []
    for task, method, dataset, profile, config, (label, overrides), seed in itertools.product(
            axes["task"], axes["method"], axes["dataset"], axes["profile"], axes["config"], sets, seeds):
        values = {"task": task, "method": method, "dataset": dataset or "", "profile": profile or "mini",
                  "seed": seed, "sets": label}
        name = ":".join(v for v in (task, method, dataset, label) if v) if template is None else \
            _fill(template, values, where, "name", fail)
        base_name = name
        if several_seeds and "{seed}" not in (template or ""):
            name = f"{name}@s{seed}"
        runs.append(RunSpec(
            name=name, where=where, task=task, method=method, seed=seed, profile=profile or "mini", dataset=dataset,
            config=config, set={**merged["set"], **overrides}, threads=merged.get("threads"),
            shard_size=merged.get("shard_size", 64), device=merged.get("device", "auto"),
            precision=merged.get("precision", "fp32"), data_root=merged.get("data_root"),
            after=[_fill(a, values, where, "after", fail) for a in after],
            base=base_name))
    return runs


def _fill(template: str, values: dict[str, Any], where: str, key: str, fail: Any) -> str:
    """A name template (``name:``, ``after:``) filled with the run's fields."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise fail(where, f"{key}: template {template!r} cannot be filled ({exc}); fields: "
                   f"{', '.join(values)}") from None


def _name_runs(runs: list[RunSpec], fail: Any) -> None:
    seen: dict[str, RunSpec] = {}
    for run in runs:
        if not NAME_RE.fullmatch(run.name):
            raise fail(run.where, f"run name {run.name!r}: use letters, digits and _.:+=@- (starting with a letter "
                       "or digit)")
        if run.name in seen:
            raise fail(run.where, f"run name '{run.name}' is also the name of a run of {seen[run.name].where}; "
                       "give the runs different names")
        seen[run.name] = run


def _lookup(ref: str, run: RunSpec, names: dict[str, RunSpec], what: str, fail: Any) -> str:
    if ref in names:
        return ref
    same_seed = [r.name for r in names.values() if r.base == ref and r.seed == run.seed]
    if len(same_seed) == 1:
        return same_seed[0]
    raise fail(run.where, f"run '{run.name}': {what} names no run of the sweep: '{ref}'"
               + (f" (runs named {ref}@s<seed> exist, but none with seed {run.seed})"
                  if any(r.base == ref for r in names.values()) else ""))


def _resolve_dependencies(runs: list[RunSpec], fail: Any) -> None:
    names = {r.name: r for r in runs}
    for run in runs:
        deps = [_lookup(a, run, names, "after", fail) for a in run.after]
        resolved_set = {}
        for key, value in run.set.items():
            def sub(match: re.Match[str], run: RunSpec = run) -> str:
                target = _lookup(match.group(1), run, names, "{run:...}", fail)
                deps.append(target)
                return f"{{run:{target}}}"
            resolved_set[key] = _map_strings(value, lambda s: PLACEHOLDER_RE.sub(sub, s))
        run.set = resolved_set
        run.deps = list(dict.fromkeys(deps))
    # cycles: depth-first search with the path on the stack
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = stack[stack.index(name):] + [name]
            raise fail(names[name].where, f"dependency cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in names[name].deps:
            visit(dep, stack + [name])
        state[name] = 2

    for run in runs:
        visit(run.name, [])


def _launcher(raw: Any, fail: Any) -> LauncherSpec:
    if not isinstance(raw, dict):
        raise fail("launcher", f"expected a mapping, got {_kind(raw)}")
    _check_keys(raw, LAUNCHER_KEYS, "launcher", fail)
    spec = LauncherSpec()
    for key, value in raw.items():
        if key == "kind":
            if value not in LAUNCHERS:
                raise fail("launcher", f"kind: '{value}' is not one of {', '.join(LAUNCHERS)}")
        elif key == "cluster":
            if value not in CLUSTERS:
                raise fail("launcher", f"cluster: '{value}' is not one of {', '.join(CLUSTERS)}")
        elif key in ("workers", "cpus", "time", "array_parallelism"):
            value = _int(value, key, "launcher", fail, low=1)
        elif key == "gpus":
            value = _int(value, key, "launcher", fail, low=0)
        elif key == "mem_gb":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise fail("launcher", f"mem_gb: expected a positive number, got {_kind(value)}")
        else:
            value = _text(value, key, "launcher", fail)
        setattr(spec, key, value)
    return spec


# --- placeholders and --set values ---------------------------------------------------------------------------------

def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    return value


def _placeholders(value: Any) -> list[str]:
    found: list[str] = []
    _map_strings(value, lambda s: found.extend(PLACEHOLDER_RE.findall(s)) or s)
    return found


def substitute(value: Any, run_ids: dict[str, str]) -> Any:
    """``value`` with each ``{run:NAME}`` replaced by ``run_ids[NAME]``."""
    return _map_strings(value, lambda s: PLACEHOLDER_RE.sub(lambda m: run_ids[m.group(1)], s))


def set_argument(key: str, value: Any) -> str:
    """``key=value`` for ``--set`` such that ``bench.config.parse_set`` reads back ``value``."""
    if isinstance(value, str):
        try:
            plain = yaml.safe_load(value) == value and "\n" not in value
        except yaml.YAMLError:
            plain = False
        return f"{key}={value}" if plain else f"{key}={json.dumps(value)}"
    return f"{key}={json.dumps(value)}"
