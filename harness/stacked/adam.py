"""Adam for the stacked model: torch.optim.Adam's update (coupled L2 weight decay, bias
correction) with a learning rate and a weight decay per member, in two implementations of one
formula.

- foreach_adam: torch's foreach ops, any device. Nine passes over the K stacked copies of every
  tensor (each pass reads and writes all of them): over 40% of a K = 32 step on an H100.
- fused_adam: one Triton kernel per tensor that reads parameter, gradient and the two moments
  once and writes the three back. Used on CUDA (Triton comes with torch's CUDA builds).

The two agree to float rounding (tested on an H100, and on the CPU in Triton's interpreter), not
bit for bit: the kernel may contract a multiply and an add into one rounding where a foreach
op rounds twice. Both read the step count and bias corrections from device tensors, so a CUDA
graph that captured a step replays the right ones.
"""

from __future__ import annotations

import importlib.util

import torch

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults
FUSED_BLOCK = 1024  # elements per Triton program
HAS_TRITON = importlib.util.find_spec("triton") is not None

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _adam_kernel(
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        step_size,  # [K]: -lr / bias_correction1 of each member
        weight_decay,  # [K]
        bias_correction2_sqrt,  # a one-element tensor
        numel,
        member_numel,
        one_minus_beta1,
        beta2,
        one_minus_beta2,
        eps,
        BLOCK: tl.constexpr,
    ):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < numel
        p = tl.load(param + offsets, mask=mask)
        g = tl.load(grad + offsets, mask=mask)
        m = tl.load(exp_avg + offsets, mask=mask)
        v = tl.load(exp_avg_sq + offsets, mask=mask)
        member = offsets // member_numel
        g = g + tl.load(weight_decay + member, mask=mask) * p
        m = m + one_minus_beta1 * (g - m)  # torch.lerp(m, g, 1 - beta1)
        v = v * beta2 + one_minus_beta2 * g * g
        # IEEE square root and division, as torch's (Triton's plain ones are approximate)
        denom = tl.div_rn(tl.sqrt_rn(v), tl.load(bias_correction2_sqrt)) + eps
        size = tl.load(step_size + member, mask=mask)
        tl.store(param + offsets, p + size * tl.div_rn(m, denom), mask=mask)
        tl.store(exp_avg + offsets, m, mask=mask)
        tl.store(exp_avg_sq + offsets, v, mask=mask)


def bias_corrections(
    step_count: torch.Tensor, lr: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member step sizes -lr / (1 - β1^t) [K, 1, 1] and sqrt(1 - β2^t) as float32 device
    tensors, from t and lr on the device (float64 t, as Python computes them)."""
    beta1, beta2 = ADAM_BETAS
    step_size = lr * (-1 / (1 - beta1**step_count)).float()
    return step_size, (1 - beta2**step_count).sqrt().float()


def foreach_adam(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step_count: torch.Tensor,
    lr: torch.Tensor,
    weight_decay: float | torch.Tensor,
) -> None:
    """One Adam step of every stacked tensor [K, ...] in place; step_count (Adam's t) is
    incremented here, lr is [K, 1, 1], weight_decay one for all members or [K, 1, 1]. grads
    are consumed (weight decay is added to them)."""
    beta1, beta2 = ADAM_BETAS
    if isinstance(weight_decay, torch.Tensor):
        for grad, param in zip(grads, params, strict=True):
            grad.addcmul_(param, weight_decay)
    elif weight_decay:
        torch._foreach_add_(grads, params, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    step_count.add_(1)
    step_size, bias_correction2_sqrt = bias_corrections(step_count, lr)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, ADAM_EPS)
    ratio = torch._foreach_div(exp_avgs, denom)
    for p, r in zip(params, ratio, strict=True):
        p.addcmul_(r, step_size)


def fused_adam(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step_count: torch.Tensor,
    lr: torch.Tensor,
    weight_decay: float | torch.Tensor,
) -> None:
    """foreach_adam's step in one Triton kernel per tensor (contiguous tensors only)."""
    beta1, beta2 = ADAM_BETAS
    step_count.add_(1)
    step_size, bias_correction2_sqrt = bias_corrections(step_count, lr)
    step_size = step_size.view(-1)
    if isinstance(weight_decay, torch.Tensor):
        weight_decay = weight_decay.reshape(-1).float()
    else:  # a fill on the device, no copy from the host: a CUDA graph can capture it
        weight_decay = torch.full_like(step_size, weight_decay)
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        if not all(t.is_contiguous() for t in (p, g, m, v)):
            raise ValueError("fused_adam: every tensor must be contiguous")
        numel = p.numel()
        _adam_kernel[(triton.cdiv(numel, FUSED_BLOCK),)](
            p,
            g,
            m,
            v,
            step_size,
            weight_decay,
            bias_correction2_sqrt,
            numel,
            numel // p.shape[0],
            1 - beta1,
            beta2,
            1 - beta2,
            ADAM_EPS,
            BLOCK=FUSED_BLOCK,
        )


def adam_for(device: torch.device):
    """The stacked trainer's Adam on this device: the fused kernel on CUDA when Triton is
    installed, else the foreach ops."""
    if device.type == "cuda" and HAS_TRITON:
        return fused_adam
    return foreach_adam
