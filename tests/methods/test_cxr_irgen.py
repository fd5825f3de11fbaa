"""cxr-irgen (issue 20): prompts, reference selection, RIE fusion shapes, U-ViT, prior loss, and the language module
reconstructing held-out IU X-ray findings better than a unigram baseline (BLEU)."""
from collections import Counter

import pytest
import torch

from methods.cxr_irgen import language, vision
from methods.cxr_irgen.uvit import UViT, UViTDenoiser


def test_reference_bank_first_match_and_fallbacks():
    keys = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float32)
    images = torch.zeros(4, 3, 8, 8)
    bank = vision.ReferenceBank(keys, images, "closest")
    assert bank.lookup(torch.tensor([1.0, 0, 0])) == 0  # first in pool order
    assert bank.lookup(torch.tensor([0.0, 1, 1])) in (1, 3)  # one label away from both
    assert bank.lookup(torch.tensor([0.0, 1, 1])) == 1  # ties: pool order
    assert vision.ReferenceBank(keys, images, "zeros").lookup(torch.tensor([0.0, 0, 1])) is None


class _Tok:
    """A whitespace tokenizer standing in for CLIP's (padding to the longest or to max_length)."""

    def __call__(self, texts, padding, truncation, return_tensors, max_length=None):
        ids = [[1 + len(w) % 7 for w in t.split()] + [9] for t in texts]
        n = max_length or max(len(i) for i in ids)
        arr = torch.tensor([(i + [0] * n)[:n] for i in ids])
        return type("T", (), {"input_ids": arr})()


class _Text(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)

    @property
    def device(self):
        return self.emb.weight.device

    def forward(self, input_ids):
        h = self.emb(input_ids)
        return type("O", (), {"last_hidden_state": h, "pooler_output": h[:, -1]})()


class _Vision(torch.nn.Module):
    config = type("C", (), {"hidden_size": 8})()

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 8)

    @property
    def device(self):
        return self.proj.weight.device

    def forward(self, pixel_values):
        return type("O", (), {"pooler_output": self.proj(pixel_values.mean((2, 3)))})()


def test_rie_fusion_shapes_for_both_backbones():
    enc = vision.ClipEncoders(_Tok(), _Text(), _Vision(), 16)
    prompts = ["a b c", "a"]
    ref = enc.images(torch.rand(2, 1, 32, 32))
    assert ref.shape == (2, 8)
    unet_cond = vision.condition(enc, prompts, ref, "unet")
    assert unet_cond.shape == (2, 4 + 1, 8)  # longest prompt (3 words + end) + the image token
    assert torch.allclose(unet_cond[:, -1], ref)
    assert vision.condition(enc, prompts, None, "unet").shape == (2, 4, 8)
    assert vision.unconditional(enc, unet_cond, "unet").shape == (1, 5, 8)
    uvit_cond = vision.condition(enc, prompts, ref, "uvit")
    pooled = enc.text(prompts)[1]
    assert torch.allclose(uvit_cond[:, 0], (pooled + ref) / 2)
    den = UViTDenoiser(UViT(img_size=8, patch_size=2, in_chans=3, embed_dim=16, depth=2, num_heads=2), 8, 8)
    out = den(torch.randn(2, 3, 8, 8), torch.tensor([3, 900]), encoder_hidden_states=uvit_cond).sample
    assert out.shape == (2, 3, 8, 8)
    assert len(den.uvit.out_blocks) == 1 and den.uvit.out_blocks[0].skip_linear is not None


def test_prior_loss_is_mse_plus_lambda_one_minus_cos():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    mse = ((pred - target) ** 2).mean()
    cos = (pred * target).sum(1) / (pred.norm(dim=1) * target.norm(dim=1))
    assert language.prior_loss(pred, target) == pytest.approx(float(mse + 0.01 * (1 - cos).mean()), rel=1e-6)
    assert language.prior_loss(pred, target, "mse") == pytest.approx(float(mse), rel=1e-6)
    assert language.prior_loss(pred, target, "cosine") == pytest.approx(float((1 - cos).mean()), rel=1e-6)


def test_language_module_reconstructs_held_out_reports_better_than_unigrams(tmp_path, capsys):
    from bench.data.cxr_mini import report_pool
    from bench.metrics.text import bleu_scores, tokenize
    from bench.tasks.cxr import _iu_sections

    sections = _iu_sections()
    findings = lambda split: [t for t in dict.fromkeys(sections[r["id"]][0] for r in report_pool(split)) if t]  # noqa: E731
    train, held_out = findings("train")[:700], findings("test")[:60]
    torch.manual_seed(0)
    tok = language.train_tokenizer(train, 600, tmp_path / "tok")
    ae = language.ReportAutoencoder(language.make_bart(tok, 64, 2, 4, 128, 64))
    ids, mask = language.tokenize(tok, train, 64)
    language.train_autoencoder(ae, ids, mask, epochs=5, batch_size=16, lr=2e-3, weight_decay=0.01, on_padding=True, seed=0)
    hid, hmask = language.tokenize(tok, held_out, 64)
    with torch.no_grad():
        memory = ae.encode(hid, hmask)
    recon = language.decode(ae, tok, memory, "greedy", 64, stop_at_eos=True)
    # unigram baseline: the training corpus' most frequent words, as many as a mean training report has
    counts = Counter(w for t in train for w in tokenize(t))
    length = round(sum(len(tokenize(t)) for t in train) / len(train))
    unigram = " ".join(w for w, _ in counts.most_common(length))
    ours, base = bleu_scores(held_out, recon), bleu_scores(held_out, [unigram] * len(held_out))
    with capsys.disabled():
        print(f"\nheld-out findings BLEU-1..4: autoencoder {[round(ours[f'bleu{n}'], 3) for n in range(1, 5)]}, "
              f"unigram {[round(base[f'bleu{n}'], 3) for n in range(1, 5)]}")
    # BLEU-1 of the frequent-word bag is close to the autoencoder's (common words are most of a findings text);
    # every longer n-gram order separates them
    for n in (2, 3, 4):
        assert ours[f"bleu{n}"] > base[f"bleu{n}"] + 0.05


def test_fit_save_load_generate_round_trip(tmp_path):
    """A tiny fit on cxr-mini: pairs from label vectors, reports for given images, identical after save / load."""
    from bench.data.cxr_mini import CxrMini
    from bench.interface import Condition, RunContext
    from bench.tasks.cxr import with_sections
    from methods.cxr_irgen import CxrIrgen, CxrIrgenConfig

    train = [with_sections(s) for s in CxrMini(sizes={"train": 24}).load("train")]
    cfg = CxrIrgenConfig(base_model="mini-sd", clip_vision="mini-clip", steps=2, batch_size=4, lr=1e-4, resolution=32,
                         sample_steps=2, guidance_scale=3.0, generate_batch=4, bart="scratch", vocab_size=300,
                         bart_d_model=32, bart_layers=1, bart_heads=2, bart_ffn=64, max_length=32, bart_epochs=1,
                         bart_batch_size=8, prior_layers=1, prior_heads=2, prior_patch=4, prior_epochs=1,
                         decoding="greedy", max_new_tokens=16)
    ctx = RunContext(work_dir=tmp_path / "fit", seed=1)
    method = CxrIrgen(cfg)
    method.fit(train, ctx)
    conds = [Condition(labels=s.labels, meta={"index": i}) for i, s in enumerate(train[:2])]
    pairs = list(method.generate(conds, ctx))
    assert all(p.image.shape == (3, 32, 32) and isinstance(p.report, str) for p in pairs)
    given = [Condition(labels=s.labels, reference=s.image, meta={"index": i}) for i, s in enumerate(train[2:4])]
    reports = [s.report for s in method.generate(given, ctx)]
    (tmp_path / "state").mkdir()
    method.save(tmp_path / "state")
    again = CxrIrgen(cfg)
    again.load(tmp_path / "state")
    assert [s.report for s in again.generate(given, ctx)] == reports
    assert all(torch.equal(a.image, b.image) for a, b in zip(again.generate(conds, ctx), pairs))


@pytest.mark.parametrize("backbone", ["unet", "uvit"])
def test_condition_dropout_swaps_in_the_cfg_branch_and_is_off_by_default(backbone):
    from bench.diffusion.models import load_mini_clip, load_mini_sd
    from methods.cxr_irgen import vision

    parts = load_mini_sd()
    tower = load_mini_clip().model.vision_model
    encoders = vision.ClipEncoders(parts.tokenizer, parts.text_encoder, tower, 32)
    prompts = ["A chest X-Ray image with lung opacity", "A chest X-Ray image with no finding"] * 16
    refs = torch.randn(len(prompts), parts.text_encoder.config.hidden_size)

    def labelled(idx):
        return vision.condition(encoders, [prompts[int(i)] for i in idx], refs[idx], backbone)

    assert vision.with_condition_dropout(labelled, encoders, backbone, 0.0, seed=3) is labelled
    idx = torch.arange(len(prompts))
    full = labelled(idx)
    uncond = vision.unconditional(encoders, full, backbone)[0]
    out = vision.with_condition_dropout(labelled, encoders, backbone, 0.5, seed=3)(idx)
    dropped = [torch.equal(out[k], uncond) for k in range(len(idx))]
    kept = [torch.equal(out[k], full[k]) for k in range(len(idx))]
    assert all(d != k for d, k in zip(dropped, kept)) and 6 <= sum(dropped) <= 26, sum(dropped)
    again = vision.with_condition_dropout(labelled, encoders, backbone, 0.5, seed=3)(idx)
    assert torch.equal(again, out)
