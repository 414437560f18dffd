"""The DAG heads' losses and metrics, for both training scripts and evaluation.

The loss has one term per part of the DAG (each component in models/dag_heads.py owns
its own), averaged over valid positions only (the dataset's mask): input values, input
signs, operand coefficients, domain gates, and the executed value against the exact one.
"""
import torch
import torch.nn.functional as F

from data.dagset.batch import Batch
from models.dag_heads import causal_coef_mask
from models.dag_model import DAGPrediction

LOSS_NAMES = ("mag", "sign", "op", "gate", "exec")
# the training scripts' default <name>_weight config values: executed values are weighted
# less, their smooth L1 on signed logs is larger than the classification losses
DEFAULT_LOSS_WEIGHTS = {"mag_weight": 1.0, "sign_weight": 1.0, "op_weight": 1.0, "gate_weight": 1.0, "exec_weight": 0.1}


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): compares values from 1e-4 to 1e30 on one scale."""
    return torch.sign(x) * torch.log1p(x.abs())


def dag_losses(pred: DAGPrediction, batch: Batch, executed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-component losses (scalars) over the valid positions of a batch: each
    component's own loss, and `exec` between executed (B, T), the executor's value of
    pred.soft(), and the exact value."""
    mask = batch.mask  # (B, T)
    n_valid = mask.sum().clamp(min=1)

    def masked_mean(per_position: torch.Tensor) -> torch.Tensor:
        return (per_position * mask).sum() / n_valid

    losses = {name: masked_mean(part.loss(pred.logits[name], batch)) for name, part in pred.components.items()}
    exec_loss = F.smooth_l1_loss(signed_log(executed), signed_log(batch.value), reduction="none")
    losses["exec"] = masked_mean(exec_loss.to(losses["mag"].dtype))
    return losses


def loss_weights_of(config: dict) -> dict[str, float]:
    """The `<name>_weight` config value of every loss component; ValueError naming a
    missing or negative one."""
    weights = {}
    for name in LOSS_NAMES:
        w = config.get(f"{name}_weight")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            raise ValueError(f"{name}_weight must be a number >= 0, got {w!r}")
        weights[name] = float(w)
    return weights


def total_loss(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[name] * losses[name] for name in LOSS_NAMES)


def relative_error(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """|pred - true| / |true|, with |true| floored at 1e-12 so a zero result must be hit
    within 1e-18 (the exact executor gives exactly 0 for an exact zero DAG)."""
    return (pred - true).abs() / true.abs().clamp(min=1e-12)


def final_token_metrics(pred: DAGPrediction, batch: Batch, executed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example (B,) metrics at the last valid token, where the whole expression has
    been read: exact (rel. error <= 1e-6) and close (<= 1e-2) execution of the hard DAG
    `executed` (B, T); structure (every sign, readable coefficient and gate right) and
    values (every input value right), so one sees which part fails; and the fraction of
    input signs, causally readable O entries and steps that are right."""
    mask = batch.mask
    B, T = mask.shape
    last = (torch.arange(T, device=mask.device) * mask).argmax(-1)  # (B,)
    rows = torch.arange(B, device=mask.device)
    V_mag, V_sign, O, G = (t[rows, last] for t in pred.hard())
    D = G.shape[-1]
    err = relative_error(executed[rows, last], batch.value[rows, last])
    causal = causal_coef_mask(D, O.device)
    sign_ok = V_sign[:, :D] == batch.V_sign[rows, last, :D]  # (B, D)
    op_ok = (O == batch.O[rows, last].round()) | ~causal  # (B, D, 2D)
    gate_ok = G == batch.G[rows, last]  # (B, D)
    return {
        "exact": (err <= 1e-6).double(),
        "close": (err <= 1e-2).double(),
        "structure": (sign_ok.all(-1) & op_ok.flatten(1).all(-1) & gate_ok.all(-1)).double(),
        "values": (V_mag[:, :D] == batch.V_mag[rows, last, :D]).all(-1).double(),
        "sign": sign_ok.double().mean(-1),
        "op": (op_ok & causal).sum(dim=(-1, -2)).double() / causal.sum(),
        "gate": gate_ok.double().mean(-1),
    }
