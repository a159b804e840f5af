"""optix_core.off_policy.distributional: the C51 atoms and the checks every backend's Rainbow
makes, without a framework."""

from __future__ import annotations

import numpy as np
import pytest

from optix_core.off_policy import (
    DEFAULT_ATOMS,
    atom_support,
    check_atoms,
    choose_atoms,
    returns_log_probs,
    warn_without_noisy_layers,
)


def test_the_support_is_evenly_spaced_from_v_min_to_v_max() -> None:
    support = atom_support(5, 0.0, 4.0)
    assert support.dtype == np.float32
    np.testing.assert_array_equal(support, [0.0, 1.0, 2.0, 3.0, 4.0])
    support = atom_support(51, -10.0, 10.0)
    assert support[0] == -10.0 and support[-1] == 10.0
    np.testing.assert_allclose(np.diff(support), 0.4, rtol=1e-5)


@pytest.mark.parametrize(
    "atoms",
    [(1, -10.0, 10.0), (2.5, -1.0, 1.0), (True, -1.0, 1.0), (51, 1.0, 1.0), (51, 0.0, np.inf)],
)
def test_atoms_without_a_support_are_refused(atoms) -> None:
    with pytest.raises(ValueError, match=r"rainbow needs n_atoms >= 2 .* finite v_min < v_max"):
        check_atoms(*atoms, "rainbow")


def test_the_atoms_come_from_the_arguments_the_network_or_the_defaults() -> None:
    assert choose_atoms((None, None, None), None, "rainbow") == DEFAULT_ATOMS == (51, -10.0, 10.0)
    assert choose_atoms((21, None, 5.0), None, "rainbow") == (21, -10.0, 5.0)
    own = (11, -1.0, 1.0)
    assert choose_atoms((None, None, None), own, "rainbow") == own
    assert choose_atoms((11, -1, 1), own, "rainbow") == own  # the same values, given again
    with pytest.raises(ValueError, match="disagree with the RainbowQNetwork"):
        choose_atoms((None, None, 2.0), own, "rainbow")


def test_log_probabilities_and_probabilities_are_told_apart_and_logits_refused() -> None:
    logits = np.random.default_rng(0).normal(size=(2, 3, 7))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert returns_log_probs(log_probs, "rainbow") is True
    assert returns_log_probs(np.exp(log_probs), "rainbow") is False
    assert returns_log_probs(None, "rainbow") is True  # nothing to probe with
    with pytest.raises(ValueError, match="log_softmax"):
        returns_log_probs(logits, "rainbow")


def test_a_network_that_cannot_explore_is_warned_about() -> None:
    with pytest.warns(UserWarning, match="rainbow: the q_network has no NoisyLinear"):
        warn_without_noisy_layers("rainbow")
