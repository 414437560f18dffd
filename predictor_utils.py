"""The DAG heads' losses and their weights, for both training scripts.

The loss has one term per part of the DAG (each component in models/dag_heads.py owns
its own), averaged over valid positions only (the dataset's mask): input values, input
signs, operand coefficients, domain gates, and the executed value against the exact one.
"""
import torch
import torch.nn.functional as F

from data.dagset.batch import Batch
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
