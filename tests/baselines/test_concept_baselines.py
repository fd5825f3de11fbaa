"""Chapter-3 baselines (custom-diffusion, disendiff, break-a-scene) on a tiny random SD folder: which tensors each
trains (gradient routing), DisenDiff's calibration maths, Custom Diffusion's K/V path against diffusers' own
``CustomDiffusionAttnProcessor``, and the Table 3.5 score / save-load round trip."""
import pytest
import torch

from bench.interface import Condition, RunContext, Sample

WORDS = ["a", "photo", "of", "and", "cat", "dog", "animal", "ktn", "pll"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "stable-diffusion-2-1-base", words=WORDS)


def _scene():
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, :, :16] = True
    masks[1, :, 16:] = True
    return Sample(image=torch.rand(3, 32, 32), meta={"scene": "s", "placeholders": ["<new1>", "<new2>"],
                                                     "class_words": ["cat", "dog"], "object_masks": masks})


def _fit(cls, tiny_sd, **options):
    cfg = cls.Config(backbone=str(tiny_sd), resolution=32, cross_res=16, sample_steps=2, generate_batch=4,
                     **{"steps": 3, **options})
    method = cls(cfg)
    method._ensure_model()
    unet0 = {n: p.detach().clone() for n, p in method.parts.unet.named_parameters()}
    text0 = {n: p.detach().clone() for n, p in method.parts.text_encoder.named_parameters()}
    table0 = method.embedding_table().detach().clone()
    method.fit([_scene()], RunContext())
    method._apply("s")
    unet = {n for n, p in method.parts.unet.named_parameters() if not torch.equal(unet0[n], p.detach())}
    text = {n for n, p in method.parts.text_encoder.named_parameters()
            if p.shape == text0[n].shape and not torch.equal(text0[n], p.detach())}
    table = method.embedding_table().detach()
    tok = method.parts.tokenizer
    ids = tok.convert_tokens_to_ids(["<new1>", "<new2>"])
    old_rows_moved = [i for i in range(table0.shape[0]) if not torch.equal(table0[i], table[i])]
    init = method.init_words(["<new1>", "<new2>"], ["cat", "dog"])
    placeholders_moved = [i for i, w in zip(ids, init)
                          if not torch.allclose(table[i], table[tok(w, add_special_tokens=False).input_ids].mean(0))]
    return method, unet, text, old_rows_moved + placeholders_moved, ids


def test_custom_diffusion_trains_only_cross_kv_and_placeholder_rows(tiny_sd):
    from baselines.custom_diffusion import CustomDiffusion

    method, unet, text, rows, ids = _fit(CustomDiffusion, tiny_sd)
    assert unet and all(".attn2.to_k." in n or ".attn2.to_v." in n for n in unet)
    assert text <= {"text_model.embeddings.token_embedding.weight"}
    assert set(rows) <= set(ids)
    assert method.scenes["s"]["info"]["init_words"] == ["ktn", "pll"]  # rare-token initialisation


def test_break_a_scene_phase_one_trains_embeddings_only(tiny_sd):
    from baselines.break_a_scene import BreakAScene

    method, unet, text, rows, ids = _fit(BreakAScene, tiny_sd, phase1_steps=3, steps=0)
    assert not unet and text <= {"text_model.embeddings.token_embedding.weight"}
    assert rows and set(rows) <= set(ids)
    _, unet2, text2, _, _ = _fit(BreakAScene, tiny_sd, phase1_steps=0, steps=3)
    assert unet2 and all(".attn2.to_k." in n or ".attn2.to_v." in n for n in unet2)
    assert any("encoder.layers" in n for n in text2)  # phase 2 tunes the text encoder (thesis)


def test_break_a_scene_needs_masks_and_reports_table_3_5_scores(tiny_sd, tmp_path):
    from baselines.break_a_scene import BreakAScene
    from bench.data.base import DataError

    method, *_ = _fit(BreakAScene, tiny_sd, phase1_steps=1, steps=1, token_init="P-G", score_timesteps=(0, 40))
    assert method.init_words(["<new1>", "<new2>"], ["cat", "dog"]) == ["cat", "animal"]
    method.save(tmp_path)
    cond = [Condition(prompt="a photo of <new1> cat", meta={"scene": "s", "index": 0, "report_masks": True,
                                                            "placeholders": ["<new1>", "<new2>"],
                                                            "class_words": ["cat", "dog"]})]
    first = list(method.generate(cond, RunContext()))[0]
    assert first.prompt == "a photo of <new1>"  # no class nouns
    scores = first.meta["max_ca_scores"]
    assert len(scores) == 2 and all(0 < s <= 1 for s in scores)
    assert torch.tensor(first.meta["attention_masks"]).shape == (2, 16, 16)
    again = BreakAScene(method.config)
    again.load(tmp_path)
    assert torch.allclose(list(again.generate(cond, RunContext()))[0].image, first.image, atol=1e-5)
    bare = BreakAScene(method.config)
    sample = _scene()
    del sample.meta["object_masks"]
    with pytest.raises(DataError, match="fit_masks"):
        bare.fit([sample], RunContext())


def test_disendiff_calibration_maths():
    from baselines.disendiff.method import calibration_loss, soft_iou

    a = torch.zeros(4, 4)
    a[:, :2] = 1
    b = torch.zeros(4, 4)
    b[:, 1:3] = 1
    assert float(soft_iou(a, a)) == pytest.approx(1.0)
    assert float(soft_iou(a, b)) == pytest.approx(4 / 12)
    tokens, classes = torch.stack([a, b]), torch.stack([a, b])
    # identifiers on their classes: only the overlap of the two classes is penalised
    assert float(calibration_loss(tokens, classes)) == pytest.approx(4 / 12)
    assert float(calibration_loss(tokens.flip(0), classes, between=False)) == pytest.approx(2 * (1 - 4 / 12))


def test_disendiff_trains_kv_and_needs_class_nouns(tiny_sd):
    from baselines.disendiff import DisenDiff, DisenDiffConfig
    from bench.config import ConfigError

    _, unet, text, rows, ids = _fit(DisenDiff, tiny_sd)
    assert unet and all(".attn2.to_k." in n or ".attn2.to_v." in n for n in unet) and set(rows) <= set(ids)
    with pytest.raises(ConfigError, match="class_nouns"):
        DisenDiffConfig(class_nouns=False).validate()


def test_kv_path_matches_diffusers_custom_diffusion_processor(tiny_sd):
    """Training attn2.to_k / to_v in place with the start token detached is diffusers' CustomDiffusionAttnProcessor
    (train_kv, copies initialised from to_k / to_v): same output, same K/V gradients."""
    from diffusers.models.attention_processor import CustomDiffusionAttnProcessor

    from bench.diffusion.customize import install_store
    from bench.diffusion.models import load_sd

    parts = load_sd(tiny_sd)
    unet = parts.unet
    torch.manual_seed(0)
    x, t = torch.randn(1, 4, 16, 16), torch.tensor([10])
    cond = parts.encode_prompt(["a photo of cat and dog"]).detach()

    procs = {}
    for name in unet.attn_processors:
        module = unet.get_submodule(name[:-len(".processor")])
        if ".attn2" in name:
            proc = CustomDiffusionAttnProcessor(train_kv=True, train_q_out=False, hidden_size=module.to_q.out_features,
                                                cross_attention_dim=module.to_k.in_features)
            proc.to_k_custom_diffusion.weight.data.copy_(module.to_k.weight)
            proc.to_v_custom_diffusion.weight.data.copy_(module.to_v.weight)
            procs[name] = proc
        else:
            from diffusers.models.attention_processor import AttnProcessor
            procs[name] = AttnProcessor()
    unet.set_attn_processor(dict(procs))  # diffusers pops the entries it installs
    theirs = unet(x, t, encoder_hidden_states=cond).sample
    theirs.square().mean().backward()
    name = next(n for n in procs if ".attn2" in n)
    grad_theirs = procs[name].to_k_custom_diffusion.weight.grad.clone()

    install_store(unet, None, fused=False, detach_sot=True)
    module = unet.get_submodule(name[:-len(".processor")])
    module.to_k.weight.requires_grad_(True)
    ours = unet(x, t, encoder_hidden_states=cond).sample
    ours.square().mean().backward()
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(module.to_k.weight.grad, grad_theirs, atol=1e-6)
