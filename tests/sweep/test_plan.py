"""bench.runner.plan_run (the keys run_one uses, found without running) and `bench sweep --dry-run`."""
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.variants import with_later_keys
from bench.runner import RunConfig, plan_run, run_one
from bench.sweep.plan import plan_sweep
from bench.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "results" / "leaderboard"
FAST = ["task.segmenters=[unet]", "task.max_epochs=1", "task.n_generate=8"]


def smoke(method: str, work_dir: Path, *sets: str) -> RunConfig:
    return RunConfig(task="seg-aug", method=method, profile="smoke", sets=[*FAST, *sets], work_dir=work_dir,
                     threads=1, shard_size=4, progress=False)


def test_plan_run_gives_the_keys_and_run_id_run_one_uses_before_and_after_it_runs(tmp_path):
    source = smoke("helpers:NoisePairs", tmp_path)
    before = plan_run(source)
    assert not before.finished and before.unknown is None and before.to_run == ["fit", "generate", "evaluate"]
    record, path = run_one(source)
    after = plan_run(source)
    assert after.finished and after.record == path and after.to_run == []
    assert after.run_id == before.run_id == record["run_id"] and after.protocol_hash == record["protocol_hash"]
    assert {s: f"{s}/{p.key}" for s, p in before.stages.items()} == record["stages"]
    assert after.task_config == record["config"]["task"] and after.method_config == record["config"]["method"]

    # a run conditioned on another run's generated masks: its generate key is known once that run has generated
    dependent = smoke("helpers:FitOnceGrey", tmp_path, "task.conditioning=generated-masks",
                      "task.mask_source=seg-aug__helpers.NoisePairs__derm-mini__smoke__s0__missing")
    pending = plan_run(dependent)
    assert "mask_source" in pending.unknown and pending.stages["generate"].key is None and not pending.finished
    dependent.sets = [*FAST, "task.conditioning=generated-masks", f"task.mask_source={record['run_id']}"]
    known = plan_run(dependent)
    assert known.unknown is None and known.stages["fit"].key == pending.stages["fit"].key
    got, _ = run_one(dependent)
    assert {s: f"{s}/{p.key}" for s, p in known.stages.items()} == got["stages"] and known.run_id == got["run_id"]
    # a different --shard-size is another generation (and not the record above), the same run id
    other = plan_run(RunConfig(**{**dependent.__dict__, "shard_size": 3}))
    assert other.run_id == got["run_id"] and not other.finished and not other.stages["generate"].done


@pytest.fixture(scope="module")
def ch4_plan(tmp_path_factory):
    work = tmp_path_factory.mktemp("ch4")
    sweep = load_sweep(REPO / "docs/reproduce/ch4-mini.yaml")
    return sweep, plan_sweep(sweep, work), work


def test_ch4_sweep_plans_the_run_ids_of_the_shipped_records(ch4_plan):
    """Every shipped record of the campaign's protocols, methods and seeds is a run the sweep plans: same run id,
    stated configs and protocol (the same commands give the same run ids), the runs on DiDGen's masks included."""
    sweep, runs, work = ch4_plan
    tasks = {r.spec.task for r in runs}  # other chapters' shipped records (concept, ...) are not this sweep's,
    methods = {r.spec.method for r in runs}
    hashes = {r.plan.protocol_hash for r in runs}  # nor other campaigns' runs of the same methods (MedDiff-FT's)
    seeds = {r.config.seed for r in runs}
    shipped = {p.stem: rec for p in SHIPPED.glob("*.json") if (rec := json.loads(p.read_text()))["task"]["id"] in tasks
               and rec["method"]["id"] in methods and rec["protocol_hash"] in hashes and rec["seed"] in seeds}
    planned = {r.plan.run_id: r for r in runs if r.plan.run_id}
    assert len(runs) == 89 and set(shipped) <= set(planned)
    on_didgen = [i for i in shipped if planned[i].spec.references()]
    assert on_didgen and len(shipped) >= 40  # the calibrated campaign's records land as they are made
    for run_id, rec in shipped.items():
        r = planned[run_id]
        stated = with_later_keys(rec["config"], type(r.plan.resolved.task), r.plan.resolved.method_cls)
        assert r.plan.task_config == stated["task"] and r.plan.method_config == stated["method"], r.name
        assert r.plan.protocol_hash == rec["protocol_hash"] and r.config.seed == rec["seed"]
    for run_id in on_didgen:  # conditioned on the masks of the same seed's S_1k DiDGen run, named by its run id
        r = planned[run_id]
        assert r.plan.task_config["mask_source"] == next(x.plan.run_id for x in runs
                                                         if x.name == f"seg-didgen-s1k@s{r.config.seed}")


def test_the_scripts_record_path_and_the_sweeps_run_id_give_one_run_id(ch4_plan, tmp_path):
    """A mask_source given as DiDGen's record file (as the first campaign's script did) or as its run id (as the
    sweep does): one run either way."""
    _, runs, _ = ch4_plan
    didgen = next(r for r in runs if r.name == "seg-didgen-s1k@s0").plan.run_id
    (tmp_path / "records").mkdir()
    shutil.copy(SHIPPED / f"{didgen}.json", tmp_path / "records")
    run = next(r for r in runs if r.name == "seg-controlnet-s1k@s0")
    by_path = RunConfig(**{**run.config.__dict__, "work_dir": tmp_path, "sets": [
        s if not s.startswith("task.mask_source=") else f"task.mask_source={tmp_path / 'records' / didgen}.json"
        for s in run.config.sets]})
    assert plan_run(by_path).run_id == run.plan.run_id


def test_dry_run_prints_the_plan_estimates_and_tables(ch4_plan):
    sweep, _, work = ch4_plan
    result = CliRunner().invoke(app, ["sweep", str(sweep.path), "--dry-run", "--work-dir", str(work), "--workers", "2",
                                      "--threads", "1"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"sweep ch4-mini ({sweep.path}): 89 runs") and "fills thesis-4.1, thesis-4.2" in out
    row = next(line for line in out.splitlines() if line.startswith("seg-didgen-s1k@s0 "))
    assert "shared (seg-didgen-s2.5k@s0)" in row and "seg-aug__didgen__derm-mini__mini__s0__79715bda" in row
    lines = out.splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith("seg-controlnet-s1k@s0 "))
    assert "run (after deps)" in lines[at] and "seg-real-only-s1k@s0," in lines[at]  # after: one name a line
    assert lines[at + 1].strip() == "seg-didgen-s1k@s0"
    # its generate key waits for DiDGen's masks: the shipped record is compared then, not called stale now
    assert lines[at].endswith("shipped (compared once its dependencies have run)")
    shipped = re.search(r"shipped: (\d+) of 89 planned run ids", out)
    assert "finished: 0 of 89 runs" in out and shipped and int(shipped.group(1)) >= 40
    hours = re.search(r"estimated cost: (\d+)h(\d+)m of runs", out)
    assert hours and 10 <= int(hours.group(1)) <= 30, out  # the shipped records' stage timings: about 16 h
    assert "on 2 workers x 1 thread(s) about" in out
    assert f"bench table thesis-4.7 --profile mini --records {work / 'records'}" in out


def test_ch5_dry_run_fills_the_bias_analysis_command(tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(REPO / "docs/reproduce/ch5-mini.yaml"), "--dry-run", "--work-dir",
                                      str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    # the shipped chapter-5 records give the stage timings of every run but the controls' (not shipped yet)
    assert ": 73 runs" in result.output and re.search(r"estimated cost: \d\S+ of runs", result.output)
    assert re.search(r"bench analyze bias --run lowcontrast__real-only__derm-mini__mini__s0__[0-9a-f]{8} --work-dir",
                     result.output)
    assert not (tmp_path / "records").exists()


def test_runs_sharing_loaded_data_get_the_keys_they_get_alone(tmp_path):
    """plan_sweep loads a task config's data once for all its runs; a task whose keys read what its load set on the
    instance (skin-tone's fit identity: the checksums of its other fit splits) takes it over (Task.adopt)."""
    def plan(method: str, cache: dict | None = None):
        return plan_run(RunConfig(task="skin-tone", method=method, profile="smoke", work_dir=tmp_path), cache)

    alone = plan("vgg16")
    cache: dict = {}
    plan("ita-8patch", cache)
    shared = plan("vgg16", cache)
    assert len(cache) == 1 and {s: p.key for s, p in shared.stages.items()} == {s: p.key for s, p in alone.stages.items()}
