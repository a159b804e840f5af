"""The accelerator harness: every accelerated update equals the plain (autograd,
torch.optim.Adam) one, and the accelerators stand aside where they do not apply."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optix_core import VectorBatchPipeline
from optix_core.types import HyperparamSet
from optix_torch import accel
from optix_torch.accel import mlp as accel_mlp
from optix_torch.accel.optim import FlatGradients, LeanAdam, adam, optimizer_step
from optix_torch.accel.ppo import FusedPPOStep
from optix_torch.algorithms.dqn import TorchDQNAgent, make_dqn
from optix_torch.algorithms.ppo import OLD_VALUE, RETURN, TorchPPOAgent, make_ppo
from optix_torch.policies import TwinMLP

torch.set_num_threads(1)


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
    opt = adam(net.parameters(), 1e-3)
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


# ---- the MLP accelerator ------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_accelerated_mlp_gives_autograds_outputs_and_gradients(monkeypatch, activation) -> None:
    def run(enabled: str) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        monkeypatch.setenv(accel.ENV_SWITCH, enabled)
        torch.manual_seed(0)
        twin = TwinMLP(5, 3, hidden=(70, 70), activation=activation)  # wide: σ-based tanh too
        x = torch.randn(90, 5, requires_grad=True)
        policy, value = twin(x)
        (policy.sin().sum() + value.square().sum()).backward()
        return policy.detach(), [p.grad for p in twin.parameters()], x.grad

    fast, plain = run("1"), run("0")
    torch.testing.assert_close(fast[0], plain[0])
    for a, b in zip(fast[1], plain[1], strict=True):  # float32 sums in another order
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast[2], plain[2], rtol=1e-4, atol=1e-5)  # ∂L/∂x: a CNN below


def test_the_mlp_accelerator_stands_aside_for_tied_weights_and_hooks(monkeypatch) -> None:
    twin = TwinMLP(3, 2, hidden=(8, 8))
    assert accel_mlp.applies(twin)
    monkeypatch.setenv(accel.ENV_SWITCH, "0")
    assert not accel_mlp.applies(twin)
    monkeypatch.setenv(accel.ENV_SWITCH, "1")
    tied = TwinMLP(3, 2, hidden=(8, 8))
    tied.weights.append(tied.weights[1])  # the same parameter twice: gradients must add up
    assert not accel_mlp.applies(tied)
    hooked = TwinMLP(3, 2, hidden=(8, 8))
    hooked.register_forward_hook(lambda *args: None)
    assert not accel_mlp.applies(hooked)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_acting_through_numpy_gives_the_networks_outputs(monkeypatch, activation) -> None:
    torch.manual_seed(0)
    twin = TwinMLP(5, 3, hidden=(70, 70), activation=activation)
    with torch.no_grad():
        for b in twin.biases:  # zero at initialisation
            b.normal_()
    x = torch.randn(8, 5)
    policy, value = twin.numpy_forward(x.numpy())
    with torch.no_grad():
        expected = twin(x)
    torch.testing.assert_close(torch.from_numpy(policy), expected[0])
    torch.testing.assert_close(torch.from_numpy(value), expected[1])
    with torch.no_grad():  # the numpy path reads the parameters' memory: updates show at once
        twin.weights[-1].add_(1.0)
    torch.testing.assert_close(torch.from_numpy(twin.numpy_forward(x.numpy())[0]), twin(x)[0])


def test_acting_through_numpy_stands_aside_where_torch_must_run(monkeypatch) -> None:
    space = gym.spaces.Box(-1, 1, (4,))
    agent = make_ppo(space, gym.spaces.Discrete(2), device="cpu", seed=0)
    obs = torch.randn(3, 4).numpy()
    assert agent.actor.numpy_forward(obs) is not None
    agent.actor.heads.register_forward_hook(lambda *args: None)
    assert agent.actor.numpy_forward(obs) is None  # the hook must see the call
    agent = make_ppo(space, gym.spaces.Discrete(2), device="cpu", seed=0)
    agent.actor.extractor.register_forward_pre_hook(lambda *args: None)
    assert agent.actor.numpy_forward(obs) is None
    monkeypatch.setenv(accel.ENV_SWITCH, "0")
    assert make_ppo(space, gym.spaces.Discrete(2), device="cpu").actor.numpy_forward(obs) is None
    monkeypatch.setenv(accel.ENV_SWITCH, "1")
    agent = make_ppo(space, gym.spaces.Discrete(2), device="cpu", seed=0).actor.double()
    assert agent.numpy_forward(obs) is None  # float64 parameters: torch's path


# ---- PPO's accelerated update ---------------------------------------------------------

SPACES = {
    "categorical": (gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3)),
    "squashed_gaussian": (gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,))),
    "gaussian": (gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,))),
}


@pytest.mark.parametrize("clip_vf", [0.0, 0.1])
@pytest.mark.parametrize("entropy_coef", [0.0, 0.3])
@pytest.mark.parametrize("kind", sorted(SPACES))
def test_ppos_hand_written_gradients_equal_autograds(kind, entropy_coef, clip_vf) -> None:
    """One minibatch: clipped and unclipped ratios, the entropy bonus, clipped
    values, a clamped log-std; the same gradients both ways."""
    obs_space, act_space = SPACES[kind]
    hp = HyperparamSet({"entropy_coef": entropy_coef, "clip_range_vf": clip_vf})
    agent = make_ppo(obs_space, act_space, hyperparams=hp, device="cpu", seed=0)
    if kind == "gaussian":
        agent = TorchPPOAgent(
            agent.actor, hyperparams=hp, action_space=act_space, device="cpu", distribution=kind
        )
    gen = torch.Generator().manual_seed(0)
    rows = 64
    obs = torch.randn(rows, obs_space.shape[0], generator=gen)
    if kind == "categorical":
        actions = torch.randint(0, 3, (rows, 1), generator=gen).float()
    else:
        actions = torch.randn(rows, 2, generator=gen) * 2
        with torch.no_grad():  # push some rows' log-std past the clamp at 2
            agent.actor.heads.biases[-1][0, 0, 2] = 1.9
            agent.actor.heads.weights[-1][0, :, 2] *= 30
            assert (agent.actor(obs)[0][:, 2] > 2).any()
    old_log_probs = torch.randn(rows, 1, generator=gen) * 0.3 - 1.0  # clipping active
    returns, old_values = torch.randn(rows, 1, generator=gen), torch.randn(rows, 1, generator=gen)
    table = torch.cat([old_log_probs, torch.zeros(rows, 1), returns, old_values, actions], 1)
    adv = torch.randn(rows, generator=gen)

    fused = FusedPPOStep.of(agent.actor, None, agent.gradients, agent.distribution)
    assert fused is not None
    by_hand = fused(
        obs,
        actions,
        table[:, 0],
        adv,
        table[:, RETURN],
        table[:, OLD_VALUE],
        0.2,
        clip_vf,
        0.5,
        entropy_coef,
    )
    hand_grads = agent.gradients.flat.buffer.clone()
    agent.gradients.zero()
    loss, *auto = agent.loss(obs, table, adv, 0.2)
    loss.backward()
    torch.testing.assert_close(hand_grads, agent.gradients.flat.buffer, rtol=1e-5, atol=1e-6)
    for a, b in zip(by_hand, auto, strict=True):  # surrogate, V − R, log r
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_learns_the_same_with_and_without_the_accelerators(monkeypatch, env_id) -> None:
    """Whole windows: LeanAdam, flat gradients, the fused step against
    autograd and torch.optim.Adam, from the same start."""
    env = gym.make(env_id)
    hp = HyperparamSet({"n_epochs": 3, "minibatch_size": 50, "entropy_coef": 0.01})

    def train(enabled: str) -> tuple[list[dict], list[torch.Tensor], type]:
        monkeypatch.setenv(accel.ENV_SWITCH, enabled)
        agent = make_ppo(
            env.observation_space, env.action_space, hyperparams=hp, device="cpu", seed=0
        )
        pipeline = VectorBatchPipeline(
            env_id=env_id, n_envs=2, window_size=100, seed=0, agent=agent
        )
        stats = [agent.learn(pipeline.collect()) for _ in range(2)]
        pipeline.close()
        return stats, [p.detach() for p in agent.actor.parameters()], type(agent.optimizer)

    fast, plain = train("1"), train("0")
    assert fast[2] is LeanAdam and plain[2] is torch.optim.Adam
    for a, b in zip(fast[0], plain[0], strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), key
    for a, b in zip(fast[1], plain[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class WithSpareLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_plain_autograd_leaves_unreached_parameters_without_gradients() -> None:
    """A user's network with a parameter the loss never reaches: it keeps no
    gradient (None, not zeros), so Adam leaves it where it is."""
    actor = WithSpareLayer()
    critic = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    agent = TorchPPOAgent(actor, critic, action_space=gym.spaces.Discrete(2), device="cpu", seed=0)
    before = actor.unused.weight.detach().clone()
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=64, seed=0, agent=agent
    )
    agent.learn(pipeline.collect())
    pipeline.close()
    assert actor.unused.weight.grad is None
    assert torch.equal(actor.unused.weight, before)
    assert actor.net[0].weight.grad is not None


# ---- DQN's accelerated TD update (accel.mlp.SequentialMLP) -------------------------------


def q_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)
    )


@pytest.mark.parametrize("huber", [True, False], ids=["huber", "mse"])
@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "prioritized"])
def test_dqns_hand_written_td_gradients_equal_autograds(huber, weighted) -> None:
    """One minibatch, TD errors on both sides of the Huber loss's kink: the same
    loss, errors and gradients as autograd's, with and without importance weights."""
    net = q_mlp()
    form = accel_mlp.SequentialMLP.of(net)
    assert form is not None
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(64, 4, generator=gen)
    actions = torch.randint(0, 3, (64,), generator=gen)
    target = torch.randn(64, generator=gen) * 2
    weights = torch.rand(64, generator=gen) if weighted else None
    grads = [torch.empty_like(p) for p in net.parameters()]
    loss, td = form.td_step(obs, actions, target, weights, huber, grads)

    q = net(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    per_sample = F.smooth_l1_loss(q, target, reduction="none") if huber else (q - target) ** 2
    assert huber is False or bool(((q - target).abs() > 1).any() & ((q - target).abs() < 1).any())
    reference = per_sample.mean() if weights is None else (weights * per_sample).mean()
    reference.backward()
    torch.testing.assert_close(loss, reference.detach())
    torch.testing.assert_close(td, (q - target).detach())
    for hand, p in zip(grads, net.parameters(), strict=True):
        torch.testing.assert_close(hand, p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "hp",
    [{}, {"huber_loss": False}, {"per_alpha": 0.6}, {"huber_loss": False, "per_alpha": 0.6}],
    ids=["huber", "mse", "huber-per", "mse-per"],
)
def test_dqn_learns_the_same_with_and_without_the_accelerators(monkeypatch, hp) -> None:
    """Whole windows on CartPole's default network: the Sequential form, flat
    gradients and LeanAdam against autograd and torch.optim.Adam, from the same start."""
    env = gym.make("CartPole-v1")
    settings = {
        "learning_starts": 64,
        "batch_size": 32,
        "train_freq": 64,
        "gradient_steps": 8,
        "target_update_freq": 5,
        **hp,
    }
    collector = make_dqn(env.observation_space, env.action_space, device="cpu", seed=1)
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=64, seed=0, agent=collector
    )
    windows = [pipeline.collect() for _ in range(3)]
    pipeline.close()

    def train(enabled: str) -> tuple[list[dict], list[torch.Tensor], TorchDQNAgent]:
        monkeypatch.setenv(accel.ENV_SWITCH, enabled)
        agent = make_dqn(
            env.observation_space, env.action_space, hyperparams=settings, device="cpu", seed=0
        )
        stats = [agent.learn(window) for window in windows]
        return stats, [p.detach() for p in agent.q_network.parameters()], agent

    fast, plain = train("1"), train("0")
    assert fast[2].mlp is not None and isinstance(fast[2].optimizer, LeanAdam)
    assert plain[2].mlp is None and type(plain[2].optimizer) is torch.optim.Adam
    assert fast[2].n_updates == plain[2].n_updates == 24
    for a, b in zip(fast[0], plain[0], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), key
    for a, b in zip(fast[1], plain[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def tied_q_network(kind: str) -> nn.Sequential:
    """A Q-network using one layer twice, or two layers sharing a weight."""
    torch.manual_seed(0)
    if kind == "shared-layer":
        shared = nn.Linear(16, 16)
        return nn.Sequential(
            nn.Linear(4, 16), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(16, 2)
        )
    net = nn.Sequential(
        nn.Linear(4, 16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Linear(16, 2),
    )
    net[4].weight = net[2].weight
    return net


@pytest.mark.parametrize("kind", ["shared-layer", "tied-weight"])
def test_a_weight_tied_q_network_falls_back_to_autograd_with_its_gradients(kind) -> None:
    """The hand-written backward gives each layer its own gradient slot, so a
    parameter used twice would get one use's gradient (or a neighbour's slot);
    autograd sums both uses. The Sequential form stands aside and DQN's step
    gets autograd's gradients."""
    net = tied_q_network(kind)
    assert accel_mlp.SequentialMLP.of(net) is None
    agent = TorchDQNAgent(net, 2, hyperparams={"max_grad_norm": 1e6}, device="cpu", seed=0)
    assert agent.mlp is None
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(32, 4, generator=gen)
    actions = torch.randint(0, 2, (32,), generator=gen)
    target = torch.randn(32, generator=gen)
    agent._gradient_step(obs, actions, target, None)

    reference = tied_q_network(kind)
    q = reference(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    F.smooth_l1_loss(q, target).backward()
    for p, r in zip(net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, r.grad)


def test_the_sequential_form_stands_aside_for_hooks_and_when_switched_off(monkeypatch) -> None:
    assert accel_mlp.SequentialMLP.of(q_mlp()) is not None
    hooked_layer = q_mlp()
    hooked_layer[2].register_forward_hook(lambda *args: None)
    hooked_param = q_mlp()
    hooked_param[0].weight.register_hook(lambda grad: grad)
    frozen = q_mlp()
    frozen[0].requires_grad_(False)
    for net in (hooked_layer, hooked_param, frozen):
        assert accel_mlp.SequentialMLP.of(net) is None
    monkeypatch.setenv(accel.ENV_SWITCH, "0")
    assert accel_mlp.SequentialMLP.of(q_mlp()) is None
