"""The `bench` CLI end to end on the smoke profile, and every bad input of the spine issue."""
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bench.cli import app

FAST = ["--set", "task.segmenters=[unet]", "--set", "task.max_epochs=1", "--set", "task.n_generate=8"]


@pytest.fixture
def cli():
    return CliRunner()


def run(cli, *args):
    return cli.invoke(app, list(args))


def error_line(result):
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    return lines[0]


def test_run_smoke_prints_table_and_results_aggregates(cli, tmp_path):
    args = ["run", "--task", "seg-aug", "--method", "classic-aug", "--profile", "smoke", "--work-dir", str(tmp_path),
            "--no-progress", "--quiet", "--threads", "1", *FAST]
    first = run(cli, *args)
    assert first.exit_code == 0, first.output
    assert "unet" in first.output and "real-only" in first.output and "classic-aug" in first.output
    assert "paired t-test p" in first.output and "record:" in first.output
    second = run(cli, *args)
    assert "stages: fit cached, generate cached, evaluate cached" in second.output
    table = run(cli, "results", "--work-dir", str(tmp_path))
    assert table.exit_code == 0 and "classic-aug" in table.output and "seeds" in table.output
    assert "NaN" not in table.output


def test_results_show_spread_over_seeds_and_one_seed_as_such(cli, tmp_path):
    from test_store import minimal_record

    from bench import store

    for seed, dice in [(0, 0.5), (1, 0.7), (2, 0.6)]:
        store.write_record(minimal_record(run_id=f"r{seed}", seed=seed, dice=dice), tmp_path)
    one = minimal_record(run_id="other", dice=0.4)
    one["method"] = {"id": "other-method", "version": "1"}
    store.write_record(one, tmp_path)
    out = run(cli, "results", "--records", str(tmp_path))
    assert out.exit_code == 0, out.output
    rows = {ln.split()[0]: ln.split() for ln in out.output.splitlines() if ln and not ln.startswith(("-", "method"))}
    assert rows[minimal_record()["method"]["id"]][2:] == ["3", "0.6000", "+-", "0.1000"]
    assert rows["other-method"][2:] == ["1", "0.4000"]


def test_results_and_table_list_fit_120_columns(cli, monkeypatch):
    from bench.tables.reproduce import default_record_dirs

    monkeypatch.setenv("COLUMNS", "120")
    shipped = [d for d in default_record_dirs() if d.name == "leaderboard"]
    for args in (["results", "--records", str(shipped[0])], ["table", "--list"]):
        out = run(cli, *args)
        assert out.exit_code == 0, out.output
        assert len(out.output.splitlines()) > 5
        assert max(map(len, out.output.splitlines())) <= 120, (args, max(out.output.splitlines(), key=len))
        if args[0] == "results":  # sections name their protocol, with the hash beside
            assert ('seg-aug | derm-mini | mini | protocol seg-aug/mini@v2 "S_1k twin, 4 segmenters, calibrated world" '
                    '(6c729d3b)') in out.output.splitlines()


def test_list_shows_ids_and_matrix(cli):
    out = run(cli, "list")
    assert out.exit_code == 0, out.output
    assert "seg-aug" in out.output and "derm-mini" in out.output and "classic-aug" in out.output
    assert "compatibility" in out.output and "smoke, mini, paper" in out.output
    # a method the default conditioning cannot run is marked o with the option that makes it run
    assert "o controlnet on derm-cls: --set task.conditioning=mask" in out.output
    assert "o ip-adapter on derm-quality: auto: derm-quality/mini-masks@v1" in out.output
    assert "o ip-adapter on derm-cls: --set task.conditioning=reference" in out.output
    assert "o r2gen on cxr: auto: cxr/mini-report@v1" in out.output
    assert "sd-finetune on derm-cls" not in out.output and "sd-finetune on seg-aug" not in out.output


def test_list_fits_the_terminal_with_methods_in_rows(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    out = run(cli, "list")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert max(map(len, lines)) <= 120, max(lines, key=len)
    assert any(ln.split()[:2] == ["seg-aug/mini@v2", "*"] and ln.endswith(" S_1k twin, 4 segmenters, calibrated world")
               for ln in lines)  # the leaderboard protocols, named; * = what a plain run runs
    header = next(i for i, ln in enumerate(lines) if ln.startswith("compatibility"))
    from bench.registry import TASKS

    tasks = lines[header + 1].split()
    assert tasks == TASKS.names()[:len(tasks)] and "seg-aug" in tasks
    didgen = next(ln for ln in lines[header:] if ln.startswith("didgen "))
    assert didgen.split()[1 + tasks.index("seg-aug")] == "x" and didgen.split()[1 + tasks.index("skin-tone")] == "."
    monkeypatch.setenv("COLUMNS", "80")
    narrow = run(cli, "list").output.splitlines()
    assert max(map(len, narrow)) <= 80, max(narrow, key=len)


def test_matrix_moves_columns_that_do_not_fit_to_a_further_block():
    from bench.terminal import matrix

    cells = {(r, c): "x" for r in ("a", "bb") for c in ("col-one", "col-two", "col-three")}
    lines = matrix(["a", "bb"], ["col-one", "col-two", "col-three"], cells, total=24)
    assert max(map(len, lines)) <= 24
    assert lines[0].split() == ["col-one", "col-two"] and lines[4].split() == ["col-three"]
    assert lines[1].split() == ["a", "x", "x"] and lines[6].split() == ["bb", "x"]


def test_list_marks_plugin_methods(cli, monkeypatch):
    from importlib.metadata import EntryPoint

    import bench.registry as registry

    plugin = EntryPoint(name="my-plugin", value="helpers:ImageOnly", group="bench.methods")
    monkeypatch.setattr(registry, "entry_points", lambda group: [plugin] if group == "bench.methods" else [])
    methods = registry.METHODS
    methods.names()  # load the real entry points first, then rescan with the plugin on a copy of the state
    monkeypatch.setattr(methods, "_targets", dict(methods._targets))
    monkeypatch.setattr(methods, "_plugins", set())
    monkeypatch.setattr(methods, "_entry_points_loaded", False)
    out = run(cli, "list")
    assert out.exit_code == 0, out.output
    assert "my-plugin *" in out.output and "didgen *" not in out.output


def test_conditioning_that_runs_only_names_options_that_make_the_method_run():
    from bench.runner import compatibility, conditioning_that_runs

    matrix = compatibility("mini")
    assert matrix["derm-cls"]["controlnet"] is not None
    assert conditioning_that_runs("derm-cls", "controlnet") == "task.conditioning=mask"
    assert conditioning_that_runs("seg-aug", "sd-finetune") is None  # returns no masks under any conditioning
    assert conditioning_that_runs("skin-tone", "controlnet") is None  # the task has no conditioning option


@pytest.mark.parametrize("args,expected", [
    (["--task", "nope", "--method", "real-only"], "Unknown task 'nope'. Valid tasks: concept, cxr, derm-cls"),
    (["--task", "seg-aug", "--method", "real-only", "--set", "task.max_epochs=-3"], "task.max_epochs=-3: must be >= 1"),
    (["--task", "seg-aug", "--method", "real-only", "--set", "task.lr=0"], "task.lr=0.0: must be > 0"),
    (["--task", "seg-aug", "--method", "nope"], "Unknown method 'nope'."),
    (["--task", "seg-aug", "--method", "real-only", "--dataset", "nope"], "Unknown dataset 'nope'."),
    (["--task", "seg-aug", "--method", "helpers:ImageOnly"], "needs a method returning ['image', 'mask']; it returns ['image']"),
    (["--task", "seg-aug", "--method", "real-only", "--set", "bogus=1"], "unknown --set key 'bogus'"),
    (["--task", "seg-aug", "--method", "real-only", "--set", "task.n_real=zero"], "task.n_real: expected an integer"),
    (["--task", "seg-aug", "--method", "real-only", "--profile", "huge"], "unknown profile 'huge'"),
    (["--task", "seg-aug", "--method", "real-only", "--precision", "fp8"], "--precision 'fp8'"),
    (["--task", "seg-aug", "--method", "real-only", "--device", "cuda:0"] if not __import__("torch").cuda.is_available()
     else ["--task", "seg-aug", "--method", "real-only", "--device", "bogus"], "--device"),
    (["--task", "seg-aug", "--method", "real-only", "--dataset", "derm-mini", "--data-root", "/no/such/dir"], "no such folder"),
    (["--task", "seg-aug", "--method", "didgen", "--set", "method.backbone=/no/such/sd"],
     "DiDGen backbone folder not found: /no/such/sd"),
    # a fit set without what the method's training needs: declared (Capabilities.fit_needs), refused before any
    # work; found by the fit (bench.errors.FitSetError), one line and no traceback
    (["--task", "cxr", "--method", "real-random", "--set", "task.output=image", "--set", "task.input=generated"],
     "cannot run method 'real-random': task gives no image-mask pairs to fit on"),
    (["--task", "cxr", "--method", "didgen", "--set", "task.output=image", "--set", "task.input=generated"],
     "DiDGen's attention loss needs a mask for every training image"),
])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, expected):
    result = run(cli, "run", *args, "--profile" if "--profile" not in args else "--seed", "smoke" if "--profile" not in args else "0",
                 "--work-dir", str(tmp_path / "w"), "--no-progress", "--quiet")
    line = error_line(result)
    assert line.startswith("error: ") and expected in line
    assert not (tmp_path / "w" / "records").exists()


def test_malformed_config_file(cli, tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("task: {n_generate: [\n")
    line = error_line(run(cli, "run", "--task", "seg-aug", "--method", "real-only", "--config", str(bad),
                          "--work-dir", str(tmp_path / "w")))
    assert "malformed YAML" in line and "c.yaml" in line


def test_help_is_light():
    """`bench --help` must not import torch (start-up stays instant)."""
    code = "import sys; from bench.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_render_run_omits_missing_tests():
    from bench.cli import render_run

    record = {"task": {"id": "t"}, "dataset": {"id": "d"}, "profile": "mini", "seed": 0, "protocol_hash": "a" * 64,
              "method": {"id": "m"}, "metrics": {"dice": 0.5, "dice[ext]": 0.4},
              "per_model": {"unet": {"dice": 0.5, "dice[ext]": 0.4}},
              "comparisons": {"reference": "real-only", "reference_per_model": {"unet": {"dice": 0.4, "dice[ext]": 0.4}},
                              "relative_gain": {"dice": 0.25, "dice[ext]": 0.0},
                              "paired_ttest": {"dice": {"p": 0.01, "n": 10}}},
              "timings": {"fit": 1.0}, "cached": {"fit": False}}
    text = render_run(record)
    assert "dice: relative gain +25.00% vs real-only, paired t-test p = 0.01 (n = 10)" in text
    assert "dice[ext]: relative gain +0.00% vs real-only\n" in text and "nan" not in text
