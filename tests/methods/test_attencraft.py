"""AttenCraft unit tests: synthetic mask creation (spec 7.1.3), ratios (7.1.4), sampler (7.1.5), losses and
gradient routing (7.1.6) on a tiny random SD folder in the real layout."""
import numpy as np
import pytest
import torch

from methods.attencraft.masks import attention_score, delta_masks, minmax, propagate, sample_subset, sampling_ratios


def _blob(side, cy, cx, sigma):
    yy, xx = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def _scene(side=16):
    """Two square objects, their block-diagonal self-attention, and Gaussian cross maps centred on them."""
    truth = torch.zeros(2, side, side, dtype=torch.bool)
    truth[0, 3:9, 2:7] = True
    truth[1, 7:13, 9:15] = True
    labels = torch.full((side * side,), 2)
    for k in range(2):
        labels[truth[k].flatten()] = k
    self_attn = (labels[:, None] == labels[None, :]).float()
    self_attn = self_attn / self_attn.sum(1, keepdim=True)
    cross = torch.stack([_blob(side // 2, 2.5, 2.0, 1.2), _blob(side // 2, 4.5, 5.5, 1.2)])
    return truth, self_attn, cross


def test_delta_masks_recover_blocks_and_are_exclusive():
    truth, self_attn, cross = _scene()
    maps = propagate(cross, self_attn, nu=2, tau=4, self_power_mode="matrix")
    masks = delta_masks(maps, None, 0.1)
    assert not (masks[0] & masks[1]).any()
    for k in range(2):
        iou = (masks[k] & truth[k]).sum() / (masks[k] | truth[k]).sum()
        assert iou > 0.95
    # without self-attention the Gaussian blobs do not follow the square borders
    plain = delta_masks(propagate(cross, None, side=16), None, 0.1)
    plain_iou = (plain[0] & truth[0]).sum() / (plain[0] | truth[0]).sum()
    assert plain_iou < 0.95


def test_gamma_nu_and_power_mode_switches():
    truth, self_attn, cross = _scene()
    maps = propagate(cross, self_attn)
    assert delta_masks(maps, None, 0.0).sum() >= delta_masks(maps, None, 0.5).sum() > 0
    assert delta_masks(maps, None, 1.0).sum() == 0  # normalised maps differ by at most 1
    element = propagate(cross, self_attn, self_power_mode="elementwise")
    assert not torch.allclose(element, maps)
    with pytest.raises(ValueError):
        propagate(cross, self_attn, self_power_mode="other")
    # nu = 1 vs 2 changes the suppressed maps (before enhancement)
    assert not torch.allclose(propagate(cross, None, nu=1, side=16), propagate(cross, None, nu=2, side=16))


def test_background_competitor_removes_background_pixels():
    truth, self_attn, cross = _scene()
    maps = propagate(cross, self_attn)
    background = minmax((~truth.any(0)).float())
    with_bg = delta_masks(maps, background, 0.1)
    assert with_bg.sum() <= delta_masks(maps, None, 0.1).sum()
    assert not (with_bg.any(0) & ~truth.any(0)).any()


def test_sampling_ratios_match_the_spec_vectors():
    assert sampling_ratios([0.039, 0.020]).tolist() == pytest.approx([0.420, 0.580], abs=1e-3)
    assert sampling_ratios([0.040, 0.005]).tolist() == pytest.approx([0.315, 0.685], abs=1e-3)
    assert sampling_ratios([1.0, 0.0]).tolist() == pytest.approx([0.269, 0.731], abs=1e-3)
    assert sampling_ratios([0.039, 0.020], "equal").tolist() == [0.5, 0.5]
    assert sampling_ratios([0.039, 0.020], "no-softmax").tolist() == pytest.approx([0.339, 0.661], abs=1e-3)
    three = sampling_ratios([0.3, 0.2, 0.1])
    assert float(three.sum()) == pytest.approx(1.0)
    assert three[0] < three[1] < three[2]


def test_attention_score_is_masked_top_n_mean_over_timesteps():
    a1 = torch.zeros(4, 4)
    a1[0, :4] = torch.tensor([0.9, 0.8, 0.7, 0.6])
    a1[3, 3] = 5.0  # outside the mask
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0] = True
    a2 = a1 * 0.5
    assert attention_score([a1, a2], mask, top_n=2) == pytest.approx((0.85 + 0.425) / 2)


def test_adaptive_ratios_differ_when_concepts_differ_in_learnability():
    """A concept whose token attends strongly (easy) is sampled less than a weak one; equal scores give 1/2."""
    _, _, cross = _scene()
    mask = torch.ones(8, 8, dtype=torch.bool)
    strong = attention_score([cross[0] * 0.04], mask)
    weak = attention_score([cross[1] * 0.01], mask)
    r = sampling_ratios([strong, weak])
    assert r[0] < 0.45 and r[1] > 0.55
    assert sampling_ratios([strong, strong]).tolist() == pytest.approx([0.5, 0.5])


def test_sampler_frequencies():
    rng = np.random.default_rng(0)
    draws = [sample_subset(rng, [0.3, 0.7], omega=0.3) for _ in range(20000)]
    multi = np.mean([len(d) == 2 for d in draws])
    singles = [d[0] for d in draws if len(d) == 1]
    assert multi == pytest.approx(0.3, abs=0.015)
    assert np.mean(singles) == pytest.approx(0.7, abs=0.015)
    three = [sample_subset(rng, [0.2, 0.3, 0.5], omega=1.0) for _ in range(500)]
    assert {len(d) for d in three} == {2, 3}


def test_losses():
    from methods.attencraft.train import attention_loss, masked_rec_loss

    masks = torch.zeros(1, 4, 4)
    masks[0, :2] = 1
    assert float(attention_loss(masks * 0.03, masks)) == pytest.approx(0.0)
    assert float(attention_loss(1 - masks, masks)) == pytest.approx(1.0)
    assert float(attention_loss(masks * 0.03, masks, "jsd")) < float(attention_loss(1 - masks, masks, "jsd"))
    pred, target = torch.ones(1, 4, 4, 4), torch.zeros(1, 4, 4, 4)
    assert float(masked_rec_loss(pred, target, masks[None])) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "stable-diffusion-2-1-base",
                        words=["a", "photo", "of", "and", "cat", "dog"])


def _fit(tiny_sd, **options):
    from bench.interface import RunContext, Sample
    from methods.attencraft import AttenCraft, AttenCraftConfig

    cfg = AttenCraftConfig(backbone=str(tiny_sd), resolution=32, steps=3, cross_res=16, self_res=16,
                           score_timesteps=(0, 40), sample_steps=2, **options)
    method = AttenCraft(cfg)
    method._ensure_model()
    before = {n: p.detach().clone() for n, p in method.parts.unet.named_parameters()}
    image = torch.rand(3, 32, 32)
    sample = Sample(image=image, meta={"scene": "s", "placeholders": ["<new1>", "<new2>"],
                                       "class_words": ["cat", "dog"]})
    method.fit([sample], RunContext())
    method._apply("s")
    after = dict(method.parts.unet.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    return method, changed


def _last_value_weight(method):
    """W_v of the last cross-attention layer in forward order (its output reaches only the UNet output; earlier
    layers' W_v shape later layers' queries, so L_attn does reach them)."""
    names = [n for n, _ in method.parts.unet.named_parameters() if n.endswith("attn2.to_v.weight")]
    up = [n for n in names if n.startswith("up_blocks")]
    return sorted(up)[-1]


def test_gradient_routing_on_multi_concept_steps(tiny_sd):
    """omega = 1: every step is multi-concept and back-propagates L_attn only. L_attn depends on the maps, not on
    the value projection of the last cross-attention layer nor on the output, so that W_v stays unchanged; with
    "w/ L_rec" it changes. Nothing outside cross-attention K/V ever changes."""
    method, changed = _fit(tiny_sd, omega=1.0)
    assert changed and all(".attn2.to_k" in n or ".attn2.to_v" in n for n in changed)
    last_v = _last_value_weight(method)
    assert last_v not in changed
    assert any(n.endswith("attn2.to_k.weight") for n in changed)
    _, with_rec = _fit(tiny_sd, omega=1.0, use_rec_loss=True)
    assert last_v in with_rec


def test_single_concept_steps_train_values_and_tokens(tiny_sd):
    method, changed = _fit(tiny_sd, omega=0.0)
    last_v = _last_value_weight(method)
    assert last_v in changed
    tok, table = method.parts.tokenizer, method.parts.text_encoder.get_input_embeddings().weight
    ids = tok.convert_tokens_to_ids(["<new1>", "<new2>"])
    cat = table[tok("cat", add_special_tokens=False).input_ids].mean(0)
    assert not torch.allclose(table[ids[0]], cat)          # placeholder row trained
    other = tok("photo", add_special_tokens=False).input_ids[0]
    fresh = type(method)(method.config)
    fresh._ensure_model()
    assert torch.equal(table[other], fresh.parts.text_encoder.get_input_embeddings().weight[other])


def test_save_load_generate_roundtrip(tiny_sd, tmp_path):
    from bench.interface import Condition, RunContext

    method, _ = _fit(tiny_sd, omega=0.3)
    method.save(tmp_path)
    cond = [Condition(prompt="a photo of <new1> cat", meta={"scene": "s", "index": 0, "report_masks": True,
                                                            "placeholders": ["<new1>", "<new2>"],
                                                            "class_words": ["cat", "dog"]})]
    first = list(method.generate(cond, RunContext()))[0]
    assert first.prompt == "a photo of <new1>"  # class noun dropped (class_nouns=False)
    assert torch.tensor(first.meta["attention_masks"]).shape == (2, 16, 16)
    from methods.attencraft import AttenCraft

    again = AttenCraft(method.config)
    again.load(tmp_path)
    second = list(again.generate(cond, RunContext()))[0]
    assert torch.allclose(first.image, second.image, atol=1e-5)
