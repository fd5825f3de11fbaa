"""Running a planned sweep: a controller that starts each run once the runs it depends on have finished, on a
launcher that runs the ordinary ``bench run`` (``local``: worker processes pinned to their own cores;
``submitit``: jobs through the ``submitit`` library, Slurm or its local executor).

Every run is ``python -m bench run ...`` with its stage cache, so a rerun skips what is finished and resumes
what is not. A failed run does not stop the others; the runs depending on it are skipped with the reason.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.sweep.plan import SweepRun, replan, run_argv, stale_stages
from bench.sweep.report import Reporter
from bench.sweep.spec import LauncherSpec, Sweep, SweepError

POLL_S = 0.2
#: Environment variables that set a library's CPU thread count.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def sweep_dir(work_dir: Path, sweep: Sweep) -> Path:
    return Path(work_dir) / "sweeps" / sweep.name


def log_path(work_dir: Path, sweep: Sweep, run: SweepRun) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.=+@-]", "_", run.spec.name)
    return sweep_dir(work_dir, sweep) / "logs" / f"{safe}.log"


def error_line(log: Path, returncode: int | None) -> str:
    """The line that says why a run failed: its last ``error:`` line, else the last line of its traceback, else
    its exit status."""
    try:
        lines = [line.rstrip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("error:"):
            return line
    if any(line.startswith("Traceback") for line in lines):
        for line in reversed(lines):
            if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line):
                return f"error: {line}"
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"error: killed by {signal.Signals(-returncode).name}"
    return f"error: bench run exited with status {returncode}"


# --- launchers -----------------------------------------------------------------------------------------------------

class Launcher:
    """Starts runs and says which have ended."""

    def capacity(self) -> int:
        raise NotImplementedError

    def start(self, run: SweepRun, argv: list[str], log: Path, threads: int) -> str:
        """Start ``bench run argv``; return where it runs (shown in the progress line)."""
        raise NotImplementedError

    def poll(self) -> list[tuple[SweepRun, int | None, str | None]]:
        """Runs that ended since the last call: (run, exit status, launcher error or None)."""
        raise NotImplementedError

    def busy(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every run still going (the sweep was interrupted)."""


def core_sets(workers: int, threads: int, cores: list[int] | None = None) -> list[list[int]]:
    """The cores of each worker: ``threads`` consecutive cores each, wrapping when the cores run out."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
    return [[cores[(w * threads + t) % len(cores)] for t in range(threads)] for w in range(workers)]


def _child_setup(cores: list[int]) -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, cores)
    with contextlib.suppress(Exception):  # die with the sweep (Linux): no orphaned runs after a kill
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Slot:
    index: int
    cores: list[int]
    run: SweepRun | None = None
    proc: subprocess.Popen | None = None
    log: Any = None


class LocalLauncher(Launcher):
    """``workers`` processes at a time, each pinned to its own cores (``os.sched_setaffinity``) with its thread
    count in ``--threads`` and ``OMP_NUM_THREADS``."""

    def __init__(self, workers: int, threads: int, cores: list[int] | None = None) -> None:
        self.slots = [_Slot(i, c) for i, c in enumerate(core_sets(workers, threads, cores))]

    def capacity(self) -> int:
        return sum(slot.run is None for slot in self.slots)

    def start(self, run: SweepRun, argv: list[str], log: Path, threads: int) -> str:
        slot = next(s for s in self.slots if s.run is None)
        log.parent.mkdir(parents=True, exist_ok=True)
        slot.log = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed when the run ends
        slot.log.write(f"# {shlex.join(['bench', 'run', *argv])}\n# worker {slot.index}, cores {slot.cores}\n")
        slot.log.flush()
        env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
        env.setdefault("COLUMNS", "160")
        slot.proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *argv], stdout=slot.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     preexec_fn=lambda: _child_setup(slot.cores))  # noqa: PLW1509
        slot.run = run
        return f"worker {slot.index}, cores {','.join(map(str, slot.cores))}"

    def poll(self) -> list[tuple[SweepRun, int | None, str | None]]:
        ended = []
        for slot in self.slots:
            if slot.run is not None and slot.proc.poll() is not None:
                ended.append((slot.run, slot.proc.returncode, None))
                slot.log.close()
                slot.run, slot.proc, slot.log = None, None, None
        return ended

    def busy(self) -> bool:
        return any(slot.run is not None for slot in self.slots)

    def stop(self) -> None:
        procs = [s.proc for s in self.slots if s.proc is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_bench_job(argv: list[str], log: str, threads: int) -> int:
    """What a submitit job runs: ``python -m bench run argv`` with its output in ``log``; returns the exit status."""
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
    env.setdefault("COLUMNS", "160")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"# {shlex.join(['bench', 'run', *argv])}\n# submitit job on {os.uname().nodename}\n")
        fh.flush()
        return subprocess.run([sys.executable, "-m", "bench", "run", *argv], stdout=fh, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, check=False).returncode


#: Default job time limit (minutes) when neither --time nor launcher.time gives one.
DEFAULT_TIME_MIN = 24 * 60


class SubmititLauncher(Launcher):
    """Each run a job of a ``submitit`` executor: Slurm (partition, GPUs, CPUs, memory, time limit, array
    parallelism) or, with ``cluster: local``, submitit's local executor. The controller keeps at most
    ``max_in_flight`` jobs submitted (unbounded on Slurm unless given: the array parallelism throttles there)."""

    def __init__(self, folder: Path, spec: LauncherSpec, threads: int, name: str, max_in_flight: int | None) -> None:
        try:
            import submitit
        except ImportError:
            raise SweepError("the submitit launcher needs the submitit package: pip install 'medsynth-bench[sweep]'") \
                from None
        cluster = None if spec.cluster == "auto" else spec.cluster
        try:
            self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        except (ValueError, RuntimeError) as exc:
            raise SweepError(f"submitit cannot start its executor: {exc}") from None
        params: dict[str, Any] = {"timeout_min": spec.time or DEFAULT_TIME_MIN, "cpus_per_task": spec.cpus or threads,
                                  "name": f"bench-{name}", "slurm_partition": spec.partition,
                                  "slurm_array_parallelism": spec.array_parallelism, "slurm_account": spec.account,
                                  "slurm_qos": spec.qos, "mem_gb": spec.mem_gb}
        if spec.gpus:
            params["gpus_per_node"] = spec.gpus
        self.executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        self.cluster = self.executor.cluster
        # Slurm queues what it cannot start yet; another executor (local) runs every job it gets at once
        self.max_in_flight = max_in_flight if max_in_flight is not None or self.cluster == "slurm" else 1
        self.jobs: dict[str, tuple[SweepRun, Any]] = {}
        self._batch: list[tuple[SweepRun, list[str], Path, int]] = []

    def capacity(self) -> int:
        if self.max_in_flight is None:
            return 1 << 30
        return self.max_in_flight - len(self.jobs) - len(self._batch)

    def start(self, run: SweepRun, argv: list[str], log: Path, threads: int) -> str:
        # collected and submitted together by flush(): one job array per scheduling pass
        self._batch.append((run, argv, log, threads))
        return f"submitit ({self.cluster})"

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if len(batch) == 1:
            run, argv, log, threads = batch[0]
            jobs = [self.executor.submit(run_bench_job, argv, str(log), threads)]
        else:
            with self.executor.batch():
                pending = [self.executor.submit(run_bench_job, argv, str(log), threads)
                           for _, argv, log, threads in batch]
            jobs = pending
        for (run, *_), job in zip(batch, jobs):
            self.jobs[run.spec.name] = (run, job)
            run.job_id = str(job.job_id)

    def poll(self) -> list[tuple[SweepRun, int | None, str | None]]:
        self.flush()
        ended = []
        for name, (run, job) in list(self.jobs.items()):
            if not job.done():
                continue
            del self.jobs[name]
            try:
                ended.append((run, int(job.result()), None))
            except Exception as exc:  # noqa: BLE001 - a job killed, timed out or failed outside bench run
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                ended.append((run, None, f"error: submitit job {job.job_id}: {first}"))
        return ended

    def busy(self) -> bool:
        return bool(self.jobs or self._batch)

    def stop(self) -> None:
        self._batch = []
        for _, job in self.jobs.values():
            with contextlib.suppress(Exception):
                job.cancel(check=False)


# --- the controller ------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    runs: list[SweepRun]
    interrupted: bool = False
    failed: list[SweepRun] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if any(r.state in ("failed", "skipped") for r in self.runs) else 0


class _Interrupted(Exception):
    pass


def execute(sweep: Sweep, runs: list[SweepRun], launcher: Launcher, work_dir: Path, reporter: Reporter,
            threads: int, data_cache: dict[str, Any] | None = None,
            shipped: dict[str, dict[str, str]] | None = None) -> Outcome:
    """Run every unfinished run of ``runs`` (planned, in dependency order) on ``launcher``; with ``shipped``
    (``--skip-shipped``: run id -> stage keys of the records in results/leaderboard/), a run whose id is only known
    once its dependencies have run is skipped too when its shipped record has the same stage keys."""
    by_name = {r.spec.name: r for r in runs}
    run_ids = {r.spec.name: r.plan.run_id for r in runs if r.settled}
    pending: list[SweepRun] = []
    for run in runs:
        if run.settled:
            run.state, run.run_id = "cached", run.plan.run_id
            reporter.state(run, "record exists" if run.plan.finished else "record shipped in results/leaderboard/")
        else:
            run.state = "queued"
            pending.append(run)
            reporter.state(run, _waits_for(run))

    def on_signal(signum: int, frame: Any) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    # a kill of the sweep (SIGTERM, a closed terminal) stops its runs as Ctrl-C does; handlers need the main thread
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)} if in_main else {}
    interrupted = False
    try:
        while pending or launcher.busy():
            progressed = False
            for run in list(pending):
                broken = [d for d in run.spec.deps if by_name[d].state in ("failed", "skipped")]
                if broken:
                    pending.remove(run)
                    run.state = "skipped"
                    run.reason = f"dependency '{broken[0]}' {by_name[broken[0]].state}"
                    reporter.state(run, run.reason)
                    progressed = True
            # Ready runs in file order, those sharing a stage with a running run last: started now they would only
            # wait for its stage lock while holding a worker another run could use.
            ready = [r for r in pending if all(by_name[d].state in ("done", "cached") for d in r.spec.deps)]
            while ready and launcher.capacity() > 0:
                busy_stages = {stage for r in runs if r.state == "running" for stage in _stages_to_compute(r)}
                run = min(ready, key=lambda r: bool(_stages_to_compute(r) & busy_stages))  # first of the best
                ready.remove(run)
                pending.remove(run)
                progressed = True
                read_later = any(run.name in r.spec.references() for r in pending)
                if not _prepare(run, run_ids, work_dir, data_cache, reporter, {} if read_later else shipped or {}):
                    continue
                log = log_path(work_dir, sweep, run)
                run.log = log
                run.started = time.monotonic()
                run.config = dataclasses.replace(run.config, threads=run.threads or threads)
                where = launcher.start(run, run_argv(run.config), log, run.config.threads)
                run.state = "running"
                reporter.state(run, where)
            if isinstance(launcher, SubmititLauncher):
                launcher.flush()
            for run, returncode, launcher_error in launcher.poll():
                progressed = True
                run.elapsed = time.monotonic() - (run.started or time.monotonic())
                _finish(run, returncode, launcher_error, work_dir, run_ids)
                reporter.state(run, run.reason or run.run_id or "")
            if not progressed:
                time.sleep(POLL_S)
    except (KeyboardInterrupt, _Interrupted):
        interrupted = True
        launcher.stop()
        for run in runs:
            if run.state == "running":
                run.state = "stopped"
                run.reason = "the sweep was interrupted; rerun it to resume"
                run.elapsed = time.monotonic() - (run.started or time.monotonic())
    except BaseException:
        launcher.stop()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return Outcome(runs, interrupted, [r for r in runs if r.state == "failed"])


def _stages_to_compute(run: SweepRun) -> set[tuple[str, str]]:
    if run.plan is None:
        return set()
    return {(name, s.key) for name, s in run.plan.stages.items() if s.key is not None and not s.done}


def _waits_for(run: SweepRun) -> str:
    return f"after {', '.join(run.spec.deps)}" if run.spec.deps else ""


def _prepare(run: SweepRun, run_ids: dict[str, str], work_dir: Path, data_cache: Any, reporter: Reporter,
             shipped: dict[str, dict[str, str]]) -> bool:
    """Give a ready run its dependencies' run ids and plan it again when they changed what it does; False when it
    needs no launch (finished already, or it cannot start)."""
    stale = run.plan is None or run.plan.unknown is not None or any(
        run.planned_ids.get(d) != run_ids.get(d) for d in run.spec.deps if d in run_ids)
    if stale:
        try:
            replan(run, run_ids, work_dir, data_cache)
        except SweepError as exc:
            run.state, run.reason = "failed", f"error: {exc}"
            reporter.state(run, run.reason)
            return False
    if run.plan is not None and (run.plan.finished or stale_stages(run.plan, shipped) == []):
        run.state, run.run_id = "cached", run.plan.run_id
        run_ids[run.spec.name] = run.run_id
        reporter.state(run, "record exists" if run.plan.finished else "record shipped in results/leaderboard/")
        return False
    return True


def _finish(run: SweepRun, returncode: int | None, launcher_error: str | None, work_dir: Path,
            run_ids: dict[str, str]) -> None:
    if launcher_error is not None or returncode != 0:
        run.state = "failed"
        run.reason = launcher_error or error_line(run.log, returncode)
        return
    record = Path(work_dir) / "records" / f"{run.plan.run_id}.json"
    try:
        run_id = json.loads(record.read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        run.state = "failed"
        run.reason = f"error: bench run ended without writing the planned record {record}"
        return
    run.state, run.run_id, run.reason = "done", run_id, None
    run_ids[run.spec.name] = run_id
