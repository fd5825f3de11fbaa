"""A sweep's runs as ``RunConfig``s, each planned with ``bench.runner.plan_run`` (resolved configs, run id, which
stages are cached), with an estimated cost from the stage timings of past records."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.sweep.spec import RunSpec, Sweep, SweepError, set_argument, substitute

STAGES = ("fit", "generate", "evaluate")


@dataclass
class SweepRun:
    """A run of the sweep: its spec, its ``RunConfig`` and plan, and (while and after it runs) its state."""

    spec: RunSpec
    config: Any = None  # bench.runner.RunConfig, with the dependencies' run ids in place
    plan: Any = None  # bench.runner.RunPlan
    planned_ids: dict[str, str] = field(default_factory=dict)  # the dependencies' run ids it was planned with
    estimate: dict[str, float | None] = field(default_factory=dict)  # seconds per stage still to compute
    shared: dict[str, str] = field(default_factory=dict)  # stage -> the earlier run of the sweep that computes it
    threads: int | None = None
    data_root: Path | None = None
    state: str = "planned"  # queued | running | cached | done | failed | skipped
    reason: str | None = None
    run_id: str | None = None
    log: Path | None = None
    started: float | None = None
    elapsed: float | None = None
    job_id: str | None = None
    shipped: bool = False  # --skip-shipped: results/leaderboard/ holds its record, with the same stage keys

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def settled(self) -> bool:
        """Nothing to run: its record is in the work dir, or (``--skip-shipped``) in results/leaderboard/."""
        return self.plan is not None and (self.plan.finished or self.shipped)

    def total_estimate(self) -> float | None:
        values = [v for s, v in self.estimate.items() if s not in self.shared]
        return None if any(v is None for v in values) else sum(values)


def run_config(spec: RunSpec, run_ids: dict[str, str], work_dir: Path, data_root: Path | None = None,
               threads: int | None = None) -> Any:
    """The ``RunConfig`` of ``spec``, with each ``{run:NAME}`` replaced by that run's id."""
    from bench.runner import RunConfig

    sets = [set_argument(key, substitute(value, run_ids)) for key, value in spec.set.items()]
    return RunConfig(task=spec.task, method=spec.method, profile=spec.profile, seed=spec.seed, dataset=spec.dataset,
                     sets=sets, config_file=spec.config, work_dir=Path(work_dir),
                     data_root=data_root or spec.data_root, device=spec.device, precision=spec.precision,
                     threads=threads or spec.threads, shard_size=spec.shard_size, progress=False)


def run_argv(rc: Any) -> list[str]:
    """``bench run`` arguments equal to ``rc``."""
    argv = ["--task", rc.task, "--method", rc.method, "--profile", rc.profile, "--seed", str(rc.seed)]
    if rc.dataset:
        argv += ["--dataset", rc.dataset]
    for item in rc.sets:
        argv += ["--set", item]
    if rc.config_file:
        argv += ["--config", str(Path(rc.config_file).resolve())]
    argv += ["--work-dir", str(Path(rc.work_dir).resolve())]
    if rc.data_root:
        argv += ["--data-root", str(Path(rc.data_root).resolve())]
    argv += ["--device", rc.device, "--precision", rc.precision, "--shard-size", str(rc.shard_size)]
    if rc.threads:
        argv += ["--threads", str(rc.threads)]
    return argv + ["--no-progress"]


def plan_sweep(sweep: Sweep, work_dir: Path, data_root: Path | None = None, threads: int | None = None,
               data_cache: dict[str, Any] | None = None) -> list[SweepRun]:
    """Every run of the sweep planned, in dependency order; a run that cannot start raises SweepError."""
    runs: list[SweepRun] = []
    run_ids: dict[str, str] = {}
    data_cache = {} if data_cache is None else data_cache
    for spec in sweep.order():
        run = SweepRun(spec, threads=threads or spec.threads, data_root=data_root)
        replan(run, run_ids, work_dir, data_cache)
        run_ids[spec.name] = run.plan.run_id
        runs.append(run)
    return runs


def replan(run: SweepRun, run_ids: dict[str, str], work_dir: Path, data_cache: dict[str, Any] | None = None) -> None:
    """(Re)build the run's config with ``run_ids`` of its dependencies and plan it."""
    from bench.runner import BenchError, plan_run

    spec = run.spec
    run.config = run_config(spec, run_ids, work_dir, run.data_root, run.threads)
    run.planned_ids = {d: run_ids[d] for d in spec.deps if d in run_ids}
    try:
        run.plan = plan_run(run.config, data_cache)
    except BenchError as exc:
        raise SweepError(f"run '{spec.name}' ({spec.describe()}): {exc}") from None
    if run.plan.unknown and not spec.deps:
        raise SweepError(f"run '{spec.name}' ({spec.describe()}): {run.plan.unknown}")


# --- estimates -------------------------------------------------------------------------------------------------------

@dataclass
class PastRun:
    run_id: str
    key: tuple[str, str, str, str]  # task, method, profile, dataset
    protocol: str
    stages: dict[str, str]
    timings: dict[str, float]
    cached: dict[str, bool]


def past_runs(folders: list[Path]) -> list[PastRun]:
    """The records under ``folders`` as far as estimates need them (read as plain JSON, not validated)."""
    out, seen = [], set()
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                r = json.loads(path.read_text())
                item = PastRun(r["run_id"], (r["task"]["id"], r["method"]["id"], r["profile"], r["dataset"]["id"]),
                               r.get("protocol_hash", ""), dict(r.get("stages") or {}), dict(r.get("timings") or {}),
                               dict(r.get("cached") or {}))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if item.run_id not in seen:
                seen.add(item.run_id)
                out.append(item)
    return out


def estimate_stage(plan: Any, stage: str, history: list[PastRun]) -> float | None:
    """Seconds the stage is expected to take: the timing of a past record that computed this very stage, else the
    median over past records of the same task, method, profile and dataset that computed the stage (those with the
    same protocol first); None without such a record."""
    key = plan.stages[stage].key
    computed = [p for p in history if stage in p.timings and not p.cached.get(stage, False)]
    exact = [p.timings[stage] for p in computed if key and p.stages.get(stage) == f"{stage}/{key}"]
    if exact:
        return exact[0]
    rc = plan.config
    same = [p for p in computed if p.key == (rc.task, rc.method, rc.profile, plan.dataset_id)]
    for pool in ([p for p in same if p.protocol == plan.protocol_hash], same):
        if pool:
            return statistics.median(p.timings[stage] for p in pool)
    return None


def add_estimates(runs: list[SweepRun], history: list[PastRun]) -> None:
    """Fill each run's ``estimate`` for the stages it still has to compute; a stage two runs share is counted once
    (in the first run; the later one names it in ``shared``)."""
    first: dict[tuple[str, str], str] = {}
    for run in runs:
        run.estimate, run.shared = {}, {}
        if run.settled:
            continue
        for stage in run.plan.to_run:
            key = run.plan.stages[stage].key
            if key is not None and (stage, key) in first:
                run.shared[stage] = first[(stage, key)]
                continue
            if key is not None:
                first[(stage, key)] = run.name
            run.estimate[stage] = estimate_stage(run.plan, stage, history)


def history_folders(work_dir: Path) -> list[Path]:
    from bench.paths import leaderboard_dirs

    return [Path(work_dir) / "records", *leaderboard_dirs()]


def shipped_ids() -> set[str]:
    from bench.paths import leaderboard_dirs

    return {p.stem for folder in leaderboard_dirs() for p in folder.glob("*.json")}


def shipped_stages() -> dict[str, dict[str, str]]:
    """Run id -> the stage keys (``{"fit": "fit/<key>", ...}``) of its record in results/leaderboard/. A record made
    from a working tree with uncommitted changes (``git_commit`` ending in ``-dirty``) also carries
    ``DIRTY: <commit>``: no one can say which code made it, so ``--skip-shipped`` runs it again."""
    from bench.paths import leaderboard_dirs

    out: dict[str, dict[str, str]] = {}
    for folder in leaderboard_dirs():
        for path in folder.glob("*.json"):
            try:
                record = json.loads(path.read_text())
                stages, commit = record.get("stages"), str((record.get("environment") or {}).get("git_commit", ""))
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(stages, dict):
                out.setdefault(path.stem, {**stages, **({DIRTY: commit} if commit.endswith("-dirty") else {})})
    return out


#: Key of ``shipped_stages`` marking a record made from a dirty working tree.
DIRTY = "dirty"


def mark_shipped(runs: list[SweepRun], shipped: dict[str, dict[str, str]]) -> None:
    """``--skip-shipped``: mark the runs whose shipped record has the stage keys they would have, except those
    whose outputs a run that still has to run reads (``{run:NAME}``: seg-aug's generated masks must be in the
    work dir), and so on up the chain."""
    for run in runs:
        run.shipped = run.plan is not None and not run.plan.finished and stale_stages(run.plan, shipped) == []
    by_name = {r.name: r for r in runs}
    changed = True
    while changed:
        changed = False
        for run in runs:
            if run.settled:
                continue
            for name in run.spec.references():
                source = by_name.get(name)
                if source is not None and source.shipped:
                    source.shipped, changed = False, True


def stale_stages(plan: Any, shipped: dict[str, dict[str, str]]) -> list[str] | None:
    """None when ``plan``'s run id has no shipped record; else why the shipped record is not what this run would
    make: the stages whose shipped key differs from the planned one (new code or weights since the record was made),
    or that it was made from a dirty working tree. [] = the shipped record is what this run would make."""
    stages = shipped.get(plan.run_id)
    if stages is None:
        return None
    stale = [s for s, st in plan.stages.items() if st.key is None or stages.get(s) != f"{s}/{st.key}"]
    if DIRTY in stages:
        stale.append(f"made from a dirty tree at {stages[DIRTY][:7]}")
    return stale


def known_stale(plan: Any, shipped: dict[str, dict[str, str]]) -> list[str]:
    """``stale_stages`` without the stages whose keys are unknown until the run's dependencies have run (a seg-aug
    run on another run's generated masks, planned in a fresh work dir): the dry run cannot call those stale yet."""
    return [s for s in stale_stages(plan, shipped) or [] if s not in plan.stages or plan.stages[s].key is not None]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def stage_cell(run: SweepRun, stage: str) -> str:
    s = run.plan.stages[stage]
    if run.plan.finished or s.done:
        return "cached"
    if run.shipped:
        return "-"
    if stage in run.shared:
        return f"shared ({run.shared[stage]})"
    if s.key is None:
        return "run (after deps)"
    return "run"


def table_commands(sweep: Sweep, work_dir: Path) -> list[str]:
    records = Path(work_dir) / "records"
    return [f"bench table {t} --profile {p} --records {records}" for p in sweep.profiles() for t in sweep.tables]


def then_commands(sweep: Sweep, runs: list[SweepRun], work_dir: Path) -> list[str]:
    ids = {r.name: (r.run_id or (r.plan.run_id if r.plan else r.name)) for r in runs}
    return [substitute(c, ids).replace("{work_dir}", str(work_dir)) for c in sweep.then]


def render_plan(sweep: Sweep, runs: list[SweepRun], work_dir: Path, workers: int, threads: int) -> str:
    """The dry-run report: each run with its stages cached or not and an estimate, the totals, the tables."""
    from bench import terminal

    shipped = shipped_stages()
    rows = []
    for run in runs:
        rc = run.config
        stale = stale_stages(run.plan, shipped)
        known = known_stale(run.plan, shipped)
        record = "finished" if run.plan.finished else ("" if stale is None else "shipped" if not stale else
                                                         f"shipped, stale ({', '.join(known)})" if known else
                                                         "shipped (compared once its dependencies have run)")
        if run.shipped:
            record = "shipped: skipped"
        rows.append([run.name, rc.task, rc.method, str(rc.seed), *(stage_cell(run, s) for s in STAGES),
                     "-" if run.settled else duration(run.total_estimate()),
                     ", ".join(run.spec.deps) or "-", run.plan.run_id, record or "-"])
    lines = [f"sweep {sweep.name} ({sweep.path}): {len(runs)} runs, work dir {work_dir}"
             + (f"; fills {', '.join(sweep.tables)}" if sweep.tables else "")]
    if sweep.description:
        lines.append(sweep.description.strip())
    lines.append("")
    headers = ["run", "task", "method", "seed", "fit", "generate", "evaluate", "estimate", "after", "run id", "record"]
    if all(row[-1] == "-" for row in rows):  # no record anywhere yet: leave the column out
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    lines += terminal.table(headers, rows, keys=1, wrap={8: 40})
    finished = sum(r.plan.finished for r in runs)
    todo = {s: sum(1 for r in runs if not r.settled and s in r.plan.to_run and s not in r.shared)
            for s in STAGES}
    known = [r.total_estimate() for r in runs if not r.settled]
    total = sum(v for v in known if v is not None)
    unknown = sum(v is None for v in known)
    lines.append("")
    lines.append(f"finished: {finished} of {len(runs)} runs; stages to compute: "
                 + ", ".join(f"{n} {s}" for s, n in todo.items()))
    n_shipped = sum(r.plan.run_id in shipped for r in runs)
    n_stale = sum(bool(known_stale(r.plan, shipped)) for r in runs)
    stale_note = (f" ({n_stale} stale: made with other code or weights, or from a dirty working tree; they run again)"
                  if n_stale else "")
    n_skipped = sum(r.shipped for r in runs)
    if n_skipped:
        lines.append(f"shipped: {n_shipped} of {len(runs)} planned run ids have a record in results/leaderboard/"
                     f"{stale_note}; --skip-shipped: {n_skipped} will not run")
    elif n_shipped:
        lines.append(f"shipped: {n_shipped} of {len(runs)} planned run ids have a record in results/leaderboard/"
                     f"{stale_note} (--skip-shipped runs only the others)")
    sources = ", ".join(str(f) for f in history_folders(work_dir))
    if known and unknown == len(known):
        est = f"estimated cost: unknown (no past record of these runs' stages in {sources})"
    else:
        est = f"estimated cost: {duration(total)} of runs"
        if unknown:
            est += f" (+ {unknown} run(s) with no past record of their stages)"
        est += f", from the stage timings of past records ({sources})"
    if workers > 1 and total:
        est += f"; on {workers} workers x {threads} thread(s) about {duration(total / workers)} of wall time"
    lines.append(est)
    commands = table_commands(sweep, work_dir) + then_commands(sweep, runs, work_dir)
    if commands:
        lines.append("then:")
        lines += [f"  {c}" for c in commands]
    return "\n".join(lines)
