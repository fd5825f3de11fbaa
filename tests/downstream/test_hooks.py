"""DiffBoost's random patch merging as a training-loop hook: masks stay aligned with images (issue 21)."""
import pytest
import torch

from bench.downstream.hooks import PatchMerge, augmented_arm, patch_mask
from bench.interface import Sample


def _pair_world(n=6, size=24, seed=0):
    """Real images whose pixel value encodes the mask (1 inside, 0 outside) and synthetic partners encoding it as
    0.5 / 0.25: a merged image must still be 'foreground' exactly where the merged mask is."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        r, c = torch.randint(0, size - 8, (2,), generator=g).tolist()
        masks[i, r:r + 8, c:c + 8] = True
    real = masks[:, None].float().expand(-1, 3, -1, -1).clone()
    syn = (0.25 + 0.25 * masks[:, None].float()).expand(-1, 3, -1, -1).clone()
    return real, masks, syn


@pytest.mark.parametrize("hflip", [False, True])
def test_merged_inputs_keep_masks_aligned(hflip):
    real, masks, syn = _pair_world()
    hook = PatchMerge(syn, masks.float()[:, None], [[i] for i in range(len(real))], alpha=0.5, patch_fraction=1 / 6)
    g = torch.Generator().manual_seed(1)
    seen = []
    for _ in range(20):
        idx = torch.tensor([0, 3, 5])
        xr, yr, xs, ys, m = hook.merge(idx, real, masks.float()[:, None], g, hflip=hflip)
        x = m * xr + (1 - m) * xs
        y = m * yr + (1 - m) * ys
        fg = (x[:, 0] == 1.0) | (x[:, 0] == 0.5)
        assert torch.equal(fg, y[:, 0] > 0.5)
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        seen.append(float(m.mean()))
    # both kinds of patches occur, in about alpha's proportion, on 4x4 cells (patch 4 at 24 px)
    assert 0.35 < sum(seen) / len(seen) < 0.65
    cells = m[:, 0].unfold(1, 4, 4).unfold(2, 4, 4)
    assert torch.all(cells.amax((-1, -2)) == cells.amin((-1, -2)))


def test_patch_mask_extremes_and_errors():
    g = torch.Generator().manual_seed(0)
    assert patch_mask(2, 12, 12, 1.0, 4, g).eq(1).all() and patch_mask(2, 12, 12, 0.0, 4, g).eq(0).all()
    with pytest.raises(ValueError, match="does not divide"):
        patch_mask(1, 10, 10, 0.5, 4, g)


def test_augmented_arm_reads_the_declaration_and_logit_mode_runs():
    real, masks, syn = _pair_world(n=4)
    spec = {"kind": "patch-merge", "alpha": 0.6, "patch_fraction": 1 / 6, "mode": "logit"}
    samples = [Sample(image=syn[i], mask=masks[i], meta={"source_id": f"r{i % 2}", "train_hook": spec})
               for i in range(4)]
    (x, y), hook = augmented_arm((real, masks), (syn, masks), ["r0", "r1", "r2", "r3"], samples)
    assert len(x) == 4 and hook.partners == [[0, 2], [1, 3], [], []] and hook.mode == "logit"
    (x2, _), none = augmented_arm((real, masks), (syn, masks), ["r0", "r1", "r2", "r3"],
                                  [Sample(image=syn[i], mask=masks[i]) for i in range(4)])
    assert none is None and len(x2) == 8
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    loss = hook.loss(model, torch.tensor([0, 1, 2]), real, masks.float()[:, None],
                     lambda logits, t: torch.nn.functional.binary_cross_entropy_with_logits(logits, t),
                     torch.Generator().manual_seed(0))
    loss.backward()
    assert model.weight.grad is not None and hook.merged == 2
