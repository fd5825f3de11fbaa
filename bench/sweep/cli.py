"""``bench sweep FILE``: run a campaign of ``bench run`` runs described in a sweep file.

Mounted by ``bench/cli.py`` as ``app.command("sweep")(sweep_command)``. Imports nothing heavy at start-up: a
malformed sweep file is one ``error:`` line before torch is loaded.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

EXIT_USAGE = 2

EPILOG = """Examples:\n
  bench sweep docs/reproduce/ch4-mini.yaml --dry-run\n
  bench sweep docs/reproduce/ch4-mini.yaml --workers 2 --threads 1\n
  bench sweep campaign.yaml --launcher submitit --partition gpu --gpus 1 --time 240 --array-parallelism 16
"""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def sweep_command(
    file: Path = typer.Argument(..., help="Sweep file (YAML): runs as a grid and/or a list, see bench/sweep/spec.py."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (runs, cached stages, estimated cost) and "
                                 "run nothing."),
    work_dir: Path = typer.Option(Path("bench-runs"), "--work-dir", envvar="BENCH_WORK_DIR",
                                  help="Caches, records, and the sweep's logs (<work-dir>/sweeps/<name>/)."),
    launcher: Optional[str] = typer.Option(None, "--launcher", help="local (default) | submitit."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Runs at a time (local: worker processes, "
                                          "each pinned to its own cores; submitit: jobs in flight). Default: the "
                                          "file's launcher.workers, else 1."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per run (default: the file's, else "
                                          "cores / workers)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding the real datasets."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="submitit: auto | slurm | local."),
    partition: Optional[str] = typer.Option(None, "--partition", help="submitit: Slurm partition."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="submitit: GPUs per run."),
    cpus: Optional[int] = typer.Option(None, "--cpus", help="submitit: CPUs per run (default: --threads)."),
    mem_gb: Optional[float] = typer.Option(None, "--mem-gb", help="submitit: memory per run (GB)."),
    time_limit: Optional[int] = typer.Option(None, "--time", help="submitit: time limit per run, minutes "
                                             "(default 1440)."),
    array_parallelism: Optional[int] = typer.Option(None, "--array-parallelism",
                                                    help="submitit: array tasks running at once (Slurm)."),
    inputs: bool = typer.Option(False, "--inputs", help="With --dry-run: also print each run's generator inputs "
                                "(resolution, conditioning source, prompt form; Task.describe_generator_inputs)."),
    skip_shipped: bool = typer.Option(False, "--skip-shipped", help="Do not run the runs whose record is already "
                                      "in results/leaderboard/ with the stage keys this run would have (a campaign "
                                      "resumed on a machine without its work dir); their tables read the shipped "
                                      "records. A stale shipped record (other code or weights, or made from a dirty working tree) runs again."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Only the runs whose names match this shell "
                                             "glob (repeatable), with the runs they depend on: --only 'seg-*'."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a sweep file's runs (each an ordinary `bench run` with its cache) on local workers or through submitit.

    Rerunning resumes. Every failure is listed at the end; the exit status is 1 if a run failed.
    """
    from bench.sweep.spec import CLUSTERS, LAUNCHERS, SweepError, load_sweep

    for flag, value, low in (("--workers", workers, 1), ("--threads", threads, 1), ("--gpus", gpus, 0),
                             ("--cpus", cpus, 1), ("--time", time_limit, 1),
                             ("--array-parallelism", array_parallelism, 1)):
        if value is not None and value < low:
            _fail(f"{flag} must be >= {low}, got {value}")
    if mem_gb is not None and mem_gb <= 0:
        _fail(f"--mem-gb must be > 0, got {mem_gb}")
    if launcher is not None and launcher not in LAUNCHERS:
        _fail(f"--launcher '{launcher}' is not one of {', '.join(LAUNCHERS)}")
    if cluster is not None and cluster not in CLUSTERS:
        _fail(f"--cluster '{cluster}' is not one of {', '.join(CLUSTERS)}")
    if data_root is not None and not data_root.is_dir():
        _fail(f"--data-root {data_root}: no such folder")
    from bench.tables.paper import table_ids

    try:
        sweep = load_sweep(file, table_ids())
    except SweepError as exc:
        _fail(f"sweep {exc}")
        return
    whole = len(sweep.runs)
    try:
        sweep = sweep.only(only) if only else sweep
    except SweepError as exc:
        _fail(f"sweep {sweep.path}: {exc}")
    if only:
        typer.echo(f"--only {' '.join(only)}: {len(sweep.runs)} of the sweep's {whole} runs (with the runs they "
                   "depend on)")
    spec = sweep.launcher
    for key, value in (("kind", launcher), ("workers", workers), ("cluster", cluster), ("partition", partition),
                       ("gpus", gpus), ("cpus", cpus), ("mem_gb", mem_gb), ("time", time_limit),
                       ("array_parallelism", array_parallelism)):
        if value is not None:
            setattr(spec, key, value)
    n_workers = spec.workers or 1
    cores = len(os.sched_getaffinity(0))
    default_threads = threads or max(1, cores // n_workers)

    logging.getLogger("bench").setLevel(logging.DEBUG if verbose else logging.WARNING)
    from bench.sweep.plan import add_estimates, history_folders, past_runs, plan_sweep, render_plan

    data_cache: dict = {}
    try:
        runs = plan_sweep(sweep, work_dir, data_root, threads, data_cache)
    except SweepError as exc:
        _fail(f"sweep {sweep.path}: {exc}")
        return
    shipped: dict[str, dict[str, str]] = {}
    if skip_shipped:
        from bench.sweep.plan import mark_shipped, shipped_stages

        shipped = shipped_stages()
        mark_shipped(runs, shipped)
    if spec.kind == "submitit" and threads is None and spec.cpus:
        default_threads = spec.cpus
    per_run = {r.threads for r in runs}
    if len(per_run) == 1 and None not in per_run:  # every run says its thread count (the file's defaults)
        default_threads = per_run.pop()
    if dry_run:
        add_estimates(runs, past_runs(history_folders(work_dir)))
        typer.echo(render_plan(sweep, runs, work_dir, n_workers, default_threads))
        if inputs:
            typer.echo(_generator_inputs(runs))
        return
    raise typer.Exit(_run(sweep, runs, work_dir, spec, n_workers, default_threads, cores, data_cache, shipped))


def _generator_inputs(runs) -> str:  # noqa: ANN001
    """Each planned run's generator inputs (a table cell's protocol as the generator sees it)."""
    from bench.dry_run import generator_input_lines

    lines = ["", "generator inputs per run:"]
    for run in runs:
        plan = getattr(run, "plan", None)
        rows = generator_input_lines(plan) if plan is not None else []
        lines.append(f"{run.name} ({run.spec.task} x {run.spec.method}):")
        lines += [f"  {line}" for line in rows[1:]] or ["  (the task describes none)"]
    return "\n".join(lines)


def _run(sweep, runs, work_dir, spec, n_workers, threads, cores, data_cache, shipped) -> int:  # noqa: ANN001
    from bench.sweep.launch import LocalLauncher, SubmititLauncher, execute, sweep_dir
    from bench.sweep.plan import table_commands, then_commands
    from bench.sweep.report import Reporter, failures_text, write_status
    from bench.sweep.spec import SweepError

    reporter = Reporter(runs)
    folder = sweep_dir(work_dir, sweep)
    try:
        if spec.kind == "submitit":
            launcher = SubmititLauncher(folder / "submitit", spec, threads, sweep.name, spec.workers)
            where = f"submitit ({launcher.cluster}), {launcher.max_in_flight or 'any number of'} job(s) at a time"
        else:
            launcher = LocalLauncher(n_workers, threads)
            where = f"{n_workers} local worker(s) x {threads} thread(s)"
            if n_workers * threads > cores:
                reporter.message(f"note: {n_workers} workers x {threads} threads > {cores} cores: workers share cores")
    except SweepError as exc:
        _fail(f"sweep {sweep.path}: {exc}")
    finished, n_shipped = sum(r.plan.finished for r in runs if r.plan), sum(r.shipped for r in runs)
    before = f"{finished} finished before" + (f", {n_shipped} shipped and skipped" if n_shipped else "")
    reporter.message(f"sweep {sweep.name}: {len(runs)} runs ({before}), {where}; logs in {folder / 'logs'}")
    outcome = execute(sweep, runs, launcher, work_dir, reporter, threads, data_cache, shipped)
    reporter.summary(runs)
    text = failures_text(runs)
    if text:
        reporter.message(text)
    if outcome.interrupted:
        reporter.message("interrupted: rerun the same command to resume (finished runs and stages are cached)")
    commands = table_commands(sweep, work_dir) + then_commands(sweep, runs, work_dir)
    if commands and not outcome.interrupted:
        reporter.message("next:\n" + "\n".join(f"  {c}" for c in commands))
    write_status(folder / "status.json", sweep.name, runs, {"file": str(sweep.path), "exit_code": outcome.exit_code})
    return outcome.exit_code
