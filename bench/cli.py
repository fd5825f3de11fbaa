"""The `bench` command line: a thin adapter over bench.runner, bench.store and friends.

Heavy modules (torch, diffusers) are imported inside commands, so ``bench --help``
and ``bench list`` start instantly. User errors print one line and exit 2.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="medsynth-bench: run controllable-diffusion methods on standard medical imaging tasks.")

EXIT_USAGE = 2


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _setup_logging(verbose: bool, quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    for name in ("bench", "methods", "baselines"):
        logging.getLogger(name).setLevel(level)
    if quiet:  # the model libraries' notices (dtype casts, embedding resizing): the variables are read when they
        # are first imported; the levels hold if they already are (a test process, an embedding application)
        for variable in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
            os.environ.setdefault(variable, "error")
        for name in ("diffusers", "transformers"):
            logging.getLogger(name).setLevel(logging.ERROR)


@app.command(epilog="""Examples:\n
  bench run --task seg-aug --method classic-aug\n
  bench run --task seg-aug --method didgen --dry-run\n
  bench run --task seg-aug --method didgen --protocol seg-aug/mini-s2.5k@v1\n
  bench run --task seg-aug --method real-only --profile smoke --seed 1\n
  bench run --task seg-aug --dataset ph2 --data-root ~/data --method classic-aug --set task.n_generate=200\n
  bench run --task seg-aug --method mypkg.module:MyGenerator""")
def run(
    task: str = typer.Option(..., "--task", "-t", help="Task id (bench list)."),
    method: str = typer.Option(..., "--method", "-m", help="Method id, or package.module:Class."),
    profile: str = typer.Option("mini", help="smoke | mini | paper."),
    seed: int = typer.Option(0, help="Run seed, 0 to 2**63 - 1 (negative seeds are refused)."),
    dataset: Optional[str] = typer.Option(None, help="Dataset id replacing the task's default."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding the real datasets."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: task.KEY=VALUE or method.KEY=VALUE."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with task: and method: sections."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Named leaderboard protocol (bench list shows "
                                           "them); default: the task and profile's, the one the shipped records use."),
    work_dir: Path = typer.Option(Path("bench-runs"), "--work-dir", envvar="BENCH_WORK_DIR",
                                  help="Caches, generated samples and records."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:N]."),
    precision: str = typer.Option("fp32", help="fp32 | fp16 | bf16."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (default: $OMP_NUM_THREADS, else min(2, cores))."),
    shard_size: int = typer.Option(64, "--shard-size", help="Samples per generation shard (the unit of resume)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configs, the protocol, the stages cached "
                                 "or to run and an estimate from past records; run nothing."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run one task x method x seed: fit -> generate -> evaluate -> write a record."""
    try:
        _run(task, method, profile, seed, dataset, data_root, set_, config, protocol, work_dir, device, precision,
             threads, shard_size, no_progress, dry_run, verbose, quiet)
    except KeyboardInterrupt as exc:
        typer.echo(interrupted_line(exc, work_dir, dry_run), err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def interrupted_line(exc: BaseException, work_dir: Path, dry_run: bool = False) -> str:
    """The one line Ctrl-C prints: what was interrupted, what the cache keeps, how to resume."""
    stage, finished = getattr(exc, "stage", None), getattr(exc, "finished", [])
    if dry_run:
        return "interrupted: the dry run stopped; it writes nothing"
    if stage is None or stage in ("setup", "data loading"):
        return "interrupted before any stage ran: nothing was computed; rerun the same command to start"
    kept = f"{', '.join(finished)} finished and cached" if finished else "no stage finished"
    running = {"fit": "an unfinished fit runs again", "generate": "the shards written so far are kept",
               "evaluate": "trained arms and per-epoch checkpoints are kept",
               "record writing": "no record was written"}.get(stage, "")
    return (f"interrupted during {stage}: {kept} in {work_dir}" + (f" ({running})" if running else "")
            + "; rerun the same command to resume")


def _run(task: str, method: str, profile: str, seed: int, dataset: Optional[str], data_root: Optional[Path],
         set_: list[str], config: Optional[Path], protocol: Optional[str], work_dir: Path, device: str, precision: str,
         threads: Optional[int], shard_size: int, no_progress: bool, dry_run: bool, verbose: bool, quiet: bool) -> None:
    _setup_logging(verbose, quiet)
    if precision not in ("fp32", "fp16", "bf16"):
        _fail(f"--precision '{precision}' is not one of fp32, fp16, bf16")
    if shard_size < 1:
        _fail(f"--shard-size must be >= 1, got {shard_size}")
    if data_root is not None and not data_root.is_dir():
        _fail(f"--data-root {data_root}: no such folder")
    if config is not None and not config.is_file():
        _fail(f"--config {config}: not a file")
    blocker = next((p for p in (work_dir, *work_dir.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        _fail(f"--work-dir {work_dir}: {blocker} is a file, not a folder")
    from bench.errors import UserInputError
    from bench.runner import BenchError, RunConfig, run_one

    rc = RunConfig(task=task, method=method, profile=profile, seed=seed, dataset=dataset, sets=list(set_),
                   config_file=config, work_dir=work_dir, data_root=data_root, device=device, precision=precision,
                   threads=threads, shard_size=shard_size, progress=not no_progress and sys.stderr.isatty(),
                   protocol=protocol)
    if dry_run:
        from bench.dry_run import report

        try:
            text = report(rc)
        except BenchError as exc:
            _fail(str(exc))
            return
        typer.echo(text)
        return
    try:
        record, path = run_one(rc)
    except BenchError as exc:
        _fail(str(exc))
        return
    except UserInputError as exc:  # an unusable file the user gave (pickled weights ...)
        _fail(str(exc))
        return
    except FileNotFoundError as exc:  # a weight or model folder the user has to provide (one line says where)
        _fail(str(exc) if not exc.filename else f"{exc.strerror or exc}: {exc.filename}")
        return
    except OSError as exc:  # a read-only or full work dir: the record is written last and atomically, so none exists
        _fail(f"cannot write in --work-dir {work_dir}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
        return
    except Exception as exc:  # noqa: BLE001 - a writer's own error for a refused write (safetensors: "(os error 28)")
        refused = _refused_write(exc)
        if refused is None:
            raise
        _fail(f"cannot write in --work-dir {work_dir}: {refused}")
        return
    if record is None:  # a non-main process of `accelerate launch`: the main process prints the run
        return
    typer.echo(render_run(record))
    typer.echo(f"record: {path}")


def _refused_write(exc: BaseException) -> Optional[str]:
    """The OS's reason when ``exc`` is a library's error quoting a refused write (safetensors' save_file raises
    ``SafetensorError("... No space left on device (os error 28)")``, not an OSError), else None."""
    import errno
    import os
    import re

    quoted = re.search(r"\(os error (\d+)\)", str(exc))
    code = int(quoted.group(1)) if quoted else None
    return os.strerror(code) if code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM) else None


def render_run(record: dict[str, Any]) -> str:
    """A plain-text table of one record: the method beside the real-only reference arm, per downstream model."""
    metrics = list(record["metrics"])
    comp = record.get("comparisons", {})
    ref = comp.get("reference_per_model", {})
    rows = [("model", "arm", *metrics)]
    for model, values in record["per_model"].items():
        if model in ref and record["method"]["id"] != comp.get("reference"):
            rows.append((model, comp.get("reference", "reference"), *(_fmt(ref[model].get(m)) for m in metrics)))
        rows.append((model, record["method"]["id"], *(_fmt(values.get(m)) for m in metrics)))
    if comp.get("reference_metrics") and record["method"]["id"] != comp.get("reference"):
        rows.append(("mean", comp["reference"], *(_fmt(comp["reference_metrics"].get(m)) for m in metrics)))
    rows.append(("mean", record["method"]["id"], *(_fmt(record["metrics"][m]) for m in metrics)))
    from bench.protocols import describe

    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{record['task']['id']} | {record['dataset']['id']} | profile {record['profile']} | seed {record['seed']} "
             f"| protocol {describe(record)}"]
    for k, r in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for metric, gain in comp.get("relative_gain", {}).items():
        test = comp.get("paired_ttest", {}).get(metric)
        tested = f", paired t-test p = {test['p']:.3g} (n = {test.get('n', 0)})" if test and test.get("p") is not None else ""
        shown = "undefined (a reference score is 0)" if gain is None else f"{gain * 100:+.2f}%"
        lines.append(f"{metric}: relative gain {shown} vs {comp['reference']}{tested}")
    stages = ", ".join(f"{s} {'cached' if record['cached'].get(s) else f'{t:.1f}s'}" for s, t in record["timings"].items())
    lines.append(f"stages: {stages}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


@app.command("list")
def list_(profile: str = typer.Option("mini", help="Profile whose task configs decide compatibility.")) -> None:
    """Tasks, datasets, methods and profiles, with the method x task compatibility matrix."""
    from bench import terminal
    from bench.config import PROFILES
    from bench.registry import DATASETS, METHODS, TASKS
    from bench.runner import compatibility, how_it_runs

    lines = terminal.wrapped("profiles", list(PROFILES)) + terminal.wrapped("datasets", DATASETS.names())
    lines.append("tasks:")
    lines += terminal.described([(t, f"v{TASKS.get(t).version}  {TASKS.get(t).description}") for t in TASKS.names()])
    from bench.protocols import of_task

    lines.append(f"protocols ({profile}; * = plain bench run, others: --protocol):")
    lines += terminal.described([(p.name + (" *" if p.default else ""), p.title)
                                 for t in TASKS.names() for p in of_task(t, profile)])
    plugins = METHODS.plugins()
    lines.append("methods (accepts -> returns; * = plugin):")
    rows = []
    for m in METHODS.names():
        caps = METHODS.get(m).capabilities
        rows.append((m + (" *" if m in plugins else ""),
                     f"{', '.join(sorted(caps.accepts)) or '-'} -> {', '.join(sorted(caps.returns))}"))
    lines += terminal.described(rows)
    matrix = compatibility(profile)
    methods, tasks = METHODS.names(), list(matrix)
    options = {(t, m): how_it_runs(t, m, profile)
               for t, row in matrix.items() for m in methods if row[m] is not None and not row[m].startswith("cannot load")}
    cells = {(m, t): "x" if matrix[t][m] is None else "o" if options.get((t, m)) else "." for t in tasks for m in methods}
    lines += ["", *terminal.wrapped(f"compatibility ({profile} profile)", [
        "x = runs", "o = runs as below (auto: the protocol a plain run picks)", ". = incompatible"])]
    lines += terminal.matrix(methods, tasks, cells)
    lines += [f"  o {m} on {t}: {option}" for (t, m), option in sorted(options.items(), key=lambda kv: kv[0][::-1])
              if option]
    typer.echo("\n".join(lines))


@app.command()
def results(
    task: Optional[str] = typer.Option(None, help="Only this task."),
    method: Optional[str] = typer.Option(None, help="Only this method."),
    work_dir: Path = typer.Option(Path("bench-runs"), "--work-dir", envvar="BENCH_WORK_DIR"),
    records: Optional[Path] = typer.Option(None, help="Folder of records (default: <work-dir>/records)."),
) -> None:
    """Aggregate records into a table: mean and std over seeds per task, dataset, method, profile and protocol."""
    from bench.store import records_table

    folder = records or work_dir / "records"
    if not folder.is_dir():
        _fail(f"no records folder at {folder}; run `bench run` first or pass --records")
    df = records_table(folder, task=task, method=method)
    if df.empty:
        typer.echo("no records match")
        return
    typer.echo(render_results(df, protocol_names(folder)))


def protocol_names(folder: Path) -> dict[str, str]:
    """Protocol hash (8 characters) -> ``name "title"`` for the records of ``folder`` that ran a named protocol."""
    from bench.protocols import record_protocol
    from bench.store import iter_records

    out: dict[str, str] = {}
    for _, rec in iter_records(folder):
        short = rec["protocol_hash"][:8]
        if short not in out:
            proto = record_protocol(rec)
            out[short] = f"{proto.display_name} \"{proto.title}\"" if proto else ""
    return out


def render_results(df: Any, names: Optional[dict[str, str]] = None) -> str:
    """One block per (task, dataset, profile, protocol): a row per method and variant, ``mean +- std`` per metric
    over seeds (one seed shown as the value alone, with the seed count beside it); wrapped to the terminal.
    ``names``: protocol hash -> its name and title, shown with the hash beside."""
    import math
    import textwrap

    from bench import terminal

    section_keys = ["task", "dataset", "profile", "protocol"]
    metrics = [c for c in df.columns if c not in section_keys + ["method", "variant", "n_seeds"] and not c.endswith("_std")]
    out: list[str] = []
    for section, part in df.groupby(section_keys, sort=True):
        shown = [m for m in metrics if part[m].notna().any()]
        rows = []
        for _, r in part.iterrows():
            cells = []
            for m in shown:
                mean, std = r[m], r.get(f"{m}_std")
                cells.append("-" if mean is None or math.isnan(mean) else
                             f"{mean:.4f}" if std is None or math.isnan(std) else f"{mean:.4f} +- {std:.4f}")
            rows.append([r["method"], r["variant"], str(int(r["n_seeds"])), *cells])
        if out:
            out.append("")
        name = (names or {}).get(section[3])
        heading = " | ".join(str(s) for s in section[:3]) + (f" | protocol {name} ({section[3]})" if name else
                                                             f" | protocol {section[3]} (no named protocol)")
        out += textwrap.wrap(heading, terminal.width(), subsequent_indent="    ", break_long_words=False) or [heading]
        out += terminal.table(["method", "variant", "seeds", *shown], rows, keys=2, wrap={1: 40})
    return "\n".join(out)


def _mount_subcommands() -> None:
    """Sub-command groups live beside the code they drive; their modules import nothing heavy."""
    from bench.analysis.cli import analyze_app
    from bench.data.cli import app as data_app
    from bench.foundation.cli import app as foundation_app
    from bench.leaderboard.cli import leaderboard_app, submit_command
    from bench.sweep.cli import EPILOG as SWEEP_EPILOG
    from bench.sweep.cli import sweep_command
    from bench.tables.cli import EPILOG as TABLE_EPILOG
    from bench.tables.cli import table_command

    app.add_typer(data_app, name="data")
    app.add_typer(foundation_app, name="foundation")
    app.add_typer(analyze_app, name="analyze")
    app.add_typer(leaderboard_app, name="leaderboard")
    app.add_typer(_import_without_package_init("methods.didgen.caption").derm_app, name="derm")
    app.command("table", epilog=TABLE_EPILOG)(table_command)
    app.command("submit")(submit_command)
    app.command("verify")(_verify_command())
    app.command("sweep", epilog=SWEEP_EPILOG)(_sweep_interruptible(sweep_command))


def _sweep_interruptible(command: Any) -> Any:
    """``bench sweep`` with Ctrl-C while it plans (before its runs start: they report their own interruption) as
    one line and exit 130 instead of a traceback."""
    import functools

    @functools.wraps(command)
    def sweep(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("interrupted: bench sweep stopped; finished runs and stages are cached in the work dir; rerun "
                       "the same command to resume", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return sweep


def _verify_command() -> Any:
    """``bench verify`` with typer's options (the implementation imports nothing heavy until it runs)."""
    from bench.leaderboard.verify import verify_command

    def verify(
        record: Path = typer.Argument(..., help="A record JSON file (its per-sample CSV beside it)."),
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Scratch work dir (default: a temporary one, "
                                                "removed afterwards)."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding the real datasets."),
        sources: Optional[Path] = typer.Option(None, "--sources", help="Work dir holding the runs the record depends "
                                               "on (task.mask_source)."),
        threads: Optional[int] = typer.Option(None, help="CPU threads (default: the record's)."),
        write_stamp: bool = typer.Option(False, "--stamp", help="When it matches, keep <run_id>.verified.yaml beside "
                                         "the record (the leaderboard marks the entry verified)."),
    ) -> None:
        """Rerun a record from its own configs and compare every metric and per-sample score; exit 1 on a difference."""
        verify_command(record, work_dir, data_root, sources, threads, write_stamp)

    return verify


def _import_without_package_init(name: str) -> Any:
    """Import module ``name`` from its file without running its package's ``__init__`` (methods.didgen's imports
    torch); the package is imported later, when the module's functions first use it."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    package, _, leaf = name.rpartition(".")
    location = importlib.util.find_spec(package).submodule_search_locations[0]  # imports only the grandparent
    spec = importlib.util.spec_from_file_location(name, Path(location) / f"{leaf}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_mount_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
