"""Sweep files: parsing, expansion, dependencies, and every malformed file as one `error:` line, exit 2, no run."""
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.cli import app
from bench.config import parse_set
from bench.sweep.spec import SweepError, load_sweep, parse_sweep, set_argument

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_grid_and_runs_expand_with_defaults_names_and_seeds(tmp_path):
    (tmp_path / "seg.yaml").write_text("task: {n_real: 100}\n")
    path = write(tmp_path, """
        name: demo
        tables: [thesis-4.5]
        defaults: {profile: smoke, threads: 1, set: {task.max_epochs: 1, task.n_generate: 8}}
        grid:
          - name: "{method}-{sets}"
            task: seg-aug
            method: [real-only, classic-aug]
            config: seg.yaml
            sets: {big: {}, small: {task.n_real: 20}}
          - task: seg-aug
            method: classic-aug
            seed: [0, 1]
            set: {task.max_epochs: 2}
        runs:
          - name: dep
            task: seg-aug
            method: "helpers:FitOnceGrey"
            seeds: [0, 1]
            set: {task.conditioning: generated-masks, task.mask_source: "{run:classic-aug-small}"}
    """)
    sweep = load_sweep(path)
    names = [r.name for r in sweep.runs]
    assert names == ["real-only-big", "real-only-small", "classic-aug-big", "classic-aug-small",
                     "seg-aug:classic-aug@s0", "seg-aug:classic-aug@s1", "dep@s0", "dep@s1"]
    runs = sweep.by_name()
    assert runs["real-only-small"].set == {"task.max_epochs": 1, "task.n_generate": 8, "task.n_real": 20}
    assert runs["real-only-small"].config == tmp_path / "seg.yaml" and runs["real-only-small"].profile == "smoke"
    assert runs["seg-aug:classic-aug@s1"].set["task.max_epochs"] == 2 and runs["seg-aug:classic-aug@s1"].seed == 1
    assert runs["dep@s0"].deps == runs["dep@s1"].deps == ["classic-aug-small"] and runs["dep@s1"].threads == 1
    assert runs["dep@s1"].seed == 1 and runs["dep@s1"].set["task.mask_source"] == "{run:classic-aug-small}"
    assert [r.name for r in sweep.order()][-2:] == ["dep@s0", "dep@s1"]


def test_seeds_of_a_named_entry_and_same_seed_references(tmp_path):
    path = write(tmp_path, """
        defaults: {profile: smoke}
        runs:
          - {name: src, task: seg-aug, method: "helpers:NoisePairs", seeds: [0, 1]}
          - {name: use, task: seg-aug, method: "helpers:FitOnceGrey", seeds: [0, 1],
             set: {task.conditioning: generated-masks, task.mask_source: "{run:src}"}}
          - {name: last, task: seg-aug, method: real-only, after: [src@s1, use@s0]}
    """)
    sweep = load_sweep(path)
    runs = sweep.by_name()
    assert runs["use@s0"].deps == ["src@s0"] and runs["use@s1"].deps == ["src@s1"]
    assert runs["use@s1"].set["task.mask_source"] == "{run:src@s1}"
    assert runs["last"].deps == ["src@s1", "use@s0"]
    assert sweep.name == "sweep"  # the file name when name: is not given
    path.write_text(path.read_text().replace("seeds: [0, 1],\n", "seeds: [0, 2],\n"))
    with pytest.raises(SweepError, match=r"run 'use@s2': \{run:...\} names no run of the sweep: 'src' \(runs named "
                       r"src@s<seed> exist, but none with seed 2\)"):
        load_sweep(path)


@pytest.mark.parametrize("value", ["generated-masks", "seg-aug__didgen__derm-mini__mini__s0__b8d95116", 200, None,
                                   1.5e-4, True, ["unet", "attention-unet"], {"sizes": {"train": 8}}, "1e-4",
                                   "yes", "a: b", "[x]", ""])
def test_set_values_round_trip_through_bench_run_set_parsing(value):
    ((key, parsed),) = parse_set([set_argument("task.x", value)])
    want = float(value) if value == "1e-4" else value  # YAML 1.1 reads 1e-4 as text; --set makes it a number
    assert key == "task.x" and parsed == want


MALFORMED = {
    "not YAML": ("runs: [", r"not valid YAML: .*\(line \d+, column \d+\)"),
    "a list at the top": ("- task: seg-aug", r"a sweep file is a mapping"),
    "unknown top-level key": ("runz: []", r"unknown key 'runz'; expected one of name, description"),
    "unknown key in a run": ("runs: [{task: seg-aug, method: real-only, sett: {}}]", r"runs\[0\]: unknown key 'sett'"),
    "unknown key in a grid block": ("grid: {task: seg-aug, method: real-only, seeed: 1}", r"grid: unknown key 'seeed'"),
    "unknown key in defaults": ("defaults: {profil: mini}\nruns: [{task: seg-aug, method: real-only}]",
                                r"defaults: unknown key 'profil'"),
    "unknown key in launcher": ("launcher: {kind: local, worker: 2}\nruns: [{task: seg-aug, method: real-only}]",
                                r"launcher: unknown key 'worker'"),
    "a key given twice": ("runs:\n  - task: seg-aug\n    task: derm-cls\n    method: real-only",
                          r"key 'task' given twice"),
    "no runs": ("name: empty", r"no runs: give grid: or runs:"),
    "no method": ("runs: [{task: seg-aug}]", r"runs\[0\]: no method"),
    "unknown dependency": ("runs: [{name: a, task: seg-aug, method: real-only, after: [b]}]",
                           r"run 'a': after names no run of the sweep: 'b'"),
    "unknown placeholder": ("runs: [{name: a, task: seg-aug, method: real-only, set: {task.mask_source: '{run:zz}'}}]",
                            r"run 'a': \{run:\.\.\.\} names no run of the sweep: 'zz'"),
    "unknown run in then": ("runs: [{name: a, task: seg-aug, method: real-only}]\nthen: ['bench x {run:b}']",
                            r"then: \{run:b\} names no run"),
    "a cycle": ("runs:\n  - {name: a, task: seg-aug, method: real-only, after: [b]}\n"
                "  - {name: b, task: seg-aug, method: real-only, set: {task.mask_source: '{run:c}'}}\n"
                "  - {name: c, task: seg-aug, method: real-only, after: [a]}", r"dependency cycle: a -> b -> c -> a"),
    "a run after itself": ("runs: [{name: a, task: seg-aug, method: real-only, after: [a]}]",
                           r"dependency cycle: a -> a"),
    "duplicate names": ("runs: [{name: a, task: seg-aug, method: real-only}, {name: a, task: seg-aug, method: didgen}]",
                        r"run name 'a' is also the name of a run of runs\[0\]"),
    "seed as text": ("runs: [{task: seg-aug, method: real-only, seed: one}]", r"seed: expected an integer, got text"),
    "seed beyond 64 bits": ("runs: [{task: seg-aug, method: real-only, seed: 18446744073709551616}]",
                            r"seed: 18446744073709551616 is not a seed \(an integer from 0 to 2\*\*63 - 1\)"),
    "a negative seed": ("grid: {task: seg-aug, method: real-only, seed: [0, -1]}", r"seed: -1 is not a seed"),
    "seed and seeds": ("runs: [{task: seg-aug, method: real-only, seed: 0, seeds: [1]}]", r"give seed or seeds"),
    "a seed twice": ("runs: [{task: seg-aug, method: real-only, seeds: [1, 1]}]", r"a seed is given twice"),
    "a list of seeds under seed": ("runs: [{task: seg-aug, method: real-only, seed: [0, 1]}]",
                                   r"seed: expected one integer \(seeds: takes a list\)"),
    "zero threads": ("runs: [{task: seg-aug, method: real-only, threads: 0}]", r"threads: must be >= 1, got 0"),
    "threads as text": ("defaults: {threads: two}\nruns: [{task: seg-aug, method: real-only}]",
                        r"defaults: threads: expected an integer"),
    "set not a mapping": ("runs: [{task: seg-aug, method: real-only, set: [a=1]}]", r"set: expected a mapping"),
    "a set key with =": ("runs: [{task: seg-aug, method: real-only, set: {'task.n_real=2': 1}}]",
                         r"is not a config key"),
    "tables not text": ("tables: [4.5]\nruns: [{task: seg-aug, method: real-only}]",
                        r"tables: expected a list of text"),
    "unknown table": ("tables: [thesis-9.9]\nruns: [{task: seg-aug, method: real-only}]",
                      r"unknown table 'thesis-9.9'"),
    "a bad name": ("runs: [{name: 'a b', task: seg-aug, method: real-only}]", r"run name 'a b'"),
    "a bad name template": ("grid: {name: '{methd}', task: seg-aug, method: real-only}", r"cannot be filled"),
    "a bad precision": ("runs: [{task: seg-aug, method: real-only, precision: fp8}]", r"'fp8' is not one of"),
    "a missing config": ("runs: [{task: seg-aug, method: real-only, config: nope.yaml}]",
                         r"config: .*nope.yaml does not exist"),
    "a config folder": ("runs: [{task: seg-aug, method: real-only, config: .}]", r"is a folder, not a config file"),
    "a missing data root": ("defaults: {data_root: nowhere}\nruns: [{task: seg-aug, method: real-only}]",
                            r"data_root: no such folder"),
    "an empty axis": ("grid: {task: seg-aug, method: []}", r"method: an empty list gives no runs"),
    "sets of the wrong type": ("grid: {task: seg-aug, method: real-only, sets: 3}",
                               r"sets: expected a list or a mapping"),
    "a list where text goes": ("runs: [{task: [seg-aug], method: real-only}]", r"task: expected text, got a list"),
    "a bad launcher": ("launcher: {kind: slurm}\nruns: [{task: seg-aug, method: real-only}]",
                       r"kind: 'slurm' is not one of local, submitit"),
    "negative workers": ("launcher: {workers: -1}\nruns: [{task: seg-aug, method: real-only}]",
                         r"workers: must be >= 1"),
    # resolved against the registries before any run starts
    "unknown task": ("runs: [{name: a, task: seg-agu, method: real-only}]",
                     r"run 'a' \(seg-agu real-only s0\): .*seg-agu"),
    "unknown method": ("runs: [{task: seg-aug, method: didgn}]", r"\(seg-aug didgn s0\): .*didgn"),
    "unknown --set key": ("runs: [{task: seg-aug, method: real-only, set: {task.n_reel: 3}}]",
                          r"unknown --set key 'task.n_reel'"),
    "incompatible method": ("runs: [{task: seg-aug, method: 'helpers:ImageOnly'}]", r"helpers:ImageOnly"),
}


@pytest.fixture(scope="module")
def cli():
    return CliRunner()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_sweep_is_one_error_line_exit_2_and_runs_nothing(case, tmp_path, cli):
    text, pattern = MALFORMED[case]
    path = write(tmp_path, "defaults: {profile: smoke}\n" + text if "defaults:" not in text and case not in (
        "not YAML", "a list at the top", "a key given twice") else text)
    work = tmp_path / "work"
    result = cli.invoke(app, ["sweep", str(path), "--work-dir", str(work)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: sweep "), result.output
    assert re.search(pattern, lines[0]), lines[0]
    assert not (work / "records").exists() and not (work / "sweeps").exists()  # nothing ran


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--threads", "-2"], "--threads must be >= 1, got -2"),
    (["--launcher", "slurm"], "--launcher 'slurm' is not one of local, submitit"),
    (["--cluster", "aws"], "--cluster 'aws' is not one of auto, slurm, local"),
    (["--data-root", "/nonexistent/folder"], "--data-root /nonexistent/folder: no such folder"),
])
def test_bad_flags_are_one_error_line(args, message, tmp_path, cli):
    path = write(tmp_path, "runs: [{task: seg-aug, method: real-only}]")
    result = cli.invoke(app, ["sweep", str(path), *args])
    assert result.exit_code == 2 and result.output.strip() == f"error: {message}", result.output


@pytest.mark.parametrize("target, message", [("missing.yaml", "no such sweep file"),
                                             (".", "a folder, not a sweep file")])
def test_a_missing_or_folder_sweep_file(target, message, tmp_path, cli):
    result = cli.invoke(app, ["sweep", str(tmp_path / target)])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_the_reproduce_sweeps_and_the_readme_example_parse():
    from bench.tables.paper import table_ids

    ch4 = load_sweep(REPO / "docs/reproduce/ch4-mini.yaml", table_ids())
    ch5 = load_sweep(REPO / "docs/reproduce/ch5-mini.yaml", table_ids())
    assert len(ch4.runs) == 89 and ch4.tables == [f"thesis-4.{k}" for k in range(1, 8)]
    assert len(ch5.runs) == 73 and ch5.tables == ["thesis-5.1", "thesis-5.2", "thesis-5.3", "thesis-5.4",
                                                        "thesis-5.5"]
    on_didgen = [r for r in ch4.runs if r.references()]  # 4 baselines x 2 scales x 3 seeds
    assert len(on_didgen) == 24 and all(r.references() == [f"seg-didgen-s1k@s{r.seed}"] for r in on_didgen)
    scale = {r.name: r.name.split("@")[0].rsplit("-", 1)[1] for r in on_didgen}
    assert all(r.deps == [f"seg-real-only-{scale[r.name]}@s{r.seed}", f"seg-didgen-s1k@s{r.seed}"]
               for r in on_didgen)  # after: templates, per seed
    assert not list((REPO / "docs/reproduce").glob("*.sh"))
    readme = (REPO / "README.md").read_text()
    assert "bench sweep docs/reproduce/ch4-mini.yaml" in readme and "mini.sh" not in readme
    block = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)  # the README's sweep example
    example = parse_sweep(yaml.safe_load(block), REPO / "docs/reproduce/example.yaml")
    assert [r.name for r in example.runs] == ["seg-real-only-s2.5k", "seg-real-only-s1k", "seg-didgen-s2.5k",
                                              "seg-didgen-s1k", "seg-controlnet-s1k"]


ONLY = """
    name: only
    defaults: {profile: smoke, threads: 1}
    grid:
      - {name: "real-{sets}", task: seg-aug, method: real-only, seeds: [0, 1], sets: {a: {}, b: {task.n_real: 20}}}
      - {name: "gen-{sets}", task: seg-aug, method: classic-aug, seeds: [0, 1], sets: {a: {}, b: {task.n_real: 20}},
         after: ["real-{sets}"]}
    runs:
      - {name: on-gen, task: seg-aug, method: real-only, set: {task.mask_source: "{run:gen-b}"}}
      - {name: alone, task: seg-aug, method: classic-aug}
"""


def test_only_keeps_the_matching_runs_and_the_runs_they_depend_on(tmp_path):
    sweep = load_sweep(write(tmp_path, ONLY))
    assert [r.name for r in sweep.only(["gen-b@s1"]).runs] == ["real-b@s1", "gen-b@s1"]
    assert [r.name for r in sweep.only(["on-gen"]).runs] == ["real-b@s0", "gen-b@s0", "on-gen"]  # {run:} and after
    assert [r.name for r in sweep.only(["real-*", "alone"]).runs] == [
        "real-a@s0", "real-a@s1", "real-b@s0", "real-b@s1", "alone"]  # the file's order
    assert sweep.only(["*"]).runs == sweep.runs
    with pytest.raises(SweepError, match=r"^--only 'gen-c\*' matches no run of the sweep \(its runs: real-a@s0, "):
        sweep.only(["gen-*", "gen-c*"])


def test_only_on_the_command_line_says_what_it_kept_and_refuses_a_pattern_matching_nothing(tmp_path, cli):
    path = write(tmp_path, ONLY)
    out = cli.invoke(app, ["sweep", str(path), "--only", "gen-a@*", "--dry-run", "--work-dir", str(tmp_path / "w")],
                     env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert out.output.startswith("--only gen-a@*: 4 of the sweep's 10 runs (with the runs they depend on)\n")
    assert "sweep only (" in out.output and ": 4 runs, work dir" in out.output
    bad = cli.invoke(app, ["sweep", str(path), "--only", "nothing", "--dry-run"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    assert bad.output.startswith(f"error: sweep {path}: --only 'nothing' matches no run of the sweep")
    assert not (tmp_path / "w").exists()
