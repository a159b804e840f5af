"""PBTOptimizer: population-based exploit and explore, on one agent.

Population-based training (Jaderberg et al. 2017) trains a population of
models, each with its own hyperparameters, and periodically lets the worst
copy the best and then perturbs them. optix's loop trains one agent, so here
a *member* is a hyperparameter configuration (a value for every bounded
name), not a model: the members take turns on the one agent. A member is in
force for the windows up to the next evaluation, and that evaluation's score
is the member's score for the round. When every member has had its turn,
truncation selection runs:

    exploit: each of the bottom ⌊exploit_frac·n⌋ members (at least one) copies
             the hyperparameters of a member drawn from as many at the top
    explore: the copy is perturbed, per hyperparameter,
             log scale:  δ = scale·log(high/low),  θ' = clip(θ·exp(δ·ε), low, high)
             linear:     δ = scale·(high − low),    θ' = clip(θ + δ·ε, low, high)
             with ε ~ U(−1, 1), integers rounded

The log-scale perturbation is uniform in log θ, so it puts equal probability
on every decade it reaches: a learning rate moves by factors, not amounts.
The rule is ``optix_core.search_space.perturb_params``, the one PolicyManager
spawns with.

**The weights are shared.** This is PBT over hyperparameters only: every
member trains the same network, one after another, and no member owns a copy
of the weights, so "exploit" copies a configuration, never a model, and a
member's score also reflects how far training had come at its turn (the order
of turns is drawn afresh each round so that no member always plays last, on
the most trained weights). For a population whose members really hold their
own weights (spawned from the best checkpoint, trained as separate lineages,
pruned, combined in an ensemble) use ``optix_core.evolution.PolicyManager``. The first round's
members are the agent's hyperparameters and perturbations of them. A member
whose turn gives no usable score (not finite, or the agent no longer held its
hyperparameters, after a rollback) keeps its previous score; a member never
scored ranks last.

``is_probing`` is False while the incumbent (the top member at the last
ranking, at first the agent's own hyperparameters) is in force: a drop under
it is real; under any other member it may be the member's doing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from optix_core.optimizers.bounds import BoundedOptimizer, Bounds, check_gain, score_or_nan
from optix_core.search_space import perturb_params
from optix_core.types import EvalMetrics, HyperparamSet, finite_or_none


class PBTOptimizer(BoundedOptimizer):
    """Exploit/explore over ``population_size`` hyperparameter members taking turns.

    ``exploit_frac`` in (0, 0.5]: the share of members replaced each round
    (and the share they copy from). ``perturb_scale`` in (0, 1]: the half-width
    of an explore step as a fraction of the range (of the log range for a
    log-scale hyperparameter).
    """

    def __init__(
        self,
        param_bounds: Bounds | None = None,
        log_scale: Iterable[str] | None = None,
        *,
        population_size: int = 4,
        exploit_frac: float = 0.25,
        perturb_scale: float = 0.1,
        seed: int | None = None,
    ) -> None:
        super().__init__(param_bounds, log_scale, seed)
        if isinstance(population_size, bool) or not isinstance(population_size, int):
            raise ValueError(f"population_size must be an int, got {population_size!r}")
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        self.population_size = population_size
        self.exploit_frac = check_gain("exploit_frac", exploit_frac, positive=True, at_most=0.5)
        self.perturb_scale = check_gain("perturb_scale", perturb_scale, positive=True, at_most=1.0)
        self.members: list[dict[str, Any]] = []
        self.scores: list[float] = []
        self._order: list[int] = []
        self._turn = -1
        self._incumbent = 0

    @property
    def is_probing(self) -> bool:
        return self._turn >= 0 and self._order[self._turn] != self._incumbent

    @property
    def incumbent(self) -> dict[str, Any] | None:
        """The best member's hyperparameters at the last ranking."""
        return dict(self.members[self._incumbent]) if self.members else None

    def suggest(self, current: HyperparamSet, metrics: EvalMetrics) -> HyperparamSet:
        if not len(self.space):
            return current.copy()
        self._check(current)
        if not self.members:
            first = self.space.values(self.space.place(current.params, current.params))
            self.members = [first] + [self.perturb(first) for _ in range(self.population_size - 1)]
            self.scores = [math.nan] * self.population_size
        else:
            member = self._order[self._turn]
            score = float(metrics.primary_score)
            if math.isfinite(score) and self.space.matches(current.params, self.members[member]):
                self.scores[member] = score
        if self._turn + 1 >= len(self._order):
            if self._order:
                self._evolve()
            self._order = self._rng.permutation(self.population_size).tolist()
            self._turn = -1
        self._turn += 1
        params = {**current.params, **self.members[self._order[self._turn]]}
        return HyperparamSet(params=params, episode_id=current.episode_id)

    def perturb(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with every bounded hyperparameter explored (see the module doc);
        other keys are left as they are. The rule is ``search_space.perturb_params``
        with ε ~ U(−1, 1), the one PolicyManager uses with ε ~ N(0, 1)."""
        self.space.check(params, type(self).__name__)
        return perturb_params(
            params, self.space.params, self.perturb_scale, self._rng, noise="uniform"
        )

    def _evolve(self) -> None:
        """Truncation selection (Jaderberg et al. 2017): the bottom copy the top, then explore."""
        ranked = sorted(
            range(self.population_size),
            key=lambda i: self.scores[i] if math.isfinite(self.scores[i]) else -math.inf,
            reverse=True,
        )
        n_cut = max(1, math.floor(self.exploit_frac * self.population_size))
        top, bottom = ranked[:n_cut], ranked[-n_cut:]
        for loser in bottom:
            source = top[int(self._rng.integers(n_cut))]
            self.members[loser] = self.perturb(self.members[source])
            self.scores[loser] = math.nan
        self._incumbent = ranked[0]

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "members": [dict(m) for m in self.members],
            "scores": [finite_or_none(s) for s in self.scores],
            "order": list(self._order),
            "turn": self._turn,
            "incumbent": self._incumbent,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._load_base_state(state)
        if state["members"] and len(state["members"]) != self.population_size:
            raise ValueError(
                f"PBTOptimizer: this state holds {len(state['members'])} members, "
                f"population_size is {self.population_size}"
            )
        self.members = [dict(m) for m in state["members"]]
        self.scores = [score_or_nan(s) for s in state["scores"]]
        self._order = [int(i) for i in state["order"]]
        self._turn = int(state["turn"])
        self._incumbent = int(state["incumbent"])
