"""Pix2Pix (DiffBoost Table I baseline): the paper's networks, seeded test-time dropout, and what fit refuses."""
import pytest
import torch

from baselines.pix2pix import Pix2Pix, Pix2PixConfig
from baselines.pix2pix.model import PatchDiscriminator, UNetGenerator, receptive_field
from bench.interface import Condition, RunContext, Sample


def test_paper_networks_have_the_authors_sizes():
    # the authors' code prints 54.414 M parameters for unet_256 (3 -> 3 channels) and 2.769 M for the 70x70
    # PatchGAN "basic" D on 6 channels
    assert sum(p.numel() for p in UNetGenerator(3, 3, 8, 64).parameters()) == 54_413_955
    d = PatchDiscriminator(6, 64, 3)
    assert sum(p.numel() for p in d.parameters()) == 2_768_705
    assert receptive_field(3) == 70 and receptive_field(1) == 16
    assert PatchDiscriminator(4, 4, 3)(torch.zeros(1, 4, 256, 256)).shape == (1, 1, 30, 30)


def test_train_mode_generation_is_seeded_per_condition_and_one_image_at_a_time():
    method = Pix2Pix(Pix2PixConfig(resolution=32, num_downs=5, ngf=8, ndf=8, n_layers_d=1))
    edges = [(torch.rand(3, 32, 32) > 0.8).float() for _ in range(3)]
    conds = [Condition(edges=e, meta={"index": i}) for i, e in enumerate(edges)]
    ctx = RunContext()
    together = [s.image for s in method.generate(conds, ctx)]
    alone = next(iter(method.generate(conds[2:], ctx))).image
    assert torch.equal(together[2], alone)  # not a function of the other images of the batch
    again = next(iter(method.generate([Condition(edges=edges[2], meta={"index": 5})], ctx))).image
    assert not torch.equal(alone, again)  # dropout noise differs per condition index
    assert together[0].shape == (3, 32, 32) and 0 <= float(together[0].min()) <= float(together[0].max()) <= 1


def test_fit_needs_edge_maps_and_learns(tmp_path, monkeypatch):
    method = Pix2Pix(Pix2PixConfig(resolution=32, num_downs=5, ngf=8, ndf=8, n_layers_d=1, epochs=3, decay_epochs=0,
                                   batch_size=2, norm="instance"))
    with pytest.raises(ValueError, match=r"training sample 0 lacks an image or meta\['edges'\]"):
        method.fit([Sample(image=torch.rand(3, 32, 32))], RunContext())
    gen = torch.Generator().manual_seed(0)
    train = []
    for _ in range(6):
        image = torch.rand(3, 32, 32, generator=gen)
        train.append(Sample(image=image, meta={"edges": (image.mean(0, keepdim=True) > 0.5).float().expand(3, -1, -1)}))
    method.fit(train, RunContext())
    import baselines.pix2pix.method as module

    monkeypatch.setattr(module, "PRELOAD_LIMIT", 2)  # a large fit set is read batch by batch: the same training
    streamed = Pix2Pix(method.config)
    streamed.fit(train, RunContext())
    assert all(torch.equal(a, b) for a, b in zip(method.generator.state_dict().values(),
                                                 streamed.generator.state_dict().values()))
    l1 = [row["g_l1"] for row in method.log]
    assert len(l1) == 9 and sum(l1[-3:]) < sum(l1[:3])
    method.save(tmp_path / "p")
    loaded = Pix2Pix(method.config)
    loaded.load(tmp_path / "p")
    cond = [Condition(edges=train[0].meta["edges"], meta={"index": 0})]
    assert torch.equal(next(iter(method.generate(cond, RunContext()))).image,
                       next(iter(loaded.generate(cond, RunContext()))).image)
