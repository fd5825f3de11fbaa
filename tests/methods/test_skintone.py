"""methods/skintone: the ITA annotators on images of known ITA, the 8-patch layout, the YCbCr skin rule, and the
CNN / ensemble path (features, caching of base models, save/load) on a tiny synthetic fit set."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab

from bench.interface import Condition, RunContext, Sample
from methods.skintone import VGG16, EnsembleLR, EnsembleRF, Ita8Patch, ItaYCbCr, SkinToneConfig
from methods.skintone.ita import PATCHES, ita_to_fst, remove_hair, to_patch_size, ycbcr_skin_mask

MINI = SkinToneConfig(variant="mini", pretrained=False, input_size=32, lr=0.05, batch_size=16, max_epochs=2, patience=2)


def uniform(lab, size=32) -> np.ndarray:
    rgb = lab2rgb(np.array(lab, dtype=np.float64).reshape(1, 1, 3))
    return np.repeat(np.repeat(rgb, size, 0), size, 1)


def tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float()


def annotate(method, images):
    conds = [Condition(reference=tensor(im), meta={"index": i}) for i, im in enumerate(images)]
    return list(method.generate(conds, RunContext()))


def test_ycbcr_rule_keeps_skin_pixels():
    # Hand-checked against the rule: (200, 150, 120) is skin (Y 154.7, Cb 107.4, Cr 152.1, inside all five lines);
    # (255, 200, 20) passes the RGB part but has Cb 40.8 < 85; grey (150, 150, 150) fails R - G >= 15; blue fails R >= 95.
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :] = (200, 150, 120)
    img[2, :] = (255, 200, 20)
    img[3, :2] = (150, 150, 150)
    img[3, 2:] = (40, 60, 200)
    mask = ycbcr_skin_mask(img)
    assert mask[:2].all() and not mask[2:].any()
    with pytest.raises(ValueError, match="uint8"):
        ycbcr_skin_mask(img.astype(np.float64))


@pytest.mark.parametrize("lab,ita,fst,group", [
    ((70.0, 10.0, 20.0), 45.0, 2, 0),     # atan(20 / 20) = 45 -> FST II -> I-II
    ((62.0, 12.0, 18.0), 33.69, 3, 1),    # atan(12 / 18) = 33.69 -> FST III -> III-IV
    ((55.0, 15.0, 20.0), 14.04, 5, 2),    # atan(5 / 20) = 14.04 -> FST V -> V-VI
])
def test_ita_annotators_on_uniform_skin(lab, ita, fst, group):
    img = uniform(lab)
    L, _, b = rgb2lab(img)[0, 0]
    exact = math.degrees(math.atan((L - 50) / b))
    assert exact == pytest.approx(ita, abs=0.1)
    for method in (ItaYCbCr(), Ita8Patch(), Ita8Patch(SkinToneConfig(hair_removal=False))):
        (out,) = annotate(method, [img])
        assert out.label == group and out.meta["fst"] == fst
        assert out.meta["ita"] == pytest.approx(exact, abs=0.05)  # 8-patch: the uint8-free resize keeps the colour
    (out,) = annotate(ItaYCbCr(), [img])
    assert out.meta["skin_fraction"] == 1.0 and out.meta["fallback"] is False


def test_ycbcr_annotator_uses_only_skin_pixels_and_falls_back_without_skin():
    skin, blue = uniform((70.0, 10.0, 20.0)), uniform((50.0, 10.0, -50.0))
    img = skin.copy()
    img[:, :12] = blue[:, :12]  # non-skin pixels (fail R >= 95) must not pull the ITA
    (out,) = annotate(ItaYCbCr(SkinToneConfig(ycbcr_trim_std=None)), [img])
    assert out.meta["skin_fraction"] == pytest.approx(20 / 32)
    L, _, b = rgb2lab(skin)[0, 0]
    assert out.meta["ita"] == pytest.approx(math.degrees(math.atan((L - 50) / b)), abs=1e-4)  # float32 round trip
    (out,) = annotate(ItaYCbCr(), [blue])
    assert out.meta["fallback"] is True
    with pytest.raises(ValueError, match="skin rule"):
        annotate(ItaYCbCr(SkinToneConfig(ycbcr_no_skin="error")), [blue])


def test_eight_patch_positions_are_the_spec_ones_and_the_maximum_wins():
    spec = [((230, 250), (115, 135)), ((5, 25), (115, 135)), ((115, 135), (5, 25)), ((115, 135), (230, 250)),
            ((216, 236), (216, 236)), ((216, 236), (20, 40)), ((20, 40), (20, 40)), ((20, 40), (216, 236))]
    assert [((r.start, r.stop), (c.start, c.stop)) for r, c in PATCHES] == spec
    dark, light = uniform((55.0, 15.0, 20.0), 256), uniform((70.0, 10.0, 20.0), 256)
    method = Ita8Patch(SkinToneConfig(hair_removal=False))
    for k, (rows, cols) in enumerate(PATCHES):  # one light patch makes the image I-II, and it is the maximum
        img = dark.copy()
        img[rows, cols] = light[rows, cols]
        (out,) = annotate(method, [img])
        assert out.label == 0 and int(np.argmax(out.meta["patch_ita"])) == k
    img = dark.copy()
    img[60:200, 60:200] = light[60:200, 60:200]  # light skin away from every patch is never sampled
    (out,) = annotate(method, [img])
    assert out.label == 2


def test_eight_patch_centre_crop_and_groh_thresholds():
    wide = torch.zeros(3, 100, 160)
    wide[:, :, 30:130] = 1.0
    assert torch.allclose(to_patch_size(wide, "center_crop"), torch.ones(3, 256, 256))
    assert to_patch_size(wide, "squash").min() == 0
    assert [ita_to_fst(v, "groh") for v in (45.0, 44.9, 28.0, 17.1, 5.0, -19.9, -20.0)] == [1, 2, 3, 3, 5, 5, 6]
    assert [ita_to_fst(v, "kinyanjui") for v in (55.1, 41.0, 28.1, 19.0, 10.0)] == [1, 3, 3, 5, 6]


def test_hair_removal_inpaints_thin_dark_lines():
    skin = uniform((70.0, 10.0, 20.0), 64)
    img = skin.copy()
    img[30:32, :] = 0.05  # a 2-pixel dark hair
    out, hair = remove_hair(img)
    assert hair[30:32].all() and hair.mean() < 0.1
    assert np.abs(out[30:32] - skin[30:32]).max() < 0.02


def _fit_set(n_per_group: int = 12, tag: bool = True) -> list[Sample]:
    """Uniform-ish images whose colour gives the group (I-II light, V-VI dark); 1/4 of each group tagged ``val``."""
    colours = [(75.0, 8.0, 15.0), (60.0, 12.0, 20.0), (42.0, 14.0, 22.0)]
    gen = torch.Generator().manual_seed(0)
    out = []
    for g, lab in enumerate(colours):
        base = tensor(uniform(lab, 16))
        for i in range(n_per_group):
            image = (base + 0.03 * torch.randn(base.shape, generator=gen)).clamp(0, 1)
            meta = {"id": f"{g}-{i}", **({"split": "val" if i % 4 == 0 else "train"} if tag else {})}
            out.append(Sample(image=image, label=g, meta=meta))
    return out


def test_ensemble_has_nine_features_caches_members_and_round_trips(tmp_path):
    ctx = RunContext(work_dir=tmp_path / "fit", cache_dir=tmp_path / "cache")
    train = _fit_set()
    ens = EnsembleLR(MINI)
    ens.fit(train, ctx)
    x, y = ens._train
    assert x.shape == (9, 9) and y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # 3 val images per group, 3 x 3 features
    assert np.allclose(x.reshape(9, 3, 3).sum(-1), 1.0)  # each member contributes a softmax
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "skintone-models").iterdir())
    assert cached == ["mobilenet", "vgg16", "vit"]

    # A standalone VGG-16 and a second ensemble reuse the cached members: nothing new is trained.
    vgg = VGG16(MINI)
    vgg.fit(train, ctx)
    rf = EnsembleRF(MINI)
    rf.fit(train, ctx)
    assert len(list((tmp_path / "cache" / "skintone-models").iterdir())) == 3
    vgg_member = next(m for m in ens.members if m.arch == "vgg16")
    for a, b in zip(vgg.member.model.state_dict().values(), vgg_member.model.state_dict().values()):
        assert torch.equal(a, b)
    # Another seed is another training.
    VGG16(MINI).fit(train, dataclasses.replace(ctx, seed=1))
    assert len(list((tmp_path / "cache" / "skintone-models").iterdir())) == 4

    test = [tensor(uniform(lab, 16)) for lab in ((75.0, 8.0, 15.0), (42.0, 14.0, 22.0))]
    conds = [Condition(reference=im, meta={"index": i}) for i, im in enumerate(test)]
    before = list(ens.generate(conds, ctx))
    assert all(0 <= s.label < 3 and len(s.meta["probabilities"]) == 3 for s in before)
    state = tmp_path / "state"
    ens.save(state)
    again = EnsembleLR(MINI)
    again.load(state)
    after = list(again.generate(conds, ctx))
    assert [s.label for s in after] == [s.label for s in before]
    assert [s.meta["probabilities"] for s in after] == [s.meta["probabilities"] for s in before]


def test_own_split_when_the_fit_set_has_no_validation_part(tmp_path):
    from methods.skintone.common import prepare_fit_data

    data = prepare_fit_data(_fit_set(10, tag=False), 32, 0.2, seed=3)
    assert data.split_source == "own"
    assert sorted(data.val_y.tolist()) == [0, 0, 1, 1, 2, 2] and len(data.train_y) == 24
    tagged = prepare_fit_data(_fit_set(12), 32, 0.2, seed=3)
    assert tagged.split_source == "task" and len(tagged.val_y) == 9
    with pytest.raises(ValueError, match="skin-tone label"):
        prepare_fit_data([Sample(image=torch.rand(3, 8, 8))], 16, 0.2, seed=0)


def test_paper_variant_needs_local_imagenet_weights(tmp_path):
    from bench.metrics.extractors import MissingWeightsError

    cnn = VGG16(SkinToneConfig(weights_dir=str(tmp_path), max_epochs=1))
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        cnn.fit(_fit_set(4), RunContext(work_dir=tmp_path, cache_dir=tmp_path / "cache"))
