"""Each arm's own learning rate (and weight decay): the same small search for every arm.

The component under study is what the tuning playbook calls a scientific hyperparameter, the
optimizer's settings nuisance ones: an arm judged at the reference's learning rate is judged at
settings tuned for the reference (Melis et al. 2018 and Lucic et al. 2018 saw many gains vanish
once every arm had the same tuning budget). --retune gives every arm, the reference included,
the same number of full training runs (no pruning) on one trial seed, the first at the arm's own
values and TPE after, seeded alike: its first TPE_STARTUP_TRIALS are random draws, so every arm
is tried at the same values; the best validation accuracy picks. The objective sees a Split,
which holds no test set. The retuned arms then train on the arms' seeds and are compared with
the retuned reference, beside the verdicts at the reference's settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna

from harness.core.data import Mnist, Split, load_mnist, resolve_data_dir, split
from harness.core.record import RunRecord
from harness.core.store import RunStore
from harness.core.training import fit, resolve_device
from harness.study.executor import Resources
from harness.study.grid import check_before_training
from harness.study.plan import TRIAL_SEEDS_FROM, Arm, Plan, is_tuned, retuned_label
from harness.study.progress import QUIET, Progress
from harness.study.runner import run_study
from harness.study.search._study import finished_count, open_study
from harness.study.search._summary import (
    RetuneSummary,
    load_retune_summaries,
    save_retune_summaries,
)
from harness.study.settings import RETUNABLE, SearchSettings, StudySettings

RETUNE_SEED = TRIAL_SEEDS_FROM + 500_000  # beside the searches' repeats, never an evaluation seed


def run_retuned(
    plan: Plan,
    settings: StudySettings,
    results_dir: Path,
    resources: Resources,
    progress: Progress = QUIET,
) -> list[RunRecord]:
    """Each of the plan's arms at its own values of settings.retune (retune_arms), trained on
    its seeds beside the retuned reference."""
    check_before_training(RunStore(results_dir), resources)
    mnist = load_mnist(resolve_data_dir(resources.data_dir))
    device = resolve_device(resources.device)
    summaries = retune_arms(plan, settings, mnist, results_dir, device, progress)
    retuned = plan
    for label, summary in summaries.items():
        retuned = retuned.with_arm(retuned_arm(plan.arms[label], summary))
    return run_study(retuned, results_dir, resources, progress)


def retune_arms(
    plan: Plan,
    settings: StudySettings,
    mnist: Mnist,
    results_dir: Path,
    device: Any,
    progress: Progress = QUIET,
) -> dict[str, RetuneSummary]:
    """The same small search for each of the plan's arms (retune_arm, here, one trial at a
    time) on the trial seed's train/validation split: the test images are not in it. The
    summaries are saved to retuned.json as each arm finishes."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = SearchSettings().storage_url(results_dir)
    trial_data = split(mnist, plan.reference.config.val_size, RETUNE_SEED)
    saved = load_retune_summaries(results_dir)
    arms = [arm for arm in plan.arms.values() if not is_tuned(arm.label)]
    progress.add(len(arms))
    chosen = {}
    for arm in arms:
        progress.status(f"retuning {'+'.join(settings.retune)} of {arm.label}")
        chosen[arm.label] = retune_arm(
            arm, settings.retune, storage, trial_data, device, settings.retune_trials
        )
        save_retune_summaries(saved | chosen, results_dir)
        progress.advance()
    return chosen


def retuned_params(arm: Arm, params: tuple[str, ...]) -> tuple[str, ...]:
    """The asked parameters that this arm may retune: weight decay only where the arm has some
    (an arm without it studies its absence, which retuning would undo)."""
    return tuple(p for p in params if p != "weight_decay" or arm.config.weight_decay > 0)


def study_name(label: str, params: tuple[str, ...]) -> str:
    return f"retune-{'+'.join(params)}-{label}"


def retune_arm(
    arm: Arm,
    params: tuple[str, ...],
    storage: str,
    data: Split,
    device: Any,
    trials: int,
    seed: int = RETUNE_SEED,
) -> RetuneSummary:
    """The arm's best values of params on validation accuracy, with the search that found them
    (resumed if it exists: it runs until it holds `trials` finished trials)."""
    own = retuned_params(arm, params)
    name = study_name(arm.label, own)
    epochs = arm.config.epochs
    study = open_study(name, storage, seed, epochs, pruner=optuna.pruners.NopPruner())
    if not study.trials:
        study.enqueue_trial({p: getattr(arm.config, p) for p in own})

    def objective(trial: optuna.Trial) -> float:
        values = {p: trial.suggest_float(p, *RETUNABLE[p], log=True) for p in own}
        trial.set_user_attr("seed", seed)
        result = fit(dataclasses.replace(arm.config, **values), seed, data, device)
        if result.diverged_epoch is not None:
            raise optuna.TrialPruned(f"diverged at epoch {result.diverged_epoch}")
        return result.best_val_accuracy

    remaining = trials - finished_count(study)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=())
    return RetuneSummary(
        study=name,
        params=own,
        values=study.best_params,
        best_value=study.best_value,
        own_values={p: getattr(arm.config, p) for p in own},
        trials=finished_count(study),
        trial_seed=seed,
    )


def retuned_arm(arm: Arm, summary: RetuneSummary) -> Arm:
    values = ", ".join(f"{p} {v:.3g}" for p, v in summary.values.items())
    return Arm(
        retuned_label(arm.label),
        f"{arm.description}; its own {values} (--retune)",
        dataclasses.replace(arm.config, **summary.values),
        arm.seeds,
    )


def range_text(params: list[str]) -> str:
    return ", ".join(f"{p} {low:g}–{high:g}" for p, (low, high) in RETUNABLE.items() if p in params)
