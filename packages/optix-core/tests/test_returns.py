"""GAE, discounted, n-step and V-trace targets against hand-derived values and direct formulas."""

from __future__ import annotations

import numpy as np
import pytest

from optix_core.returns import (
    ReturnsInputError,
    compute_gae,
    compute_vtrace_targets,
    discounted_returns,
    nstep_returns,
)


def random_window(rng: np.random.Generator, t: int = 40, n: int = 5, p_end: float = 0.15):
    """A window with episodes ending by termination, truncation, or both flags."""
    ends = rng.random((t, n)) < p_end
    kind = rng.integers(0, 3, size=(t, n))  # 0 terminated, 1 truncated, 2 both
    terminated = ends & (kind != 1)
    truncated = ends & (kind != 0)
    return {
        "rewards": rng.normal(size=(t, n)),
        "values": rng.normal(size=(t, n)),
        "terminated": terminated,
        "truncated": truncated,
        "next_values": rng.normal(size=n),
        "final_values": rng.normal(size=(t, n)),
    }


def next_state_values(w) -> np.ndarray:
    """V of the state after each step, or its bootstrap: 0, the final value, or next_values."""
    t = w["rewards"].shape[0]
    out = np.empty_like(w["values"])
    out[:-1] = w["values"][1:]
    out[-1] = w["next_values"]
    done = w["terminated"] | w["truncated"]
    out = np.where(done & ~w["terminated"], w["final_values"], out)
    out = np.where(w["terminated"], 0.0, out)
    assert out.shape[0] == t
    return out


def fragment_end(done_col: np.ndarray, t: int) -> int:
    """Last step of the episode fragment holding step t (an end flag, or the window's end)."""
    while t < len(done_col) - 1 and not done_col[t]:
        t += 1
    return t


def gae_by_definition(w, gamma: float, lam: float) -> np.ndarray:
    """Eq. 16 summed directly: A_t = Σ_l (γλ)^l δ_{t+l} over the rest of the fragment."""
    delta = w["rewards"] + gamma * next_state_values(w) - w["values"]
    done = w["terminated"] | w["truncated"]
    adv = np.zeros_like(delta)
    steps, cols = delta.shape
    for c in range(cols):
        for t in range(steps):
            end = fragment_end(done[:, c], t)
            adv[t, c] = sum((gamma * lam) ** (s - t) * delta[s, c] for s in range(t, end + 1))
    return adv


# -- compute_gae ---------------------------------------------------------------


def test_gae_two_steps_by_hand():
    # γ = 0.9, λ = 0.8, r = [1, 2], V = [0.5, 1.0], V(next) = 3. Five columns, five endings:
    #  0 open:                  δ1 = 2 + .9*3 - 1 = 3.7;  δ0 = 1 + .9*1 - .5 = 1.4;  A0 = 1.4 + .72*3.7 = 4.064
    #  1 step 0 terminated:     A0 = 1 - .5 = 0.5 (no bootstrap, no propagation); A1 = 3.7
    #  2 step 0 truncated, final value 10: A0 = 1 + .9*10 - .5 = 9.5; A1 = 3.7
    #  3 step 1 truncated, final value 4:  A1 = 2 + .9*4 - 1 = 4.6; A0 = 1.4 + .72*4.6 = 4.712
    #  4 step 1 terminated:     A1 = 2 - 1 = 1; A0 = 1.4 + .72*1 = 2.12
    rewards = np.tile([[1.0], [2.0]], (1, 5))
    values = np.tile([[0.5], [1.0]], (1, 5))
    terminated = np.zeros((2, 5), bool)
    truncated = np.zeros((2, 5), bool)
    final_values = np.zeros((2, 5))
    terminated[0, 1] = True
    truncated[0, 2], final_values[0, 2] = True, 10.0
    truncated[1, 3], final_values[1, 3] = True, 4.0
    terminated[1, 4] = True
    adv, ret = compute_gae(
        rewards, values, terminated, truncated, np.full(5, 3.0), final_values, gamma=0.9, lam=0.8
    )
    expected = np.array([[4.064, 0.5, 9.5, 4.712, 2.12], [3.7, 3.7, 3.7, 4.6, 1.0]])
    np.testing.assert_allclose(adv, expected, rtol=1e-6)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-6)
    assert adv.dtype == np.float32 and ret.dtype == np.float32


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.0), (0.97, 1.0)])
def test_gae_matches_the_sum_over_each_fragment(seed, gamma, lam):
    w = random_window(np.random.default_rng(seed))
    adv, ret = compute_gae(**w, gamma=gamma, lam=lam)
    expected = gae_by_definition(w, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected + w["values"], rtol=1e-5, atol=1e-5)


def test_gae_columns_are_independent_and_1d_inputs_work():
    w = random_window(np.random.default_rng(7), t=25, n=3)
    adv, ret = compute_gae(**w, gamma=0.98, lam=0.9)
    for c in range(3):
        col = {k: v[..., c] if np.ndim(v) == 2 else v[c] for k, v in w.items()}
        a1, r1 = compute_gae(**col, gamma=0.98, lam=0.9)
        assert a1.shape == (25,)
        np.testing.assert_allclose(a1, adv[:, c], rtol=1e-6)
        np.testing.assert_allclose(r1, ret[:, c], rtol=1e-6)


def test_gae_terminated_wins_over_truncated():
    both = compute_gae([1.0], [0.0], [True], [True], 5.0, final_values=[100.0], gamma=0.5, lam=1)
    assert both[0][0] == pytest.approx(1.0)  # no bootstrap from the final value


def test_gae_lambda_one_advantages_are_returns_minus_values():
    w = random_window(np.random.default_rng(3))
    adv, _ = compute_gae(**w, gamma=0.95, lam=1.0)
    g = discounted_returns(
        w["rewards"], w["terminated"], w["truncated"], w["next_values"], w["final_values"], 0.95
    )
    np.testing.assert_allclose(adv, g - w["values"], rtol=1e-5, atol=1e-5)


def test_gae_errors_say_what_is_wrong():
    w = random_window(np.random.default_rng(0), t=4, n=2)
    with pytest.raises(ReturnsInputError, match=r"values has shape \(3, 2\), expected \(4, 2\)"):
        compute_gae(**{**w, "values": w["values"][:3]})
    with pytest.raises(ReturnsInputError, match=r"next_values has shape \(3,\), expected \(2,\)"):
        compute_gae(**{**w, "next_values": np.zeros(3)})
    w["truncated"][1, 0] = True
    with pytest.raises(ReturnsInputError, match="truncated steps need final_values"):
        compute_gae(**{**w, "final_values": None})
    with pytest.raises(ReturnsInputError, match=r"lam must lie in \[0, 1\], got 1.5"):
        compute_gae(**w, lam=1.5)
    with pytest.raises(ReturnsInputError, match="gamma must lie"):
        compute_gae(**w, gamma=-0.1)


# -- discounted and n-step returns ------------------------------------------------


def test_discounted_returns_by_hand():
    # One column, γ = 0.5: rewards 1, 2, 4 | 8, 16 with the episode terminated after step 2
    # and the window ending open (next value 32): G4 = 16 + .5*32 = 32, G3 = 8 + .5*32 = 24,
    # G2 = 4, G1 = 2 + .5*4 = 4, G0 = 1 + .5*4 = 3.
    r = [1.0, 2.0, 4.0, 8.0, 16.0]
    term = [False, False, True, False, False]
    g = discounted_returns(r, term, [False] * 5, next_values=32.0, gamma=0.5)
    np.testing.assert_allclose(g, [3, 4, 4, 24, 32])
    mc = discounted_returns(r, term, [False] * 5, gamma=0.5)  # no bootstrap at the window's end
    np.testing.assert_allclose(mc, [3, 4, 4, 16, 16])


def nstep_by_definition(w, gamma: float, n: int) -> np.ndarray:
    nxt = next_state_values(w)
    done = w["terminated"] | w["truncated"]
    steps, cols = w["rewards"].shape
    out = np.zeros((steps, cols))
    for c in range(cols):
        for t in range(steps):
            g, k = 0.0, 0
            while True:
                s = t + k
                g += gamma**k * w["rewards"][s, c]
                if done[s, c] or s == steps - 1:
                    g += gamma ** (k + 1) * nxt[s, c]
                    break
                if k == n - 1:
                    g += gamma**n * w["values"][s + 1, c]
                    break
                k += 1
            out[t, c] = g
    return out


@pytest.mark.parametrize("n", [1, 3, 7, 100])
def test_nstep_returns_match_the_definition(n):
    w = random_window(np.random.default_rng(n), t=30, n=4)
    g = nstep_returns(**w, gamma=0.9, n=n)
    np.testing.assert_allclose(g, nstep_by_definition(w, 0.9, n), rtol=1e-5, atol=1e-5)


def test_nstep_one_is_td_zero_and_long_n_is_the_bootstrapped_return():
    w = random_window(np.random.default_rng(11))
    td0 = w["rewards"] + 0.9 * next_state_values(w)
    np.testing.assert_allclose(nstep_returns(**w, gamma=0.9, n=1), td0, rtol=1e-5, atol=1e-5)
    g = discounted_returns(
        w["rewards"], w["terminated"], w["truncated"], w["next_values"], w["final_values"], 0.9
    )
    np.testing.assert_allclose(nstep_returns(**w, gamma=0.9, n=10_000), g, rtol=1e-5, atol=1e-5)
    with pytest.raises(ReturnsInputError, match="n must be at least 1"):
        nstep_returns(**w, n=0)


# -- V-trace -------------------------------------------------------------------


def vtrace_by_definition(w, mu, pi, gamma, rho_bar, c_bar, lam):
    """Espeholt et al. eq. 1 summed directly over each fragment:
    v_s = V(x_s) + Σ_t γ^{t-s} (Π_{i<t} c_i) ρ_t (r_t + γ V(x_{t+1}) - V(x_t))."""
    ratio = np.exp(pi - mu)
    rho = np.minimum(rho_bar, ratio)
    c = lam * np.minimum(c_bar, ratio)
    nxt = next_state_values(w)
    delta = rho * (w["rewards"] + gamma * nxt - w["values"])
    done = w["terminated"] | w["truncated"]
    steps, cols = delta.shape
    vs = np.array(w["values"], dtype=float)
    for col in range(cols):
        for s in range(steps):
            end = fragment_end(done[:, col], s)
            acc, trace = 0.0, 1.0
            for t in range(s, end + 1):
                acc += gamma ** (t - s) * trace * delta[t, col]
                trace *= c[t, col]
            vs[s, col] += acc
    # v_{s+1} for the advantage: the next target in the fragment, else the bootstrap.
    next_vs = np.where(done, nxt, np.vstack([vs[1:], w["next_values"][None]]))
    pg = rho * (w["rewards"] + gamma * next_vs - w["values"])
    return vs, pg


@pytest.mark.parametrize(
    ("rho_bar", "c_bar", "lam"), [(1.0, 1.0, 1.0), (0.8, 0.5, 0.9), (2.0, 1.0, 1.0)]
)
def test_vtrace_matches_equation_one(rho_bar, c_bar, lam):
    rng = np.random.default_rng(5)
    w = random_window(rng, t=30, n=3)
    mu = np.log(rng.uniform(0.05, 1.0, size=(30, 3)))
    pi = np.log(rng.uniform(0.05, 1.0, size=(30, 3)))
    vs, pg = compute_vtrace_targets(mu, pi, **w, gamma=0.95, rho_bar=rho_bar, c_bar=c_bar, lam=lam)
    ref_vs, ref_pg = vtrace_by_definition(w, mu, pi, 0.95, rho_bar, c_bar, lam)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pg, ref_pg, rtol=1e-5, atol=1e-5)


def test_vtrace_on_policy_targets_are_gae_returns():
    w = random_window(np.random.default_rng(9))
    logp = np.log(np.random.default_rng(1).uniform(0.1, 1.0, size=w["rewards"].shape))
    for lam in (1.0, 0.9):
        vs, _ = compute_vtrace_targets(logp, logp, **w, gamma=0.97, lam=lam)
        _, ret = compute_gae(**w, gamma=0.97, lam=lam)
        np.testing.assert_allclose(vs, ret, rtol=1e-5, atol=1e-5)


def test_vtrace_rejects_bad_clips():
    w = random_window(np.random.default_rng(0), t=3, n=1)
    z = np.zeros((3, 1))
    with pytest.raises(ReturnsInputError, match="rho_bar and c_bar must be positive"):
        compute_vtrace_targets(z, z, **w, rho_bar=0.0)
    with pytest.raises(ReturnsInputError, match=r"target_log_probs has shape \(2, 1\)"):
        compute_vtrace_targets(z, z[:2], **w)
