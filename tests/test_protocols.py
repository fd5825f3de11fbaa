"""Named leaderboard protocols (bench/protocols.yaml): a plain run lands in the shipped records' protocol, every
pinned hash is what the protocol's settings give, and records are named from their hash."""
from __future__ import annotations

import json

import pytest

from bench import protocols
from bench.leaderboard.submit import default_leaderboard_dir
from bench.runner import BenchError, RunConfig, expected_split_checksums, protocol_of, resolve
from bench.store import protocol_hash

SHIPPED = [json.loads(p.read_text()) for p in sorted(default_leaderboard_dir().glob("*.json"))]


def _plain_run_hash(task: str, method: str, profile: str = "mini", **kw) -> tuple[str, protocols.Protocol | None]:
    """The protocol hash `bench run --task T --method M --profile P` gets (split checksums from the dataset
    definitions, as `bench submit` recomputes them; split names from a shipped record of the task)."""
    resolved = resolve(RunConfig(task=task, method=method, profile=profile, **kw))
    dataset = resolved.task_config.dataset
    splits = next(r["dataset"]["splits"] for r in SHIPPED if r["task"]["id"] == task and r["dataset"]["id"] == dataset)
    if getattr(resolved.task_config, "transfer_dataset", "absent") is None:  # e.g. the MedDiff-FT / DiffBoost twins
        splits = {k: v for k, v in splits.items() if k != "transfer"}
    checksums = expected_split_checksums(resolved.task_config, splits)
    return (protocol_hash(task, resolved.task_cls.version, protocol_of(resolved.task_config, resolved.task_cls),
                          checksums), resolved.protocol)


@pytest.mark.parametrize("task", ["seg-aug", "derm-cls", "derm-quality"])
def test_a_plain_run_lands_in_the_protocol_of_the_shipped_records(task) -> None:
    full, proto = _plain_run_hash(task, "real-only")
    assert proto is not None and proto.default and proto.name == f"{task}/mini@v{2 if task == 'seg-aug' else 1}"
    shipped = {r["protocol_hash"] for r in SHIPPED if r["task"]["id"] == task and r["method"]["id"] == "real-only"}
    assert full in shipped
    assert full.startswith(proto.hash)


def test_every_pinned_hash_is_what_its_settings_give() -> None:
    pinned = [p for p in protocols.load().values() if p.hash]
    assert {p.name for p in pinned} >= {"seg-aug/mini@v1", "seg-aug/mini-s2.5k@v1", "seg-aug/mini@v2",
                                        "seg-aug/mini-s2.5k@v2", "derm-cls/mini@v1"}  # retired ones keep theirs
    for proto in pinned:
        full, resolved = _plain_run_hash(proto.task, "real-only", proto.profile, protocol=proto.name)
        assert resolved == proto
        assert full[:8] == proto.hash, f"{proto.name}: its settings now give {full[:8]}; name a new version (@v2)"


def test_every_shipped_record_runs_a_named_protocol_and_both_seg_scales_are_named() -> None:
    names = {r["run_id"]: protocols.record_protocol(r) for r in SHIPPED}
    assert all(names.values()), [k for k, v in names.items() if v is None]
    seg = {names[r["run_id"]].name for r in SHIPPED if r["task"]["id"] == "seg-aug"}
    assert seg >= {"seg-aug/mini@v2", "seg-aug/mini-s2.5k@v2"}
    record = next(r for r in SHIPPED if r["protocol_hash"].startswith("6c729d3b"))
    assert protocols.describe(record) == 'seg-aug/mini@v2 "S_1k twin, 4 segmenters, calibrated world" (6c729d3b)'


def test_protocol_choice_dataset_and_unknown_names() -> None:
    base = resolve(RunConfig(task="seg-aug", method="real-only", protocol="seg-aug/mini-base@v1"))
    assert list(base.task_config.segmenters) == ["unet", "attention-unet"] and base.task_config.n_real is None
    # another dataset: the leaderboard protocol (defined on derm-mini) is not applied, the profile's settings are
    other = resolve(RunConfig(task="seg-aug", method="real-only", dataset="isic2018-task1"))
    assert other.protocol is None and list(other.task_config.segmenters) == ["unet", "attention-unet"]
    with pytest.raises(BenchError, match="unknown protocol 'seg-aug/mini@v9' for task seg-aug .mini.; use one of "
                                         "seg-aug/mini@v2"):
        resolve(RunConfig(task="seg-aug", method="real-only", protocol="seg-aug/mini@v9"))
    with pytest.raises(BenchError, match="a protocol of task derm-cls in the mini profile, not of seg-aug"):
        resolve(RunConfig(task="seg-aug", method="real-only", protocol="derm-cls/mini@v1"))
    with pytest.raises(BenchError, match="runs on dataset 'derm-mini', not 'isic2018-task1'"):
        resolve(RunConfig(task="seg-aug", method="real-only", dataset="isic2018-task1", protocol="seg-aug/mini@v1"))
    # a task with no entry has an implicit default: its profile's own settings
    assert protocols.default("skin-tone", "mini").name == "skin-tone/mini@v1"
    assert protocols.default("seg-aug", "smoke").settings == {}


def test_a_bad_protocols_file_is_one_error(tmp_path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("seg-aug/mini@v1: {title: a, default: true}\nseg-aug/mini-x@v1: {title: b, default: true}\n")
    with pytest.raises(protocols.ProtocolError, match="both the default of seg-aug"):
        protocols.load(bad)
    bad.write_text("seg-aug-mini: {title: a}\n")
    with pytest.raises(protocols.ProtocolError, match="is not <task>/<profile>"):
        protocols.load(bad)


def test_site_sections_and_record_list_show_the_name_with_the_hash_beside() -> None:
    from bench.leaderboard.site import _protocol_cell, _section_heading

    record = next(r for r in SHIPPED if r["protocol_hash"].startswith("76f0fa5b"))
    heading = _section_heading("mini", "derm-mini", record["protocol_hash"], record)
    assert heading.startswith(f'<h2 id="mini-derm-mini-{record["protocol_hash"][:12]}">Protocol '
                              "<code>seg-aug/mini-s2.5k@v2</code> — S_2.5k twin, 4 segmenters, calibrated world "
                              "(<code title=")
    assert "Thesis Table 4.5&#x27;s S_2.5k rows" in heading  # the protocol's description under the heading
    assert _protocol_cell(record).startswith("<code>seg-aug/mini-s2.5k@v2</code> (<code title=")
    unnamed = dict(record, protocol_hash="0" * 64)
    assert "no named protocol" in _section_heading("mini", "derm-mini", "0" * 64, unnamed)


def test_a_family_names_every_listed_value_of_its_varying_key(tmp_path) -> None:
    """MedDiff-FT's +150 / +275 runs and DiffBoost's per-fold runs keep their family's name, each value its own
    hash (and leaderboard section); a value outside the list is no named protocol."""
    splits = {k: v for k, v in next(r["dataset"]["splits"] for r in SHIPPED if r["task"]["id"] == "seg-aug").items()
              if k != "transfer"}
    base, _ = _plain_run_hash("seg-aug", "real-only", protocol="seg-aug/mini-meddiff-busi@v1")
    n150, _ = _plain_run_hash("seg-aug", "real-only", protocol="seg-aug/mini-meddiff-busi@v1",
                              sets=["task.n_generate=150"])
    n99, _ = _plain_run_hash("seg-aug", "real-only", protocol="seg-aug/mini-meddiff-busi@v1",
                             sets=["task.n_generate=99"])
    checksums = expected_split_checksums(resolve(RunConfig(task="seg-aug", method="real-only",
                                                           protocol="seg-aug/mini-meddiff-busi@v1")).task_config,
                                         splits)
    assert len({base, n150, n99}) == 3
    named = protocols.name_of("seg-aug", "mini", n150, checksums)
    assert named.name == "seg-aug/mini-meddiff-busi@v1" and named.values == {"n_generate": 150}
    assert named.display_name == "seg-aug/mini-meddiff-busi@v1[n_generate=150]"
    assert protocols.name_of("seg-aug", "mini", base, checksums).display_name == "seg-aug/mini-meddiff-busi@v1"
    assert protocols.name_of("seg-aug", "mini", n99, checksums) is None
    bad = tmp_path / "p.yaml"
    bad.write_text("seg-aug/mini-x@v1: {title: a, vary: {fold: 3}}\n")
    with pytest.raises(protocols.ProtocolError, match="'vary' must map task keys to non-empty lists"):
        protocols.load(bad)


def test_site_sections_keep_a_family_together_base_first_then_by_value() -> None:
    """On the seg-aug page the MedDiff-FT busi-mini family reads base, [n_generate=150], [n_generate=275] in a row,
    after the task's default protocol."""
    from bench.leaderboard.site import _sections
    from bench.protocols import record_protocol

    seg = [r for r in SHIPPED if r["task"]["id"] == "seg-aug"]
    names = [(record_protocol(recs[0]).display_name if record_protocol(recs[0]) else None)
             for _, recs in _sections(seg)]
    (default,) = [p.name for p in protocols.load().values() if p.task == "seg-aug" and p.profile == "mini" and p.default]
    assert names[0] == default
    family = [i for i, n in enumerate(names) if n and n.startswith("seg-aug/mini-meddiff-busi@v1")]
    assert [names[i] for i in family] == ["seg-aug/mini-meddiff-busi@v1", "seg-aug/mini-meddiff-busi@v1[n_generate=150]",
                                          "seg-aug/mini-meddiff-busi@v1[n_generate=275]"]
    assert family == list(range(family[0], family[0] + 3))


@pytest.mark.parametrize(("task", "method", "name", "settings"), [
    ("cxr", "r2gen", "cxr/mini-report@v1", {"output": "report", "input": "real"}),
    ("cxr", "vanilla-ldm", "cxr/mini-image@v1", {"output": "image", "input": "generated"}),
    ("derm-quality", "controlnet", "derm-quality/mini-masks@v1", {"conditioning": "masks"}),
])
def test_a_plain_run_the_default_protocol_cannot_run_picks_the_named_one_that_can(task, method, name, settings,
                                                                                   caplog) -> None:
    with caplog.at_level("WARNING", logger="bench.runner"):
        resolved = resolve(RunConfig(task=task, method=method, profile="mini"))
    assert resolved.protocol.name == name
    assert {k: getattr(resolved.task_config, k) for k in settings} == settings
    assert f"running {name}" in caplog.text and "--protocol chooses another" in caplog.text
    # the record's overrides name the settings applied, so `bench submit`'s profile check rebuilds the config
    from bench.config import recorded_overrides

    overrides = recorded_overrides(resolved.task_cls, resolved.method_cls, "mini", None, (), None,
                                   protocol=resolved.protocol.name)
    assert overrides["task"].items() >= settings.items()


def test_an_explicit_protocol_or_a_method_the_default_runs_is_not_switched() -> None:
    from bench.runner import _resolve_compatible, how_it_runs

    assert resolve(RunConfig(task="cxr", method="cxr-irgen", profile="mini")).protocol.name == "cxr/mini@v1"
    with pytest.raises(BenchError, match="cannot run method 'r2gen'.*it runs with task.output=report task.input=real"):
        _resolve_compatible(RunConfig(task="cxr", method="r2gen", profile="mini", protocol="cxr/mini@v1"))
    # --set that makes the default protocol run it: no switch needed; the hash is the named protocol's anyway
    sets = ("task.output=report", "task.input=real")
    assert resolve(RunConfig(task="cxr", method="r2gen", profile="mini", sets=sets)).protocol.name == "cxr/mini@v1"
    assert _plain_run_hash("cxr", "r2gen", sets=sets)[0] == _plain_run_hash("cxr", "r2gen")[0]
    # what `bench list` prints for the 'o' cells
    assert how_it_runs("cxr", "r2gen") == "auto: cxr/mini-report@v1"
    assert how_it_runs("derm-cls", "controlnet") == "--set task.conditioning=mask"
    assert how_it_runs("seg-aug", "pgan") is None


@pytest.mark.parametrize("method", ["attencraft", "custom-diffusion", "disendiff", "break-a-scene"])
def test_concept_customizers_run_only_where_the_task_gives_a_customization_set(method) -> None:
    """Chapter 3's methods learn from images with concept placeholders; an image-only cxr protocol gives prompts
    they can follow but nothing to fit on (they used to be listed as runnable there and crashed in their fit)."""
    from bench.runner import _resolve_compatible, how_it_runs

    assert how_it_runs("cxr", method) is None and how_it_runs("derm-quality", method) is None
    with pytest.raises(BenchError, match=f"cannot run method '{method}'.*gives no customization set .* to fit on"):
        _resolve_compatible(RunConfig(task="cxr", method=method, profile="mini", protocol="cxr/mini-image@v1"))
    assert resolve(RunConfig(task="concept", method=method, profile="mini")).protocol.name == "concept/mini@v2"
