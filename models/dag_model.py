"""DAG execution and the GPT that predicts DAGs.

DAGExecutor runs the fixed-size DAG tensors (V_mag, V_sign, O, G) in float64: nodes
0..D-1 hold the input values, step k writes node D+k as a linear combination of the
nodes before it, either of signed values (G=1, for + -) or of log-magnitudes (G=0,
for * / and integer powers, then exponentiated).
"""
import math

import torch
import torch.nn as nn

# Node values are kept within +-1e150 and the log domain's exponent below log(1e150):
# well beyond the 1e100 that the converter accepts, so exact DAGs are never clamped,
# while any finite input still gives finite values and gradients.
MAX_VALUE = 1e150
LOG_LIMIT = math.log(MAX_VALUE)
# log|x| used for x == 0 (and below 1e-300): exp(c * ZERO_LOG) underflows to exactly 0
# for any coefficient c >= 1, so a zero factor zeroes a product.
ZERO_LOG = -1000.0
TINY = 1e-300


def _safe_log(mag: torch.Tensor) -> torch.Tensor:
    # the inner where keeps log's gradient finite at zero; the outer one picks the value
    positive = mag > TINY
    return torch.where(positive, torch.log(torch.where(positive, mag, 1.0)), ZERO_LOG)


class DAGExecutor(nn.Module):
    """Differentiable float64 executor of DAG tensors of depth D.

    forward(V_mag (B, T, 2D), V_sign (B, T, 2D), O (B, T, D, 2D), G (B, T, D)) -> (B, T)
    the value of the last node. Only the first D entries of V_mag/V_sign are read.
    Step k reads O[..., k, :D+k] (the causal mask: nodes not yet computed are never
    read). In the log domain the sign is cos(pi * sum_j O_kj * n_j) with n_j = (1 -
    sign_j) / 2: exactly (-1)^(number of negative factors, with multiplicity) for
    integer coefficients and +-1 signs, and smooth in between.
    """

    def __init__(self, dag_depth: int):
        super().__init__()
        if dag_depth < 1:
            raise ValueError(f"dag_depth must be >= 1, got {dag_depth}")
        self.dag_depth = dag_depth

    def forward(self, V_mag: torch.Tensor, V_sign: torch.Tensor, O: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        D = self.dag_depth
        if O.shape[-2:] != (D, 2 * D) or V_mag.shape[-1] != 2 * D or G.shape[-1] != D:
            raise ValueError(
                f"DAG tensors do not match dag_depth={D}: V_mag {tuple(V_mag.shape)}, "
                f"O {tuple(O.shape)}, G {tuple(G.shape)}")
        V_mag, V_sign, O, G = (t.to(torch.float64) for t in (V_mag, V_sign, O, G))
        mag = V_mag[..., :D].abs().clamp(max=MAX_VALUE)  # (B, T, D)
        sign = V_sign[..., :D]
        # per node: signed value, log-magnitude, "is negative" (B, T, nodes, 3)
        feats = torch.stack([sign * mag, _safe_log(mag), (1 - sign) / 2], dim=-1)
        for k in range(D):
            coef = O[..., k, : D + k].unsqueeze(-1)  # (B, T, D+k, 1)
            linear, log_sum, neg_sum = (coef * feats).sum(dim=-2).unbind(-1)  # (B, T) each
            product = torch.cos(math.pi * neg_sum) * torch.exp(log_sum.clamp(max=LOG_LIMIT))
            gate = G[..., k]
            value = (gate * linear + (1 - gate) * product).clamp(-MAX_VALUE, MAX_VALUE)
            new = torch.stack([value, _safe_log(value.abs()), (value < 0).to(value.dtype)], dim=-1)
            feats = torch.cat([feats, new.unsqueeze(-2)], dim=-2)
        return feats[..., -1, 0]
