"""The Optuna study of the search: its space, its objective, its pruner, its storage, and the
summary of what it found.

The objective is one training run's best validation accuracy; the test set is never read
during the search. Each epoch's validation accuracy feeds the pruner. A study continues until
it holds the asked number of finished (complete or pruned) trials; processes or Dask workers
given the same storage and study name share the work.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from tqdm import tqdm

from harness import UserError
from harness.core.config import Config
from harness.core.data import Split
from harness.core.training import fit

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DEFAULT_STUDY = "mlp"
# Twice the reference's 15 epochs: a trial may train as long as the reference and longer (the
# reference's best validation epoch is often its last)
DEFAULT_EPOCH_CAP = 30
PRUNER_FACTOR = 3  # successive halving: the factor between rungs
PRUNER_RUNGS = 3  # the first rung at about cap / 3^3, so that the rungs scale with the cap
# TPE's random start (Optuna's default, named here because --retune's fairness rests on it:
# within these trials every study opened with the same seed draws the same values)
TPE_STARTUP_TRIALS = 10


def pruner_min_epochs(epoch_cap: int) -> int:
    """The pruner's first rung: about cap / factor^rungs epochs, at least one."""
    return max(1, round(epoch_cap / PRUNER_FACTOR**PRUNER_RUNGS))


def pruner_rungs(epoch_cap: int) -> list[int]:
    """The epochs after which the pruner compares a trial with the others (below the cap)."""
    rungs, epoch = [], pruner_min_epochs(epoch_cap)
    while epoch < epoch_cap:
        rungs.append(epoch)
        epoch *= PRUNER_FACTOR
    return rungs


# Trials train on seeds from TRIAL_SEEDS_FROM, evaluation runs on smaller ones (the plan
# refuses others): were a trial's seed one the winner is re-trained on, that re-trained run
# would be the very trial selected as the best of the search, its luck included, and the tuned
# arm's paired difference would be biased upwards. Repeat r of --repeats trains on
# SEARCH_SEED + r * REPEAT_SEED_STRIDE, its workers' samplers on the seeds just above.
TRIAL_SEEDS_FROM = 1_000_000
SEARCH_SEED = TRIAL_SEEDS_FROM
REPEAT_SEED_STRIDE = 1_000


def suggest_config(trial: optuna.Trial, base: Config, epoch_cap: int) -> Config:
    """The search space: the MLP family around the reference, with its number of hidden layers
    (their widths halving layer by layer) and its own width and batch size among the choices."""
    layers = len(base.hidden_widths)
    width = trial.suggest_categorical("width", width_choices(base))  # halved layer by layer
    weight_decay = 0.0
    if trial.suggest_categorical("use_weight_decay", [True, False]):
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    return dataclasses.replace(
        base,
        hidden_widths=halved_widths(width, layers),
        batchnorm=trial.suggest_categorical("batchnorm", [True, False]),
        dropout=tuple(  # the last hidden layer's rate capped lower, as the reference's is 0
            trial.suggest_float(f"dropout_{i}", 0.0, 0.5 if i < layers else 0.3)
            for i in range(1, layers + 1)
        ),
        lr=trial.suggest_float("lr", 3e-4, 5e-3, log=True),
        weight_decay=weight_decay,
        batch_size=trial.suggest_categorical(
            "batch_size", sorted({128, 256, 512, base.batch_size})
        ),
        scheduler_factor=trial.suggest_float("scheduler_factor", 0.1, 0.7),
        scheduler_patience=trial.suggest_int("scheduler_patience", 0, 3),
        epochs=trial.suggest_int("epochs", min(8, epoch_cap), epoch_cap),
        shift=trial.suggest_int("shift", 0, 2),
    )


WIDTHS = (512, 768, 1024)  # the first hidden layer's width; the reference's own is added


def width_choices(base: Config) -> list[int]:
    return sorted({*WIDTHS, base.hidden_widths[0]})


def halved_widths(width: int, layers: int) -> tuple[int, ...]:
    return tuple(max(1, width // 2**i) for i in range(layers))


def reference_params(reference: Config, epoch_cap: int) -> dict[str, Any]:
    """The reference in the search space's terms: a new study's first trial, so that the
    search starts from the known baseline and can only improve on it."""
    return {
        "width": reference.hidden_widths[0],
        "use_weight_decay": reference.weight_decay > 0,
        "weight_decay": reference.weight_decay,
        "batchnorm": reference.batchnorm,
        **{f"dropout_{i}": rate for i, rate in enumerate(reference.dropout, start=1)},
        "lr": reference.lr,
        "batch_size": reference.batch_size,
        "scheduler_factor": reference.scheduler_factor,
        "scheduler_patience": reference.scheduler_patience,
        "epochs": min(reference.epochs, epoch_cap),
        "shift": reference.shift,
    }


def objective(
    trial: optuna.Trial,
    data: Split,
    base: Config,
    epoch_cap: int,
    seed: int,
    device: Any,
    bar: tqdm | None = None,
) -> float:
    config = suggest_config(trial, base, epoch_cap)
    trial.set_user_attr("seed", seed)  # its training seed: never an evaluation seed

    def report_epoch(epoch: dict[str, Any]) -> None:
        if bar is not None:
            bar.set_postfix_str(
                f"search trial {trial.number}, epoch {epoch['epoch']}/{config.epochs}"
            )
        trial.report(epoch["val_accuracy"], epoch["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch['epoch']}")

    result = fit(config, seed, data, device, on_epoch=report_epoch)
    if result.diverged_epoch is not None:
        trial.set_user_attr("failure", f"diverged at epoch {result.diverged_epoch}")
        raise optuna.TrialPruned(f"diverged at epoch {result.diverged_epoch}")
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("config", config.to_dict())
    return result.best_val_accuracy


class StorageError(UserError):
    pass


def open_study(
    name: str,
    storage: str,
    seed: int | None,
    epoch_cap: int = DEFAULT_EPOCH_CAP,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """seed=None: the sampler draws fresh randomness (processes sharing a storage must not all
    propose the same first trials). constant_liar keeps parallel workers apart. The pruner is
    the search's successive halving over epochs unless another is given."""
    pruner = pruner or optuna.pruners.SuccessiveHalvingPruner(
        # at each rung (epochs 1, 3, 9 and 27 for a cap of 30), a trial goes on only if it is in
        # the best third of the trials that reached that epoch: most of the budget goes to the
        # most promising trials
        min_resource=pruner_min_epochs(epoch_cap),
        reduction_factor=PRUNER_FACTOR,
    )
    try:
        return _create_study(name, storage, seed, pruner)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StorageError(
            f"cannot open the Optuna storage {_redacted(storage)}: {cause}"
        ) from error


def _create_study(
    name: str, storage: str, seed: int | None, pruner: optuna.pruners.BasePruner
) -> optuna.Study:
    # A trial whose worker was killed (Ctrl-C, SIGKILL) sends no more heartbeats: the next
    # trial to start marks it failed instead of leaving it RUNNING, a lie to the sampler.
    # Heartbeats are experimental in Optuna 5; chosen knowingly, so not warned of on every open.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=120)
    return optuna.create_study(
        study_name=name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(
            seed=seed, constant_liar=True, n_startup_trials=TPE_STARTUP_TRIALS
        ),
        pruner=pruner,
    )


def start_from_reference(study: optuna.Study, base: Config, epoch_cap: int) -> None:
    """A new study's first trial is the reference, so that the search can only improve on it."""
    if not study.trials:
        study.enqueue_trial(reference_params(base, epoch_cap))


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def optimize(
    study: optuna.Study,
    data: Split,
    base: Config,
    trials: int,
    epoch_cap: int,
    seed: int,
    device: Any = "cpu",
    timeout: float | None = None,
    bar: tqdm | None = None,
) -> None:
    """Runs trials until the study holds `trials` finished ones (or the timeout passes).

    The bar advances by one per finished trial and shows the best value so far.
    """
    remaining = trials - finished_count(study)
    if remaining <= 0:
        return
    start_from_reference(study, base, epoch_cap)
    seen = finished_count(study)

    def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal seen
        now = finished_count(study)
        if bar is not None:
            bar.update(now - seen)
            bar.set_postfix_str(f"search trial {trial.number}, {best_text(study)}")
        seen = now

    study.optimize(
        lambda trial: objective(trial, data, base, epoch_cap, seed, device, bar),
        n_trials=remaining,
        timeout=timeout,
        catch=(),
        callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), show],
    )


def best_text(study: optuna.Study) -> str:
    """The best validation accuracy so far, for a progress bar."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "best val acc n/a"
    return f"best val acc {100 * max(t.value for t in complete):.2f}%"


def summarize(study: optuna.Study, storage: str) -> dict[str, Any]:
    """Everything the report needs, so that reports never need the study's database."""
    best = study.best_trial
    trials = study.get_trials(deepcopy=False)
    ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    started = [t.datetime_start for t in trials if t.datetime_start is not None]
    return {
        "study": study.study_name,
        # first trial's start to last trial's end: the search's wall time, if run in one go
        "wall_seconds": (max(ended) - min(started)).total_seconds() if ended else None,
        "storage": _redacted(storage),
        "config": best.user_attrs["config"],
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "counts": {
            state.name.lower(): sum(t.state == state for t in trials) for state in TrialState
        },
        "importances": importances(study),
        "space": {name: repr(dist) for t in trials for name, dist in t.distributions.items()},
        "trials": [
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "failure": t.user_attrs.get("failure"),
            }
            for t in trials
        ],
    }


def importances(study: optuna.Study) -> dict[str, float] | None:
    """PED-ANOVA importances (no scikit-learn needed); None when the study has too few complete
    trials for them (Optuna's own condition), any other failure is raised."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    return optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )


SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword")


def _redacted(storage: str) -> str:
    """The URL without its password, whether as user:password@ or as a query parameter."""
    try:
        url = make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        return "(an unparsable URL)"
    secrets = {key: "hidden" for key in url.query if key.lower() in SECRET_QUERY_KEYS}
    return url.update_query_dict(secrets).render_as_string(hide_password=True)
