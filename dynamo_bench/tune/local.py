"""What a tier has evaluated, and where to go when the sampler proposes it again.

A sampler that has converged keeps proposing configurations it has already seen. Such a
proposal is answered from the earlier trial (the sampler learns nothing new, and the trial is
marked `duplicate_of`; it does not count against the budget or the patience), and the next trial
is a local move instead (the tuner also interleaves `neighbour_move`s with the sampler's
proposals): an unexplored neighbour (tune/space.py: `neighbours`) of the best
feasible trials, best first, in a seeded random order; failing that, a random unexplored
configuration (of a finite space: the last ones found by enumerating it); failing that, the
space is exhausted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import TrialState

from dynamo_bench.errors import SpecError
from dynamo_bench.tune.space import (
    FixedParams,
    complete_params,
    deployment_for,
    enumerate_params,
    knobs_from_params,
    neighbours,
)
from dynamo_bench.tune.sweep import SweepSpec

#: the best feasible trials whose neighbourhoods are searched for a local move, best first
TOP = 5


def deployment_key(deployment: dict[str, Any]) -> str:
    """A deployment's identity (its JSON without the name)."""
    return json.dumps({k: v for k, v in deployment.items() if k != "name"}, sort_keys=True)


class Evaluated:
    """The distinct configurations of one tier's study (by deployment) and the local moves.

    `sync` reads the study's finished trials (also those of other tuners sharing it);
    `twin` finds the trial that evaluated a deployment; `next_move` proposes an unexplored
    configuration as complete Optuna params, or None when the space has none left.
    """

    def __init__(self, sweep: SweepSpec, fidelity: str, seed: int) -> None:
        self.sweep, self.fidelity = sweep, fidelity
        self.rng = random.Random(seed)
        self.by_key: dict[str, int] = {}
        self._read: set[int] = set()
        self._pending: set[str] = set()  # moves queued and not yet evaluated
        self._rest: Iterator[dict[str, Any]] | None = None

    def sync(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        for t in trials:
            if t.number in self._read or t.state not in (TrialState.COMPLETE,
                                                          TrialState.PRUNED):
                continue
            self._read.add(t.number)
            ua = t.user_attrs
            if "evaluation" in ua and "deployment" in ua and ua.get("fidelity") == \
                    self.fidelity and "duplicate_of" not in ua:
                key = deployment_key(ua["deployment"])
                self.by_key.setdefault(key, t.number)
                self._pending.discard(key)

    def twin(self, deployment: dict[str, Any]) -> int | None:
        """The number of the trial that evaluated `deployment`, if one did."""
        return self.by_key.get(deployment_key(deployment))

    def key_of(self, params: dict[str, Any]) -> str | None:
        try:
            spec = deployment_for(self.sweep, knobs_from_params(self.sweep, params))
        except SpecError:
            return None
        return deployment_key(spec.model_dump(mode="json", exclude_none=True))

    def _fresh(self, params: dict[str, Any]) -> bool:
        key = self.key_of(params)
        if key is None or key in self.by_key or key in self._pending:
            return False
        self._pending.add(key)
        return True

    def next_move(self, trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any] | None:
        """An unexplored neighbour of the best feasible trials, else an unexplored
        configuration of a finite space, else None."""
        move = self.neighbour_move(trials)
        if move is not None:
            return move
        for params in self._unexplored():
            if self._fresh(params):
                return params
        return None

    def neighbour_move(self, trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any] | None:
        """An unexplored neighbour of the `TOP` best feasible trials (best first, neighbours in
        a seeded random order), or None (no feasible trial yet, or none left)."""
        feasible = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.values
                           and t.user_attrs.get("status") == "complete"
                           and "duplicate_of" not in t.user_attrs),
                          key=lambda t: (-t.values[0], t.number))
        for t in feasible[:TOP]:
            moves = neighbours(self.sweep, t.params)
            self.rng.shuffle(moves)
            for params in moves:
                if self._fresh(params):
                    return params
        return None

    def _unexplored(self) -> Iterator[dict[str, Any]]:
        """Configurations to try when no neighbour is left: random draws first (cheap in any
        space), then, for a finite space, every configuration in a seeded random order
        (enumerating a large space takes seconds, so only a nearly exhausted one gets there).
        Resumes where the previous call stopped."""
        if self._rest is None:
            self._rest = self._draws()
        return self._rest

    def _draws(self) -> Iterator[dict[str, Any]]:
        for _ in range(RANDOM_DRAWS):
            yield complete_params(self.sweep, {}, _RandomChoices(self.rng))
        try:
            every = list(enumerate_params(self.sweep))
        except SpecError:  # a range: not enumerable
            return
        self.rng.shuffle(every)
        yield from every


#: random draws tried for an unexplored configuration before a finite space is enumerated
RANDOM_DRAWS = 200


class _RandomChoices(FixedParams):
    """A `Suggester` answering every parameter with a uniformly random choice."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__({})
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.rng.choice(list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1,
                    log: bool = False) -> int:
        return self.rng.randrange(low, high + 1, step)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return self.rng.uniform(low, high)
