"""The stacked model's Adam: torch.optim.Adam's update per member, foreach ops or Triton kernel."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from harness.core.data import split
from harness.stacked import adam
from harness.stacked.adam import foreach_adam
from harness.stacked.trainer import StackedTrainer
from tests.helpers import TINY

K = 3
SHAPES = [(K, 7, 5), (K, 7, 1), (K, 10, 7)]  # [K, out, in] weights and [K, out, 1] biases
LRS = [1e-3, 5e-4, 0.0]  # the last member frozen, as StackedTrainer.freeze leaves it
WEIGHT_DECAY = 1e-4
WEIGHT_DECAYS = [1e-4, 3e-2, 0.0]  # trials stacked: each member its own


def train(adam, steps: int, device: str = "cpu", weight_decay=WEIGHT_DECAY) -> list[torch.Tensor]:
    """Parameters and moments after `steps` Adam steps on seeded random gradients; weight_decay
    one for all, or a list, one per member."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=generator).to(device) for shape in SHAPES]
    exp_avgs = [torch.zeros_like(p) for p in params]
    exp_avg_sqs = [torch.zeros_like(p) for p in params]
    step_count = torch.zeros((), dtype=torch.float64, device=device)
    lr = torch.tensor(LRS, device=device).view(K, 1, 1)
    if isinstance(weight_decay, list):
        weight_decay = torch.tensor(weight_decay, device=device).view(K, 1, 1)
    for _ in range(steps):
        grads = [torch.randn(shape, generator=generator).to(device) for shape in SHAPES]
        adam(params, grads, exp_avgs, exp_avg_sqs, step_count, lr, weight_decay)
    assert step_count.item() == steps
    return [t.cpu() for t in (*params, *exp_avgs, *exp_avg_sqs)]


@pytest.fixture
def interpreted(monkeypatch):
    """harness.stacked.adam with its Triton kernel run by Triton's interpreter, on the CPU
    (the kernel is built when the module is imported, so the module is imported again)."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield importlib.reload(adam)
    monkeypatch.delenv("TRITON_INTERPRET")
    importlib.reload(adam)


@pytest.mark.parametrize("weight_decays", [[WEIGHT_DECAY] * K, WEIGHT_DECAYS])
def test_foreach_adam_is_torch_adam_with_each_members_lr_and_weight_decay(weight_decays):
    generator = torch.Generator().manual_seed(0)  # the draws of train(), in its order
    initial = [torch.randn(shape, generator=generator) for shape in SHAPES]
    members = []
    for k, (lr, decay) in enumerate(zip(LRS, weight_decays, strict=True)):
        params = [t[k].clone().requires_grad_() for t in initial]
        members.append((params, torch.optim.Adam(params, lr=lr, weight_decay=decay)))
    for _ in range(4):
        grads = [torch.randn(shape, generator=generator) for shape in SHAPES]
        for k, (params, optimizer) in enumerate(members):
            for p, g in zip(params, grads, strict=True):
                p.grad = g[k].clone()
            optimizer.step()
    one_for_all = len(set(weight_decays)) == 1
    stacked = train(
        foreach_adam, 4, weight_decay=weight_decays[0] if one_for_all else weight_decays
    )
    for i in range(len(SHAPES)):
        expected = torch.stack([params[i].detach() for params, _ in members])
        torch.testing.assert_close(stacked[i], expected, rtol=1e-6, atol=1e-7)
        moments = [optimizer.state[params[i]]["exp_avg"] for params, optimizer in members]
        torch.testing.assert_close(stacked[len(SHAPES) + i], torch.stack(moments))


def test_fused_kernel_agrees_with_foreach_ops(interpreted):
    fused = train(interpreted.fused_adam, 5)
    for got, expected in zip(fused, train(foreach_adam, 5), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    decays = WEIGHT_DECAYS  # one per member
    fused_each = train(interpreted.fused_adam, 5, weight_decay=decays)
    for got, expected in zip(fused_each, train(foreach_adam, 5, weight_decay=decays), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(fused_each[0][1], fused[0][1])  # member 1's own decay acted
    initial = train(interpreted.fused_adam, 0)
    for i in range(len(SHAPES)):  # lr 0: the frozen member's weights did not move
        assert torch.equal(fused[i][K - 1], initial[i][K - 1])
        assert not torch.equal(fused[i][0], initial[i][0])


def test_fused_kernel_refuses_non_contiguous_tensors(interpreted):
    p = torch.zeros(K, 4, 6).transpose(1, 2)
    tensors = [[t] for t in (p, torch.zeros_like(p), torch.zeros_like(p), torch.zeros_like(p))]
    lr = torch.full((K, 1, 1), 1e-3)
    with pytest.raises(ValueError, match="contiguous"):
        interpreted.fused_adam(*tensors, torch.zeros((), dtype=torch.float64), lr, 0.0)


def test_the_trainer_uses_the_fused_kernel_on_cuda_only():
    cpu = adam.adam_for(torch.device("cpu"))
    assert cpu is adam.foreach_adam
    if adam.HAS_TRITON:
        assert adam.adam_for(torch.device("cuda")) is adam.fused_adam


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_kernel_on_cuda_agrees_with_foreach_ops():
    fused = train(adam.fused_adam, 20, "cuda")
    for got, expected in zip(fused, train(foreach_adam, 20, "cuda"), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_a_stack_trained_with_the_fused_kernel_follows_the_foreach_one(interpreted, tiny_mnist):
    """The kernel on the trainer's real tensors (gradients as autograd returns them)."""
    config = dataclasses.replace(TINY, epochs=2)
    outcomes = []
    for step in (interpreted.fused_adam, foreach_adam):
        data = [split(tiny_mnist, config.val_size, seed) for seed in (0, 1)]
        trainer = StackedTrainer(config, [0, 1], data, adam=step)
        losses = [trainer.train_epoch()[0] for _ in range(config.epochs)]
        outcomes.append((torch.stack(losses), [t.detach() for t in trainer.net.params]))
    (fused_losses, fused_params), (losses, params) = outcomes
    torch.testing.assert_close(fused_losses, losses, rtol=1e-5, atol=1e-6)
    # a bias ahead of BatchNorm has a gradient of rounding size, which Adam scales up to steps
    # of up to lr (1e-3): there the two differ by more than float rounding, elsewhere not
    for got, expected in zip(fused_params, params, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
