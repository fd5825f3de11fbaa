"""bench.gan.losses against hand-computed cases."""
import math

import torch
import torch.nn.functional as F

from bench.gan.losses import d_loss, g_loss, gradient_penalty, r1_penalty


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x>: the gradient is w everywhere, so the penalty is (||w|| - 1)^2 for any interpolate
    w = torch.tensor([3.0, 0.0, 4.0, 0.0]).view(1, 1, 2, 2)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    gp = gradient_penalty(critic, real, fake, eps=torch.rand(5))
    assert math.isclose(float(gp), (5.0 - 1.0) ** 2, rel_tol=1e-6)
    assert math.isclose(float(gradient_penalty(critic, real, fake, target=5.0)), 0.0, abs_tol=1e-10)


def test_gradient_penalty_is_differentiable_in_the_critic():
    w = torch.tensor([0.6, 0.0], requires_grad=True)
    gp = gradient_penalty(lambda x: x.flatten(1) @ w, torch.randn(3, 2), torch.randn(3, 2), eps=torch.rand(3))
    gp.backward()   # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = [-0.8, 0]
    assert torch.allclose(w.grad, torch.tensor([-0.8, 0.0]), atol=1e-6)


def test_r1_of_a_quadratic():
    # D(x) = sum x^2: grad 2x, so ||grad||^2 = 4 sum x^2, averaged over the batch
    x = torch.randn(4, 3, 2, 2)
    r1 = r1_penalty(lambda v: v.pow(2).flatten(1).sum(1), x)
    assert math.isclose(float(r1.detach()), float(4 * x.pow(2).flatten(1).sum(1).mean()), rel_tol=1e-5)


def test_loss_values():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert math.isclose(float(d_loss("wgan-gp", real, fake)), -0.5 - 2.0)
    assert math.isclose(float(g_loss("wgan-gp", fake)), 0.5)
    expected = float(F.softplus(fake).mean() + F.softplus(-real).mean())
    assert math.isclose(float(d_loss("logistic", real, fake)), expected, rel_tol=1e-6)
    assert math.isclose(float(g_loss("logistic", torch.zeros(3))), math.log(2), rel_tol=1e-6)
