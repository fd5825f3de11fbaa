"""DisenDiff and Break-a-Scene loaders: fixtures in their layouts and the real copies in ../shared/data."""
from __future__ import annotations

from typer.testing import CliRunner

import data_layouts as L
from bench.data.cli import app
from bench.data.concepts import BreakAScene, DisenDiff


def _disendiff(root):
    folder = root / "disendiff"
    for pair in ("cat_dog", "man_woman"):
        L.image(folder / "images" / pair / "scene.jpg", size=(20, 16))
        for k in (1, 2):
            L.image(folder / "data_eval" / pair / f"subject{k}" / f"crop{k}.jpg")
        for kind in ("global", "subject1", "subject2"):
            (folder / "prompts").mkdir(parents=True, exist_ok=True)
            (folder / "prompts" / f"{pair}_{kind}.txt").write_text("Photo of a <new1> x\n<new2> y at a beach\n")
    return folder


def test_disendiff_fixture(tmp_path):
    folder = _disendiff(tmp_path)
    data = DisenDiff(root=tmp_path, image_size=8)
    train = data.load("train")
    assert train.ids == ["cat_dog", "man_woman"]
    scene = train[0]
    assert scene.prompt == "<new1> cat and <new2> dog" and scene.meta["prompts"]["global"][1] == "<new2> y at a beach"
    assert scene.meta["references"] == ["cat_dog/subject1/crop1", "cat_dog/subject2/crop2"]
    refs = data.load("reference")
    assert len(refs) == 4 and refs[0].prompt == "cat" and refs[1].meta["subject"] == 2
    assert DisenDiff(root=tmp_path, scenes=["man_woman"]).split_ids("train") == ["man_woman"]
    (folder / "prompts" / "man_woman_subject2.txt").unlink()
    assert [str(p) for p in DisenDiff(root=tmp_path).check()] == [
        f"{folder / 'prompts' / 'man_woman_subject2.txt'}: missing prompt file",
        f"{folder}: wrong count: 6 samples, card expects 30",
        f"{folder}: wrong count: split 'train' has 2 samples, card expects 10",
        f"{folder}: wrong count: split 'reference' has 4 samples, card expects 20",
    ]


def test_break_a_scene_fixture_antialiased_rgba_masks(tmp_path):
    scene = tmp_path / "examples" / "duo"
    L.image(scene / "img.jpg", size=(16, 16))
    L.mask(scene / "mask0.png", size=(16, 16), box=(0, 0, 8, 8), mode="RGBA")
    L.mask(scene / "mask1.png", size=(16, 16), on=100, box=(8, 8, 16, 16), mode="RGBA")  # below 127: background
    sample = BreakAScene(root=tmp_path).load("train")[0]
    assert sample.meta["object_masks"].shape == (2, 16, 16)
    assert int(sample.meta["object_masks"][0].sum()) == 64 and int(sample.meta["object_masks"][1].sum()) == 0
    assert sample.prompt == "a photo of <asset0> and <asset1>" and int(sample.mask.sum()) == 64


def test_real_copies(shared_data):
    root = shared_data / "concepts"
    disendiff = DisenDiff(root=root, image_size=64)
    assert len(disendiff.split_ids("train")) == 10 and len(disendiff.split_ids("reference")) == 20
    horse = disendiff.load("train")[disendiff.split_ids("train").index("horse_dog")]
    assert horse.prompt == "<new1> horse and <new2> dog"
    lines = (root / "disendiff" / "prompts" / "horse_dog_subject1.txt").read_text().splitlines()
    assert horse.meta["prompts"]["subject1"] == [line.strip() for line in lines if line.strip()]
    assert len(horse.meta["prompts"]["global"]) >= 10
    bas = BreakAScene(root=root, image_size=64)
    sheep = bas.load("train")[bas.split_ids("train").index("sheep")]
    assert sheep.meta["object_masks"].shape == (4, 64, 64) and sheep.image.shape == (3, 64, 64)
    for name in ("disendiff", "break-a-scene"):
        result = CliRunner().invoke(app, ["check", name, "--root", str(root)])
        assert result.exit_code == 0, result.output


def test_gen4gen_fixture_masks_and_missing_references(tmp_path):
    from bench.data.concepts import Gen4Gen

    root = tmp_path / "gen4gen_dataset"
    L.image(root / "dog_bear" / "global" / "0.png", size=(16, 16))
    L.mask(root / "dog_bear" / "mask" / "mask0.png", size=(16, 16), box=(0, 0, 8, 16))
    L.mask(root / "dog_bear" / "mask" / "mask1.png", size=(16, 16), box=(8, 0, 16, 16))
    for k in (1, 2):
        L.image(root / "dog_bear" / f"subject{k}" / "a.jpg")
    L.image(root / "boot_backpack" / "global" / "0.png", size=(16, 16))  # no masks, no references
    data = Gen4Gen(root=tmp_path, image_size=16)
    train = data.load("train")
    assert train.ids == ["boot_backpack", "dog_bear"]
    bear = train[1]
    assert bear.prompt == "<new1> dog and <new2> bear" and bear.meta["class_words"] == ["dog", "bear"]
    assert bear.meta["object_masks"].shape == (2, 16, 16) and int(bear.meta["object_masks"][0].sum()) == 128
    assert "object_masks" not in train[0].meta
    assert len(data.load("reference")) == 2
    problems = [str(p) for p in data.check()]
    assert f"{root / 'boot_backpack' / 'subject1'}: missing single-concept references (not in the AttenCraft " \
           "repository: supply the concept's photos)" in problems
