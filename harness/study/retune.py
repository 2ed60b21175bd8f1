"""Each arm's own learning rate (and weight decay): the same small search for every arm.

The component under study is what the tuning playbook calls a scientific hyperparameter, the
optimizer's settings nuisance ones: an arm judged at the reference's learning rate is judged at
settings tuned for the reference (Melis et al. 2018 and Lucic et al. 2018 saw many gains vanish
once every arm had the same tuning budget). --retune gives every arm, the reference included,
RETUNE_TRIALS full training runs (no pruning) on one trial seed, the first at the arm's own
values and TPE after, seeded alike: its first TPE_STARTUP_TRIALS are random draws, so every arm
is tried at the same values; the best validation accuracy picks. The objective sees a Split,
which holds no test set. The retuned arms then train on the arms' seeds and are compared with
the retuned reference, beside the verdicts at the reference's settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from harness import UserError
from harness.core.config import Config
from harness.core.data import Split
from harness.core.training import fit
from harness.study.plan import Arm
from harness.study.specs import REFERENCE
from harness.study.tuning import TRIAL_SEEDS_FROM, finished_count, open_study

RETUNABLE = {"lr": (1e-4, 1e-2), "weight_decay": (1e-6, 1e-2)}  # log-uniform ranges
RETUNE_TRIALS = 8
RETUNE_SEED = TRIAL_SEEDS_FROM + 500_000  # beside the searches' repeats, never an evaluation seed
RETUNED_SUFFIX = "-retuned"
RETUNED_REFERENCE = REFERENCE + RETUNED_SUFFIX


def parse_retune(value: str) -> tuple[str, ...]:
    """--retune lr or lr,weight_decay."""
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in names if name not in RETUNABLE]
    if not names or unknown:
        raise UserError(
            f"--retune {value}: expected one or more of {', '.join(RETUNABLE)}, comma-separated"
        )
    return names


def range_text(params: list[str]) -> str:
    return ", ".join(f"{p} {low:g}–{high:g}" for p, (low, high) in RETUNABLE.items() if p in params)


def retuned_label(label: str) -> str:
    return label + RETUNED_SUFFIX


def is_retuned(label: str) -> bool:
    return label.endswith(RETUNED_SUFFIX)


def is_baseline(label: str) -> bool:
    """The reference, or the retuned reference: what other arms are compared with."""
    return label in (REFERENCE, RETUNED_REFERENCE)


def baseline_of(label: str) -> str:
    """The arm a comparison pairs with: the retuned reference for a retuned arm."""
    return RETUNED_REFERENCE if is_retuned(label) else REFERENCE


def retuned_params(config: Config, params: tuple[str, ...]) -> tuple[str, ...]:
    """The asked parameters that this arm may retune: weight decay only where the arm has some
    (an arm without it studies its absence, which retuning would undo)."""
    return tuple(p for p in params if p != "weight_decay" or config.weight_decay > 0)


def study_name(label: str, params: tuple[str, ...]) -> str:
    return f"retune-{'+'.join(params)}-{label}"


def retune_arm(
    arm: Arm,
    params: tuple[str, ...],
    storage: str,
    data: Split,
    device: Any,
    trials: int = RETUNE_TRIALS,
    seed: int = RETUNE_SEED,
) -> dict[str, Any]:
    """The arm's best values of params on validation accuracy, with the search that found them
    (resumed if it exists: it runs until it holds `trials` finished trials)."""
    own = retuned_params(arm.config, params)
    name = study_name(arm.label, own)
    study = open_study(name, storage, seed, pruner=optuna.pruners.NopPruner())
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
    return {
        "study": name,
        "params": own,
        "values": study.best_params,
        "best_value": study.best_value,
        "own_values": {p: getattr(arm.config, p) for p in own},
        "trials": finished_count(study),
        "trial_seed": seed,
    }


def retuned_arm(arm: Arm, summary: dict[str, Any]) -> Arm:
    values = ", ".join(f"{p} {v:.3g}" for p, v in summary["values"].items())
    return Arm(
        retuned_label(arm.label),
        f"{arm.description}; its own {values} (--retune)",
        dataclasses.replace(arm.config, **summary["values"]),
        arm.seeds,
    )
