"""baselines/real_random: uniform draw without replacement, shard-independent, restored from its saved pool."""
from __future__ import annotations

import torch

from baselines.real_random import RealRandom
from bench.interface import Condition, RunContext, Sample


def pool(n=20):
    g = torch.Generator().manual_seed(0)
    return [Sample(image=torch.rand(3, 6, 6, generator=g), mask=torch.rand(6, 6, generator=g) > 0.5, meta={"id": f"s{i}"})
            for i in range(n)]


def conds(n):
    return [Condition(mask=torch.zeros(6, 6, dtype=torch.bool), meta={"index": i}) for i in range(n)]


def test_draw_is_without_replacement_seeded_and_shard_independent(tmp_path) -> None:
    gen = RealRandom()
    gen.fit(pool(), RunContext(seed=1))
    whole = [s.meta["source_id"] for s in gen.generate(conds(12), RunContext(seed=1))]
    c = conds(12)
    sharded = [s.meta["source_id"] for part in (c[:5], c[5:]) for s in gen.generate(part, RunContext(seed=1))]
    assert whole == sharded and len(set(whole)) == 12
    other = [s.meta["source_id"] for s in gen.generate(conds(12), RunContext(seed=2))]
    assert other != whole
    gen.save(tmp_path)
    restored = RealRandom()
    restored.load(tmp_path)
    again = list(restored.generate(conds(12), RunContext(seed=1)))
    assert [s.meta["source_id"] for s in again] == whole
    src = pool()[int(whole[0][1:])]
    assert torch.allclose(again[0].image, src.image, atol=1 / 255) and torch.equal(again[0].mask, src.mask)


def test_cycles_when_more_pairs_than_the_pool_are_asked_for() -> None:
    gen = RealRandom()
    gen.fit(pool(5), RunContext())
    ids = [s.meta["source_id"] for s in gen.generate(conds(10), RunContext())]
    assert ids[:5] == ids[5:] and len(set(ids)) == 5
