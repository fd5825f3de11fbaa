"""The calibrated chapter-4 campaign (issue 23): its sweep parses, its seg-aug runs land in the v2 protocols named in
bench/protocols.yaml (the S_1k one the default), the retired v1 protocols keep no records, and Tables 4.5 and 4.2 run
at three seeds with both controls."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import protocols
from bench.leaderboard.submit import default_leaderboard_dir
from bench.runner import RunConfig, expected_split_checksums, protocol_of, resolve
from bench.store import protocol_hash
from bench.sweep.spec import load_sweep
from bench.tables.paper import table_ids

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "docs/reproduce/ch4-mini.yaml"


def _hash(config_file: Path, sets: list[str]) -> str:
    resolved = resolve(RunConfig(task="seg-aug", method="real-only", profile="mini", config_file=config_file, sets=sets))
    shipped = next(json.loads(p.read_text()) for p in sorted(default_leaderboard_dir().glob("seg-aug__*__derm-mini__*.json")))
    checksums = expected_split_checksums(resolved.task_config, shipped["dataset"]["splits"])
    return protocol_hash("seg-aug", resolved.task_cls.version, protocol_of(resolved.task_config, resolved.task_cls), checksums)


@pytest.mark.parametrize(("n_real", "name"), [("200", "seg-aug/mini@v2"), ("null", "seg-aug/mini-s2.5k@v2")])
def test_the_calibrated_seg_runs_land_in_the_v2_protocols(n_real, name):
    config = REPO / "docs/reproduce/ch4-seg-mini.yaml"
    proto = protocols.load()[name]
    assert _hash(config, [f"task.n_real={n_real}"]).startswith(proto.hash)
    assert proto.default == (name == "seg-aug/mini@v2")
    assert protocols.default("seg-aug", "mini").name == "seg-aug/mini@v2"  # a plain `bench run --task seg-aug`


def test_the_retired_v1_protocols_keep_no_records():
    retired = {protocols.load()[name].hash for name in ("seg-aug/mini@v1", "seg-aug/mini-s2.5k@v1")}
    assert retired == {"c0ccbbf7", "44a07134"}
    left = [p.name for p in default_leaderboard_dir().glob("seg-aug__*.json")
            if json.loads(p.read_text())["protocol_hash"][:8] in retired]
    assert not left


def test_tables_4_5_and_4_2_run_three_seeds_with_the_controls():
    sweep = load_sweep(SWEEP, table_ids())
    seeds: dict[tuple[str, str], set[int]] = {}
    for run in sweep.runs:
        seeds.setdefault((run.task, run.method), set()).add(run.seed)
    for task in ("seg-aug", "derm-cls"):
        for method in ("real-only", "didgen", "world-oracle", "noise"):
            assert seeds[(task, method)] == {0, 1, 2}, (task, method)
    assert seeds[("derm-quality", "didgen")] == {0, 1, 2}  # its FD spread (mini-sd v2 vs v1)
