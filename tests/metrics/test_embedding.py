import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from bench.metrics.embedding import (
    EmbeddingScorer,
    clip_i_sync,
    cosine_matrix,
    embedding_key,
    masked_images,
    mean_pairwise_cosine,
    paired_cosine,
    strip_identifiers,
)


def test_cosine_against_sklearn():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 7, generator=g), torch.randn(3, 7, generator=g)
    ref = cosine_similarity(a.numpy(), b.numpy())
    assert torch.allclose(cosine_matrix(a, b), torch.from_numpy(ref).double(), atol=1e-6)
    assert mean_pairwise_cosine(a, b) == pytest.approx(ref.mean(), abs=1e-6)
    assert torch.allclose(paired_cosine(a[:3], b), torch.nn.functional.cosine_similarity(a[:3], b).double(), atol=1e-6)
    assert mean_pairwise_cosine(a, a * 3.0) != pytest.approx(1.0)  # all pairs, not only the diagonal
    assert paired_cosine(a, a * 3.0).tolist() == pytest.approx([1.0] * 4)
    with pytest.raises(ValueError):
        mean_pairwise_cosine(a[:0], b)


def test_strip_identifiers_and_keys():
    assert strip_identifiers("a photo of [V1] dog and <new2> cat", ["[V1]", "<new2>"]) == "a photo of dog and cat"
    assert strip_identifiers("sks on the beach", ["sks"], {"sks": "dog"}) == "dog on the beach"
    assert strip_identifiers("asks sks", ["sks"]) == "asks"  # whole tokens only
    assert embedding_key("clip_i", "clip-vit-l-14") == "clip_i"
    assert embedding_key("clip_i", "mini-clip", masked=True) == "clip_i[mini-clip,masked]"
    assert embedding_key("dino", "dinov2-base", masked=True) == "dino[masked]"
    assert clip_i_sync(0.61, 0.55) == pytest.approx(0.06)


def test_masked_images_fill_and_crop():
    imgs = torch.rand(2, 3, 6, 6)
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[:, 1:3, 2:5] = True
    out = masked_images(imgs, masks, fill=0.5)
    assert torch.equal(out[:, :, 1:3, 2:5], imgs[:, :, 1:3, 2:5]) and (out[:, :, 0] == 0.5).all()
    crops = masked_images(imgs, masks, crop=True)
    assert [c.shape for c in crops] == [torch.Size([3, 2, 3])] * 2
    with pytest.raises(ValueError, match="empty"):
        masked_images(imgs, torch.zeros(2, 6, 6, dtype=torch.bool), crop=True)


def test_scorer_with_tiny_clip(tiny_clip_dir):
    from bench.metrics.extractors import load_clip

    clip = load_clip(tiny_clip_dir)
    g = torch.Generator().manual_seed(1)
    gen, ref = torch.rand(3, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    scorer = EmbeddingScorer(clip["image"], "clip-vit-l-14")
    with torch.no_grad():
        expected = mean_pairwise_cosine(clip["image"](gen), clip["image"](ref))
    assert scorer.image_similarity(gen, ref) == {"clip_i": pytest.approx(expected, abs=1e-9)}
    dino_like = EmbeddingScorer(clip["image"], "dinov2-base", metric="dino")
    with torch.no_grad():
        paired_expected = float(paired_cosine(clip["image"](gen[:2]), clip["image"](ref)).mean())
    assert dino_like.image_similarity(gen[:2], ref, paired=True) == {"dino[paired]": pytest.approx(paired_expected, abs=1e-9)}
    masks = torch.ones(3, 32, 32, dtype=torch.bool)
    out = scorer.image_similarity(gen, ref, masks, torch.ones(2, 32, 32, dtype=torch.bool))
    assert out["clip_i[masked]"] == pytest.approx(expected, abs=1e-6)  # a full mask changes nothing
    t = EmbeddingScorer(clip["image_projected"], "clip-vit-l-14", text_encoder=clip["text"])
    prompts = ["a photo of [V1] dog", "[V1] on grass", "a [V1] in snow"]
    value = t.text_similarity(gen, prompts, identifiers=["[V1]"])["clip_t"]
    with torch.no_grad():
        manual = paired_cosine(clip["image_projected"](gen), clip["text"](["a photo of dog", "on grass", "a in snow"])).mean()
    assert value == pytest.approx(float(manual), abs=1e-9)
    with pytest.raises(ValueError, match="prompts"):
        t.text_similarity(gen, prompts[:2])
