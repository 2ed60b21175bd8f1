"""The Optuna study of a search: its storage, sampler and pruner, the objective, trials one at a
time, and the summary of what it found.

The objective is one training run's best validation accuracy; it sees a Split, which holds no
test image. Each epoch's validation accuracy feeds the pruner. A study continues until it holds
the asked number of finished (complete or pruned) trials; processes or Dask workers given the
same storage and study name share the work.
"""

from __future__ import annotations

import os
import socket
import warnings
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from harness import UserError
from harness.core.config import Config, config_from_dict
from harness.core.data import Split
from harness.core.training import fit
from harness.study.progress import QUIET, Progress
from harness.study.search._space import reference_params, suggest_config
from harness.study.search._summary import SearchSummary, Trial
from harness.study.settings import redacted

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PRUNER_FACTOR = 3  # successive halving: the factor between rungs
PRUNER_RUNGS = 3  # the first rung at about cap / 3^3, so that the rungs scale with the cap
# TPE's random start (Optuna's default, named here because --retune's fairness rests on it:
# within these trials every study opened with the same seed draws the same values)
TPE_STARTUP_TRIALS = 10
PROCESS = "process"  # a trial's user attribute: the host and pid of the process that runs it


class StorageError(UserError):
    pass


def pruner_min_epochs(search_epochs: int) -> int:
    """The pruner's first rung: about cap / factor^rungs epochs, at least one."""
    return max(1, round(search_epochs / PRUNER_FACTOR**PRUNER_RUNGS))


def pruner_rungs(search_epochs: int) -> list[int]:
    """The epochs after which the pruner compares a trial with the others (below the cap)."""
    rungs, epoch = [], pruner_min_epochs(search_epochs)
    while epoch < search_epochs:
        rungs.append(epoch)
        epoch *= PRUNER_FACTOR
    return rungs


def open_study(
    name: str,
    storage: str,
    seed: int | None,
    search_epochs: int,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """seed=None: the sampler draws fresh randomness (processes sharing a storage must not all
    propose the same first trials). constant_liar keeps parallel workers apart. The pruner is
    the search's successive halving over epochs unless another is given."""
    pruner = pruner or optuna.pruners.SuccessiveHalvingPruner(
        # at each rung (epochs 1, 3, 9 and 27 for a cap of 30), a trial goes on only if it is in
        # the best third of the trials that reached that epoch: most of the budget goes to the
        # most promising trials
        min_resource=pruner_min_epochs(search_epochs),
        reduction_factor=PRUNER_FACTOR,
    )
    try:
        # A trial whose worker was killed sends no more heartbeats: the next trial to start
        # after the grace period marks it failed instead of leaving it RUNNING, a lie to the
        # sampler. Heartbeats are experimental in Optuna 5; chosen knowingly, so not warned of.
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
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StorageError(
            f"cannot open the Optuna storage {redacted(storage)}: {cause}", "storage"
        ) from error


def start_from_reference(study: optuna.Study, base: Config, search_epochs: int) -> None:
    """A new study's first trial is the reference, so that the search can only improve on it."""
    if not study.trials:
        study.enqueue_trial(reference_params(base, search_epochs))


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_running_trials(study: optuna.Study, processes: set[str] | None = None) -> None:
    """The trials still RUNNING in the given processes (None: every one, where the study is
    this command's alone), killed as Ctrl-C stops the workers at once, told failed now rather
    than after the heartbeat's grace period."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if processes is None or trial.user_attrs.get(PROCESS) in processes:
            study.tell(trial.number, state=TrialState.FAIL)


def objective(
    trial: optuna.Trial,
    data: Split,
    base: Config,
    search_epochs: int,
    seed: int,
    device: Any,
    progress: Progress = QUIET,
) -> float:
    """One trial: the config it draws trained on the trial seed's split; its best validation
    accuracy, reported epoch by epoch to the pruner."""
    trial.set_user_attr(PROCESS, this_process())
    config = suggest_config(trial, base, search_epochs)
    trial.set_user_attr("seed", seed)  # its training seed: never an evaluation seed

    def report_epoch(epoch: dict[str, Any]) -> None:
        progress.status(f"search trial {trial.number}, epoch {epoch['epoch']}/{config.epochs}")
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


def optimize(
    study: optuna.Study,
    data: Split,
    base: Config,
    trials: int,
    search_epochs: int,
    seed: int,
    device: Any = "cpu",
    timeout: float | None = None,
    progress: Progress = QUIET,
) -> None:
    """Runs trials one at a time until the study holds `trials` finished ones (or the timeout
    passes); progress advances by one per finished trial."""
    remaining = trials - finished_count(study)
    if remaining <= 0:
        return
    start_from_reference(study, base, search_epochs)
    seen = finished_count(study)

    def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal seen
        now = finished_count(study)
        progress.advance(now - seen)
        progress.status(f"search trial {trial.number}, {best_text(study)}")
        seen = now

    study.optimize(
        lambda trial: objective(trial, data, base, search_epochs, seed, device, progress),
        n_trials=remaining,
        timeout=timeout,
        catch=(),
        callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), show],
    )


def best_text(study: optuna.Study) -> str:
    """The best validation accuracy so far, for a status line."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "best val acc n/a"
    return f"best val acc {100 * max(t.value for t in complete):.2f}%"


def summarize(study: optuna.Study, storage: str, trial_seed: int) -> SearchSummary:
    """Everything the report needs, so that reports never need the study's database."""
    best = study.best_trial
    trials = study.get_trials(deepcopy=False)
    ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    started = [t.datetime_start for t in trials if t.datetime_start is not None]
    return SearchSummary(
        study=study.study_name,
        storage=redacted(storage),
        config=config_from_dict(best.user_attrs["config"]),
        best_trial=best.number,
        best_value=best.value,
        best_params=best.params,
        counts={state.name.lower(): sum(t.state == state for t in trials) for state in TrialState},
        space={name: repr(dist) for t in trials for name, dist in t.distributions.items()},
        trials=tuple(
            Trial(t.number, t.state.name.lower(), t.value, t.user_attrs.get("failure"))
            for t in trials
        ),
        importances=importances(study),
        # first trial's start to last trial's end: the search's wall time, if run in one go
        wall_seconds=(max(ended) - min(started)).total_seconds() if ended else None,
        trial_seed=trial_seed,
    )


def importances(study: optuna.Study) -> dict[str, float] | None:
    """PED-ANOVA importances (no scikit-learn needed); None when the study has too few complete
    trials for them (Optuna's own condition), any other failure is raised."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    return optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )
