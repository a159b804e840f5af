"""The shared fast path: FlatGradients and LeanAdam do exactly torch's arithmetic."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optix_torch.optim import FlatGradients, LeanAdam, default_optimizer, optimizer_step
from optix_torch.ppo_core import TwinMLP


def small_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))


def test_lean_adam_takes_the_same_steps_as_torch_adam_through_a_learning_rate_change() -> None:
    reference, lean = small_net(), small_net()
    adam = torch.optim.Adam(reference.parameters(), lr=1e-3)
    ours = LeanAdam(lean.parameters(), lr=1e-3)
    x = torch.randn(16, 4)
    for step in range(30):
        for net, opt in ((reference, adam), (lean, ours)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            optimizer_step(opt)()
        if step == 10:
            for opt in (adam, ours):
                opt.param_groups[0]["lr"] = 5e-4
    for a, b in zip(reference.parameters(), lean.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # its state dict is Adam's
    torch.optim.Adam(reference.parameters(), lr=1e-3).load_state_dict(ours.state_dict())


def test_lean_adam_matches_torch_fused_adam_through_a_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    a, b = TwinMLP(4, 2), TwinMLP(4, 2)
    b.load_state_dict(a.state_dict())
    reference = torch.optim.Adam(a.parameters(), lr=1e-2, eps=1e-5, fused=True)
    lean = LeanAdam(b.parameters(), lr=1e-2, eps=1e-5)
    x = torch.randn(32, 4)

    def steps(n: int, optimizer: torch.optim.Optimizer, net: nn.Module) -> None:
        for i in range(n):
            policy, value = net(x)
            loss = policy.square().sum() + F.mse_loss(value, x[:, 0]) + policy.sum() * value.sum()
            optimizer.zero_grad()
            loss.backward()
            if isinstance(optimizer, LeanAdam) and i % 3:
                optimizer.lean_step()
            else:
                optimizer.step()

    steps(7, reference, a)
    steps(7, lean, b)
    torch.save(lean.state_dict(), tmp_path / "opt.pt")
    lean = LeanAdam(b.parameters(), lr=1e-2, eps=1e-5)
    lean.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    steps(5, reference, a)
    steps(5, lean, b)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert float(lean.state_dict()["state"][0]["step"]) == 12.0


def test_lean_step_runs_the_optimizers_step_hooks() -> None:
    net = small_net()
    opt = default_optimizer(net.parameters(), 1e-3)
    assert isinstance(opt, LeanAdam)
    calls = []
    opt.register_step_post_hook(lambda optimizer, args, kwargs: calls.append(1))
    net(torch.randn(8, 4)).sum().backward()
    optimizer_step(opt)()
    assert calls == [1]


def test_flat_gradients_zero_clip_and_survive_zero_grad_like_torch() -> None:
    reference, flat_net = small_net(), small_net()
    grads = FlatGradients(flat_net.parameters())
    assert grads.bind()
    x = torch.randn(16, 4)
    for scale in (1.0, 100.0):
        reference.zero_grad()
        (scale * reference(x).square().mean()).backward()
        expected_norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        grads.zero()
        (scale * flat_net(x).square().mean()).backward()
        norm = grads.clip(0.5)
        torch.testing.assert_close(norm, expected_norm)
        for p, q in zip(reference.parameters(), flat_net.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad)
    torch.optim.SGD(flat_net.parameters()).zero_grad()  # sets every .grad to None
    grads.zero()
    assert all(p.grad is view for p, view in zip(flat_net.parameters(), grads.views, strict=True))
    assert float(grads.buffer.abs().sum()) == 0.0


def test_flat_gradients_leave_mixed_dtypes_to_torch() -> None:
    net = small_net()
    net[2].double()
    grads = FlatGradients(net.parameters())
    assert not grads.bind()
    grads.zero()
    assert all(p.grad is None for p in net.parameters())
    (net[2](net[1](net[0](torch.randn(8, 4))).double())).sum().backward()
    assert float(grads.clip(1e-3)) > 1e-3
    total = torch.linalg.vector_norm(
        torch.cat([p.grad.flatten().double() for p in net.parameters()])
    )
    assert float(total) <= 1e-3 + 1e-9
