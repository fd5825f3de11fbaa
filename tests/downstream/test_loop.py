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


def _regression(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(64, 1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    return x, y, model


def _train(model, x, y, checkpoint=None, stop_after=None, max_epochs=12):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    epochs = []

    def step(idx):
        return torch.nn.functional.mse_loss(model(x[idx]), y[idx])  # dropout draws from torch's global generator

    def score():
        epochs.append(1)
        if stop_after is not None and len(epochs) > stop_after:
            raise KeyboardInterrupt  # killed after ``stop_after`` finished epochs
        model.eval()
        with torch.no_grad():
            return -float(torch.nn.functional.mse_loss(model(x), y))

    return train_with_early_stopping(model, len(x), 16, max_epochs, 3, gen, step, opt, score, checkpoint=checkpoint)


def test_an_interrupted_training_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path):
    import pytest

    x, y, model = _regression()
    torch.manual_seed(7)
    whole = _train(model, x, y)
    ckpt = tmp_path / "arm.ckpt"
    x, y, model = _regression()
    torch.manual_seed(7)
    with pytest.raises(KeyboardInterrupt):
        _train(model, x, y, checkpoint=ckpt, stop_after=5)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))
    _, _, fresh = _regression(seed=99)  # a new process: new initial weights, other global random state
    torch.manual_seed(123)
    resumed = _train(fresh, x, y, checkpoint=ckpt)
    assert [h["epoch"] for h in resumed.history] == list(range(resumed.epochs_run))
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    x, y, again = _regression()
    torch.manual_seed(7)
    _train(again, x, y)  # the uninterrupted run's final (best-epoch) weights
    for a, b in zip(again.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
