"""Advantages and return targets for time-major windows ``[T, N]``.

Every function here takes optix's window layout: ``T`` steps of ``N``
environment columns, with gymnasium's two end flags. A window may hold many
episode fragments per column; none of them needs splitting out, because the
recursions below cut at every episode end:

- ``terminated[t]``: the episode really ended; nothing follows, so the target
  does not bootstrap.
- ``truncated[t]`` (and not terminated): the episode was cut off (time limit);
  the future it lost is estimated by the value of its final observation,
  ``final_values[t]``.
- after the window's last step, an unfinished episode bootstraps from
  ``next_values``, the value of the observation that follows the window.

1-D inputs (``[T]``, one column) are accepted and give 1-D results. Results are
float32; the recursions run in float64.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


class ReturnsInputError(ValueError):
    """Inputs of a return computation have inconsistent shapes or out-of-range coefficients."""


def _unit(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ReturnsInputError(f"{name} must lie in [0, 1], got {value}")
    return value


def _prepare(
    rewards: ArrayLike,
    terminated: ArrayLike,
    truncated: ArrayLike,
    next_values: ArrayLike | None,
    final_values: ArrayLike | None,
    **per_step: ArrayLike,
) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Check shapes and return ``(was_1d, rewards, done, bootstrap, per_step)`` as 2-D float64/bool.

    ``bootstrap[t]`` is the value that follows step ``t`` when its episode
    does not continue into step ``t + 1``: zero after a termination,
    ``final_values[t]`` after a truncation, ``next_values`` after the last
    step. Where the episode does continue (``done[t]`` False and ``t < T - 1``)
    it is unused.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim not in (1, 2) or r.shape[0] == 0:
        raise ReturnsInputError(f"rewards has shape {r.shape}, expected (T, N) or (T,) with T >= 1")
    was_1d = r.ndim == 1
    shape = r.shape

    def step_array(name: str, value: ArrayLike, dtype: type) -> np.ndarray:
        arr = np.asarray(value, dtype=dtype)
        if arr.shape != shape:
            raise ReturnsInputError(f"{name} has shape {arr.shape}, expected {shape} like rewards")
        return arr.reshape(shape[0], -1)

    term = step_array("terminated", terminated, bool)
    trunc = step_array("truncated", truncated, bool) & ~term  # terminated wins when both are set
    others = {name: step_array(name, v, np.float64) for name, v in per_step.items()}
    r = r.reshape(shape[0], -1)
    n_cols = r.shape[1]

    bootstrap = np.zeros_like(r)
    if trunc.any():
        if final_values is None:
            raise ReturnsInputError(
                "truncated steps need final_values (the value of each truncated episode's "
                "final observation) to bootstrap from; pass final_values shaped like rewards"
            )
        fv = step_array("final_values", final_values, np.float64)
        bootstrap[trunc] = fv[trunc]
    elif final_values is not None:
        step_array("final_values", final_values, np.float64)
    if next_values is None:
        nv = np.zeros(n_cols)
    else:
        nv = np.asarray(next_values, dtype=np.float64)
        expected = () if was_1d else (n_cols,)
        if nv.shape != expected and not (was_1d and nv.shape == (1,)):
            raise ReturnsInputError(
                f"next_values has shape {nv.shape}, expected {expected} (one value per env column)"
            )
        nv = nv.reshape(n_cols)
    last_open = ~(term[-1] | trunc[-1])
    bootstrap[-1, last_open] = nv[last_open]
    return was_1d, r, term | trunc, bootstrap, others


def _finish(was_1d: bool, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple((a[:, 0] if was_1d else a).astype(np.float32) for a in arrays)


def compute_gae(
    rewards: ArrayLike,
    values: ArrayLike,
    terminated: ArrayLike,
    truncated: ArrayLike,
    next_values: ArrayLike,
    final_values: ArrayLike | None = None,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE-λ advantages and λ-return targets (Schulman et al. 2016, eqs. 11-16).

    ``δ_t = r_t + γ V_{t+1} - V(s_t)`` (eq. 10's TD residual) with ``V_{t+1}``
    the value of the next state of the same episode, or its bootstrap (see the
    module doc); ``A_t = δ_t + γλ A_{t+1}``, the recursive form of eq. 16's sum
    ``Σ_l (γλ)^l δ_{t+l}``, cut at every episode end. Returns
    ``(advantages, returns)`` with ``returns = advantages + values``, the
    TD(λ) targets for the critic.

    Args:
        rewards, values, terminated, truncated: ``[T, N]`` (or ``[T]``).
        next_values: ``[N]`` (or a scalar): value of the observation after the window.
        final_values: ``[T, N]``: value of each truncated episode's final
            observation; read only where ``truncated``; required if any step is.
        gamma, lam: discount and GAE λ, each in ``[0, 1]``.
    """
    gamma, lam = _unit("gamma", gamma), _unit("lam", lam)
    was_1d, r, done, bootstrap, per_step = _prepare(
        rewards, terminated, truncated, next_values, final_values, values=values
    )
    v = per_step["values"]
    n_steps = r.shape[0]
    # The next state's value: V(s_{t+1}) inside an episode, the bootstrap after its end.
    next_v = np.empty_like(v)
    next_v[:-1] = np.where(done[:-1], bootstrap[:-1], v[1:])
    next_v[-1] = bootstrap[-1]
    delta = r + gamma * next_v - v
    carry = gamma * lam * ~done  # A_{t+1} flows into A_t only within an episode
    carry[-1] = 0.0
    adv = np.empty_like(v)
    last = np.zeros(r.shape[1])
    for t in range(n_steps - 1, -1, -1):
        last = delta[t] + carry[t] * last
        adv[t] = last
    return _finish(was_1d, adv, adv + v)


def discounted_returns(
    rewards: ArrayLike,
    terminated: ArrayLike,
    truncated: ArrayLike,
    next_values: ArrayLike | None = None,
    final_values: ArrayLike | None = None,
    gamma: float = 0.99,
) -> np.ndarray:
    """Discounted returns ``G_t = r_t + γ G_{t+1}`` per episode fragment.

    Monte Carlo returns (REINFORCE's ``G_t``) where episodes end inside the
    window; a truncated episode adds ``γ · final_values``, and a fragment
    still running at the window's end adds ``γ · next_values`` (zero when
    ``next_values`` is None, the plain Monte Carlo return of what was seen).
    """
    gamma = _unit("gamma", gamma)
    was_1d, r, done, bootstrap, _ = _prepare(
        rewards, terminated, truncated, next_values, final_values
    )
    out = np.empty_like(r)
    acc = np.zeros(r.shape[1])
    for t in range(r.shape[0] - 1, -1, -1):
        ends = done[t] | (t == r.shape[0] - 1)
        acc = r[t] + gamma * np.where(ends, bootstrap[t], acc)
        out[t] = acc
    return _finish(was_1d, out)[0]


def nstep_returns(
    rewards: ArrayLike,
    values: ArrayLike,
    terminated: ArrayLike,
    truncated: ArrayLike,
    next_values: ArrayLike,
    final_values: ArrayLike | None = None,
    gamma: float = 0.99,
    n: int = 5,
) -> np.ndarray:
    """n-step return targets ``G_t^(n) = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n})`` (Sutton & Barto eq. 7.1).

    The span stops early at an episode end (bootstrapping as the module doc
    says) and at the window's end (from ``next_values``). ``n = 1`` gives TD(0)
    targets; ``n >= T`` gives the window's bootstrapped Monte Carlo returns.
    """
    gamma = _unit("gamma", gamma)
    if int(n) < 1:
        raise ReturnsInputError(f"n must be at least 1, got {n}")
    n = int(n)
    was_1d, r, done, bootstrap, per_step = _prepare(
        rewards, terminated, truncated, next_values, final_values, values=values
    )
    v = per_step["values"]
    n_steps = r.shape[0]
    # Row t's span adds step t + k (k = 0..n-1) while it is open; it closes at
    # an episode end or the window's last step, adding that bootstrap, or
    # after n steps, adding γ^n V(s_{t+n}).
    out = np.zeros_like(r)
    open_ = np.ones_like(done)
    discount = 1.0
    for k in range(min(n, n_steps)):
        m = n_steps - k
        closes = done[k:].copy()
        closes[-1] = True
        out[:m] += open_[:m] * discount * (r[k:] + gamma * np.where(closes, bootstrap[k:], 0.0))
        open_[:m] &= ~closes
        discount *= gamma
    if n < n_steps:
        out[: n_steps - n] += open_[: n_steps - n] * discount * v[n:]
    return _finish(was_1d, out)[0]


def compute_vtrace_targets(
    behaviour_log_probs: ArrayLike,
    target_log_probs: ArrayLike,
    rewards: ArrayLike,
    values: ArrayLike,
    terminated: ArrayLike,
    truncated: ArrayLike,
    next_values: ArrayLike,
    final_values: ArrayLike | None = None,
    gamma: float = 0.99,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    lam: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """V-trace value targets and policy-gradient advantages (Espeholt et al. 2018, eq. 1 and section 4.2).

    With ``ρ_t = min(ρ̄, π(a_t|s_t) / μ(a_t|s_t))`` and ``c_t = λ min(c̄, π/μ)``
    (the importance ratio of the learner's policy π to the behaviour policy
    μ that acted), ``δ_t = ρ_t (r_t + γ V_{t+1} - V(s_t))`` and the targets
    follow the recursion of Remark 1::

        v_t = V(s_t) + δ_t + γ c_t (v_{t+1} - V(s_{t+1}))

    cut at episode ends (``V_{t+1}`` and bootstraps as for ``compute_gae``;
    ``v`` equals ``V`` beyond the window). The advantages are
    ``ρ_t (r_t + γ v_{t+1} - V(s_t))``. With π = μ, ρ̄ = c̄ = 1 the targets are
    the TD(λ) returns of ``compute_gae`` with the same λ.

    Returns ``(vs, pg_advantages)``, float32 ``[T, N]`` (or ``[T]``).
    """
    gamma, lam = _unit("gamma", gamma), _unit("lam", lam)
    if rho_bar <= 0 or c_bar <= 0:
        raise ReturnsInputError(f"rho_bar and c_bar must be positive, got {rho_bar} and {c_bar}")
    was_1d, r, done, bootstrap, per_step = _prepare(
        rewards,
        terminated,
        truncated,
        next_values,
        final_values,
        values=values,
        behaviour_log_probs=behaviour_log_probs,
        target_log_probs=target_log_probs,
    )
    v = per_step["values"]
    ratio = np.exp(per_step["target_log_probs"] - per_step["behaviour_log_probs"])
    rho = np.minimum(rho_bar, ratio)
    c = lam * np.minimum(c_bar, ratio)
    next_v = np.empty_like(v)
    next_v[:-1] = np.where(done[:-1], bootstrap[:-1], v[1:])
    next_v[-1] = bootstrap[-1]
    delta = rho * (r + gamma * next_v - v)
    carry = gamma * c * ~done
    carry[-1] = 0.0
    diff = np.empty_like(v)  # v_t - V(s_t)
    last = np.zeros(r.shape[1])
    for t in range(r.shape[0] - 1, -1, -1):
        last = delta[t] + carry[t] * last
        diff[t] = last
    vs = v + diff
    # v_{t+1}: the next target inside an episode, the bootstrap after its end.
    next_vs = np.empty_like(v)
    next_vs[:-1] = np.where(done[:-1], bootstrap[:-1], vs[1:])
    next_vs[-1] = bootstrap[-1]
    pg_adv = rho * (r + gamma * next_vs - v)
    return _finish(was_1d, vs, pg_adv)
