import torch

from bench.downstream.loop import random_flips, train_with_early_stopping


def test_stops_after_patience_and_restores_best_epoch():
    model = torch.nn.Linear(1, 1, bias=False)
    w0 = float(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.9])

    def step(idx):
        model.weight.data += 1.0  # a visible per-epoch change of state
        return model(torch.ones(len(idx), 1)).sum() * 0

    run = train_with_early_stopping(model, 4, 4, 10, 2, torch.Generator().manual_seed(0), step, opt, lambda: next(scores))
    assert run.epochs_run == 4 and run.best_epoch == 1 and run.best_score == 0.5
    assert [h["score"] for h in run.history] == [0.1, 0.5, 0.4, 0.3]
    assert abs(float(model.weight) - (w0 + 2.0)) < 1e-6  # the state after epoch 1 (one step per epoch)


def test_random_flips_move_all_tensors_alike():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    g = torch.Generator().manual_seed(3)
    a, b = random_flips(x, x.clone(), generator=g)
    assert torch.equal(a, b)
    seen = {tuple(random_flips(x, generator=torch.Generator().manual_seed(s))[0].flatten()[:2].tolist()) for s in range(20)}
    assert len(seen) == 4
