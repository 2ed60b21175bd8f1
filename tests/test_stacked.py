"""Seeds trained as one stacked model: each member behaves as its seed trained alone."""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics

import pytest
import torch

from harness.core.config import Config
from harness.core.data import Split, split
from harness.core.training import evaluate, run_one
from harness.stacked.graph import WARMUP_STEPS
from harness.stacked.trainer import DROPOUT_BLOCK, StackedTrainer, fit_stacked, run_stacked
from tests.helpers import TINY

CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


def splits(mnist, config, seeds):
    return [split(mnist, config.val_size, seed) for seed in seeds]


def curves(result):
    return {key: [epoch[key] for epoch in result.history] for key in CURVES}


def assert_same_member(a, b):
    assert a.best_epoch == b.best_epoch and a.diverged_epoch == b.diverged_epoch
    assert len(a.history) == len(b.history)
    for key, values in curves(a).items():
        assert values == pytest.approx(curves(b)[key], rel=1e-5, abs=1e-7), key


def test_member_of_a_stack_matches_its_seed_stacked_alone(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=2)
    stack = fit_stacked(config, [3, 4, 5], splits(tiny_mnist, config, [3, 4, 5]))
    alone = fit_stacked(config, [4], splits(tiny_mnist, config, [4]))
    assert_same_member(stack[1], alone[0])
    for name, tensor in alone[0].model.state_dict().items():
        torch.testing.assert_close(stack[1].model.state_dict()[name], tensor, msg=name)


def test_members_are_independent_of_each_other(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=2)
    first = fit_stacked(config, [3, 4, 5], splits(tiny_mnist, config, [3, 4, 5]))
    second = fit_stacked(config, [3, 9, 5], splits(tiny_mnist, config, [3, 9, 5]))
    assert_same_member(first[0], second[0])
    assert_same_member(first[2], second[2])
    assert curves(first[1]) != curves(second[1])  # the changed member did change


def test_augmented_members_keep_their_own_shifts(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=2, shift=1)
    stack = fit_stacked(config, [3, 4], splits(tiny_mnist, config, [3, 4]))
    alone = fit_stacked(config, [4], splits(tiny_mnist, config, [4]))
    assert_same_member(stack[1], alone[0])
    plain = fit_stacked(TINY, [4], splits(tiny_mnist, TINY, [4]))
    assert curves(alone[0])["train_loss"][:2] != curves(plain[0])["train_loss"][:2]


def test_each_member_follows_its_own_plateau(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=6, scheduler_patience=0)
    seeds = [0, 1, 2]
    results = fit_stacked(config, seeds, splits(tiny_mnist, config, seeds))
    for result in results:  # a torch scheduler fed this member's validation accuracies
        dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            dummy, mode="max", factor=config.scheduler_factor, patience=0
        )
        expected = []
        for epoch in result.history:
            expected.append(dummy.param_groups[0]["lr"])
            scheduler.step(epoch["val_accuracy"])
        assert curves(result)["lr"] == expected
    lr_histories = {tuple(curves(result)["lr"]) for result in results}
    assert len(lr_histories) > 1, "the case should give members different schedules"


def test_k1_stack_follows_the_single_run_without_dropout(tiny_mnist):
    """Without dropout the numbers agree to float rounding, learning-rate drops included: the
    stacked Adam is torch's formula in foreach ops, the single run's the fused kernel."""
    config = dataclasses.replace(TINY, dropout=(0.0, 0.0), epochs=6, scheduler_patience=0, lr=3e-3)
    stacked = run_stacked(config, [1], tiny_mnist)[0]
    single = run_one(config, 1, tiny_mnist)
    assert [e["lr"] for e in stacked["history"]] == [e["lr"] for e in single["history"]]
    assert len({e["lr"] for e in single["history"]}) > 1  # the schedule did act
    for key in ("train_loss", "val_loss", "val_accuracy"):
        got = [e[key] for e in stacked["history"]]
        assert got == pytest.approx([e[key] for e in single["history"]], rel=1e-3), key
    assert stacked["metrics"]["test_accuracy"] == pytest.approx(
        single["metrics"]["test_accuracy"], abs=0.01
    )


def test_a_stacked_member_with_dropout_stays_paired_with_its_seeds_single_run(tiny_mnist):
    """Not identical: a stacked member draws its dropout masks from the seed's own "dropout"
    generator (uniform draws against the rate), nn.Dropout from the global stream. Everything
    else (split, initialization, order) is the seed's, so a member lands far closer to its own
    seed's single run than single runs of different seeds land to each other (measured on this
    data: 0.018 against 0.07 on average)."""
    config = dataclasses.replace(TINY, epochs=3)
    seeds = range(2, 8)
    stacked = [r["metrics"]["test_accuracy"] for r in run_stacked(config, list(seeds), tiny_mnist)]
    single = [run_one(config, seed, tiny_mnist)["metrics"]["test_accuracy"] for seed in seeds]
    paired = statistics.mean(abs(a - b) for a, b in zip(stacked, single, strict=True))
    unpaired = statistics.mean(abs(a - b) for a, b in itertools.permutations(single, 2))
    assert min(stacked) > 0.5  # chance is 0.1
    assert paired < unpaired / 2, (paired, unpaired)


def test_dropout_masks_drop_at_the_rate_and_rescale(tiny_mnist):
    config = dataclasses.replace(TINY, dropout=(0.5, 0.0))
    trainer = StackedTrainer(config, [0, 1], splits(tiny_mnist, config, [0, 1]))
    trainer._draw_uniforms(DROPOUT_BLOCK)
    masks = torch.stack([trainer.member_masks(trainer.uniforms[:, s]) for s in range(32)])
    assert set(masks.unique().tolist()) == {0.0, 2.0}
    assert (masks == 0).double().mean().item() == pytest.approx(0.5, abs=0.02)
    assert not torch.equal(masks[:, 0], masks[:, 1])  # each member its own masks


def test_trials_of_one_seed_drop_at_their_own_rates_from_the_seeds_draws(tiny_mnist):
    configs = [dataclasses.replace(TINY, dropout=rates) for rates in [(0.5, 0.0), (0.1, 0.3)]]
    trainer = StackedTrainer(configs, [0, 0], splits(tiny_mnist, TINY, [0]))
    trainer._draw_uniforms(DROPOUT_BLOCK)
    masks = torch.stack([trainer.member_masks(trainer.uniforms[:, s]) for s in range(32)])
    first, second = masks[:, 0, :32], masks[:, 1, :32]  # the first hidden layer's rows
    assert set(first.unique().tolist()) == {0.0, 2.0}
    assert second.unique().tolist() == [0.0, pytest.approx(1 / 0.9)]
    assert bool((second == 0).le(first == 0).all())  # one seed's draws: nested masks
    assert torch.equal(masks[:, 0, 32:], torch.ones_like(masks[:, 0, 32:]))  # rate 0: kept
    assert (masks[:, 1, 32:] == 0).double().mean().item() == pytest.approx(0.3, abs=0.03)


TRIALS = [  # one shape and seed; each its own lr, weight decay, rates, shift, schedule, epochs
    dataclasses.replace(
        TINY, epochs=3, lr=3e-3, weight_decay=0.0, dropout=(0.2, 0.1), shift=2, scheduler_patience=0
    ),
    dataclasses.replace(
        TINY, epochs=2, weight_decay=1e-3, dropout=(0.4, 0.05), scheduler_factor=0.3
    ),
    dataclasses.replace(TINY, epochs=3, lr=2e-3, dropout=(0.1, 0.2), shift=1, scheduler="none"),
]


def test_trials_of_one_shape_stacked_each_follow_their_own_config_alone(tiny_mnist):
    """The search's stacks: members of one seed's split, each with its own hyperparameters
    (every layer dropped by all of them: which layers the stack drops at all sets the layout
    of a seed's dropout draws)."""
    data = splits(tiny_mnist, TINY, [7])
    stack = fit_stacked(TRIALS, [7] * len(TRIALS), data)
    for config, member in zip(TRIALS, stack, strict=True):
        alone = fit_stacked(config, [7], data)[0]
        assert len(member.history) == config.epochs
        assert_same_member(member, alone)
        for name, tensor in alone.model.state_dict().items():
            torch.testing.assert_close(member.model.state_dict()[name], tensor, msg=name)
    assert len({tuple(curves(member)["train_loss"][:2]) for member in stack}) == len(TRIALS)


def test_a_member_stopped_by_on_epoch_ends_there_and_the_others_go_on(tiny_mnist):
    data = splits(tiny_mnist, TINY, [7])
    calls = []

    def prune_the_second_after_one_epoch(member, entry):
        calls.append((member, entry["epoch"]))
        return (member, entry["epoch"]) != (1, 1)

    pruned = fit_stacked(TRIALS, [7] * 3, data, on_epoch=prune_the_second_after_one_epoch)
    full = fit_stacked(TRIALS, [7] * 3, data)
    assert calls == [(0, 1), (1, 1), (2, 1), (0, 2), (2, 2), (0, 3), (2, 3)]
    assert curves(pruned[1]) == {key: values[:1] for key, values in curves(full[1]).items()}
    assert pruned[1].best_epoch == 1
    assert_same_member(pruned[0], full[0])
    assert_same_member(pruned[2], full[2])


def test_members_of_different_shapes_are_refused(tiny_mnist):
    wider = dataclasses.replace(TINY, hidden_widths=(64, 16))
    with pytest.raises(ValueError, match="one width, BatchNorm, activation and batch"):
        StackedTrainer([TINY, wider], [0, 0], splits(tiny_mnist, TINY, [0]))


def test_best_weights_reproduce_the_best_validation_accuracy(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=4)
    data = splits(tiny_mnist, config, [6, 7])
    for result, member_data in zip(fit_stacked(config, [6, 7], data), data, strict=True):
        _, predictions = evaluate(result.model, member_data.val_images, member_data.val_labels)
        accuracy = (predictions == member_data.val_labels).double().mean().item()
        assert accuracy == pytest.approx(result.best_val_accuracy, abs=1e-9)
        assert result.history[result.best_epoch - 1]["val_accuracy"] == max(
            curves(result)["val_accuracy"]
        )


def test_a_diverging_member_stops_alone(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=2)
    seeds = [3, 4, 5]
    data = splits(tiny_mnist, config, seeds)
    bad = data[1]
    data[1] = Split(
        torch.full_like(bad.train_images, math.nan),
        bad.train_labels,
        bad.val_images,
        bad.val_labels,
    )
    broken = fit_stacked(config, seeds, data)
    clean = fit_stacked(config, [3, 5], splits(tiny_mnist, config, [3, 5]))
    assert broken[1].diverged_epoch == 1 and broken[1].history == []
    assert broken[1].divergence == "non-finite training loss"
    assert_same_member(broken[0], clean[0])
    assert_same_member(broken[2], clean[1])


def test_a_frozen_member_does_not_move(tiny_mnist):
    trainer = StackedTrainer(TINY, [3, 4], splits(tiny_mnist, TINY, [3, 4]))
    trainer.freeze(1)
    before = {key: tensor.detach().clone() for key, tensor in trainer.net.state.items()}
    trainer.train_epoch()
    for key, tensor in trainer.net.state.items():
        assert torch.equal(tensor[1], before[key][1]), key
    assert not torch.equal(trainer.net.state["0.weight"][0], before["0.weight"][0])


def test_records_have_the_single_run_schema(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=2)
    records = run_stacked(config, [0, 1], tiny_mnist, label="tiny")
    single = run_one(config, 0, tiny_mnist, label="tiny")
    assert [r["seed"] for r in records] == [0, 1]
    for record in records:
        assert set(record) == set(single) | {"stack_size"}
        assert record["stack_size"] == 2 and record["status"] == "ok"
        assert record["engine"] == single["engine"] + "-stacked"
        assert set(record["metrics"]) == set(single["metrics"])
        assert [set(e) for e in record["history"]] == [set(e) for e in single["history"]]
        assert record["parameters"] == single["parameters"]
        assert record["config_hash"] == single["config_hash"]
        assert len(record["test_predictions"]) == len(tiny_mnist.test_labels)


def test_diverged_records_look_like_the_single_runs(tiny_mnist):
    config = dataclasses.replace(TINY, lr=1e30)
    records = run_stacked(config, [0, 1], tiny_mnist)
    single = run_one(config, 0, tiny_mnist)
    for record in records:
        assert record["status"] == single["status"] == "diverged"
        assert record["diverged_epoch"] == single["diverged_epoch"] == 1
        assert "metrics" not in record and set(record) == set(single) | {"stack_size"}


def trained_twice(trainer):
    """Two epochs with what fit_stacked changes in place between them: a member frozen and
    another's learning rate cut; the epochs' sums and every tensor the steps touch."""
    sums = [trainer.train_epoch()]
    trainer.freeze(1)
    trainer.lr[0] = trainer.config.lr / 2
    sums.append(trainer.train_epoch())
    state = {f"net {key}": tensor for key, tensor in trainer.net.state.items()}
    for i, (avg, avg_sq) in enumerate(zip(trainer.exp_avg, trainer.exp_avg_sq, strict=True)):
        state[f"exp_avg {i}"], state[f"exp_avg_sq {i}"] = avg, avg_sq
    return sums, state | {"step_count": trainer.step_count}


def assert_same_training(a, b):
    (sums_a, state_a), (sums_b, state_b) = a, b
    for (loss_a, correct_a), (loss_b, correct_b) in zip(sums_a, sums_b, strict=True):
        assert torch.equal(loss_a, loss_b) and torch.equal(correct_a, correct_b)
    assert state_a.keys() == state_b.keys()
    for key, tensor in state_a.items():
        assert torch.equal(tensor, state_b[key]), key


# 500 training rows in batches of 8: 62 full steps, a partial one of 4, and the dropout block
# of 32 steps refilled mid-epoch; shifted images exercise the persistent shift buffer
STATIC_CASE = dataclasses.replace(TINY, batch_size=8, shift=1)


def test_the_static_step_the_graph_captures_matches_the_eager_step(tiny_mnist):
    """The CUDA graph replays _step on static buffers; run eagerly here, that path gives the
    eager trainer's numbers exactly, over epochs, a frozen member and an lr change."""
    seeds = [3, 4, 5]
    data = splits(tiny_mnist, STATIC_CASE, seeds)
    eager = StackedTrainer(STATIC_CASE, seeds, data)
    static = StackedTrainer(STATIC_CASE, seeds, data, mode="static")
    calls = []
    step = static.graph_step.step
    static.graph_step.step = lambda: (calls.append(1), step())
    assert_same_training(trained_twice(static), trained_twice(eager))
    assert len(calls) == 2 * 62  # every full batch went through the static buffers
    assert static.steps == eager.steps == 2 * 63
    assert static.step_count.item() == 2 * 63


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU capture fails only without CUDA")
def test_a_failed_graph_capture_trains_on_eagerly_with_one_warning(tiny_mnist, capsys):
    """Here capture fails (no GPU): one line on stderr, then the same numbers as eager."""
    seeds = [3, 4, 5]
    data = splits(tiny_mnist, STATIC_CASE, seeds)
    trainer = StackedTrainer(STATIC_CASE, seeds, data, mode="static")
    trainer.mode = "graph"  # as on CUDA: warm-up steps, then the capture
    result = trained_twice(trainer)
    assert trainer.mode == "static" and trainer.graph_step.graph is None
    assert trainer.graph_step.warmups == WARMUP_STEPS
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "CUDA graph capture failed" in lines[0]
    assert_same_training(result, trained_twice(StackedTrainer(STATIC_CASE, seeds, data)))


def test_graphs_need_a_cuda_device(tiny_mnist):
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        fit_stacked(TINY, [0], splits(tiny_mnist, TINY, [0]), graphs=True)
    results = fit_stacked(TINY, [0], splits(tiny_mnist, TINY, [0]), graphs=False)
    assert results[0].history  # off is the CPU's default anyway


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_records_equal_the_eager_ones(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=2)
    graphs = run_stacked(config, [0, 1, 2], tiny_mnist, device="cuda", graphs=True)
    eager = run_stacked(config, [0, 1, 2], tiny_mnist, device="cuda", graphs=False)
    for a, b in zip(graphs, eager, strict=True):
        histories = [
            [{k: v for k, v in e.items() if k != "seconds"} for e in r["history"]] for r in (a, b)
        ]
        assert histories[0] == histories[1]
        assert a["test_predictions"] == b["test_predictions"]


@pytest.mark.slow
def test_a_stacked_reference_on_real_mnist_equals_its_member_trained_alone(real_mnist):
    """At full size, on the real data: a member of a stack of two is the seed trained alone,
    bit for bit (every epoch, every test prediction), and it learned."""
    config = dataclasses.replace(Config(), epochs=1)
    stack = run_stacked(config, [0, 1], real_mnist)
    alone = run_stacked(config, [1], real_mnist)[0]
    assert stack[1]["history"][0] | {"seconds": 0} == alone["history"][0] | {"seconds": 0}
    assert stack[1]["test_history"] == alone["test_history"]
    assert stack[1]["test_predictions"] == alone["test_predictions"]
    assert stack[0]["test_predictions"] != alone["test_predictions"]  # another seed
    assert alone["metrics"]["test_accuracy"] > 0.96
