"""bench/tables/dynamic_range.py: world-oracle - noise per protocol, methods' gains read against it (issue 23)."""
from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from bench.tables.cli import table_command
from bench.tables.dynamic_range import dynamic_ranges, method_fractions, method_positions, section_html

app = typer.Typer()
app.command("table")(table_command)


@app.command("other")
def _other() -> None:
    pass


def _records(make):
    ref = {"reference": "real-only", "reference_metrics": {"dice": 0.80, "iou": 0.70}}
    unet = {"unet": {"iou": 0.70, "dice": 0.80}}
    return [
        make(method="real-only", metrics={"dice": 0.80, "iou": 0.70}, per_model=unet),
        make(method="world-oracle", seed=0, metrics={"dice": 0.90, "iou": 0.82}, comparisons=ref),
        make(method="world-oracle", seed=1, metrics={"dice": 0.92, "iou": 0.84}, comparisons=ref),
        make(method="noise", metrics={"dice": 0.70, "iou": 0.58}, comparisons=ref),
        make(method="didgen", metrics={"dice": 0.85, "iou": 0.76}, comparisons=ref),
        # a control of another protocol never enters this one's range
        make(method="noise", metrics={"dice": 0.10, "iou": 0.05}, comparisons=ref, protocol="f" * 64),
    ]


def test_range_is_oracle_minus_noise_on_the_headline_metric(record_factory):
    ranges = dynamic_ranges(_records(record_factory))
    assert list(ranges) == [("seg-aug", "mini", "a" * 64)]  # the other protocol has no world-oracle
    rng = ranges[("seg-aug", "mini", "a" * 64)]
    assert rng.metric == "dice"  # seg-aug's main_metric
    assert (rng.oracle, rng.noise, rng.oracle_seeds, rng.noise_seeds) == (pytest.approx(0.91), 0.70, 2, 1)
    assert rng.span == pytest.approx(0.21) and rng.real_only == pytest.approx(0.80)
    assert rng.fraction(0.85) == pytest.approx(0.05 / 0.21)
    rows = {g.method: (g.gain, g.share) for g in method_fractions(rng, _records(record_factory))}
    assert rows["didgen"] == (pytest.approx(0.05), pytest.approx(0.05 / 0.21))
    assert rows["noise"][1] == pytest.approx(-0.10 / 0.21) and "real-only" not in rows


def test_without_the_task_headline_the_tables_metric_is_used(record_factory):
    # cxr's image protocol has no CE F1 (cxr's main metric); Table 6.2 reads AUROC, which comes after FD in the records
    metrics = {"fd[mini-clip]": 0.05, "auroc[Effusion]": 0.94, "auroc": 0.98}
    recs = [record_factory(task="cxr", method="world-oracle", metrics=metrics),
            record_factory(task="cxr", method="noise", metrics={"fd[mini-clip]": 14.0, "auroc[Effusion]": 0.50, "auroc": 0.50})]
    assert next(iter(dynamic_ranges(recs).values())).metric == "fd[mini-clip]"  # no table: the records' first
    rng = next(iter(dynamic_ranges(recs, ["auroc[Effusion]", "auroc"]).values()))
    assert rng.metric == "auroc" and rng.span == pytest.approx(0.48)  # the table's, unbracketed first


def test_lower_is_better_keeps_the_reading(record_factory):
    recs = [record_factory(method="world-oracle", metrics={"dice": 10.0}, comparisons={"reference_metrics": {"dice": 20.0}}),
            record_factory(method="noise", metrics={"dice": 40.0}, comparisons={"reference_metrics": {"dice": 20.0}})]
    rng = next(iter(dynamic_ranges(recs).values()))
    assert rng.span == -30.0 and rng.fraction(15.0) == pytest.approx(1 / 6)  # better than real-only: positive


def test_a_reference_arm_below_the_negative_control_is_said_to_be(record_factory):
    """lowcontrast's real-only arm (the pretrained segmenters, not fine-tuned) scores below the arm fine-tuned on noise
    images: the range says that a gain over real-only is then partly the fine-tuning itself."""
    ref = {"reference_metrics": {"dice": 0.40}}
    recs = [record_factory(method="world-oracle", metrics={"dice": 0.54}, comparisons=ref),
            record_factory(method="noise", metrics={"dice": 0.47}, comparisons=ref)]
    text = next(iter(dynamic_ranges(recs).values())).describe()
    assert "real-only 0.4000 sits at -100 % of it, below the negative control" in text
    assert "below the negative control" not in next(iter(dynamic_ranges(_records(record_factory)).values())).describe()


def test_bench_table_prints_the_range_and_each_gain(tmp_path, record_factory, write_record_dir):
    folder = write_record_dir(tmp_path / "records", _records(record_factory))
    out = CliRunner().invoke(app, ["table", "thesis-4.5", "--records", str(folder)])
    assert out.exit_code == 0, out.output
    assert ("seg-aug (mini, protocol aaaaaaaaaaaa), dice: world-oracle 0.9100 (2 seeds) - noise 0.7000 (1 seed) "
            "= +0.2100; real-only 0.8000 sits at 48 % of it") in out.output
    assert "  - didgen: +0.0500 over real-only = +23.8 % of the range (1 seed)" in out.output
    csv = CliRunner().invoke(app, ["table", "thesis-4.5", "--records", str(folder), "--format", "csv"])
    assert "Dynamic range" not in csv.output  # csv stays a table
    html = CliRunner().invoke(app, ["table", "thesis-4.5", "--records", str(folder), "--format", "html"])
    assert html.output.index('class="dynamic-range"') < html.output.index("</body>")
    only_real = write_record_dir(tmp_path / "r2", _records(record_factory)[:1])
    out = CliRunner().invoke(app, ["table", "thesis-4.5", "--records", str(only_real)])
    assert "Dynamic range: no world-oracle and noise records" in out.output


def test_leaderboard_section_shows_the_range(tmp_path, record_factory, write_record_dir):
    from bench.leaderboard.site import build_site

    folder = write_record_dir(tmp_path / "records", _records(record_factory))
    build_site([folder], tmp_path / "site", generated="2026-12-05T00:00:00Z")
    page = (tmp_path / "site" / "task-seg-aug.html").read_text()
    assert "<strong>Dynamic range</strong> (dice, world-oracle − noise): 0.9100 − 0.7000 = <strong>+0.2100</strong>" in page
    assert "didgen +23.8 %" in page
    assert "Dynamic range: needs a world-oracle record here." in page  # the other protocol: noise only


def test_a_table_that_read_records_of_a_task_shows_only_their_protocols():
    """Table 6.3 (reports) read the report protocol's records; cxr's controls run under the image protocol: their
    range is not this table's. A task none of whose cells has a record still shows its controls anywhere."""
    from types import SimpleNamespace

    from bench.tables.dynamic_range import table_protocols

    def cell(task, records=()):
        return SimpleNamespace(query=SimpleNamespace(task=task), records=list(records))

    report = {"task": {"id": "cxr"}, "profile": "mini", "protocol_hash": "r" * 64}
    result = SimpleNamespace(profile="mini", cells={1: cell("cxr", [report]), 2: cell("cxr"), 3: cell("seg-aug"),
                                                    4: SimpleNamespace(query=None, records=[])})
    assert table_protocols(result) == {("cxr", "mini", "r" * 64), ("seg-aug", "mini", "")}


def test_gains_over_seeds_carry_an_interval_and_the_paired_test_across_seeds(record_factory):
    """Each seed's record is paired with its own real-only arm: the gain's t interval and the paired t-test across
    seeds equal scipy's on the same values; one seed gives neither."""
    from scipy import stats

    ref = lambda d: {"reference": "real-only", "reference_metrics": {"dice": d}}  # noqa: E731
    real = {0: 0.80, 1: 0.78, 2: 0.81}
    method = {0: 0.83, 1: 0.80, 2: 0.85}
    recs = [record_factory(method="world-oracle", seed=s, metrics={"dice": 0.9}, comparisons=ref(real[s])) for s in real]
    recs += [record_factory(method="noise", seed=s, metrics={"dice": 0.7}, comparisons=ref(real[s])) for s in real]
    recs += [record_factory(method="didgen", seed=s, metrics={"dice": method[s]}, comparisons=ref(real[s])) for s in real]
    recs.append(record_factory(method="pgan", metrics={"dice": 0.79}, comparisons=ref(0.80)))
    rng = next(iter(dynamic_ranges(recs).values()))
    gains = {g.method: g for g in method_fractions(rng, recs)}
    diffs = [method[s] - real[s] for s in real]
    didgen = gains["didgen"]
    assert didgen.seeds == 3 and didgen.gain == pytest.approx(sum(diffs) / 3)
    assert didgen.p == pytest.approx(stats.ttest_rel(list(method.values()), list(real.values())).pvalue)
    assert didgen.ci == pytest.approx(stats.t.interval(0.95, 2, loc=sum(diffs) / 3, scale=stats.sem(diffs)))
    assert gains["pgan"].seeds == 1 and gains["pgan"].ci is None and gains["pgan"].p is None
    assert "paired t-test across seeds p" in didgen.describe() and "(1 seed)" in gains["pgan"].describe()


def test_derm_cls_reads_its_range_on_balanced_accuracy(record_factory):
    """derm-cls generates minority classes only: its range (and ranking) is on balanced accuracy, which the weighted
    metrics of the thesis's tables would hide under the majority class."""
    ref = {"reference": "real-only", "reference_metrics": {"f1_weighted": 0.64, "balanced_accuracy": 0.30}}
    recs = [record_factory(task="derm-cls", method=m, comparisons=ref,
                           metrics={"f1_weighted": f1, "balanced_accuracy": ba})
            for m, f1, ba in (("world-oracle", 0.65, 0.42), ("noise", 0.63, 0.29))]
    (rng,) = dynamic_ranges(recs, preferred=["f1_weighted"]).values()
    assert rng.metric == "balanced_accuracy" and rng.span == pytest.approx(0.13)


def test_a_method_without_a_real_only_arm_is_placed_between_the_controls(record_factory):
    """derm-quality scores generated sets (FD, lower is better) with no real-only arm to pair with: each method is
    placed on the range instead, 0 % at noise and 100 % at world-oracle, mean over its seeds."""
    fd = "fd[mini-clip]"
    recs = [record_factory(task="derm-quality", method="world-oracle", metrics={fd: 2.0}),
            record_factory(task="derm-quality", method="noise", metrics={fd: 222.0}),
            record_factory(task="derm-quality", method="real-only", metrics={fd: 1.9}),
            record_factory(task="derm-quality", method="didgen", seed=0, metrics={fd: 100.0}),
            record_factory(task="derm-quality", method="didgen", seed=1, metrics={fd: 124.0}),
            record_factory(task="derm-quality", method="pgan", metrics={fd: 250.0})]
    rng = next(iter(dynamic_ranges(recs).values()))
    assert method_fractions(rng, recs) == []  # nothing is paired with real-only
    got = {p.method: (p.value, p.share, p.seeds) for p in method_positions(rng, recs)}
    assert got == {"didgen": (112.0, pytest.approx(0.5), 2), "pgan": (250.0, pytest.approx(-28 / 220), 1)}
    assert "didgen 50 %, pgan -13 %" in section_html(recs)
    # a method paired with real-only is read as a gain (method_fractions), never placed as well
    seg = _records(record_factory)
    assert method_positions(next(iter(dynamic_ranges(seg).values())), seg) == []


def test_a_config_variant_is_its_own_entry_never_a_seed_of_the_default_run(record_factory):
    """Table 4.7's DiDGen without CA guidance is a seed-0 didgen record of the same protocol as the default DiDGen:
    read as the newest seed-0 record of `didgen`, it replaced the default run's seed 0 in the gain."""
    ref = {"reference_metrics": {"dice": 0.80}}
    recs = _records(record_factory)[:4] + [
        record_factory(method="didgen", seed=0, metrics={"dice": 0.85}, comparisons=ref),
        record_factory(method="didgen", seed=1, metrics={"dice": 0.83}, comparisons=ref),
        record_factory(method="didgen", seed=0, metrics={"dice": 0.70}, comparisons=ref, created="2026-12-01T00:00:00Z",
                       method_config={"ca_guidance": False}, run_id="seg-aug__didgen__derm-mini__mini__s0__dddddddd")]
    rng = next(iter(dynamic_ranges(recs).values()))
    rows = {g.method: (g.gain, g.seeds) for g in method_fractions(rng, recs)}
    assert rows["didgen"] == (pytest.approx(0.04), 2)
    assert rows["didgen (ca_guidance=False)"] == (pytest.approx(-0.10), 1)
