"""gSDE for SAC (``use_sde``): the part every backend shares.

Generalized state-dependent exploration (Raffin et al. 2022, "Smooth
Exploration for Robotic Reinforcement Learning", eq. 5–6), as
Stable-Baselines3's SAC runs it. The actor's head (each backend's
``StateDependentNoise``) outputs ``[mean ‖ z]``, z its last hidden features,
and holds log σ, a ``[dim z, dim A]`` matrix. Acting adds z·θ_ε with one θ_ε
per environment, its entries drawn from N(0, σ²) anew at every ``train_freq``
boundary of the vector steps (SB3's rollout starts) and every
``sde_sample_freq`` steps after one. ``GSDEActing`` holds those matrices for
an agent, checks its actor against ``use_sde`` and keeps the matrices in
checkpoints; the backend finds its head and runs the gradient step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optix_core.off_policy.acting import squashed_gaussian_actions

SDE_MEAN_CLIP = 2.0  # SB3's clip_mean: gSDE's mean stays where tanh still has a slope
SDE_EPSILON = 1e-6  # SB3's: added to the variance z²·σ² of gSDE's Gaussian


def sde_actions(out: np.ndarray, action_dim: int, matrices: np.ndarray) -> np.ndarray:
    """gSDE's actions tanh(μ + z·θ_ε) from the actor's ``[mean ‖ z]`` rows, one θ_ε
    ``[dim z, dim A]`` per row (``matrices``)."""
    mean, z = out[:, :action_dim], out[:, action_dim:]
    return np.tanh(mean + np.einsum("nl,nla->na", z, matrices)).astype(np.float32)


def sde_redraw_due(
    held: np.ndarray | None, n: int, vector_step: int, train_freq: int, sample_freq: int
) -> bool:
    """Whether the matrices are drawn anew before vector step ``vector_step``: at every
    ``train_freq`` boundary and every ``sample_freq`` steps after one (−1: never in
    between); and when none are held, or held for another number of environments."""
    step = vector_step % train_freq
    if held is None or len(held) != n or step == 0:
        return True
    return sample_freq > 0 and step % sample_freq == 0


class GSDEActing:
    """Mixed into a SAC agent ahead of its base: the actor's check against
    ``use_sde``, acting with held matrices, and the matrices in checkpoints.

    The agent calls ``sde_head()`` in its setup and keeps the result as
    ``_sde``; it supplies ``find_sde_head()`` (its ``StateDependentNoise`` in
    the actor, or None) and ``sde_log_std()`` (log σ as a numpy array), and
    has ``action_dim``, ``hp``, ``rng``, ``vector_steps`` and ``_acting_steps``.
    An agent that acts with another kind of stream overrides ``held_stream``
    and ``draw_matrices``.
    """

    _sde: Any = None
    _sde_matrices: np.ndarray | None = None  # acting's θ_ε, one per environment

    def find_sde_head(self) -> Any:
        raise NotImplementedError

    def sde_log_std(self) -> np.ndarray:
        raise NotImplementedError

    def sde_head(self) -> Any:
        """The actor's gSDE head with ``use_sde``, None without; an actor that does
        not match the setting is refused."""
        head = self.find_sde_head()
        if bool(self.hp["use_sde"]) != (head is not None):
            raise ValueError(
                f"sac: use_sde={bool(self.hp['use_sde'])}, but the actor has "
                f"{'a' if head is not None else 'no'} StateDependentNoise head: build it "
                "with make_sac, which follows use_sde"
            )
        return head

    def actor_width(self) -> int:
        """``[mean ‖ z]`` with gSDE, ``[mean ‖ log_std]`` without."""
        head = self.sde_head()
        return self.action_dim + (head.log_std.shape[0] if head is not None else self.action_dim)

    def unit_actions(
        self, out: np.ndarray, deterministic: bool, rng: np.random.Generator
    ) -> np.ndarray:
        if self._sde is None:
            return squashed_gaussian_actions(out, deterministic, rng)
        if deterministic:
            return np.tanh(out[:, : self.action_dim])
        return sde_actions(out, self.action_dim, self.exploration_matrices(len(out), rng))

    def held_stream(self) -> Any:
        """The random stream training acts with: the matrices drawn from it are held."""
        return self.rng

    def draw_matrices(self, n: int, stream: Any) -> np.ndarray:
        """``n`` matrices θ_ε, entries N(0, σ²), from ``stream`` (a numpy generator)."""
        std = np.exp(self.sde_log_std()).astype(np.float32)
        return std * stream.standard_normal((n, *std.shape), dtype=np.float32)

    def exploration_matrices(self, n: int, stream: Any) -> np.ndarray:
        """θ_ε for each of ``n`` environments: held while training acts
        (``held_stream``), drawn afresh for every call of a stochastic ``act``."""
        if stream is not self.held_stream():
            return self.draw_matrices(n, stream)
        vector_step = self.vector_steps + self._acting_steps // n
        hp = self.hp
        if sde_redraw_due(
            self._sde_matrices, n, vector_step, hp["train_freq"], hp["sde_sample_freq"]
        ):
            self._sde_matrices = self.draw_matrices(n, stream)
        return self._sde_matrices

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()  # type: ignore[misc]
        if self._sde_matrices is not None:
            state["sde_matrices"] = np.asarray(self._sde_matrices).tolist()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)  # type: ignore[misc]
        held = state.get("sde_matrices")
        self._sde_matrices = None if held is None else np.asarray(held, dtype=np.float32)
