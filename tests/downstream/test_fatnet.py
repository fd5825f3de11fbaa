"""FAT-Net (bench/downstream/fatnet.py): shapes, the paper's widths and branches, shared FAM blocks, learning."""
import pytest
import torch

from bench.downstream import SEGMENTERS
from bench.downstream.fatnet import FAMBlock, FATNet


def test_shapes_and_size_check():
    model = SEGMENTERS.get("fat-net")(in_channels=3, base=8, depth=3)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.rand(2, 3, 36, 36))


def test_paper_widths_and_branches_at_base_64():
    """ResNet-34 levels (64/128/256/512, 3/4/6/3 blocks, no max-pool), DeiT-tiny (192 wide, 12 blocks, 3 heads)
    on 16 px patches, fused at the deepest level (2 x 512 -> 512), FAM repeats 6/4/2."""
    model = FATNet(base=64, depth=4)
    assert [len(stage) for stage in model.encoders] == [3, 4, 6, 3]
    assert [stage[-1].conv2.out_channels for stage in model.encoders] == [64, 128, 256, 512]
    assert model.patch_embed.kernel_size == (16, 16) and model.patch_embed.out_channels == 192
    assert len(model.blocks) == 12 and model.blocks[0].attn.num_heads == 3
    assert model.fuse.in_channels == 1024 and model.fuse.out_channels == 512
    assert model.fam_repeats == [6, 4, 2]
    feats = {}
    model.encoders[-1].register_forward_hook(lambda m, i, o: feats.update(cnn=o.shape))
    model.eval()(torch.rand(1, 3, 64, 64))
    assert feats["cnn"][-2:] == (4, 4)  # 64 / 2**4: the transformer's 16 px patch grid


def test_fam_blocks_are_shared_across_repetitions():
    model = FATNet(base=8, depth=4, tf_dim=12, tf_layers=1)
    assert len(model.fams) == 3 and all(isinstance(f, FAMBlock) for f in model.fams)
    n_fam = sum(p.numel() for p in model.fams.parameters())
    # one block (3x3 + 1x1 conv) per level, applied 6 / 4 / 2 times with the same weights
    assert n_fam == sum((9 * c * c + c) + (c * c + c) for c in (8, 16, 32))


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = FATNet(3, base=8, depth=2, tf_dim=12, tf_layers=1)
    images = torch.rand(8, 3, 16, 16)
    masks = (images.mean(1, keepdim=True) > 0.5).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
