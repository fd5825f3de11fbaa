"""The concept task: scenes, prompts, conditions and scores on concept-mini and the real DisenDiff copy."""
from pathlib import Path

import numpy as np
import pytest

from bench.interface import RunContext, Sample
from bench.tasks.concept import ConceptConfig, ConceptTask, normalise_prompt

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "concepts"


def _mini_task(**options):
    cfg = ConceptConfig(dataset="concept-mini", dataset_options={"n_pairs": 2, "test_views": 4}, image_size=64,
                        prompts_per_kind=2, images_per_prompt=2, clip="mini-clip", dino=None, **options)
    return ConceptTask(cfg)


def test_normalise_prompt_fixes_disendiff_quirks():
    tokens, words = ["<new1>", "<new2>"], ["cow", "bird"]
    assert normalise_prompt("<new1> cow and <mew2> bird", tokens, words) == "<new1> cow and <new2> bird"
    assert normalise_prompt("a <cow> next to a <bird>", tokens, words) == "a <new1> cow next to a <new2> bird"
    assert normalise_prompt("photo of <new1>", tokens, words) == "photo of <new1> cow"


def test_mini_scenes_fit_set_and_conditions():
    task = _mini_task()
    data = task.load(RunContext())
    scenes = data.extra["scenes"]
    assert len(scenes) == 2 and all(s.references["subject1"].shape[0] == 2 for s in scenes)
    fit = task.fit_set(data)
    assert [s.meta["scene"] for s in fit] == [s.id for s in scenes]
    assert "object_masks" not in fit[0].meta  # fit_masks: none (AttenCraft makes its own)
    assert fit[0].prompt == f"a photo of <new1> {scenes[0].class_words[0]} and <new2> {scenes[0].class_words[1]}"
    conds = task.conditions(data, RunContext())
    assert len(conds) == 2 * 3 * 2 * 2
    assert sum(c.meta["report_masks"] for c in conds) == 2
    assert conds[0].prompt == f"a photo of <new1> {scenes[0].class_words[0]}"
    given = _mini_task(fit_masks="dataset").fit_set(data)
    assert given[0].meta["object_masks"].shape[0] == 2


def test_mini_scores_reward_the_right_concepts():
    """An oracle returning each concept's own reference views and the input image beats one returning the other
    concept's views: higher CLIP-I, presence 1 vs leakage; reported masks are scored against the truth."""
    task = _mini_task()
    data = task.load(RunContext())
    scenes = {s.id: s for s in data.extra["scenes"]}
    conds = task.conditions(data, RunContext())

    def make(swap):
        out = []
        for c in conds:
            scene = scenes[c.meta["scene"]]
            kind = c.meta["kind"]
            if swap and kind != "global":
                kind = "subject2" if kind == "subject1" else "subject1"
            refs = scene.references[kind]
            meta = {}
            if c.meta["report_masks"]:
                meta["attention_masks"] = scene.object_masks.int().tolist() if not swap else \
                    scene.object_masks.flip(0).int().tolist()
            out.append(Sample(image=refs[c.meta["image_index"] % len(refs)], meta=meta))
        return out

    good = task.evaluate(data, make(False), RunContext(), "oracle").metrics
    bad = task.evaluate(data, make(True), RunContext(), "swapped").metrics
    assert good["clip_i[mini-clip,single]"] > bad["clip_i[mini-clip,single]"]
    assert good["presence[single]"] > 0.9 and good["leakage[single]"] < 0.1
    assert bad["leakage[single]"] > 0.9
    assert good["attn_mask_iou"] == pytest.approx(1.0) and bad["attn_mask_iou"] < 0.1
    assert {"clip_t[mini-clip,single]", "clip_i[mini-clip,group]", "clip_i_sync[mini-clip]"} <= set(good)


def test_mask_folder(tmp_path):
    from PIL import Image

    task = _mini_task(fit_masks="folder", mask_dir=str(tmp_path))
    for scene in ("pair00", "pair01"):
        (tmp_path / scene).mkdir()
        for k in range(2):
            arr = np.zeros((16, 16), np.uint8)
            arr[:, k * 8:(k + 1) * 8] = 255
            Image.fromarray(arr).save(tmp_path / scene / f"mask{k}.png")
    fit = task.fit_set(task.load(RunContext()))
    assert fit[0].meta["object_masks"].shape == (2, 64, 64) and bool(fit[0].meta["object_masks"][1, 0, 63])
    (tmp_path / "pair01" / "mask1.png").unlink()
    from bench.data.base import DataError

    with pytest.raises(DataError, match="mask1.png"):
        task.load(RunContext())


def test_real_disendiff_scenes_at_low_resolution():
    from inputs import require

    require((SHARED / "disendiff").is_dir(), "no DisenDiff copy in ../shared/data")
    cfg = ConceptConfig(dataset="disendiff", image_size=32, prompts_per_kind=10, images_per_prompt=1, dino=None)
    task = ConceptTask(cfg)
    data = task.load(RunContext(data_root=SHARED / "disendiff"))
    scenes = data.extra["scenes"]
    assert len(scenes) == 10
    for scene in scenes:
        assert scene.references["global"].shape == (1, 3, 32, 32)
        for kind in scene.kinds:
            assert len(scene.prompts[kind]) == 10
            assert all("<mew" not in p for p in scene.prompts[kind])
        subjects = scene.prompts["subject1"] + scene.prompts["subject2"]
        assert all("<new1>" in p or "<new2>" in p for p in subjects)
    assert len(task.conditions(data, RunContext())) == 10 * 30


def test_reported_scores_and_ratio_gap_subset():
    """max_ca_scores become per-scene max_ca_score[<scene>,subject<k>] (Table 3.5); the ratio-gap subset (Table 3.3)
    keeps the scene whose reported attention scores differ most, and its scores are that scene's row."""
    task = _mini_task(ratio_gap_scenes=1)
    data = task.load(RunContext())
    scenes = {s.id: s for s in data.extra["scenes"]}
    reported = {"pair00": {"max_ca_scores": [0.04, 0.02], "ratio_scores": [0.03, 0.029]},
                "pair01": {"max_ca_scores": [0.01, 0.05], "ratio_scores": [0.04, 0.005]}}
    samples = []
    for c in task.conditions(data, RunContext()):
        refs = scenes[c.meta["scene"]].references[c.meta["kind"]]
        meta = dict(reported[c.meta["scene"]]) if c.meta["report_masks"] else {}
        samples.append(Sample(image=refs[c.meta["image_index"] % len(refs)], meta=meta))
    result = task.evaluate(data, samples, RunContext(), "oracle")
    m = result.metrics
    assert m["max_ca_score[pair00,subject1]"] == pytest.approx(0.04)
    assert m["max_ca_score[pair01,subject2]"] == pytest.approx(0.05)
    row = next(r for r in result.per_sample if r["scene"] == "pair01")  # gap 0.035/0.045 beats 0.001/0.059
    assert m["clip_i[mini-clip,single,ratio-gap]"] == pytest.approx(row["clip_i[mini-clip,single]"])
    assert m["clip_i_sync[mini-clip,ratio-gap]"] == pytest.approx(row["clip_i_sync[mini-clip]"])
    assert m["ratio_gap[subset_min]"] == pytest.approx(0.035 / 0.045)
    assert "clip_i[mini-clip,single,ratio-gap]" not in _mini_task().evaluate(data, samples, RunContext(), "o").metrics


def test_disendiff_and_gen4gen_scenes_in_one_run(tmp_path):
    """Paper profile: the thesis's 16 datasets are DisenDiff's 10 scenes plus Gen4Gen's 6, averaged in one run
    (task.extra_datasets); the extra scenes are named by their dataset, and their splits enter the protocol."""
    from tests.data import data_layouts as L

    from bench.data.base import DataError
    from bench.runner import protocol_of

    for pair in ("cat_dog", "man_woman"):
        L.image(tmp_path / "disendiff" / "images" / pair / "scene.jpg", size=(20, 16))
        for k in (1, 2):
            L.image(tmp_path / "disendiff" / "data_eval" / pair / f"subject{k}" / f"crop{k}.jpg")
    g4g = tmp_path / "gen4gen_dataset" / "dog_bear"
    L.image(g4g / "global" / "0.png", size=(16, 16))
    for k in (1, 2):
        L.image(g4g / f"subject{k}" / "a.jpg")
    base = dict(dataset="disendiff", image_size=16, prompts_per_kind=2, images_per_prompt=1, dino=None,
                prompt_source="templates")
    task = ConceptTask(ConceptConfig(**base, extra_datasets=["gen4gen"]))
    data = task.load(RunContext(data_root=tmp_path))
    assert [s.id for s in data.extra["scenes"]] == ["cat_dog", "man_woman", "gen4gen-dog_bear"]
    assert {"train", "reference", "gen4gen:train", "gen4gen:reference"} <= set(data.checksums)
    assert {c.meta["scene"] for c in task.conditions(data, RunContext())} == {s.id for s in data.extra["scenes"]}
    # without extra datasets the key stays out of the protocol (shipped chapter-3 records keep their hash)
    assert "extra_datasets" not in protocol_of(ConceptConfig(**base), ConceptTask)
    assert protocol_of(task.config, ConceptTask)["extra_datasets"] == ["gen4gen"]
    with pytest.raises(DataError, match="task.extra_datasets: 'concept-mini' cannot join 'disendiff'"):
        ConceptTask(ConceptConfig(**base, extra_datasets=["concept-mini"])).load(RunContext(data_root=tmp_path))
