"""Losses and training utilities for the DAG predictor.

The loss has one component per part of the DAG, averaged over valid positions only
(the dataset's mask): digits of the input magnitudes, input signs, operand
coefficients, domain gates, and the executed value against the exact one.
"""
import math

import torch
import torch.nn.functional as F

from models.dag_model import DAGPrediction

LOSS_NAMES = ("mag", "sign", "op", "gate", "exec")


def digit_targets(V_mag: torch.Tensor, max_digits: int, max_decimal_places: int) -> torch.Tensor:
    """Decimal digits, most significant first, of input magnitudes (..., D) float64 ->
    (..., D, max_digits + max_decimal_places) int64. ValueError if one does not fit."""
    scaled = torch.round(V_mag * 10.0 ** max_decimal_places).to(torch.int64)
    n = max_digits + max_decimal_places
    if (scaled >= 10 ** n).any():
        raise ValueError(f"an input value has more than max_digits={max_digits} integer digits")
    powers = 10 ** torch.arange(n - 1, -1, -1, device=V_mag.device)  # (n,)
    return (scaled.unsqueeze(-1) // powers) % 10


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): compares values from 1e-4 to 1e30 on one scale."""
    return torch.sign(x) * torch.log1p(x.abs())


def _causal_coef_mask(D: int, device) -> torch.Tensor:
    # step k may only read nodes 0 .. D+k-1; the rest of O is never executed
    return torch.arange(2 * D, device=device)[None, :] < (D + torch.arange(D, device=device))[:, None]  # (D, 2D)


def dag_losses(pred: DAGPrediction, batch: dict, executed: torch.Tensor, max_digits: int) -> dict[str, torch.Tensor]:
    """Per-component losses (scalars) over the valid positions of a batch.

    executed (B, T) is the executor's value of pred.soft(); batch holds the dataset's
    V_mag, V_sign, O, G, value, mask tensors."""
    mask = batch["mask"]  # (B, T)
    D = pred.gate_logits.shape[-1]
    n_valid = mask.sum().clamp(min=1)

    def masked_mean(per_position: torch.Tensor) -> torch.Tensor:
        return (per_position * mask).sum() / n_valid

    digits = digit_targets(batch["V_mag"][..., :D], max_digits, pred.max_decimal_places)  # (B, T, D, n)
    mag = F.cross_entropy(pred.digit_logits.flatten(0, -2), digits.flatten(), reduction="none")
    mag = mag.view(digits.shape).mean(dim=(-1, -2))  # (B, T)
    negative = (batch["V_sign"][..., :D] < 0).to(pred.sign_logits.dtype)
    sign = F.binary_cross_entropy_with_logits(pred.sign_logits, negative, reduction="none").mean(-1)
    C = (pred.coef_logits.shape[-1] - 1) // 2
    coef_class = (batch["O"].round().to(torch.int64) + C).clamp(0, 2 * C)  # (B, T, D, 2D)
    op = F.cross_entropy(pred.coef_logits.flatten(0, -2), coef_class.flatten(), reduction="none")
    causal = _causal_coef_mask(D, op.device).to(op.dtype)
    op = (op.view(coef_class.shape) * causal).sum(dim=(-1, -2)) / causal.sum()
    gate = F.binary_cross_entropy_with_logits(
        pred.gate_logits, batch["G"].to(pred.gate_logits.dtype), reduction="none").mean(-1)
    exec_loss = F.smooth_l1_loss(signed_log(executed), signed_log(batch["value"]), reduction="none")
    return {
        "mag": masked_mean(mag),
        "sign": masked_mean(sign),
        "op": masked_mean(op),
        "gate": masked_mean(gate),
        "exec": masked_mean(exec_loss.to(mag.dtype)),
    }


def total_loss(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[name] * losses[name] for name in LOSS_NAMES)


def first_non_finite(losses: dict[str, torch.Tensor]) -> str | None:
    """Name of the first loss component that is NaN or infinite, if any."""
    for name in LOSS_NAMES:
        if not torch.isfinite(losses[name]).item():
            return name
    return None


def get_lr(it: int, learning_rate: float, warmup_iters: int, lr_decay_iters: int, min_lr: float) -> float:
    """nanoGPT's schedule: linear warmup, cosine decay to min_lr, then constant."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def relative_error(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """|pred - true| / |true|, with |true| floored at 1e-12 so a zero result must be hit
    within 1e-18 (the exact executor gives exactly 0 for an exact zero DAG)."""
    return (pred - true).abs() / true.abs().clamp(min=1e-12)


def final_token_metrics(pred: DAGPrediction, batch: dict, executed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example (B,) metrics at the last valid token, where the whole expression has
    been read: exact (rel. error <= 1e-6) and close (<= 1e-2) execution of the hard DAG
    `executed` (B, T), and sign / operand / gate accuracy of the hard prediction
    (fraction of input nodes, of causally readable O entries, of steps)."""
    mask = batch["mask"]
    B, T = mask.shape
    last = (torch.arange(T, device=mask.device) * mask).argmax(-1)  # (B,)
    rows = torch.arange(B, device=mask.device)
    D = pred.gate_logits.shape[-1]
    _, V_sign, O, G = pred.hard()
    err = relative_error(executed[rows, last], batch["value"][rows, last])
    causal = _causal_coef_mask(D, O.device)
    op_ok = (O[rows, last] == batch["O"][rows, last].round()) & causal
    return {
        "exact": (err <= 1e-6).double(),
        "close": (err <= 1e-2).double(),
        "sign": (V_sign[rows, last, :D] == batch["V_sign"][rows, last, :D]).double().mean(-1),
        "op": op_ok.sum(dim=(-1, -2)).double() / causal.sum(),
        "gate": (G[rows, last] == batch["G"][rows, last]).double().mean(-1),
    }
