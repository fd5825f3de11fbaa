"""Checkpoints of the mini foundation models' training runs: resume, and a kill between the two renames."""
from __future__ import annotations

import torch

from bench.foundation.runs import load_checkpoint, save_checkpoint


def _model_and_optimizer(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_resume_restores_weights_optimizer_and_step(tmp_path) -> None:
    model, optimizer = _model_and_optimizer(0)
    save_checkpoint(tmp_path, model, optimizer, 7, {"elapsed_s": 3.0})
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    step, extra = load_checkpoint(tmp_path, fresh, fresh_opt)
    assert (step, extra) == (7, {"elapsed_s": 3.0})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert fresh_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "checkpoint.state.pt"]


def test_a_kill_between_the_renames_resumes_at_the_weights_step_without_the_newer_optimizer_state(tmp_path) -> None:
    model, optimizer = _model_and_optimizer(0)
    save_checkpoint(tmp_path, model, optimizer, 7)
    weights = (tmp_path / "checkpoint.safetensors").read_bytes()
    save_checkpoint(tmp_path, *_model_and_optimizer(1), 8)
    (tmp_path / "checkpoint.safetensors").write_bytes(weights)  # the state's rename landed, the weights' did not
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    step, _ = load_checkpoint(tmp_path, fresh, fresh_opt)
    assert step == 7 and fresh_opt.state_dict()["state"] == {}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
