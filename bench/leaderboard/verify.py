"""``bench verify RECORD``: rerun a record from its own configs and compare every number.

The rerun uses the record's task, method, dataset, profile, seed, resolved configs (written to a config file, so the
resolved configs, protocol and run id come out the same) and torch thread count, in a scratch work dir. CPU results
are bit-for-bit repeatable for one CPU kernel set and thread count, so where the record's environment matches this
one (CPU model, torch's CPU capability, threads, torch version) every value must be equal; elsewhere they are
compared within a tolerance and the verdict says so.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where environments differ, a value may move this much and still count as reproduced. Measured on the demo's
#: seg-aug protocol: across two machines of the project's kind (same CPU model name, 2 threads) mean Dice moved
#: 0.0011 and the classic-aug gain 0.5 points; from 2 threads to 1 a U-Net arm moved 0.009 Dice. Bounded
#: metrics (values in [0, 1]) get an absolute tolerance, unbounded ones (FD, logits) a relative one, or the absolute
#: one where that is larger (near zero).
ABS_TOLERANCE = 0.01
REL_TOLERANCE = 0.05


class VerifyError(ValueError):
    """The record cannot be rerun here (one line for the CLI)."""


@dataclass
class Difference:
    where: str
    recorded: Any
    rerun: Any


@dataclass
class Verification:
    run_id: str
    exact: bool
    """True when environments match and the comparison was exact; False when a tolerance applied."""
    environment_differences: dict[str, tuple[Any, Any]]
    compared: int
    differences: list[Difference] = field(default_factory=list)
    rerun_id: str = ""
    identical: int = 0
    """Values equal bit for bit (JSON/CSV round trip), whatever the mode, of ``values``."""
    values: int = 0
    """Every value one by one (record-level and per-sample): ``compared`` in exact mode."""
    notes: list[str] = field(default_factory=list)
    """What could not be compared, and why."""
    reused: dict[str, Any] = field(default_factory=dict)
    """The record's ``environment.reused``: cached parts made in another environment (a tolerance applies)."""

    @property
    def matched(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        why = []
        if self.environment_differences:
            why.append("the environment differs: " + ", ".join(
                f"{k} {a} vs {b}" for k, (a, b) in self.environment_differences.items()))
        if self.reused:
            why.append("the record reused caches made in another environment: " + ", ".join(
                f"{what} ({_where(env)})" for what, env in self.reused.items()))
        mode = ("exactly (same CPU model, kernels, threads and torch)" if self.exact else
                f"within tolerance (abs {ABS_TOLERANCE}, rel {REL_TOLERANCE}) because " + "; ".join(why))
        if self.matched:
            same = "" if self.exact else f"; {self.identical} of {self.values} values also identical bit for bit"
            notes = "".join(f"; {n}" for n in self.notes)
            return f"verified: {self.compared} values of {self.run_id} reproduced {mode}{same}{notes}"
        notes = "".join(f"; {n}" for n in self.notes)
        if self.environment_differences:  # a task that trains models in its evaluation moves beyond the tolerance
            notes += "; an exact check needs the record's " + ", ".join(
                f"{k} {a}" for k, (a, _) in self.environment_differences.items())
        return (f"not verified: {len(self.differences)} of {self.compared} values of {self.run_id} differ, compared "
                f"{mode}{notes}")


def _where(env: Any) -> str:
    if not isinstance(env, dict):
        return str(env)
    threads = env.get("torch_threads")
    return f"{env.get('cpu_capability')}, {threads} thread{'s' if threads != 1 else ''}"


def _close(a: Any, b: Any, exact: bool) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if exact:
            return a == b or abs(a - b) <= 1e-12 * max(1.0, abs(a))  # JSON round trip of a float is exact; CSV too
        bounded = 0.0 <= min(a, b) and max(a, b) <= 1.0
        # unbounded values near zero (a mean logit of -0.02) get the absolute tolerance: a relative one is void there
        return abs(a - b) <= (ABS_TOLERANCE if bounded else max(ABS_TOLERANCE, REL_TOLERANCE * max(abs(a), abs(b))))
    return a == b


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


#: Columns of a per-sample file that say which row it is (the others are scores).
ROW_KEYS = ("model", "arm", "split", "id")


def compare(recorded: dict[str, Any], rerun: dict[str, Any], recorded_scores: list[dict[str, str]] | None,
            rerun_scores: list[dict[str, str]] | None, exact: bool,
            categorical: tuple[str, ...] = ()) -> tuple[int, list[Difference], list[str]]:
    """Compare metrics, per-model values, comparisons and per-sample scores; return (count, differences, notes).

    Exact: every per-sample value too. Within tolerance (another environment): the rows must be the same rows (ids,
    models, arms, splits), and each score column's mean per model, arm and split must agree; single rows are not
    compared one by one, because a segmenter or classifier trained with other CPU kernels is another trained model:
    rerunning the busi-mini real-only record on AVX-512 moved one image's IoU from 0.33 to 0.81 while the means held
    (benchmarks/verify_across_cpus.md). ``categorical``: columns holding class labels (a task's truth and prediction
    columns), which have no mean; across environments the share of changed predictions is only reported."""
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    for section in ("metrics", "per_model", "comparisons", "n"):
        left.update(_flatten(section, recorded.get(section, {})))
        right.update(_flatten(section, rerun.get(section, {})))
    diffs = [Difference(k, left.get(k), right.get(k)) for k in sorted(set(left) | set(right))
             if not _close(left.get(k), right.get(k), exact)]
    count = len(set(left) | set(right))
    notes: list[str] = []
    if recorded_scores is not None or rerun_scores is not None:
        a, b = recorded_scores or [], rerun_scores or []
        if len(a) != len(b):
            diffs.append(Difference("per_sample.rows", len(a), len(b)))
        if exact:
            for i, (ra, rb) in enumerate(zip(a, b)):
                for k in sorted(set(ra) | set(rb)):
                    va, vb = _number(ra.get(k)), _number(rb.get(k))
                    count += 1
                    if not _close(va, vb, exact):
                        diffs.append(Difference(f"per_sample[{_row_name(ra) or i}].{k}", ra.get(k), rb.get(k)))
        else:
            n_rows, n_diffs, note = _compare_row_means(a, b, categorical)
            count += n_rows
            diffs.extend(n_diffs)
            notes.append(note)
    return count, diffs, notes


def _row_name(row: dict[str, str]) -> str:
    return "/".join(str(row.get(c)) for c in ("model", "arm", "id") if c in row)


def _compare_row_means(a: list[dict[str, str]], b: list[dict[str, str]],
                       categorical: tuple[str, ...] = ()) -> tuple[int, list[Difference], str]:
    """Within tolerance: the same rows in the same order, then each score column's mean per (model, arm, split)."""
    diffs: list[Difference] = []
    ids_a = [tuple(r.get(k) for k in ROW_KEYS) for r in a]
    ids_b = [tuple(r.get(k) for k in ROW_KEYS) for r in b]
    for i, (x, y) in enumerate(zip(ids_a, ids_b)):
        if x != y:
            diffs.append(Difference(f"per_sample[{i}] row", _row_name(a[i]), _row_name(b[i])))
            break
    means_a, means_b = _group_means(a, categorical), _group_means(b, categorical)
    keys = sorted(set(means_a) | set(means_b))
    diffs += [Difference(k, means_a.get(k), means_b.get(k)) for k in keys
              if not _close(means_a.get(k), means_b.get(k), exact=False)]
    moved = total = changed = 0
    for ra, rb in zip(a, b):
        changed += any(ra.get(k) != rb.get(k) for k in categorical)
        for k in set(ra) - set(ROW_KEYS) - set(categorical):
            va, vb = _number(ra.get(k)), _number(rb.get(k))
            if isinstance(va, float) and isinstance(vb, float):
                total += 1
                moved += not _close(va, vb, exact=False)
    note = (f"per-sample scores compared as {len(keys)} means per model, arm and split; one by one, {moved} of "
            f"{total} moved by more than the tolerance (another environment trains other models)")
    if categorical:
        note += f"; {changed} of {len(a)} rows predict another class"
    return len(keys) + len(ids_a), diffs, note


def _group_means(rows: list[dict[str, str]], categorical: tuple[str, ...] = ()) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    skip = {*ROW_KEYS, *categorical, "fold"}
    for row in rows:
        group = "/".join(str(row[k]) for k in ROW_KEYS[:3] if k in row)
        for k, v in row.items():
            x = _number(v)
            if k not in skip and isinstance(x, float) and not math.isnan(x):
                sums.setdefault(f"per_sample[{group}].mean({k})" if group else f"per_sample.mean({k})", []).append(x)
    return {k: math.fsum(v) / len(v) for k, v in sums.items()}


def _number(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _scores(record: dict[str, Any], folder: Path) -> list[dict[str, str]] | None:
    import csv

    name = record.get("per_sample_file")
    if not name:
        return None
    path = folder / name
    if not path.is_file():
        raise VerifyError(f"the record names per-sample file {name}, which is not beside it in {folder}")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def verify(record_path: Path, work_dir: Path | None = None, data_root: Path | None = None,
           sources: Path | None = None, threads: int | None = None) -> Verification:
    """Rerun the record at ``record_path`` and compare. ``sources``: a work dir holding the runs the record depends
    on (``task.mask_source``)."""
    from bench.runner import BenchError, RunConfig, run_one
    from bench.store import RecordError, computed_here, read_record, repeatability_key

    try:
        record = read_record(record_path)
    except RecordError as exc:
        raise VerifyError(str(exc)) from None
    recorded_scores = _scores(record, record_path.parent)
    scratch = Path(tempfile.mkdtemp(prefix="bench-verify-")) if work_dir is None else Path(work_dir)
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        _link_sources(record, scratch, sources)
        config_file = scratch / "verify-config.yaml"
        import yaml

        config_file.write_text(yaml.safe_dump({"task": record["config"]["task"], "method": record["config"]["method"]}))
        recorded_threads = record.get("environment", {}).get("torch_threads")
        rc = RunConfig(task=record["task"]["id"], method=record["method"]["id"], profile=record["profile"],
                       seed=record["seed"], dataset=record["dataset"]["id"], config_file=config_file,
                       work_dir=scratch, data_root=data_root, threads=threads or recorded_threads, progress=False)
        try:
            rerun, rerun_path = run_one(rc)
        except BenchError as exc:
            raise VerifyError(f"the rerun failed: {exc}") from None
        rerun_scores = _scores(rerun, rerun_path.parent)
    finally:
        if work_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    here = {**computed_here(), "torch_threads": threads or recorded_threads}
    there = {**repeatability_key(record.get("environment", {})), "torch_threads": recorded_threads}
    env_diff = {k: (there[k], here[k]) for k in here if there.get(k) != here.get(k)}
    from bench.registry import TASKS

    spec = getattr(TASKS.get(record["task"]["id"]), "sample_scores", None)
    reused = record.get("environment", {}).get("reused") or {}
    exact = not env_diff and not reused
    notes = []
    if recorded_scores is None and rerun_scores is not None:
        # a record written before its task stored per-sample scores (derm-quality before 2026-12-05)
        notes.append("per-sample rows not compared: the record has no per-sample file, the rerun has one")
        rerun_scores = None
    elif recorded_scores and rerun_scores and "split" in rerun_scores[0] and "split" not in recorded_scores[0]:
        # a record written before the file had a split column (seg-aug's transfer-set rows): its rows are the
        # headline split's
        headline = getattr(spec, "split", None) or "test"
        rerun_scores = [{k: v for k, v in r.items() if k != "split"} for r in rerun_scores if r["split"] == headline]
        notes.append(f"only the '{headline}' rows compared: the record's per-sample file has no split column")
    categorical = tuple(getattr(spec, "confusion", None) or ())
    count, diffs, compare_notes = compare(record, rerun, recorded_scores, rerun_scores, exact, categorical)
    notes += compare_notes
    every, not_identical, _ = compare(record, rerun, recorded_scores, rerun_scores, True)
    identical = every - len(not_identical)
    if rerun["run_id"] != record["run_id"]:
        diffs.insert(0, Difference("run_id", record["run_id"], rerun["run_id"]))
    return Verification(record["run_id"], exact, env_diff, count, diffs, rerun["run_id"], identical, every, notes,
                        reused)


def _link_sources(record: dict[str, Any], scratch: Path, sources: Path | None) -> None:
    """Make the runs a record depends on (seg-aug's ``task.mask_source``: a run id) visible in the scratch dir."""
    source = record["config"]["task"].get("mask_source")
    if not source:
        return
    if sources is None:
        raise VerifyError(f"the record depends on run {source} (task.mask_source); pass --sources DIR, a work dir "
                          "that holds that run's record and generated samples")
    src_record = Path(sources) / "records" / f"{Path(source).name.removesuffix('.json')}.json"
    if not src_record.is_file():
        raise VerifyError(f"--sources {sources}: no record {src_record.name} in its records/ folder")
    generate = json.loads(src_record.read_text()).get("stages", {}).get("generate")
    if not generate or not (Path(sources) / generate).is_dir():
        raise VerifyError(f"--sources {sources}: the generated samples of {src_record.stem} ({generate}) are missing")
    (scratch / "records").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_record, scratch / "records" / src_record.name)
    (scratch / generate).parent.mkdir(parents=True, exist_ok=True)
    (scratch / generate).symlink_to((Path(sources) / generate).resolve(), target_is_directory=True)


def stamp(record_path: Path, result: Verification) -> Path:
    """Keep a matched verification beside the record (``<run_id>.verified.yaml``, read by the leaderboard site)."""
    import datetime

    import yaml

    from bench.store import atomic_write_text, cpu_model, environment

    env = environment("cpu")
    data = {"run_id": result.run_id, "matched": result.matched, "exact": result.exact,
            "date": datetime.date.today().isoformat(), "compared": result.compared, "identical": result.identical,
            "values": result.values,
            "environment": f"{cpu_model()}, {env.get('cpu_capability')}, torch {env['packages'].get('torch')}",
            "threads": env.get("torch_threads"), "commit": env.get("git_commit"), "summary": result.summary()}
    path = Path(record_path).with_name(f"{result.run_id}.verified.yaml")
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def verify_command(record: Path, work_dir: Path | None, data_root: Path | None, sources: Path | None,
                   threads: int | None, write_stamp: bool = False) -> None:
    """The CLI's ``bench verify``: print the differences and the verdict; exit 0 verified, 1 differs, 2 cannot rerun."""
    import typer

    def fail(message: str) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    if not record.is_file():
        fail(f"{record}: no such record file")
    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    try:
        result = verify(record, work_dir=work_dir, data_root=data_root, sources=sources, threads=threads)
    except VerifyError as exc:
        fail(str(exc))
        return
    for d in result.differences[:50]:
        typer.echo(f"  {d.where}: recorded {d.recorded}, rerun {d.rerun}")
    if len(result.differences) > 50:
        typer.echo(f"  ... and {len(result.differences) - 50} more")
    typer.echo(result.summary())
    if write_stamp and result.matched:
        typer.echo(f"stamp: {stamp(record, result)}")
    raise typer.Exit(0 if result.matched else 1)
