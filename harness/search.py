"""Optuna search over the MLP family on validation accuracy; the winner re-trained across seeds.

    python -m harness.search --trials 40
    python -m harness.search --storage postgresql://user@127.0.0.1/optuna --retrain-seeds 0

The objective is one training run's best validation accuracy; the test set is never read
during the search. Each epoch's validation accuracy feeds the pruner. The same command
continues the same study until it holds --trials finished (complete or pruned) trials; several
processes given the same --storage and --study share the work (see README). Afterwards the best
config is re-trained with --retrain-seeds seeds through the normal trainer and stored as the
variant "tuned", which the reports compare with the reference like any ablation.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import contextlib
import dataclasses
import json
import math
import multiprocessing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import optuna
import torch
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from tqdm import tqdm

from harness import cli, report
from harness.config import Config
from harness.data import Split, load_mnist, split
from harness.grid import Task, WorkerDied, default_threads, run_grid
from harness.specs import REFERENCE
from harness.train import fit, resolve_device

if TYPE_CHECKING:
    import pandas as pd

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DEFAULT_STUDY = "mlp"
DEFAULT_EPOCH_CAP = 12


def suggest_config(trial: optuna.Trial, base: Config, epoch_cap: int) -> Config:
    """The search space: the MLP family around the reference, three hidden layers."""
    width = trial.suggest_categorical("width", [512, 768, 1024])  # halved layer by layer
    weight_decay = 0.0
    if trial.suggest_categorical("use_weight_decay", [True, False]):
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    return dataclasses.replace(
        base,
        hidden_widths=(width, width // 2, width // 4),
        batchnorm=trial.suggest_categorical("batchnorm", [True, False]),
        dropout=(
            trial.suggest_float("dropout_1", 0.0, 0.5),
            trial.suggest_float("dropout_2", 0.0, 0.5),
            trial.suggest_float("dropout_3", 0.0, 0.3),
        ),
        lr=trial.suggest_float("lr", 3e-4, 5e-3, log=True),
        weight_decay=weight_decay,
        batch_size=trial.suggest_categorical("batch_size", [128, 256, 512]),
        scheduler_factor=trial.suggest_float("scheduler_factor", 0.1, 0.7),
        scheduler_patience=trial.suggest_int("scheduler_patience", 0, 3),
        epochs=trial.suggest_int("epochs", min(8, epoch_cap), epoch_cap),
        shift=trial.suggest_int("shift", 0, 2),
    )


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


def open_study(name: str, storage: str, seed: int | None) -> optuna.Study:
    """seed=None: the sampler draws fresh randomness (processes sharing a storage must not all
    propose the same first trials). constant_liar keeps parallel workers apart."""
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        # at epochs 1, 3 and 9, a trial goes on only if it is in the best third of the trials
        # that reached that epoch: most of the budget goes to the most promising trials
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )


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
    if not study.trials:
        study.enqueue_trial(reference_params(base, epoch_cap))
    seen = finished_count(study)

    def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal seen
        now = finished_count(study)
        if bar is not None:
            bar.update(now - seen)
            best = _best_value(study)
            bar.set_postfix_str(
                f"search trial {trial.number}, best val acc "
                + ("n/a" if best is None else f"{100 * best:.2f}%")
            )
        seen = now

    study.optimize(
        lambda trial: objective(trial, data, base, epoch_cap, seed, device, bar),
        n_trials=remaining,
        timeout=timeout,
        catch=(),
        callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), show],
    )


def _best_value(study: optuna.Study) -> float | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(t.value for t in complete) if complete else None


def summarize(study: optuna.Study, storage: str) -> dict[str, Any]:
    """Everything the report needs, so that reports never need the study's database."""
    best = study.best_trial
    try:
        importances = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.PedAnovaImportanceEvaluator(),  # no sklearn needed
        )
    except (RuntimeError, ValueError) as error:  # too few complete trials
        importances = {"n/a": str(error)}
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
        "importances": importances,
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


def _redacted(storage: str) -> str:
    return make_url(storage).render_as_string(hide_password=True)


# ---------------------------------------------------------------- report section


def search_section(study: report.Study, summary: pd.DataFrame, plots: Path) -> str:
    search = study.search
    _plot_history(search, plots / "search_history.png")
    reference = study.variants[REFERENCE].to_dict()
    tuned = study.variants[report.TUNED].to_dict()
    params = [
        {"parameter": k, "reference": _short(reference[k]), "tuned": _short(v)}
        for k, v in tuned.items()
    ]
    counts = search["counts"]
    space = [{"parameter": k, "distribution": v} for k, v in sorted(search["space"].items())]
    importances = [
        {
            "parameter": k,
            "importance (PED-ANOVA)": report.number(v, 3) if isinstance(v, float) else v,
        }
        for k, v in search["importances"].items()
    ]
    comparison = report.comparison_rows(summary, [report.TUNED])
    return (
        "\n\n".join(
            [
                "# Hyperparameter search",
                f"Optuna study `{search['study']}` (storage `{search['storage']}`), TPE sampler "
                "with a seed; a successive-halving pruner lets a trial go on past epochs 1, 3 "
                "and 9 only if its validation accuracy is in the best third of the trials that "
                "reached that epoch. The first trial is the reference. The objective is one "
                "run's best validation accuracy (seed 0, 55,000/5,000 split); the test set is not "
                "read. Trials may add random-shift augmentation (`shift`, in pixels).",
                f"Trials: {counts['complete']} complete, {counts['pruned']} pruned, "
                f"{counts['fail']} failed. Best validation accuracy "
                f"**{report.pct(search['best_value'])}** (trial {search['best_trial']}). "
                f"From the first trial's start to the last one's end: {_minutes(search)}.",
                "## Tuned vs reference on the test set",
                "The best config re-trained over the seeds below, paired with the reference on the "
                "same seeds.",
                report.table(comparison),
                "## Best config beside the reference",
                report.table(params),
                "## Search space",
                report.table(space),
                "## Parameter importances",
                report.table(importances),
                "![Optimization history](plots/search_history.png)",
            ]
        )
        + "\n"
    )


def _minutes(search: dict[str, Any]) -> str:
    seconds = search.get("wall_seconds")  # absent from summaries written before it was kept
    return "not recorded" if seconds is None else f"{seconds / 60:.1f} min"


def _short(value: Any) -> str:
    """A config value for a table: floats to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return json.dumps(value)


def _plot_history(search: dict[str, Any], path: Path) -> None:
    complete = [t for t in search["trials"] if t["state"] == "complete"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    numbers = [t["number"] for t in complete]
    values = [100 * t["value"] for t in complete]
    ax.plot(numbers, values, "o", label="complete trial")
    best, running = [], -math.inf
    for value in values:
        running = max(running, value)
        best.append(running)
    ax.step(numbers, best, where="post", label="best so far")
    ax.set(
        xlabel="trial",
        ylabel="best validation accuracy (%)",
        title="Optimization history",
        ylim=(max(min(values, default=90), 90), 100) if values else None,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, **report.PNG)
    plt.close(fig)


# ---------------------------------------------------------------- command


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with run_all.py."""
    parser.add_argument("--trials", type=int, default=40, help="finished trials wanted")
    parser.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    parser.add_argument("--study", default=DEFAULT_STUDY, help="Optuna study name")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: SQLite file in the "
        "results folder), e.g. postgresql://user:pw@127.0.0.1/optuna",
    )
    parser.add_argument(
        "--retrain-seeds",
        type=int,
        default=5,
        help="seeds to re-train the best config with (0 skips)",
    )


def default_storage(results_dir: Path) -> str:
    results_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{results_dir / 'search.db'}"  # relative to the working directory


def run_search(
    args: argparse.Namespace, epoch_cap: int, seed: int, bar: tqdm | None = None
) -> dict[str, Any]:
    """Searches until the study holds --trials finished trials and stores its summary, which
    names the tuned config. Without a bar of the caller's, shows its own over trials.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a Ctrl-C'd trial is no traceback
    results_dir = cli.results_dir(args)
    storage = args.storage or default_storage(results_dir)
    device = resolve_device(args.device)
    sampler_seed = None if args.storage else seed  # a shared storage: see open_study
    study = open_study(args.study, storage, sampler_seed)
    base = Config()
    finished = finished_count(study)
    if finished < args.trials:  # else no worker is started: a rerun takes seconds
        with _own_bar(bar, args.trials, finished, "search", "trial") as trials_bar:
            if args.workers == 1:
                data = split(load_mnist(cli.data_dir(args)), base.val_size, seed)
                optimize(
                    study,
                    data,
                    base,
                    args.trials,
                    epoch_cap,
                    seed,
                    device,
                    args.timeout,
                    trials_bar,
                )
            else:
                _optimize_in_workers(
                    study, storage, args, epoch_cap, seed, sampler_seed, trials_bar
                )
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise cli.UserError(f"study {args.study!r} has no complete trial yet")
    summary = summarize(study, storage)
    (results_dir / report.TUNED_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def retraining_tasks(results_dir: Path, reference: Config, seeds: range) -> list[Task]:
    """The stored tuned config over the seeds, beside the reference on the same seeds."""
    tuned = report.load_study(results_dir).variants[report.TUNED]
    return [Task(REFERENCE, reference, s) for s in seeds] + [
        Task(report.TUNED, tuned, s) for s in seeds
    ]


def _optimize_in_workers(
    study: optuna.Study,
    storage: str,
    args: argparse.Namespace,
    epoch_cap: int,
    seed: int,
    sampler_seed: int | None,
    bar: tqdm,
) -> None:
    """Worker processes share the study through its storage, as separate machines would.

    Each worker's sampler gets its own seed (else their first, random trials would be the same);
    every trial trains with the same seed, so trials stay comparable. Trial order then depends on
    timing: a parallel search is not reproducible trial for trial, a serial one is.
    """
    load_mnist(cli.data_dir(args))  # a missing dataset fails here, before any worker starts
    if not study.trials:
        study.enqueue_trial(reference_params(Config(), epoch_cap))
    threads = args.threads or default_threads(args.workers)
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        running = {
            pool.submit(
                _search_worker,
                study.study_name,
                storage,
                str(cli.data_dir(args)),
                args.trials,
                epoch_cap,
                seed,
                None if sampler_seed is None else sampler_seed + worker,
                args.device,
                threads,
                args.timeout,
            )
            for worker in range(args.workers)
        }
        seen = min(finished_count(study), args.trials)
        try:
            while running:
                done, running = futures.wait(running, timeout=1.0)
                for future in done:
                    future.result()
                now = min(finished_count(study), args.trials)  # a trial in flight may add one
                bar.update(now - seen)
                seen = now
                best = _best_value(study)
                bar.set_postfix_str(
                    f"search, {args.workers} workers, best val acc "
                    + ("n/a" if best is None else f"{100 * best:.2f}%")
                )
        except futures.process.BrokenProcessPool:
            raise WorkerDied(
                "a search worker died mid-trial (killed, or out of memory); finished trials are "
                "kept: run the same command again to resume"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _search_worker(
    name: str,
    storage: str,
    data_dir: str,
    trials: int,
    epoch_cap: int,
    seed: int,
    sampler_seed: int | None,
    device: str,
    threads: int,
    timeout: float | None,
) -> None:
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", module="optuna")
    study = open_study(name, storage, sampler_seed)
    base = Config()
    data = split(load_mnist(Path(data_dir)), base.val_size, seed)
    optimize(study, data, base, trials, epoch_cap, seed, resolve_device(device), timeout)


@contextlib.contextmanager
def _own_bar(
    bar: tqdm | None, total: int, done: int, description: str, unit: str
) -> Iterator[tqdm]:
    if bar is not None:
        yield bar
        return
    with tqdm(total=total, initial=done, desc=description, unit=unit, dynamic_ncols=True) as own:
        yield own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_search_args(parser)
    parser.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCH_CAP, help="cap on a trial's epochs"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampler seed and trial seed")
    parser.add_argument("--reports-dir", help="where reports go (default: ./reports)")
    cli.add_worker_args(parser)
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    summary = run_search(args, args.epochs, args.seed)
    if args.retrain_seeds > 0:
        tasks = retraining_tasks(cli.results_dir(args), Config(), range(args.retrain_seeds))
        run_grid(tasks, args, "tuned re-training")
    print(
        f"best validation accuracy {100 * summary['best_value']:.2f}% "
        f"(trial {summary['best_trial']}): {json.dumps(summary['best_params'])}"
    )
    study = report.load_study(cli.results_dir(args))
    print(report.comparison_markdown(study, [report.TUNED]))
    print(f"\nreports: {report.write_reports(study, report.resolve_reports_dir(args.reports_dir))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
