"""Hyper-parameter search with Optuna (TPE, seeded), on the validation split only, within a wall-clock
budget. The first trial is always a known-good configuration, so even a tiny budget yields a model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import optuna

from training_job.model import NeuMFParams
from training_job.progress import log
from training_job.train import TrainData, TrainOptions, train_neumf

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    best_attrs: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()


def run_study(
    name: str,
    objective: Callable[[optuna.Trial, Deadline], float],
    budget_seconds: float,
    seed: int,
    first: Mapping[str, Any],
    max_trials: int | None = None,
    prune: bool = True,
) -> TuneResult:
    """Maximise ``objective`` until the budget is spent (a trial in flight sees the same deadline)."""
    start = time.monotonic()
    deadline = Deadline(budget_seconds)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
        if prune
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(study_name=name, direction="maximize", sampler=sampler, pruner=pruner)
    study.enqueue_trial(dict(first))

    def wrapped(trial: optuna.Trial) -> float:
        return objective(trial, deadline)

    def stop_when_spent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log(
            f"{name} trial",
            number=trial.number,
            state=trial.state.name,
            value=trial.value,
            params=trial.params,
        )
        if deadline.left() <= 0:
            study.stop()

    study.optimize(
        wrapped,
        n_trials=max_trials,
        timeout=max(budget_seconds, 1e-3),
        callbacks=[stop_when_spent],
        catch=(),
    )
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value if t.value is not None and math.isfinite(t.value) else None,
            "params": dict(t.params),
            "seconds": (t.duration.total_seconds() if t.duration else 0.0),
            **{f"attr_{k}": v for k, v in t.user_attrs.items()},
        }
        for t in study.trials
    ]
    complete = [
        t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]
    if not complete:
        raise RuntimeError(f"{name}: no trial finished within {budget_seconds:.0f} s")
    best = max(complete, key=lambda t: (t.value, -t.number))
    return TuneResult(
        dict(best.params), float(best.value or 0.0), dict(best.user_attrs), trials, time.monotonic() - start
    )


# ---- NeuMF ---------------------------------------------------------------------------------------------


def suggest_neumf(trial: optuna.Trial, base: NeuMFParams, mf_factors: int | None) -> NeuMFParams:
    """A point of the search space. With MF factors available, ``gmf_init`` may start the GMF branch
    from them, which fixes ``factors`` to their width."""
    width = trial.suggest_categorical("mlp_width", [32, 64, 128])
    gmf_init = mf_factors is not None and trial.suggest_categorical("gmf_init", [True, False])
    factors = (
        mf_factors if gmf_init and mf_factors else trial.suggest_categorical("factors", [16, 32, 64, 128])
    )
    return replace(
        base,
        factors=factors,
        gmf_init=gmf_init,
        mlp_layers=(width, width // 2, width // 4),
        learning_rate=trial.suggest_float("learning_rate", 5e-4, 1e-2, log=True),
        batch_size=trial.suggest_categorical("batch_size", [4096, 8192, 16384, 32768, 65536]),
        negatives=trial.suggest_int("negatives", 2, 10),
        l2=trial.suggest_float("l2", 1e-6, 1e-2, log=True),
        item_id_dropout=trial.suggest_float("item_id_dropout", 0.0, 0.3),
        use_features=trial.suggest_categorical("use_features", [True, False]),
    )


def trial_values(params: NeuMFParams, mf_factors: int | None) -> dict[str, Any]:
    """``params`` as the search space names them (to enqueue it as the first trial)."""
    values: dict[str, Any] = {
        "mlp_width": params.mlp_layers[0],
        "learning_rate": params.learning_rate,
        "batch_size": params.batch_size,
        "negatives": params.negatives,
        "l2": min(max(params.l2, 1e-6), 1e-2),
        "item_id_dropout": params.item_id_dropout,
        "use_features": params.use_features,
    }
    if mf_factors is not None:
        values["gmf_init"] = params.gmf_init
    if not (params.gmf_init and mf_factors):
        values["factors"] = params.factors
    return values


def tune_neumf(
    data: TrainData,
    budget_seconds: float,
    options: TrainOptions,
    base: NeuMFParams | None = None,
    max_trials: int | None = None,
) -> TuneResult:
    """Best validation NDCG@10 over trials; ``best_attrs`` holds its ``best_epoch`` and ``history``."""
    mf = None if data.mf_factors is None else int(data.mf_factors[0].shape[1])
    start_params = base or NeuMFParams(gmf_init=mf is not None)

    def objective(trial: optuna.Trial, deadline: Deadline) -> float:
        params = suggest_neumf(trial, start_params, mf)

        def report(epoch: int, ndcg: float) -> None:
            trial.report(ndcg, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        trial_options = replace(options, deadline=deadline.at, quiet=True)
        result = train_neumf(data, params, trial_options, on_epoch=report)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("samples_per_second", result.samples_per_second)
        trial.set_user_attr("history", [asdict(h) for h in result.history])
        trial.set_user_attr("params", params.to_dict())
        return result.best_ndcg

    first = trial_values(start_params, mf)
    return run_study("neumf", objective, budget_seconds, options.seed, first, max_trials)
