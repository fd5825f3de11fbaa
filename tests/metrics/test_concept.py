"""Concept-task scores (spec section 3) against direct computation, with tiny random CLIP / DINO folders."""
import pytest
import torch

from bench.metrics.concept import (clip_t_text, colour_coverage, concept_key, distinctive_colours,
                                   load_concept_encoders, mask_iou, scene_scores)


def test_clip_t_text_replaces_or_strips_identifiers():
    tokens, words = ["<new1>", "<new2>"], ["cat", "dog"]
    assert clip_t_text("<new1> cat and <new2> dog on a beach", tokens, words) == "cat and dog on a beach"
    assert clip_t_text("a photo of <new1> and <new2>", tokens, words) == "a photo of cat and dog"
    assert clip_t_text("<new1> cat wearing a hat", tokens, words, "strip") == "cat wearing a hat"
    assert clip_t_text("a photo of <new1>", tokens, words, "strip") == "a photo of"


def test_keys():
    assert concept_key("clip_i", "", "single") == "clip_i[single]"
    assert concept_key("clip_i", "mini-clip", "group") == "clip_i[mini-clip,group]"
    assert concept_key("clip_i_sync", "") == "clip_i_sync"


def test_scene_scores_match_direct_cosines(tiny_clip_dir, tiny_dinov2_dir, tmp_path):
    (tmp_path / "clip-vit-large-patch14").symlink_to(tiny_clip_dir)
    (tmp_path / "dinov2-base").symlink_to(tiny_dinov2_dir)
    enc = load_concept_encoders("clip-vit-l-14", "pooler", "dinov2-base", tmp_path)
    g = torch.Generator().manual_seed(0)
    gen = {k: torch.rand(3, 3, 32, 32, generator=g) for k in ("subject1", "subject2", "global")}
    refs = {k: torch.rand(2, 3, 32, 32, generator=g) for k in gen}
    texts = {k: ["a cat", "a dog", "a cat and a dog"] for k in gen}
    out = scene_scores(enc, gen, texts, refs)

    def cos(a, b):
        a, b = torch.nn.functional.normalize(a.double(), dim=1), torch.nn.functional.normalize(b.double(), dim=1)
        return a @ b.T

    with torch.no_grad():
        ci = {k: float(cos(enc.clip_image(gen[k]), enc.clip_image(refs[k])).mean()) for k in gen}
        di = float(cos(enc.dino(gen["global"]), enc.dino(refs["global"])).mean())
        ct = float(cos(enc.clip_projected(gen["global"]), enc.clip_text(texts["global"])).diagonal().mean())
    assert out["clip_i[single]"] == pytest.approx((ci["subject1"] + ci["subject2"]) / 2)
    assert out["clip_i[group]"] == pytest.approx(ci["global"])
    assert out["clip_i_sync"] == pytest.approx(abs(ci["subject1"] - ci["subject2"]))
    assert out["dino[group]"] == pytest.approx(di)
    assert out["clip_t[group]"] == pytest.approx(ct)
    projected = load_concept_encoders("clip-vit-l-14", "projected", None, tmp_path)
    alt = scene_scores(projected, gen, texts, refs)
    assert "clip_i[projected,single]" in alt and not any(k.startswith("dino") for k in alt)
    assert alt["clip_i[projected,single]"] != pytest.approx(out["clip_i[single]"])


def test_dino_v1_folder(tmp_path):
    from transformers import ViTConfig, ViTModel

    from bench.metrics.concept import load_dino_v1

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=16), add_pooling_layer=False).save_pretrained(tmp_path / "dino-vitb16")
    model = load_dino_v1(weights_dir=tmp_path)
    assert model(torch.rand(2, 3, 40, 40)).shape == (2, 16)
    with pytest.raises(FileNotFoundError, match="dino-vitb16"):
        load_dino_v1(weights_dir=tmp_path / "nowhere")


def test_mini_clip_encoders_name_themselves():
    enc = load_concept_encoders("mini-clip", "pooler", None)
    assert enc.clip_tag == "mini-clip" and enc.dino is None
    images = torch.rand(2, 3, 64, 64)
    assert enc.clip_image(images).shape[0] == 2 and enc.clip_text(["a house"]).shape[0] == 1


def test_presence_and_leakage_colours():
    red = {"main": (0.9, 0.1, 0.1), "accent": (1.0, 1.0, 1.0)}
    blue = {"main": (0.1, 0.1, 0.9), "accent": (1.0, 1.0, 1.0)}
    colours = distinctive_colours(red, [blue])
    assert len(colours) == 1  # white is shared (and grey-like), so it tells nothing
    assert distinctive_colours({"main": (0.35, 0.2, 0.1), "accent": (0.9, 0.1, 0.1)}, [blue])[0].tolist() == \
        pytest.approx([0.9, 0.1, 0.1])  # brown sits near the grey backgrounds
    images = torch.full((2, 3, 10, 10), 0.5)
    images[0, :, :3, :3] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    assert colour_coverage(images, colours).tolist() == pytest.approx([0.09, 0.0])
    assert colour_coverage(images, []).tolist() == [0.0, 0.0]  # no distinctive colour: never found
    # the largest connected region counts, not scattered pixels: a checkerboard of the colour covers half the
    # image and has no region larger than one pixel
    board = torch.full((1, 3, 10, 10), 0.5)
    board[0, :, ::2, ::2] = board[0, :, 1::2, 1::2] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    assert colour_coverage(board, colours).tolist() == pytest.approx([0.01])


def test_mask_iou_resizes_truth():
    truth = torch.zeros(2, 8, 8, dtype=torch.bool)
    truth[0, :4, :4] = True
    truth[1, 4:, 4:] = True
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    pred[0, :2, :2] = True
    pred[1, :2, 2:] = True
    assert mask_iou(pred, truth) == pytest.approx([1.0, 0.0])
