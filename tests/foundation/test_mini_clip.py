"""The shipped mini-clip: loading, shapes, determinism, tokenizer coverage and placeholders."""
import pytest
import torch

from bench.diffusion.models import ModelError, load_mini_clip
from bench.foundation.mini_clip import contrastive_loss


@pytest.fixture(scope="module")
def clip():
    return load_mini_clip()


def test_image_and_text_embeddings(clip):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    gray = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img, img_gray = clip.image_embeddings(images), clip.image_embeddings(gray)
        txt = clip.text_embeddings(["a red circle", "a chest x ray with cardiomegaly"])
        tokens = clip.token_embeddings(["a red circle"])
    d = clip.model.config.projection_dim
    assert img.shape == (3, d) and img_gray.shape == (2, d) and txt.shape == (2, d)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    assert tokens.shape == (1, 77, clip.model.config.text_config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(clip.image_embeddings(images), img)  # deterministic
    with pytest.raises(ValueError, match="expects images"):
        clip.image_embeddings(torch.rand(3, 32, 32))


def test_mini_clip_matches_a_generic_caption_better_than_a_wrong_one(clip):
    from bench.data.generic_world import render_scene

    hits = 0
    for index in range(10):
        image, objects, caption = render_scene(7, "val", index, 32, n_objects=1)
        obj = objects[0]
        wrong = caption.replace(obj.colour, "blue" if obj.colour != "blue" else "red")
        with torch.no_grad():
            emb = clip.image_embeddings(torch.from_numpy(image).permute(2, 0, 1)[None])
            scores = clip.text_embeddings([caption, wrong]) @ emb[0]
        hits += int(scores[0] > scores[1])
    assert hits >= 8


def test_tokenizer_covers_the_worlds_and_accepts_placeholders(clip):
    from bench.data.derm_mini import caption, render

    tok = clip.tokenizer
    for word in ("circle", "lesion", "skin", "cardiomegaly", "effusion", "mushroom", "globules"):
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    text = caption(render(2018, 0, 0, 32)[2])
    pieces = tok.convert_ids_to_tokens(tok(text).input_ids)
    assert all(p.endswith("</w>") or p.startswith("<|") for p in pieces), pieces  # every derm word is one token
    tok.add_tokens(["<lesion>"])
    assert "<lesion>" in tok.convert_ids_to_tokens(tok("a <lesion> on skin").input_ids)


def test_contrastive_loss_reference():
    img = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.T
    ref = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(4))
                 + torch.nn.functional.cross_entropy(logits.T, torch.arange(4)))
    torch.testing.assert_close(contrastive_loss(img, txt, scale), ref)
    torch.testing.assert_close(contrastive_loss(img, txt, scale, torch.arange(4)), ref)  # distinct groups = plain


def test_missing_weights_are_one_clear_line(tmp_path):
    with pytest.raises(ModelError) as err:
        load_mini_clip(tmp_path)
    assert "bench foundation train mini-clip" in str(err.value) and "\n" not in str(err.value)
