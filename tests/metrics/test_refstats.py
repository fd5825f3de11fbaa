import numpy as np
import pytest
import torch

from bench.metrics.image import FrechetDistance, GaussianStats
from bench.metrics.refstats import load_reference_stats, reference_key, reference_stats, save_reference_stats, stats_path


class Pool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += x.shape[0]
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def test_key_is_built_in_one_place():
    assert reference_key("ISIC2018 task1", "test", "inception-v3", 256) == "isic2018_task1__test__inception-v3__256"
    assert reference_key("d", "s", "e", 64) != reference_key("d", "s", "e", 128)
    assert reference_key("d", "s", "e", 64, extra="resize=bicubic").endswith("__resize=bicubic")
    with pytest.raises(ValueError):
        reference_key("", "s", "e", 64)


def test_cache_roundtrip_and_no_silent_overwrite(tmp_path):
    s = GaussianStats(keep_features=True)
    s.update(np.random.default_rng(0).normal(size=(10, 3)))
    save_reference_stats(tmp_path, "k", s)
    assert stats_path(tmp_path, "k").suffix == ".npz"
    back = load_reference_stats(tmp_path, "k")
    assert back.n == 10 and np.allclose(back.cov(), s.cov()) and np.allclose(back.features, s.features)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_reference_stats(tmp_path, "k", s)
    save_reference_stats(tmp_path, "k", s, overwrite=True)
    assert load_reference_stats(tmp_path, "missing") is None


def test_second_evaluation_extracts_only_generated(tmp_path):
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(20, 3, 8, 8, generator=g), torch.rand(20, 3, 8, 8, generator=g)
    key = reference_key("toy", "test", "pool", 8)
    ext = Pool()
    first = reference_stats(tmp_path, key, ext, lambda: real)
    assert ext.calls == 20
    loaded = []
    second = reference_stats(tmp_path, key, ext, lambda: loaded.append(1) or real)
    assert ext.calls == 20 and not loaded  # cache hit: real images neither loaded nor extracted
    fd = FrechetDistance(ext, "pool")
    fd.set_reference(second)
    fd.update(fake, real=False)
    direct = FrechetDistance(Pool(), "pool")
    direct.update(real, real=True)
    direct.update(fake, real=False)
    assert fd.compute()["fd[pool]"] == pytest.approx(direct.compute()["fd[pool]"], abs=1e-9)
    assert np.allclose(first.mean(), second.mean())
