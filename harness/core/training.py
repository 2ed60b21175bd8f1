"""Trains one (config, seed) on in-memory tensors, evaluating the test set after every epoch.

One seed fixes everything random: the train/validation split, the initialization, the data
order, the dropout masks and the augmentation, each from its own stream (harness.core.seeding).
Variants of the reference trained with the same seed share every stream their change leaves
untouched, so their differences can be compared pair by pair.

Every budget from one run: nothing a run draws depends on its epoch count (the data order is one
permutation per epoch, the plateau scheduler looks back only), so the first k epochs of an
E-epoch run are a k-epoch run. Each epoch's test predictions are kept apart from the history that
every decision reads (the best epoch, the scheduler, divergence, a search's pruner), so a report
can give the run at every budget k, its epoch chosen by validation among 1..k, and the test set
decides nothing.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import UserError
from harness.core.config import Config
from harness.core.data import Mnist, Split, random_shifts, split
from harness.core.model import NUM_CLASSES, build_model, parameter_count
from harness.core.record import RECORD_SCHEMA, RunRecord
from harness.core.seeding import generator, global_stream
from harness.core.store import environment, numeric_platform

EVAL_BATCH = 10_000
CPU = torch.device("cpu")

EpochCallback = Callable[[dict[str, Any]], None]

CHANCE = 1 / NUM_CLASSES
EXPLOSION_FACTOR = 10.0
DIVERGENCE_RULE = (
    "diverged: a non-finite training loss, or after any epoch a validation accuracy below "
    f"{1.5 * CHANCE:.0%} (chance is {CHANCE:.0%}) or a training loss above "
    f"{EXPLOSION_FACTOR:g}x the first epoch's"
)


@dataclass
class FitResult:
    """A run's epochs as every trainer books them (the single run's fit and each member of a
    stack alike): the history, the best epoch by validation accuracy, the divergence rule."""

    model: nn.Module  # holding the weights of the best validation epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_accuracy: float = -1.0
    diverged_epoch: int | None = None
    divergence: str | None = None  # which part of DIVERGENCE_RULE fired
    # each booked epoch's test evaluation (epoch, test_accuracy, test_loss, test_misclassified),
    # beside the history, which every decision reads; empty where no test set was given
    test_history: list[dict[str, Any]] = field(default_factory=list)
    best_test: tuple[float, torch.Tensor] | None = None  # the best epoch's test loss, predictions

    def end_epoch(
        self,
        epoch: int,
        train_loss: float,
        train_accuracy: float,
        val_loss: float,
        val_accuracy: float,
        lr: float,
        seconds: float,
    ) -> dict[str, Any] | None:
        """Books one epoch: None where the run meets DIVERGENCE_RULE (it stops there), else
        the epoch's history entry; best_epoch == epoch then says it is the best so far. The
        validation numbers of an epoch whose training loss is not finite are not used."""
        if not math.isfinite(train_loss):
            val_loss, val_accuracy = math.nan, math.nan
        first_loss = self.history[0]["train_loss"] if self.history else train_loss
        self.divergence = divergence(train_loss, val_accuracy, first_loss)
        if self.divergence is not None:
            self.diverged_epoch = epoch
            return None
        entry = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": lr,
            "seconds": seconds,
        }
        self.history.append(entry)
        if val_accuracy > self.best_val_accuracy:
            self.best_val_accuracy, self.best_epoch = val_accuracy, epoch
        return entry

    def end_test(self, loss: float, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        """Books the test evaluation of the epoch end_epoch just booked; read by no decision."""
        epoch = self.history[-1]["epoch"]
        wrong = (predictions != labels).nonzero().squeeze(1)
        self.test_history.append(
            {
                "epoch": epoch,
                "test_accuracy": 1 - len(wrong) / len(labels),
                "test_loss": loss,
                "test_misclassified": wrong.tolist(),
            }
        )
        if self.best_epoch == epoch:
            self.best_test = (loss, predictions.cpu())


def engine(device: torch.device, threads: int, stacked: bool = False) -> str:
    """What, besides config and seed, fixes a run's numbers: floating-point sums are ordered
    differently on another device, with another thread count or in a stacked model. Part of
    the run's identity in the store, so runs of different engines never replace each other."""
    name = device.type if device.type != "cpu" else f"cpu{threads}t"
    return f"{name}-stacked" if stacked else name


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("cuda: no CUDA device is available here", "device")
    return torch.device(name)


def fit(
    config: Config,
    seed: int,
    data: Split,
    device: torch.device = CPU,
    on_epoch: EpochCallback | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FitResult:
    """Trains on data's train part, choosing the best epoch by validation accuracy.

    A run that meets DIVERGENCE_RULE stops there (it is recorded as diverged, not raised).
    on_epoch sees each epoch's history entry; an exception it raises (a pruned trial) ends the
    run. test: (images, labels) evaluated after every booked epoch into result.test_history,
    which nothing here reads.
    """
    with global_stream(seed, "init"):
        model = build_model(config).to(device)
    with global_stream(seed, "dropout"):  # nn.Dropout draws from the global generator
        data_order, augmentation = generator(seed, "order"), generator(seed, "shift")
        optimizer = make_optimizer(model, config)
        scheduler = None
        if config.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="max",
                factor=config.scheduler_factor,
                patience=config.scheduler_patience,
            )
        images, labels = data.train_images.to(device), data.train_labels.to(device)
        val_images, val_labels = data.val_images.to(device), data.val_labels.to(device)
        if test is not None:
            test_images, test_labels = test[0].to(device), test[1].to(device)
        result = FitResult(model)
        best_state = None

        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            order = torch.randperm(len(images), generator=data_order).to(device)
            epoch_images = images
            if config.shift > 0:
                epoch_images = random_shifts(images, config.shift, augmentation)
            train_loss, train_accuracy = train_epoch(
                model, optimizer, epoch_images, labels, order, config.batch_size
            )
            val_loss, val_accuracy = math.nan, math.nan
            if math.isfinite(train_loss):
                val_loss, val_predictions = evaluate(model, val_images, val_labels)
                val_accuracy = (val_predictions == val_labels).double().mean().item()
            lr = optimizer.param_groups[0]["lr"]
            seconds = time.perf_counter() - started
            entry = result.end_epoch(
                epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds
            )
            if entry is None:
                break
            if test is not None:
                result.end_test(*evaluate(model, test_images, test_labels), test_labels)
            if result.best_epoch == epoch:
                best_state = copy.deepcopy(model.state_dict())
            if scheduler is not None:
                scheduler.step(val_accuracy)
            if on_epoch is not None:
                on_epoch(entry)

        if best_state is not None:
            model.load_state_dict(best_state)
        return result


def divergence(train_loss: float, val_accuracy: float, first_train_loss: float) -> str | None:
    """Which part of DIVERGENCE_RULE an epoch meets, if any: a run that exploded without
    overflowing (lr=10 ends near chance with a finite loss) is no result to average."""
    if not math.isfinite(train_loss):
        return "non-finite training loss"
    if val_accuracy < 1.5 * CHANCE:
        return f"validation accuracy {val_accuracy:.1%}, near chance"
    if train_loss > EXPLOSION_FACTOR * first_train_loss:
        return f"training loss {train_loss:.3g}, over {EXPLOSION_FACTOR:g}x the first epoch's"
    return None


def make_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam with coupled L2 weight decay; fused: one kernel per step instead of one per tensor."""
    return torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
    )


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
) -> tuple[float, float]:
    """One pass in the given order; returns the mean training loss and running accuracy.

    Batches are gathered from the in-memory tensors with index_select (no Dataset, no copies
    of the whole set); loss and accuracy accumulate on the device and are read once.
    """
    model.train()
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        x, y = images.index_select(0, batch), labels.index_select(0, batch)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach(), alpha=len(batch))
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / len(order), correct.item() / len(order)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, Any]:
    """Mean cross-entropy and the predicted digits, in eval mode (BatchNorm's running stats)."""
    model.eval()
    loss_sum, predictions = 0.0, []
    with torch.inference_mode():
        for start in range(0, len(images), EVAL_BATCH):
            logits = model(images[start : start + EVAL_BATCH])
            y = labels[start : start + EVAL_BATCH]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            predictions.append(logits.argmax(1))
    return loss_sum / len(images), torch.cat(predictions)


def scored_predictions(loss: float, predictions: torch.Tensor, labels: torch.Tensor) -> dict:
    """The test set's numbers from one epoch's predictions: accuracy, loss, per-digit accuracy,
    the confusion matrix (rows: true digit), and every prediction."""
    predictions, labels = predictions.cpu(), labels.cpu()
    confusion = torch.bincount(
        labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES**2
    ).reshape(NUM_CLASSES, NUM_CLASSES)
    per_digit = confusion.diag().double() / confusion.sum(1).double()
    return {
        "test_accuracy": confusion.diag().sum().item() / len(labels),
        "test_loss": loss,
        "per_digit_accuracy": per_digit.tolist(),
        "confusion_matrix": confusion.tolist(),
        # one character per test image, and the images it got wrong: every test-set number,
        # per image too (McNemar, the test set's own sampling noise), recomputes from these
        "test_predictions": "".join(map(str, predictions.tolist())),
        "test_misclassified": (predictions != labels).nonzero().squeeze(1).tolist(),
    }


def run_one(
    config: Config,
    seed: int,
    mnist: Mnist,
    label: str = "",
    device: torch.device = CPU,
    on_epoch: EpochCallback | None = None,
) -> RunRecord:
    """One complete run as a storable record: fit, the test set evaluated after every epoch."""
    started = time.perf_counter()
    data = split(mnist, config.val_size, seed)
    result = fit(config, seed, data, device, on_epoch, (mnist.test_images, mnist.test_labels))
    record = run_record(config, seed, label, result, mnist, device)
    record["total_seconds"] = time.perf_counter() - started
    return record


METRIC_KEYS = ("test_accuracy", "test_loss")  # of scored_predictions' keys, kept in "metrics"


def run_record(
    config: Config,
    seed: int,
    label: str,
    result: FitResult,
    mnist: Mnist,
    device: torch.device,
    stacked: bool = False,
) -> RunRecord:
    """The record of a run fitted with the test set: its numbers are those of the best epoch
    (by validation), and every epoch's test accuracy, loss and errors are kept beside them."""
    env = environment(device)
    record: RunRecord = {
        "schema": RECORD_SCHEMA,
        "label": label,
        "config_hash": config.hash(),
        "seed": seed,
        "engine": engine(device, torch.get_num_threads(), stacked),
        "platform": numeric_platform(env),
        "data": mnist.source,
        "config": config.to_dict(),
        "status": "ok" if result.diverged_epoch is None else "diverged",
        "diverged_epoch": result.diverged_epoch,
        "divergence": result.divergence,
        "divergence_rule": DIVERGENCE_RULE,
        "history": result.history,
        "test_history": result.test_history,
        "parameters": parameter_count(result.model),
        "environment": env,
    }
    if result.diverged_epoch is None:
        best = result.history[result.best_epoch - 1]
        test = scored_predictions(*result.best_test, mnist.test_labels)
        # per digit and per image beside the metrics: confusion, predictions, misclassified
        record.update({key: value for key, value in test.items() if key not in METRIC_KEYS})
        record["metrics"] = {
            **{key: test[key] for key in METRIC_KEYS},
            "best_val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch,
            "train_accuracy_at_best": best["train_accuracy"],
            "train_val_gap": best["train_accuracy"] - best["val_accuracy"],
        }
    seconds = [epoch["seconds"] for epoch in result.history]
    record["seconds_per_epoch"] = sum(seconds) / len(seconds) if seconds else None
    return record
