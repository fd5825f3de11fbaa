"""``bench run --dry-run``: what a run would do and cost, computed without fitting, generating or evaluating.

It prints the resolved task and method configs, the protocol (name and hash, and whether the shipped records share
it), what the generator is given per input (when the task describes it), each stage as cached or to run with an
estimate from past records' stage timings (the estimator of ``bench sweep --dry-run``), and the total.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.runner import RunConfig, RunPlan, plan_run


def history(work_dir: Path) -> list[Any]:
    """Past records (the work dir's and the shipped leaderboard's) as the estimator reads them."""
    from bench.sweep.plan import history_folders, past_runs

    return past_runs(history_folders(work_dir))


def stage_estimate(plan: RunPlan, stage: str, past: list[Any]) -> tuple[float | None, str]:
    """Seconds and where the number comes from: this stage's own past timing or the median of this method's past
    runs (``bench sweep``'s estimator), else the range of other methods' runs of the same protocol."""
    from bench.sweep.plan import duration, estimate_stage

    seconds = estimate_stage(plan, stage, past)
    if seconds is not None:
        return seconds, "past runs of this method"
    rc = plan.config
    others = [p.timings[stage] for p in past if stage in p.timings and not p.cached.get(stage, False)
              and p.key[0] == rc.task and p.key[2] == rc.profile and p.key[3] == plan.dataset_id
              and p.protocol == plan.protocol_hash]
    if not others:
        return None, "no past record of this task and protocol"
    low, high = min(others), max(others)
    span = duration(low) if round(low) == round(high) else f"{duration(low)}-{duration(high)}"
    return statistics.median(others), f"other methods of this protocol: {span} over {len(others)} record(s)"


def protocol_line(plan: RunPlan) -> str:
    """The run's protocol by name (when its settings are a named protocol's) with the hash beside."""
    from bench import protocols

    named = protocols.name_of(plan.config.task, plan.config.profile, plan.protocol_hash, plan.checksums)
    shipped = _shipped_protocols()
    where = "the shipped records' section" if plan.protocol_hash in shipped else "no shipped record has it"
    if named is not None:
        return f"protocol: {named.display_name} \"{named.title}\" ({plan.protocol_hash[:8]}; {where})"
    applied = plan.resolved.protocol
    why = (f"--config/--set changed the settings of {applied.name}" if applied is not None
           else "--dataset leaves the task's leaderboard protocols")
    return f"protocol: {plan.protocol_hash[:8]} (no named protocol: {why}; {where})"


def _shipped_protocols() -> set[str]:
    import json

    from bench.paths import leaderboard_dirs

    out = set()
    for path in (p for folder in leaderboard_dirs() for p in folder.glob("*.json")):
        try:
            out.add(json.loads(path.read_text())["protocol_hash"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def config_lines(title: str, values: dict[str, Any]) -> list[str]:
    import yaml

    text = yaml.safe_dump(values, sort_keys=False, default_flow_style=None, width=110)
    return [f"{title}:"] + [f"  {line}" for line in text.rstrip().splitlines()]


def generator_input_lines(plan: RunPlan) -> list[str]:
    """The task's description of what the generator is given (``Task.describe_generator_inputs``), if it has one."""
    task = plan.resolved.task
    describe = getattr(task, "describe_generator_inputs", None)
    if describe is None:
        return []
    rows = describe(plan.config.method, plan.resolved.method_config)
    if not rows:
        return []
    try:
        from bench.tasks.base import format_generator_inputs
    except ImportError:  # an older task base: the rows as they are
        return ["generator inputs:"] + [f"  {'; '.join(str(v) for v in row.values())}" for row in rows]
    import textwrap

    from bench import terminal

    wrapped = [part for line in format_generator_inputs(rows)
               for part in textwrap.wrap(line, terminal.width(), subsequent_indent=" " * 6, break_on_hyphens=False)]
    return ["generator inputs:", *wrapped]


def report(rc: RunConfig) -> str:
    """The dry-run text of ``rc`` (raises BenchError like ``run_one`` for user errors)."""
    from bench.sweep.plan import duration

    plan = plan_run(rc)
    lines = [f"dry run: {rc.task} x {rc.method} | dataset {plan.dataset_id} | profile {rc.profile} | seed {rc.seed}",
             protocol_line(plan), f"run id: {plan.run_id}"]
    lines += config_lines("task config", plan.task_config)
    lines += config_lines("method config", plan.method_config)
    lines += generator_input_lines(plan)
    if plan.finished:
        lines.append(f"finished: the record {plan.record} has these stage keys; running it again only rewrites it")
        return "\n".join(lines)
    past = history(Path(rc.work_dir))
    lines.append(f"work dir: {rc.work_dir}")
    lines.append("stages (estimates from past records' stage timings, at their thread counts):")
    total: float | None = 0.0
    for name, stage in plan.stages.items():
        if stage.done:
            lines.append(f"  {name:<9} cached")
            continue
        seconds, source = stage_estimate(plan, name, past)
        total = None if seconds is None or total is None else total + seconds
        lines.append(f"  {name:<9} to run  ~{duration(seconds)} ({source})")
    if plan.unknown:
        lines.append(f"  note: {plan.unknown}")
    lines.append(f"estimated time: {duration(total) if total is not None else 'unknown'}"
                 + (" (long: the run logs progress with an ETA; Ctrl-C keeps finished stages, rerun to resume)"
                    if total is not None and total > 300 else ""))
    return "\n".join(lines)
