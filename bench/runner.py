"""fit -> generate -> evaluate -> write, with a content-addressed cache and resume.

Every stage writes under ``<work_dir>/<stage>/<key>/`` where the key hashes
everything that determines the stage's output (task, protocol, dataset splits,
method id, version and config, seed, profile, and the key of the stage before).
A stage is complete only when its ``done.json`` exists (written last, by
rename), so a rerun skips finished stages. Generation is written in shards of
``shard_size`` samples, each seeded by (seed, shard index) and written
atomically: an interrupted generation resumes at the first missing shard and
ends with exactly as many samples as an uninterrupted run, identical to them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import re
import shutil
import threading
import time
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import config as cfg
from bench.config import method_config_file
from bench.interface import CONDITION_FIELDS, Condition, RunContext, Sample, capabilities_of, derive_seed
from bench.registry import DATASETS, METHODS, TASKS, UnknownEntryError
from bench.store import (NON_PROTOCOL_KEYS, SCHEMA_VERSION, atomic_write_text, computed_here,  # noqa: F401
                         environment, made_elsewhere, new_file_mode, protocol_hash, protocol_of, stable_hash,
                         utc_now, write_record)
from bench.variants import later_option_defaults

logger = logging.getLogger(__name__)

#: Task config keys that do not change what is measured (kept out of the protocol hash).
STAGES = ("fit", "generate", "evaluate")


class BenchError(Exception):
    """A user error: bad id, config, data or compatibility. The CLI prints it as one line and exits 2."""


@dataclass
class RunConfig:
    """Everything ``bench run`` takes; the Python API is ``run_one(RunConfig(...))``."""

    task: str
    method: str
    profile: str = "mini"
    seed: int = 0
    dataset: str | None = None
    sets: Sequence[str] = ()
    config_file: Path | None = None
    work_dir: Path = Path("bench-runs")
    data_root: Path | None = None
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    shard_size: int = 64
    progress: bool = True
    protocol: str | None = None  # a name from bench/protocols.yaml; None: the task and profile's default


@dataclass
class Resolved:
    task_cls: type
    method_cls: type
    method_id: str
    task_config: Any
    method_config: Any
    protocol: Any = None  # the bench.protocols.Protocol whose settings were applied (None: --dataset left it)

    @property
    def task(self) -> Any:
        return self.task_cls(self.task_config)


@dataclass
class StageOutcome:
    seconds: float
    peak_mb: float
    cached: bool


# --- resolution -------------------------------------------------------------------------------

def resolve(rc: RunConfig, announce: bool = True) -> Resolved:
    """Look up task and method and build their configs; raise BenchError with one line on any problem.

    Without ``--protocol``, a method the task's default protocol cannot run runs under the first other named
    protocol that can (`_protocol_that_runs`); ``announce`` logs that switch."""
    check_run_numbers(rc)
    try:
        task_cls = TASKS.get(rc.task)
    except UnknownEntryError as exc:
        raise BenchError(str(exc)) from None
    try:
        method_cls = METHODS.get(rc.method)
    except UnknownEntryError as exc:
        raise BenchError(str(exc)) from None
    except (ImportError, TypeError, ValueError) as exc:
        raise BenchError(f"method '{rc.method}': {exc}") from None
    from bench import protocols

    try:
        protocol = protocols.for_run(task_cls, rc.profile, rc.protocol, rc.dataset)
        method_values = cfg.profile_section(method_config_file(method_cls), rc.profile)
        file_task, file_method = cfg.config_file_sections(rc.config_file)
        set_task, set_method = cfg.split_overrides(cfg.parse_set(rc.sets), task_cls.Config, method_cls.Config)
        if rc.dataset is not None and rc.dataset not in DATASETS:
            raise BenchError(DATASETS.unknown_message(rc.dataset))

        def task_config_under(proto: Any) -> Any:
            values = cfg.profile_section(task_cls.config_file(), rc.profile)
            values.update(proto.settings if proto is not None else {})
            values.update(file_task)
            if rc.dataset is not None:
                if rc.dataset != values.get("dataset") and "dataset_options" not in file_task:
                    values.pop("dataset_options", None)  # options of the profile's default dataset do not carry over
                values["dataset"] = rc.dataset
            values.update(set_task)
            return cfg.build(task_cls.Config, values, "task")

        task_config = task_config_under(protocol)
        method_config = cfg.build(method_cls.Config, {**method_values, **file_method, **set_method}, "method")
        if rc.protocol is None and protocol is not None:
            default = protocol
            protocol, task_config = _protocol_that_runs(task_cls, method_cls, rc.profile, protocol, task_config,
                                                        method_config, task_config_under)
            if announce and protocol is not default:
                logger.warning("protocol %s cannot run %s; running %s (%s), the task's protocol that can "
                               "(--protocol chooses another)", default.name, rc.method, protocol.name, protocol.title)
    except (cfg.ConfigError, protocols.ProtocolError) as exc:
        raise BenchError(str(exc)) from None
    dataset = getattr(task_config, "dataset", None)
    if dataset is not None and dataset not in DATASETS:
        raise BenchError(DATASETS.unknown_message(dataset))
    return Resolved(task_cls, method_cls, rc.method, task_config, method_config, protocol)


def _protocol_that_runs(task_cls: type, method_cls: type, profile: str, default: Any, task_config: Any,
                        method_config: Any, task_config_under: Any) -> tuple[Any, Any]:
    """For a plain run (no ``--protocol``) of a method the default protocol cannot run (a report generator on cxr's
    image+report protocol): the first other named protocol of the task and profile under which it runs, and its
    task config; else the default's (the compatibility error that follows names what is missing)."""
    from bench import protocols

    capabilities = capabilities_of(method_cls, method_config)
    produces = getattr(method_cls, "produces_samples", True)
    if task_cls(task_config).method_problem(capabilities, produces) is None:
        return default, task_config
    for proto in protocols.of_task(task_cls.id, profile):
        if proto.name == default.name or proto.implicit:
            continue
        try:
            candidate = task_config_under(proto)
        except cfg.ConfigError:
            continue
        if task_cls(candidate).method_problem(capabilities, produces) is None:
            return proto, candidate
    return default, task_config


def protocol_that_runs(task_id: str, method_id: str, profile: str = "mini") -> Any:
    """The named protocol a plain ``bench run`` of a method picks when the task's default protocol cannot run it
    (None: the default runs it, or no protocol does)."""
    from bench import protocols

    resolved = resolve(RunConfig(task=task_id, method=method_id, profile=profile), announce=False)
    default = protocols.default(task_id, profile)
    return None if resolved.protocol is None or resolved.protocol.name == default.name else resolved.protocol


#: Seeds are 0 .. 2**63 - 1: what every RNG the methods seed accepts (numpy refuses negatives, torch overflows past
#: 64 bits) and what `derive_seed` returns. A negative seed is refused, not hashed: "s-1" would name a run no
#: generator could be seeded with directly.
MAX_SEED = 2 ** 63 - 1


def check_run_numbers(rc: RunConfig) -> None:
    """Refuse a seed outside 0 .. 2**63 - 1 and a thread count below 1 (one line each)."""
    if isinstance(rc.seed, bool) or not isinstance(rc.seed, int) or not 0 <= rc.seed <= MAX_SEED:
        raise BenchError(f"--seed {rc.seed}: a seed is an integer from 0 to 2**63 - 1 ({MAX_SEED})")
    if rc.threads is not None and (isinstance(rc.threads, bool) or not isinstance(rc.threads, int) or rc.threads < 1):
        raise BenchError(f"--threads {rc.threads}: must be at least 1 (leave it out for $OMP_NUM_THREADS, "
                         "else min(2, cores))")


def recompute_protocol_hash(record: dict[str, Any]) -> str:
    """The protocol hash a record should carry under the current task and dataset definitions."""
    try:
        task_cls = TASKS.get(record["task"]["id"])
    except UnknownEntryError as exc:
        raise BenchError(str(exc)) from None
    try:
        task_config = cfg.build(task_cls.Config, dict(record["config"]["task"]), "task")
    except cfg.ConfigError as exc:
        raise BenchError(f"record's task config is not valid for task '{task_cls.id}': {exc}") from None
    checksums = expected_split_checksums(task_config, record["dataset"]["splits"].keys())
    stated = record["dataset"]["splits"]
    for name, value in checksums.items():
        if stated.get(name) != value:
            raise BenchError(f"split '{name}' checksum in the record ({str(stated.get(name))[:12]}...) differs from "
                             f"the current dataset definition ({value[:12]}...)")
    return protocol_hash(task_cls.id, task_cls.version, protocol_of(task_config, task_cls), checksums)


def expected_split_checksums(task_config: Any, splits: Any) -> dict[str, str]:
    """Split checksums from the dataset definitions alone (procedural worlds, committed split files, cards).

    A task split ``<name>`` read from another dataset is the ``<name>_split`` of the task's ``<name>_dataset`` with
    ``<name>_options``: ``transfer`` (derm-cls, seg-aug), ``external`` (lowcontrast), ``test`` (skin-tone: DDI).
    """
    out = {}
    for name in splits:
        if getattr(task_config, f"{name}_dataset", None):
            dataset, options, split = (getattr(task_config, f"{name}_dataset"), getattr(task_config, f"{name}_options", {}),
                                       getattr(task_config, f"{name}_split", name))
        else:
            dataset, options, split = task_config.dataset, getattr(task_config, "dataset_options", {}), name
        out[name] = _definition_checksum(dataset, options, getattr(task_config, "image_size", None), split)
    return out


def _definition_checksum(dataset: str, options: dict[str, Any], image_size: int | None, split: str) -> str:
    try:
        cls = DATASETS.get(dataset)
    except UnknownEntryError as exc:
        raise BenchError(str(exc)) from None
    try:
        return cls(root=None, image_size=image_size, **options).split_checksum(split)
    except Exception as exc:  # noqa: BLE001 - any failure means the checksums cannot be verified offline
        raise BenchError(f"cannot verify the split checksums of dataset '{dataset}' without its data: {exc}") from None


# --- context, seeding, monitoring -----------------------------------------------------------

def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise BenchError(f"--device '{name}' is not a valid device; use auto, cpu or cuda[:N]") from None


def launched_accelerator(cpu: bool = False) -> Any:
    """An ``accelerate.Accelerator`` when the run was started by ``accelerate launch`` or ``torchrun`` (several
    processes), else None. ``cpu``: the processes work on CPU and talk through gloo (without it accelerate sees no
    distributed run on a machine without GPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and "ACCELERATE_USE_CPU" not in os.environ \
            and not any(k.startswith("ACCELERATE_DYNAMO") for k in os.environ):
        return None
    if one_process_of_several(os.environ):
        logger.warning("accelerate launch started one process, not several: without --multi_gpu (or GPUs) it "
                       "starts one process unless through mpirun; for N CPU processes use `accelerate launch "
                       "--multi_gpu --num_processes N -m bench run ... --device cpu` or `torchrun --nproc_per_node N "
                       "-m bench run ... --device cpu`")
    from datetime import timedelta

    try:
        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs
    except ImportError:
        raise BenchError("a run on several processes needs the accelerate package: "
                         "pip install 'medsynth-bench[diffusion]' (or accelerate)") from None

    # A barrier may wait for a fit another run holds the stage lock of: far longer than torch's 30-minute default.
    timeout = InitProcessGroupKwargs(timeout=timedelta(hours=24))
    return Accelerator(cpu=True, kwargs_handlers=[timeout]) if cpu else Accelerator(kwargs_handlers=[timeout])


def one_process_of_several(env: Mapping[str, str]) -> bool:
    """Whether ``accelerate launch`` was asked for several processes and started one: its simple launcher (the
    ``--cpu`` one, and the default without GPUs) sets MASTER_ADDR for ``--num_processes`` > 1, but starts several
    processes only through mpirun (which sets its own size variables)."""
    sizes = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
    return "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env and not any(k in env for k in sizes)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class PeakMemory:
    """Peak resident memory (MB) of this process while the block runs, sampled every 20 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2 ** 20)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = self._proc.memory_info().rss / 2 ** 20
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2 ** 20)


@contextlib.contextmanager
def progress_factory(enabled: bool) -> Iterator[Any]:
    """``progress(description, total) -> advance`` backed by rich progress bars, or, without bars (no TTY,
    ``--no-progress``), by a log line at most every ``LOG_EVERY_S`` seconds and at the end, with an ETA."""
    if not enabled:
        yield progress_logger
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=False) as bars:
        def make(desc: str, total: int | None = None) -> Any:
            task_id = bars.add_task(desc, total=total)
            return lambda n=1: bars.advance(task_id, n)
        yield make


LOG_EVERY_S = 30.0


def progress_logger(desc: str, total: int | None = None, every_s: float | None = None) -> Any:
    """``advance(n=1)`` that logs ``[desc] done/total, elapsed, ETA`` when ``every_s`` passed since the last line."""
    every = LOG_EVERY_S if every_s is None else every_s
    start = last = time.monotonic()
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        finished = total is not None and done >= total
        if now - last < every and not finished:
            return
        last = now
        elapsed = now - start
        if total:
            eta = "" if finished or not done else f", ETA {elapsed / done * (total - done):.0f}s"
            logger.info("[%s] %d/%d, %.0fs%s", desc, min(done, total), total, elapsed, eta)
        else:
            logger.info("[%s] %d, %.0fs", desc, done, elapsed)

    return advance


# --- stages -----------------------------------------------------------------------------------

def _done(path: Path) -> bool:
    return (path / "done.json").exists()


def _note_reused_stage(reused: dict[str, Any], stage: str, stage_dir: Path) -> None:
    """Name a cached stage made in another environment (and, for an evaluation, the caches it read that were) in
    ``reused``: the record then says which of its parts its own environment cannot repeat bit for bit."""
    try:
        info = json.loads((stage_dir / "done.json").read_text())
    except (OSError, ValueError):
        info = {}
    where = made_elsewhere(info.get("environment"))
    if where is not None:
        reused[f"{stage} stage"] = where
    reused.update(info.get("reused") or {})


def _mark_done(path: Path, info: dict[str, Any]) -> None:
    _open_private_files(path)
    atomic_write_text(path / "done.json", json.dumps(info, sort_keys=True))


def _open_private_files(stage_dir: Path) -> None:
    """Give the 0600 files of a finished stage the mode of an ordinary new file (0644 under umask 022): writers
    such as safetensors' ``save_file`` create 0600, which would keep a shared work dir's fits from other users."""
    mode = new_file_mode()
    for path in stage_dir.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 == 0o600 != mode:
                os.chmod(path, mode)
        except OSError:  # another user's file in a shared cache: leave it as it is
            continue


LOCK_FILE = ".lock"


@contextlib.contextmanager
def stage_lock(stage_dir: Path, stage: str, accelerator: Any = None, shared: bool = False) -> Iterator[None]:
    """Hold the stage's lock while it runs, so that concurrent identical runs do its work once.

    A finished stage (``done.json``) is not locked. A process that finds the lock held says so, waits, and then
    finds the stage done. The lock is an ``flock`` on ``<stage_dir>/.lock``: the kernel releases it when its holder
    dies, so a killed run's leftover file never blocks; whoever takes the lock removes the temporaries a killed
    holder left. Under ``accelerate launch`` the main process takes the lock first; the others then wait for it
    (fit: they load the main process's fit) or, with ``shared``, work inside it (generate: each makes its shards).
    """
    main = accelerator is None or accelerator.is_main_process
    fd = _take_stage_lock(stage_dir, stage, announce=True) if main else None
    try:
        if accelerator is not None and accelerator.num_processes > 1:
            accelerator.wait_for_everyone()
        if not main and not shared:
            fd = _take_stage_lock(stage_dir, stage, announce=False)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the flock


def _take_stage_lock(stage_dir: Path, stage: str, announce: bool) -> int | None:
    """Block until this process holds the stage's flock and return its descriptor (None: the stage is done, or
    its file system has no locks)."""
    import errno
    import fcntl

    if _done(stage_dir):
        return None
    stage_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(stage_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (logger.info if announce else logger.debug)(
                "[%s] another process is running this stage (%s); waiting for it to finish", stage, stage_dir)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            # e.g. NFS without a lock daemon: run unlocked rather than not at all (and keep any temporaries,
            # which might be a concurrent run's)
            logger.warning("[%s] %s does not support file locks (%s): concurrent identical runs may repeat this "
                           "stage", stage, stage_dir, exc.strerror)
            os.close(fd)
            return None
        remove_stale_temporaries(stage_dir)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_stale_temporaries(stage_dir: Path) -> list[Path]:
    """Delete the temporaries of atomic writes (``save_shard``, ``atomic_write_text``) that a killed run left in
    ``stage_dir``; only safe while holding the stage's lock. Returns what was removed."""
    stale = sorted({*stage_dir.rglob("*.tmp"), *stage_dir.rglob("*.tmp.*")})
    for path in stale:
        if path.is_file():
            path.unlink(missing_ok=True)
    if stale:
        logger.info("[resume] removed %d temporary file(s) a killed run left in %s", len(stale), stage_dir)
    return stale


def _restrict(cond: Condition, accepts: frozenset[str]) -> Condition:
    """The condition with only the fields the generator accepts (meta always passes)."""
    kept = {f: getattr(cond, f) for f in CONDITION_FIELDS if f in accepts}
    return Condition(**kept, meta=dict(cond.meta))


def save_shard(samples: Sequence[Sample], path: Path) -> None:
    """Write samples as ``<path>.safetensors`` (tensors) + ``<path>.json`` (text and meta), atomically.

    Images are stored as uint8 (what any image file would keep); masks as uint8 {0, 1}.
    The JSON file is written last and marks the shard complete.
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for name in ("image", "mask", "labels"):
        values = [getattr(s, name) for s in samples]
        present = [v is not None for v in values]
        if any(present) and not all(present):
            raise BenchError(f"generated samples are inconsistent: some lack '{name}'")
        if all(present) and values:
            for i, v in enumerate(values):
                if name == "image":
                    v = (v.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
                elif name == "mask":
                    v = v.detach().bool().to(torch.uint8)
                else:
                    v = v.detach().float()
                tensors[f"{name}.{i}"] = v.contiguous().cpu()
    text = [{"label": s.label, "report": s.report, "prompt": s.prompt, "meta": s.meta} for s in samples]
    tmp = path.with_name(path.name + ".tmp.safetensors")
    try:  # Python's own write: a full disk is an OSError (one line in the CLI), not safetensors' SafetensorError
        tmp.write_bytes(save(tensors))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, path.with_suffix(".safetensors"))
    atomic_write_text(path.with_suffix(".json"), json.dumps(text, default=str))


def load_shard(path: Path) -> list[Sample]:
    from safetensors.torch import load_file

    tensors = load_file(str(path.with_suffix(".safetensors")))
    text = json.loads(path.with_suffix(".json").read_text())
    out = []
    for i, t in enumerate(text):
        image = tensors.get(f"image.{i}")
        mask = tensors.get(f"mask.{i}")
        out.append(Sample(image=image.float() / 255 if image is not None else None,
                          mask=mask.bool() if mask is not None else None, label=t["label"],
                          labels=tensors.get(f"labels.{i}"), report=t["report"], prompt=t["prompt"], meta=t["meta"]))
    return out


def _generate_stage(method: Any, conditions: Sequence[Condition], gen_dir: Path, ctx: RunContext,
                    shard_size: int, needs: frozenset[str], method_id: str) -> list[Sample]:
    """Write the missing shards of this process (all of them, or under ``accelerate launch`` shard s on process
    s % world size) and return every sample on the main process, nothing on the others."""
    gen_dir.mkdir(parents=True, exist_ok=True)
    n_shards = (len(conditions) + shard_size - 1) // shard_size
    accelerator = ctx.accelerator
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    mine = range(rank, n_shards, world)

    def chunk_of(s: int) -> Sequence[Condition]:
        return conditions[s * shard_size:(s + 1) * shard_size]

    written = [s for s in mine if (gen_dir / f"shard-{s:05d}.json").exists()]
    if written:
        logger.info("[generate] resuming: %d of %d shards already written", len(written), len(mine))
    advance = ctx.progress("generate", sum(len(chunk_of(s)) for s in mine))
    advance(sum(len(chunk_of(s)) for s in written))
    for s in mine:
        shard = gen_dir / f"shard-{s:05d}"
        if shard.with_suffix(".json").exists():
            continue
        chunk = chunk_of(s)
        seed_everything(derive_seed(ctx.seed, 7, s))
        samples = list(method.generate(chunk, ctx))
        if len(samples) != len(chunk):
            raise BenchError(f"method '{method_id}' returned {len(samples)} samples for {len(chunk)} conditions")
        for smp in samples:
            missing = needs - smp.fields()
            if missing:
                raise BenchError(f"method '{method_id}' returned a sample without {sorted(missing)}")
            if smp.nonfinite_fields():
                raise BenchError(f"method '{method_id}' returned a sample whose {', '.join(smp.nonfinite_fields())} "
                                 "holds NaN or infinite values (nothing of this shard was written)")
        save_shard(samples, shard)
        advance(len(chunk))
    if world > 1:
        accelerator.wait_for_everyone()  # the shards are gathered through the (shared) work dir
        if not accelerator.is_main_process:
            return []
    out: list[Sample] = []
    for s in range(n_shards):
        out.extend(load_shard(gen_dir / f"shard-{s:05d}"))
    return out


def _evaluation_to_json(ev: Any) -> dict[str, Any]:
    return dataclasses.asdict(ev)


def default_threads() -> int:
    """CPU threads when ``--threads`` is not given: ``$OMP_NUM_THREADS`` if set, else min(2, cores)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else min(2, os.cpu_count() or 1)


def fit_owner(method_id: str, method_cls: type) -> dict[str, str]:
    """The identity a method's fitted state is cached under: its own, or that of the method named by its
    ``fit_from`` (a method that only samples differently from another, e.g. ZestGuide on DiDGen's fine-tuned
    UNet, reuses that method's fit when its fit-relevant options are equal)."""
    donor_id = getattr(method_cls, "fit_from", None)
    if not donor_id:
        return {"method": method_id, "target": f"{method_cls.__module__}:{method_cls.__qualname__}",
                "method_version": str(getattr(method_cls, "version", "1"))}
    from bench.registry import METHODS

    donor = METHODS.get(donor_id)
    return {"method": donor_id, "target": f"{donor.__module__}:{donor.__qualname__}",
            "method_version": str(getattr(donor, "version", "1"))}


# --- stage keys, run ids and plans (run_one and plan_run compute them here, so they cannot drift) -------------

@dataclass(frozen=True)
class StageKeys:
    """The cache keys of a run's stages and its run id, from its resolved configs and split checksums.

    ``task_cfg`` is the task config as the record states it (``Task.recorded_config``), ``method_cfg`` the method
    config as a dict. The generate key also needs the number of conditions, the evaluate key the generate key.
    """

    rc: RunConfig
    task: Any
    method_cls: type
    task_cfg: dict[str, Any]
    method_cfg: dict[str, Any]
    dataset_id: str
    checksums: dict[str, str]

    @property
    def protocol(self) -> str:
        return protocol_hash(self.task.id, self.task.version, protocol_of(self.task.config, type(self.task)),
                             self.checksums)

    @property
    def inputs(self) -> dict[str, Any]:
        """Generator inputs (e.g. seg-aug's mask source): outside the protocol, not outside the run. A key of the
        task's ``inputs_left_out_at`` is left out while it has that value (keys added later keep existing run ids)."""
        left_out = getattr(type(self.task), "inputs_left_out_at", {})
        return {k: self.task_cfg[k] for k in sorted(type(self.task).generator_inputs)
                if k not in left_out or json.dumps(self.task_cfg[k]) != json.dumps(left_out[k])}

    @property
    def generation_only(self) -> frozenset[str]:
        """Method options that only steer sampling: runs differing only there share one fit."""
        return frozenset(getattr(self.method_cls, "generation_only", ()))

    @property
    def hashed_method_cfg(self) -> dict[str, Any]:
        """The method config as the stage keys and run id hash it: without the options of the method's
        ``options_added_later`` while they have their Config default (existing records keep their run ids)."""
        defaults = {k: json.dumps(v, default=str) for k, v in later_option_defaults(self.method_cls).items()}
        if not defaults:
            return self.method_cfg
        return {k: v for k, v in self.method_cfg.items()
                if k not in defaults or json.dumps(v, default=str) != defaults[k]}

    def fit(self) -> str:
        rc, task, method_cls = self.rc, self.task, self.method_cls
        method_cfg = self.hashed_method_cfg
        base_key = {"task": task.id, "task_version": task.version, "method": rc.method,
                    "target": f"{method_cls.__module__}:{method_cls.__qualname__}",
                    "method_version": str(getattr(method_cls, "version", "1")), "method_config": method_cfg,
                    "seed": rc.seed, "profile": rc.profile, "precision": rc.precision}
        fit_config = {k: v for k, v in method_cfg.items() if k not in self.generation_only}
        from bench.diffusion.models import foundation_identity

        foundation = foundation_identity(method_cfg)  # retrained mini-sd / mini-clip weights: a new fit
        return stable_hash({**base_key, **fit_owner(rc.method, method_cls), "method_config": fit_config,
                            "stage": "fit", "fit_data": task.fit_identity(),
                            "splits": {"train": self.checksums.get("train")},
                            **({"foundation": foundation} if foundation else {})}, 16)

    def generate(self, fit_key: str, n_conditions: int) -> str:
        task, inputs, gen_identity = self.task, self.inputs, self.task.generation_identity()
        return stable_hash({"fit": fit_key, "stage": "generate", "n": n_conditions,
                            **({"protocol": self.protocol, **({"inputs": inputs} if inputs else {})}
                               if gen_identity is None
                               else {"task": task.id, "task_version": task.version, "conditions": gen_identity,
                                     "splits": {"train": self.checksums.get("train")}}),
                            "shard_size": self.rc.shard_size,
                            **({"method_config": self.hashed_method_cfg} if self.generation_only else {})}, 16)

    def evaluate(self, gen_key: str) -> str:
        from bench.diffusion.models import foundation_identity

        foundation = foundation_identity(cfg.to_dict(self.task.config))  # e.g. fd[mini-clip] reads mini-clip
        return stable_hash({"generate": gen_key, "stage": "evaluate", "protocol": self.protocol, "seed": self.rc.seed,
                            **({"foundation": foundation} if foundation else {})}, 16)

    def run_id(self) -> str:
        rc, inputs = self.rc, self.inputs
        slug = re.sub(r"[^A-Za-z0-9_.=+-]", ".", rc.method)
        return f"{self.task.id}__{slug}__{self.dataset_id}__{rc.profile}__s{rc.seed}__" + \
            stable_hash({"protocol": self.protocol, "method": rc.method, "config": self.hashed_method_cfg,
                         "version": str(getattr(self.method_cls, "version", "1")),
                         **({"inputs": inputs} if inputs else {})}, 8)


@dataclass
class StagePlan:
    """One stage of a planned run: its cache key and folder (None while unknown) and whether it is done."""

    key: str | None
    path: Path | None
    done: bool


@dataclass
class RunPlan:
    """What ``run_one(config)`` would do, found without running anything (``plan_run``).

    ``stages``: fit, generate, evaluate. ``record``: the run's record in ``<work_dir>/records`` when it exists with
    these stage keys (the run is finished; running it again would only rewrite the record). ``unknown``: why some
    keys cannot be known yet (the generate and evaluate keys of a run conditioned on another run's output before
    that output exists); their ``key`` is None then.
    """

    config: RunConfig
    resolved: Resolved
    task_config: dict[str, Any]
    method_config: dict[str, Any]
    dataset_id: str
    protocol_hash: str
    run_id: str
    stages: dict[str, StagePlan]
    record: Path | None = None
    unknown: str | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # split name -> checksum (the protocol hash's input)

    @property
    def finished(self) -> bool:
        return self.record is not None

    @property
    def to_run(self) -> list[str]:
        """The stages a run would compute (not done, or not known yet)."""
        return [name for name, stage in self.stages.items() if not stage.done]


def _resolve_compatible(rc: RunConfig) -> tuple[Resolved, Any, Any]:
    """Resolve the run and refuse a method the task cannot run (what ``run_one`` and ``plan_run`` both do first)."""
    from bench.tasks.base import IncompatibleMethodError

    resolved = resolve(rc)
    task = resolved.task
    capabilities = capabilities_of(resolved.method_cls, resolved.method_config)
    try:
        task.check_method(rc.method, capabilities, getattr(resolved.method_cls, "produces_samples", True))
    except IncompatibleMethodError as exc:
        raise BenchError(str(exc)) from None
    return resolved, task, capabilities


def plan_run(rc: RunConfig, data_cache: dict[str, Any] | None = None) -> RunPlan:
    """Resolve ``rc`` as ``run_one`` would and say which of its stages are cached in ``rc.work_dir``, without
    fitting, generating or evaluating anything (it loads the task's data to know the split checksums).

    ``data_cache``: a dict reused across calls, so that runs of one task config load its data once.

    Raises:
        BenchError: for the user errors ``run_one`` would raise before its first stage.
    """
    from bench.config import to_dict
    from bench.data.base import DataError
    resolved, task, _ = _resolve_compatible(rc)
    method_cls = resolved.method_cls
    work_dir = Path(rc.work_dir)
    ctx = RunContext(device=torch.device("cpu"), seed=rc.seed, profile=rc.profile, work_dir=work_dir,
                     data_root=rc.data_root, precision=rc.precision, cache_dir=work_dir / "cache")
    data_key = stable_hash({"task": task.id, "version": task.version, "config": protocol_of(task.config, type(task)),
                            "profile": rc.profile, "data_root": str(rc.data_root)}, 16)
    data_cache = {} if data_cache is None else data_cache
    try:
        if data_key not in data_cache:
            data_cache[data_key] = task.load(ctx)
        data = data_cache[data_key]
        task.adopt(data)  # loaded by another run's task instance: the state its keys read
    except DataError as exc:
        raise BenchError(str(exc)) from None
    task_cfg, method_cfg = task.recorded_config(to_dict(resolved.task_config), work_dir), to_dict(resolved.method_config)
    keys = StageKeys(rc, task, method_cls, task_cfg, method_cfg, data.dataset_id, data.checksums)

    def stage(name: str, key: str | None) -> StagePlan:
        path = work_dir / name / key if key else None
        return StagePlan(key, path, path is not None and _done(path))

    fit_key, unknown = keys.fit(), None
    gen_key = eval_key = None
    try:
        n = len(task.conditions(data, ctx)) if getattr(method_cls, "produces_samples", True) else 0
    except DataError as exc:  # e.g. task.mask_source names a run that has not generated yet
        unknown = str(exc)
    else:
        gen_key = keys.generate(fit_key, n)
        eval_key = keys.evaluate(gen_key)
    stages = {"fit": stage("fit", fit_key), "generate": stage("generate", gen_key),
              "evaluate": stage("evaluate", eval_key)}
    run_id = keys.run_id()
    record = work_dir / "records" / f"{run_id}.json"
    finished = None
    if eval_key is not None and record.is_file():
        with contextlib.suppress(OSError, ValueError):
            wanted = {name: f"{name}/{s.key}" for name, s in stages.items()}
            if json.loads(record.read_text()).get("stages") == wanted:
                finished = record
    return RunPlan(rc, resolved, task_cfg, method_cfg, data.dataset_id, keys.protocol, run_id, stages, finished,
                   unknown, dict(data.checksums))


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_one``: the stage that was running and the stages finished (cached) before it."""

    def __init__(self, stage: str, finished: Sequence[str]) -> None:
        super().__init__(stage)
        self.stage = stage
        self.finished = list(finished)


def run_one(rc: RunConfig) -> tuple[dict[str, Any], Path] | tuple[None, None]:
    """Run one task x method x seed; return the record and its path.

    Under ``accelerate launch`` the main process fits, the processes share the generation, and the main process
    evaluates and writes the record; the other processes return ``(None, None)`` once their shards are written.

    Raises:
        BenchError: for user errors, before any expensive work where they can be known then.
        RunInterrupted: on Ctrl-C (a KeyboardInterrupt naming the stage); finished stages stay cached, a running
            one keeps its shards / checkpoints for the rerun, and no record or half-written file is left.
    """
    track: dict[str, Any] = {"stage": "setup", "finished": [], "written": []}
    try:
        return _run_one(rc, track)
    except KeyboardInterrupt:
        for path in track["written"]:  # files of a record that was not written: the rerun writes them again
            Path(path).unlink(missing_ok=True)
        raise RunInterrupted(track["stage"], track["finished"]) from None


def _run_one(rc: RunConfig, track: dict[str, Any]) -> tuple[dict[str, Any], Path] | tuple[None, None]:
    from bench.config import to_dict
    from bench.data.base import DataError
    from bench.tasks.base import Evaluation

    resolved, task, capabilities = _resolve_compatible(rc)
    method_cls = resolved.method_cls

    accelerator = launched_accelerator(cpu=rc.device == "cpu" or not torch.cuda.is_available())
    # under accelerate, "auto" is this process's own GPU (cuda:<local rank>), not every process on cuda:0
    own_gpu = accelerator is not None and rc.device == "auto" and accelerator.device.type == "cuda"
    device = accelerator.device if own_gpu else pick_device(rc.device)
    if accelerator is not None and not accelerator.is_main_process:  # the main process reports for the run
        logging.getLogger("bench").setLevel(max(logging.WARNING, logging.getLogger("bench").getEffectiveLevel()))
    if rc.profile == "paper" and device.type != "cuda":
        logger.warning("the paper profile is meant for a GPU; running it on %s will be slow", device)
    torch.set_num_threads(rc.threads or default_threads())
    if device.type == "cuda":  # CPU kernels are deterministic at a fixed thread count; importing this costs ~6 s
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(rc.seed)

    work_dir = Path(rc.work_dir)
    ctx = RunContext(device=device, seed=rc.seed, profile=rc.profile, work_dir=work_dir, data_root=rc.data_root,
                     precision=rc.precision, cache_dir=work_dir / "cache", accelerator=accelerator)
    task_cfg, method_cfg = task.recorded_config(to_dict(resolved.task_config), work_dir), to_dict(resolved.method_config)
    method_version = str(getattr(method_cls, "version", "1"))
    target = f"{method_cls.__module__}:{method_cls.__qualname__}"

    timings: dict[str, float] = {}
    peaks: dict[str, float] = {}
    cached: dict[str, bool] = {}
    reused: dict[str, Any] = {}  # cached parts made in another environment (record: environment.reused)

    with progress_factory(rc.progress and ctx.is_main_process) as progress:
        ctx.progress = progress
        track["stage"] = "data loading"
        try:
            data = task.load(ctx)
        except DataError as exc:
            raise BenchError(str(exc)) from None
        keys = StageKeys(rc, task, method_cls, task_cfg, method_cfg, data.dataset_id, data.checksums)
        proto = keys.protocol

        # 1. fit
        track["stage"] = "fit"
        method = method_cls(resolved.method_config)
        # Options that only steer sampling (a method's ``generation_only``) do not change the fitted state, so
        # runs that differ only there share one fit; the generate key below holds the full config.
        fit_key = keys.fit()
        fit_dir = work_dir / "fit" / fit_key
        with PeakMemory() as mem, stage_lock(fit_dir, "fit", ctx.accelerator):
            t0 = time.perf_counter()
            if _done(fit_dir):
                logger.info("[fit] cached: skipped (%s)", fit_dir)
                method.load(fit_dir / "state")
                cached["fit"] = True
                _note_reused_stage(reused, "fit", fit_dir)
            else:
                fit_dir.mkdir(parents=True, exist_ok=True)
                stage_ctx = dataclasses.replace(ctx, work_dir=fit_dir)
                method.fit(task.fit_set(data), stage_ctx)
                state = fit_dir / "state"
                if state.exists():
                    shutil.rmtree(state)
                state.mkdir()
                method.save(state)
                _mark_done(fit_dir, {"key": fit_key, "environment": computed_here()})
                cached["fit"] = False
            timings["fit"] = time.perf_counter() - t0
        peaks["fit"] = mem.peak_mb
        track["finished"].append("fit")

        # 2. generate
        track["stage"] = "generate"
        produces = getattr(method_cls, "produces_samples", True)
        conditions = [_restrict(c, capabilities.accepts) for c in task.conditions(data, ctx)] if produces else []
        gen_key = keys.generate(fit_key, len(conditions))
        gen_dir = work_dir / "generate" / gen_key
        with PeakMemory() as mem, stage_lock(gen_dir, "generate", ctx.accelerator, shared=True):
            t0 = time.perf_counter()
            if _done(gen_dir):
                logger.info("[generate] cached: skipped (%s)", gen_dir)
                n_shards = (len(conditions) + rc.shard_size - 1) // rc.shard_size
                synthetic = [s for k in range(n_shards) for s in load_shard(gen_dir / f"shard-{k:05d}")]
                cached["generate"] = True
                _note_reused_stage(reused, "generate", gen_dir)
            else:
                synthetic = _generate_stage(method, conditions, gen_dir, dataclasses.replace(ctx, work_dir=gen_dir),
                                            rc.shard_size, task.needs, rc.method)
                if ctx.is_main_process:
                    _mark_done(gen_dir, {"key": gen_key, "n": len(synthetic), "environment": computed_here()})
                cached["generate"] = False
            timings["generate"] = time.perf_counter() - t0
        peaks["generate"] = mem.peak_mb
        track["finished"].append("generate")
        del method
        if not ctx.is_main_process:
            return None, None  # its shards are written; the main process evaluates and writes the record

        # 3. evaluate
        track["stage"] = "evaluate"
        eval_key = keys.evaluate(gen_key)
        eval_dir = work_dir / "evaluate" / eval_key
        with PeakMemory() as mem, stage_lock(eval_dir, "evaluate"):
            t0 = time.perf_counter()
            if _done(eval_dir):
                logger.info("[evaluate] cached: skipped (%s)", eval_dir)
                evaluation = Evaluation(**json.loads((eval_dir / "evaluation.json").read_text()))
                cached["evaluate"] = True
                _note_reused_stage(reused, "evaluate", eval_dir)
            else:
                eval_dir.mkdir(parents=True, exist_ok=True)
                seed_everything(derive_seed(rc.seed, 3))
                eval_ctx = dataclasses.replace(ctx, work_dir=eval_dir, reused={})
                evaluation = task.evaluate(data, synthetic, eval_ctx, rc.method)
                atomic_write_text(eval_dir / "evaluation.json", json.dumps(_evaluation_to_json(evaluation)))
                _mark_done(eval_dir, {"key": eval_key, "environment": computed_here(), "reused": eval_ctx.reused})
                reused.update(eval_ctx.reused)
                cached["evaluate"] = False
            timings["evaluate"] = time.perf_counter() - t0
        peaks["evaluate"] = mem.peak_mb
        track["finished"].append("evaluate")

    # 4. write
    track["stage"] = "record writing"
    run_id = keys.run_id()
    records_dir = work_dir / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    per_sample_file = None
    if evaluation.per_sample:
        import pandas as pd

        per_sample_file = f"{run_id}.scores.csv"
        if not (records_dir / per_sample_file).exists():  # a finished run's own file stays (its record names it)
            track["written"].append(records_dir / per_sample_file)
        atomic_write_text(records_dir / per_sample_file, pd.DataFrame(evaluation.per_sample).to_csv(index=False))
    artifacts = {}
    for name, src in evaluation.artifacts.items():
        src_path = Path(src)
        if src_path.exists():
            dest = records_dir / f"{run_id}.{name}{src_path.suffix}"
            if not dest.exists():
                track["written"].append(dest)
            tmp = dest.with_name(f".{dest.name}.tmp")
            try:  # through a temporary and a rename: an interrupted copy leaves no half file under the real name
                shutil.copyfile(src_path, tmp)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            artifacts[name] = dest.name
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created": utc_now(),
        "task": {"id": task.id, "version": task.version},
        "dataset": {"id": data.dataset_id, "splits": data.checksums, "sizes": data.sizes},
        "method": {"id": rc.method, "version": method_version, "target": target},
        "profile": rc.profile,
        "seed": rc.seed,
        "config": {"task": task_cfg, "method": method_cfg},
        "overrides": cfg.recorded_overrides(resolved.task_cls, method_cls, rc.profile, rc.config_file, rc.sets,
                                            rc.dataset, portable=lambda values: task.recorded_config(values, work_dir),
                                            protocol=resolved.protocol.name if resolved.protocol else rc.protocol),
        "protocol_hash": proto,
        "metrics": evaluation.metrics,
        "metric_info": {k: {"higher_is_better": v} for k, v in evaluation.higher_is_better.items()},
        "per_model": evaluation.per_model,
        "comparisons": evaluation.comparisons,
        "n": evaluation.counts,
        "per_sample_file": per_sample_file,
        "artifacts": artifacts,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "cached": cached,
        "stages": {"fit": f"fit/{fit_key}", "generate": f"generate/{gen_key}", "evaluate": f"evaluate/{eval_key}"},
        "peak_memory_mb": {k: round(v, 1) for k, v in peaks.items()},
        "environment": {**environment(str(device)), **({"reused": reused} if reused else {})},
    }
    path = write_record(record, records_dir)
    track["written"].clear()  # the record names them now
    logger.info("[write] record %s", path)
    return record, path


def compatibility(profile: str = "mini") -> dict[str, dict[str, str | None]]:
    """task -> method -> None when compatible, else the reason (from capabilities and default task configs)."""
    out: dict[str, dict[str, str | None]] = {}
    for task_id in TASKS.names():
        task_cls = TASKS.get(task_id)
        task = task_cls(cfg.build(task_cls.Config, cfg.profile_section(task_cls.config_file(), profile), "task"))
        row: dict[str, str | None] = {}
        for method_id in METHODS.names():
            try:
                method_cls = METHODS.get(method_id)
            except (ImportError, TypeError) as exc:
                row[method_id] = f"cannot load: {exc}"
                continue
            row[method_id] = task.method_problem(method_cls.capabilities, getattr(method_cls, "produces_samples", True))
        out[task_id] = row
    return out


def how_it_runs(task_id: str, method_id: str, profile: str = "mini") -> str | None:
    """For a method the task's default protocol cannot run: how it runs (``auto: <protocol>``, the protocol a
    plain bench run picks, or ``--set task.conditioning=<value>``), or None."""
    try:
        proto = protocol_that_runs(task_id, method_id, profile)
    except BenchError:
        proto = None
    if proto is not None:
        return f"auto: {proto.name}"
    option = conditioning_that_runs(task_id, method_id, profile)
    return f"--set {option}" if option else None


def conditioning_that_runs(task_id: str, method_id: str, profile: str = "mini") -> str | None:
    """For a method the task's default conditioning cannot run: the ``task.conditioning=<value>`` under which
    it runs (e.g. ControlNet on derm-cls with ``mask``), or None."""
    task_cls = TASKS.get(task_id)
    conditioning = {f.name: f for f in dataclasses.fields(task_cls.Config)}.get("conditioning")
    if conditioning is None:
        return None
    hints = typing.get_type_hints(task_cls.Config)
    values = typing.get_args(hints["conditioning"])
    base = cfg.profile_section(task_cls.config_file(), profile)
    capabilities = METHODS.get(method_id).capabilities
    for value in values:
        if value == base.get("conditioning", conditioning.default):
            continue
        try:
            task = task_cls(cfg.build(task_cls.Config, {**base, "conditioning": value}, "task"))
        except cfg.ConfigError:
            continue  # the value needs other settings (e.g. generated-masks needs task.mask_source)
        if task.incompatibility(capabilities) is None:
            return f"task.conditioning={value}"
    return None
