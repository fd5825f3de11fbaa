"""Result records: one JSON file per run, validated against a schema shipped in the package.

A record holds everything needed to trust and compare a number: which task
(id, version), dataset (id, split checksums), method (id, version, resolved
config), profile and seed produced it; the protocol hash that says which runs
may be ranked together; the metrics with their per-downstream-model breakdown;
timings, peak memory and the software environment.

Writes are atomic (temporary file + rename), so a reader never sees half a
record and concurrent writers (a cluster fanning out runs) never clash.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECORD_SUFFIX = ".json"


class RecordError(ValueError):
    """A record file is missing, unreadable or does not follow the schema."""


@lru_cache(maxsize=1)
def record_schema() -> dict[str, Any]:
    """The JSON Schema of result records (``bench/schema/record.schema.json``)."""
    text = resources.files("bench.schema").joinpath("record.schema.json").read_text()
    return json.loads(text)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for every hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def stable_hash(obj: Any, length: int = 64) -> str:
    """SHA-256 of the canonical JSON of ``obj``, hex, truncated to ``length``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


#: Task config keys that never change what is measured (seg-aug's sample-grid size).
NON_PROTOCOL_KEYS = ("grid_size",)


def protocol_of(task_config: Any, task_cls: Any = None) -> dict[str, Any]:
    """The task config keys that define what is measured (the protocol hash's input): all but
    `NON_PROTOCOL_KEYS`, the task's ``generator_inputs``, and its ``protocol_left_out_at`` keys at their value."""
    from bench import config as cfg

    left_out = set(NON_PROTOCOL_KEYS) | set(getattr(task_cls, "generator_inputs", ()))
    at_value = getattr(task_cls, "protocol_left_out_at", {})
    return {k: v for k, v in cfg.to_dict(task_config).items()
            if k not in left_out and not (k in at_value and v == at_value[k])}


def protocol_hash(task_id: str, task_version: int, protocol: dict[str, Any], split_checksums: dict[str, str]) -> str:
    """The hash that decides which records may be ranked together.

    Args:
        task_id, task_version: the task and its protocol version.
        protocol: the resolved task config (everything that defines the evaluation).
        split_checksums: split name -> SHA-256 of its id list.
    """
    return stable_hash({"task": task_id, "version": task_version, "protocol": protocol, "splits": split_checksums})


def sanitize(obj: Any, where: str = "") -> Any:
    """Replace NaN/inf by None (JSON cannot hold them), warning once per value."""
    if isinstance(obj, float) and not math.isfinite(obj):
        logger.warning("non-finite value %s at %s written as null", obj, where or "<root>")
        return None
    if isinstance(obj, dict):
        return {str(k): sanitize(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            return sanitize(obj.item(), where)
        except (ValueError, AttributeError):
            pass
    return obj


def validate_record(record: dict[str, Any]) -> None:
    """Raise RecordError with one line naming the first schema violation."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(record_schema())
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        at = "/".join(str(p) for p in err.absolute_path) or "<root>"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RecordError(f"record does not follow schema v{SCHEMA_VERSION} at '{at}': {err.message}{more}")


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (0644 under the usual 022)."""
    return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (setting it briefly, the fallback, would
    let a file another thread creates meanwhile escape the umask)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that takes a file name (``torch.save``, safetensors,
    numpy); on leaving the block the file gets an ordinary new file's mode and is renamed onto ``path``. Any
    exception, Ctrl-C included, removes the temporary instead: an interrupted write leaves neither a half file
    under the real name nor a stray temporary. The pid in the name keeps concurrent writers apart."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())  # safetensors and mkstemp-based writers create it 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode of an ordinary new file (mkstemp's 0600 would hide records from other users).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(record: dict[str, Any], records_dir: Path) -> Path:
    """Validate ``record`` and write it atomically as ``<records_dir>/<run_id>.json``, with its provenance (content
    hashes of itself and of the files it names in ``records_dir``)."""
    record = sanitize(record)
    validate_record(record)
    run_id = record["run_id"]
    if "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RecordError(f"run_id '{run_id}' is not a plain file name")
    record = with_provenance(record, Path(records_dir))
    path = Path(records_dir) / f"{run_id}{RECORD_SUFFIX}"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def named_files(record: dict[str, Any]) -> list[str]:
    """The files a record names beside itself: its per-sample scores and its artefacts."""
    names = [record.get("per_sample_file")] + list((record.get("artifacts") or {}).values())
    return [n for n in names if isinstance(n, str) and n]


def record_digest(record: dict[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON with ``provenance.record_sha256`` left out (its file hashes included)."""
    body = {k: v for k, v in record.items() if k != "provenance"}
    files = (record.get("provenance") or {}).get("files", {})
    return hashlib.sha256(canonical_json({**body, "provenance": {"files": files}}).encode()).hexdigest()


def sealed(record: dict[str, Any], file_digests: dict[str, str]) -> dict[str, Any]:
    """The record with ``provenance``: the given SHA-256 of the files it names, then the hash of itself."""
    out = {k: v for k, v in record.items() if k != "provenance"}
    out["provenance"] = {"files": dict(file_digests)}
    out["provenance"]["record_sha256"] = record_digest(out)
    return out


def with_provenance(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The record with ``provenance``: hashes of the files it names that exist in ``folder``, then of itself."""
    return sealed(record, {name: file_digest(folder / name) for name in named_files(record) if (folder / name).is_file()})


def check_provenance(record: dict[str, Any], folder: Path) -> list[str]:
    """Problems showing that the record or a file it names changed after the run (empty if none). A record written
    before records carried provenance gets one problem saying so."""
    prov = record.get("provenance")
    if not isinstance(prov, dict):
        return ["the record carries no provenance hashes (bench run writes them with every record since 2026-12-05)"]
    problems = []
    if record_digest(record) != prov.get("record_sha256"):
        problems.append("the record was edited after its run (its content hash differs)")
    files = prov.get("files") or {}
    for name in named_files(record):
        path = Path(folder) / Path(name).name
        if name not in files:
            problems.append(f"{name} is named by the record but was not hashed with it")
        elif not path.is_file():
            problems.append(f"{name} is missing beside the record")
        elif file_digest(path) != files[name]:
            problems.append(f"{name} was edited after the run (its content hash differs)")
    return problems


#: A record is a few kB; anything this large is not one (and would be read whole into memory).
MAX_RECORD_BYTES = 5_000_000


def read_record(path: Path) -> dict[str, Any]:
    """Read and validate one record (RecordError with the file named on any problem)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise RecordError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_RECORD_BYTES} a record may have")
        record = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such record file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise RecordError(f"{path}: not a JSON record ({exc})") from None
    except RecursionError:
        raise RecordError(f"{path}: not a JSON record (nested too deeply to read)") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: not a JSON object")
    try:
        validate_record(record)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None
    return record


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def iter_records(folder: Path) -> Iterable[tuple[Path, dict[str, Any]]]:
    """Yield (path, record) for every valid record under ``folder``; invalid ones are logged and skipped."""
    for path in sorted(Path(folder).rglob(f"*{RECORD_SUFFIX}")):
        if path.name.startswith("."):
            continue
        try:
            yield path, read_record(path)
        except RecordError as exc:
            logger.warning("skipping %s", exc)


def records_table(folder: Path, task: str | None = None, method: str | None = None) -> Any:
    """Aggregate records into a pandas DataFrame: mean and std over seeds of every metric.

    Rows are (task, dataset, method, config variant, profile, protocol hash); columns ``<metric>`` (mean),
    ``<metric>_std`` and ``n_seeds``. The variant names how the run differs from the method's defaults (DiDGen
    ``ca_guidance=False``), so an ablation is never averaged with the default run; a seed run twice within one
    variant keeps its newest record.
    """
    import pandas as pd

    from bench.variants import variant_label

    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _, rec in iter_records(folder):
        if task and rec["task"]["id"] != task or method and rec["method"]["id"] != method:
            continue
        row = {"task": rec["task"]["id"], "dataset": rec["dataset"]["id"], "method": rec["method"]["id"],
               "variant": variant_label(rec) or "-", "profile": rec["profile"], "protocol": rec["protocol_hash"][:8],
               "seed": rec["seed"], "_created": rec.get("created", "")}
        row.update({k: v for k, v in rec["metrics"].items() if isinstance(v, (int, float))})
        key = tuple(row[k] for k in ("task", "dataset", "method", "variant", "profile", "protocol", "seed"))
        if key not in newest or row["_created"] > newest[key]["_created"]:
            newest[key] = row
    if not newest:
        return pd.DataFrame()
    df = pd.DataFrame(list(newest.values())).drop(columns="_created")
    keys = ["task", "dataset", "method", "variant", "profile", "protocol"]
    metric_cols = [c for c in df.columns if c not in keys + ["seed"]]
    grouped = df.groupby(keys, sort=True)
    out = grouped[metric_cols].mean()
    std = grouped[metric_cols].std(ddof=1).add_suffix("_std")
    out = out.join(std)
    out["n_seeds"] = grouped["seed"].nunique()
    ordered = [c for m in metric_cols for c in (m, f"{m}_std")] + ["n_seeds"]
    return out[ordered].reset_index()


# --- provenance ---------------------------------------------------------------------------

_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image", "diffusers", "transformers",
             "accelerate", "peft", "torchmetrics", "clean-fid", "lpips", "pytorch-msssim", "pandas", "medsynth-bench")


def environment(device: str) -> dict[str, Any]:
    """Package versions, Python, platform, device and the git commit of the harness source."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_capability": _cpu_capability(),
        "torch_threads": _torch_threads(),
        "packages": versions,
        "git_commit": git_commit(),
    }


#: Environment fields that decide bit-for-bit repeatability on CPU (with torch's version).
REPEATABILITY_KEYS = ("cpu_model", "cpu_capability", "torch_threads")


def repeatability_key(env: dict[str, Any]) -> dict[str, Any]:
    """The fields of a record's ``environment`` that decide whether a rerun repeats it bit for bit."""
    out = {k: env.get(k) for k in REPEATABILITY_KEYS}
    out["torch"] = (env.get("packages") or {}).get("torch")
    return out


def computed_here() -> dict[str, Any]:
    """The repeatability key of this process: where a cached result is made (stage, real-only arm, pretrained
    model). A run that reads a cache made under another key (another CPU kernel set or thread count) cannot be
    repeated bit for bit from its record's own environment, so the record names what it reused."""
    return {"cpu_model": cpu_model(), "cpu_capability": _cpu_capability(), "torch_threads": _torch_threads(),
            "torch": _torch_version()}


@lru_cache(maxsize=1)
def _torch_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def _environment_file(path: Path) -> Path:
    return path.with_name(f"{path.name}.env.json")


def note_computed_here(path: Path) -> None:
    """Write ``<path>.env.json`` beside a cache file or folder just made: the environment that made it."""
    atomic_write_text(_environment_file(Path(path)), json.dumps(computed_here(), sort_keys=True))


def made_elsewhere(noted: dict[str, Any] | None) -> dict[str, Any] | str | None:
    """None when ``noted`` (the environment a cache was made in) is this process's; else ``noted``, or
    ``"unknown"`` for a cache made before environments were noted."""
    if noted is None:
        return "unknown"
    return None if noted == computed_here() else noted


def computed_elsewhere(path: Path) -> dict[str, Any] | str | None:
    """``made_elsewhere`` for the cache at ``path``, from its ``.env.json``."""
    try:
        noted = json.loads(_environment_file(Path(path)).read_text())
    except (OSError, ValueError):
        noted = None
    return made_elsewhere(noted)


def note_reuse(reused: dict[str, Any], what: str, path: Path) -> None:
    """A run read the cache at ``path``: add it to ``reused`` (``RunContext.reused``) when another environment made
    it."""
    where = computed_elsewhere(path)
    if where is not None:
        reused[what] = where


@lru_cache(maxsize=1)
def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``): with the kernel set and the thread
    count it decides whether CPU results repeat bit for bit."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def _cpu_capability() -> str | None:
    """The SIMD kernel set torch dispatches to on this CPU (``DEFAULT``, ``AVX2``, ``AVX512``...)."""
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError):
        return None


def _torch_threads() -> int | None:
    """torch's intra-op thread count: CPU results are bit-for-bit repeatable only at a fixed count."""
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the harness source tree (with ``-dirty`` if modified), or None outside git."""
    src = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
