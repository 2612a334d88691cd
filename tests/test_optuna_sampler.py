"""The LSTM controller as an Optuna sampler: Optuna's own sampler test cases, plus a learning check."""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
import pytest
from optuna.testing.pytest_samplers import BasicSamplerTestCase, SingleOnlySamplerTestCase

from l2l.controllers import ControllerSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TestControllerSampler(BasicSamplerTestCase, SingleOnlySamplerTestCase):
    """Optuna's test suite for samplers (optuna.testing.pytest_samplers), run against ours."""

    @pytest.fixture
    def sampler(self) -> Callable[[], optuna.samplers.BaseSampler]:
        return lambda: ControllerSampler(seed=0)


def objective(trial: optuna.Trial) -> float:
    """Float, integer, categorical and conditional parameters; best value 0 at kind=quad, x=3, n=7."""
    kind = trial.suggest_categorical("kind", ["quad", "abs", "flat"])
    n = trial.suggest_int("n", 0, 20)
    if kind == "quad":
        x = trial.suggest_float("x", -10.0, 10.0)
        return (x - 3.0) ** 2 / 10 + abs(n - 7)
    if kind == "abs":
        lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
        return 5.0 + abs(math.log10(lr) + 2) + abs(n - 7)
    return 10.0 + abs(n - 7)


def run(sampler: optuna.samplers.BaseSampler, trials: int = 150) -> optuna.Study:
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.optimize(objective, n_trials=trials)
    return study


def test_controller_sampler_learns_a_mixed_conditional_objective() -> None:
    ours = [run(ControllerSampler(seed=s)) for s in range(3)]
    rnd = [run(optuna.samplers.RandomSampler(seed=s)) for s in range(3)]
    last = [sum(t.value for t in st.trials[-40:]) / 40 for st in ours]  # type: ignore[misc]
    rnd_mean = [sum(t.value for t in st.trials) / len(st.trials) for st in rnd]  # type: ignore[misc]
    assert sum(last) / 3 < 0.6 * sum(rnd_mean) / 3, (last, rnd_mean)
    for st in ours:
        assert st.best_params["kind"] == "quad" and abs(st.best_params["n"] - 7) <= 1
        late = [t.params["kind"] for t in st.trials[-40:]]
        assert late.count("quad") > 25  # the policy settled on the right branch


def test_failed_and_nan_trials_are_left_out_of_learning() -> None:
    sampler = ControllerSampler(seed=0, batch=2)
    study = optuna.create_study(sampler=sampler)

    def flaky(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number % 3 == 0:
            raise RuntimeError("boom")
        return float("nan") if trial.number % 3 == 1 else x

    study.optimize(flaky, n_trials=12, catch=(RuntimeError,))
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 8  # raised, and NaN counts as failed in Optuna
    assert sampler.updates == 2  # 4 complete trials, batch 2
    assert not sampler.traces  # nothing left behind by failed trials


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="batch must be >= 1"):
        ControllerSampler(batch=0)
    with pytest.raises(TypeError, match="ControllerSampler: batch must be a whole number, got '4'"):
        ControllerSampler(batch="4")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ControllerSampler: lr must be a number, got None"):
        ControllerSampler(lr=None)  # type: ignore[arg-type]


def test_a_seeded_sampler_repeats_itself_whatever_the_global_torch_state_and_leaves_it_alone() -> None:
    """Each parameter's head was initialised from the global torch generator: the same seed gave other trials
    after another torch.manual_seed, and sampling moved the user's random state."""
    import torch

    def trials(global_seed: int) -> tuple[list[dict[str, object]], torch.Tensor]:
        torch.manual_seed(global_seed)
        study = run(ControllerSampler(seed=3), trials=12)
        return [t.params for t in study.trials], torch.rand(1)

    first, after_first = trials(0)
    second, _ = trials(1)
    assert first == second
    torch.manual_seed(0)
    assert torch.equal(after_first, torch.rand(1))  # as if the sampler had drawn nothing from it
