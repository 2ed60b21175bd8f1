"""The search with many trials at once, for a GPU: trials asked of the study K at a time
(Optuna's ask-and-tell), those of one network shape trained as one stack (harness.stacked),
each member with its own learning rate, weight decay, dropout rates, shift, schedule and
epochs, each pruned on its own by the study's pruner, then told.

The same space, seed, objective (best validation accuracy) and pruner as the one-trial-per-
worker search (harness.study.search._study); another numeric path (a stacked member's dropout masks
and sums, harness.stacked.trainer), so a stacked search is not the CPU search trial for trial.
The sampler learns between rounds only: a round's trials are proposed before any of them ends.
A pruned member stops learning, but its slice of the stack is computed until the stack's last
member ends: stacking buys trials at once, not the time that pruning saves one at a time.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from harness.core.config import Config
from harness.core.data import Split
from harness.core.training import FitResult
from harness.stacked.trainer import fit_stacked, stack_size
from harness.study.progress import QUIET, Progress
from harness.study.search._space import suggest_config
from harness.study.search._study import best_text, finished_count, start_from_reference

# --stack 0 (the default on CUDA): trials asked per round. The sampler learns between rounds, so
# a few rounds for a study's trials; the GPU is filled by each round's stacks of one shape.
TRIALS_PER_ROUND = 256


def optimize_stacked(
    study: optuna.Study,
    data: Split,
    base: Config,
    trials: int,
    search_epochs: int,
    seed: int,
    device: torch.device,
    round_size: int,
    timeout: float | None = None,
    progress: Progress = QUIET,
) -> None:
    """Rounds of up to round_size trials until the study holds `trials` finished ones (or,
    after the timeout, no new round starts)."""
    start_from_reference(study, base, search_epochs)
    started = time.monotonic()
    while (remaining := trials - finished_count(study)) > 0:
        if timeout is not None and time.monotonic() - started > timeout:
            return
        with warnings.catch_warnings():  # ask-and-tell sends no heartbeats: see _round
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            asked = [study.ask() for _ in range(min(round_size, remaining))]
        _round(study, asked, data, base, search_epochs, seed, device, progress)


def _round(study, asked, data, base, search_epochs, seed, device, progress) -> None:
    """The asked trials, stacked by shape. Should the round stop (Ctrl-C, an error), the trials
    it has not told are told failed: without heartbeats nothing else would end them, and a
    trial left running misleads the sampler."""
    try:
        configs = [suggest_config(trial, base, search_epochs) for trial in asked]
        for trial in asked:
            trial.set_user_attr("seed", seed)  # its training seed: never an evaluation seed
        for members in _by_shape(list(zip(asked, configs, strict=True))):
            size = stack_size(members[0][1], device, len(members), shared_split=True)
            for start in range(0, len(members), size):
                _train_stack(study, members[start : start + size], data, seed, device, progress)
    except BaseException:
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        for trial in asked:
            if trial.number in running:
                study.tell(trial, state=TrialState.FAIL)
        raise


def _by_shape(members: list[tuple[Any, Config]]) -> list[list[tuple[Any, Config]]]:
    """The round's trials grouped by what one stack needs in common, in the order asked."""
    groups: dict[tuple, list[tuple[Any, Config]]] = {}
    for trial, config in members:
        key = (config.hidden_widths, config.batchnorm, config.activation, config.batch_size)
        groups.setdefault(key, []).append((trial, config))
    return list(groups.values())


def _train_stack(
    study: optuna.Study,
    members: list[tuple[optuna.Trial, Config]],
    data: Split,
    seed: int,
    device: torch.device,
    progress: Progress,
) -> None:
    trials = [trial for trial, _ in members]
    configs = [config for _, config in members]
    pruned: set[int] = set()
    results = fit_stacked(
        configs, [seed] * len(members), [data], device, on_epoch=_reporter(trials, pruned)
    )
    for member, (trial, config, result) in enumerate(zip(trials, configs, results, strict=True)):
        _tell(study, trial, config, result, pruned_at_report=member in pruned)
        progress.advance()
        progress.status(f"search, {len(members)} trials stacked, {best_text(study)}")


def _reporter(trials: list[optuna.Trial], pruned: set[int]) -> Callable[[int, dict], bool]:
    """fit_stacked's on_epoch: each epoch's validation accuracy to the member's trial, and the
    pruner's word on whether it goes on."""

    def report(member: int, entry: dict[str, Any]) -> bool:
        trial = trials[member]
        trial.report(entry["val_accuracy"], entry["epoch"])
        if trial.should_prune():
            pruned.add(member)
            return False
        return True

    return report


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    config: Config,
    result: FitResult,
    pruned_at_report: bool,
) -> None:
    """As _study.objective ends a trial: pruned (the pruner's word, or diverged) or complete."""
    if result.diverged_epoch is not None:
        trial.set_user_attr("failure", f"diverged at epoch {result.diverged_epoch}")
        study.tell(trial, state=TrialState.PRUNED)
    elif pruned_at_report:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("config", config.to_dict())
        study.tell(trial, result.best_val_accuracy)
