"""The GPT that predicts DAGs.

DAGPlanPredictor maps each position's hidden state to the fixed-size DAG tensors
(V_mag, V_sign, O, G) that DAGExecutor (models/dag_executor.py) runs in float64, and GPT
is the nanoGPT backbone plus these heads (with dag_depth=0, exactly a plain nanoGPT GPT).
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.base_model import Backbone, configure_optimizers, gpt2_config_args, load_gpt2_weights
from models.dag_executor import DAGExecutor

@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64, as in nanoGPT
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    dag_depth: int = 0  # 0: a plain GPT without DAG heads
    max_digits: int = 4  # integer digits of an input value the heads can write
    max_decimal_places: int = 4
    max_coefficient: int = 3  # operand coefficients are classes -C..C


@dataclass
class DAGPrediction:
    """Head outputs for every position, as logits.

    digit_logits (B, T, D, n_digits, 10): decimal digits of each input node's magnitude,
    most significant first; sign_logits (B, T, D): > 0 means negative;
    coef_logits (B, T, D, 2D, 2C+1): class c means coefficient c - C;
    gate_logits (B, T, D): > 0 means the linear domain.
    """

    digit_logits: torch.Tensor
    sign_logits: torch.Tensor
    coef_logits: torch.Tensor
    gate_logits: torch.Tensor
    max_decimal_places: int

    def _place_values(self) -> torch.Tensor:
        n = self.digit_logits.shape[-2]
        exps = torch.arange(n - 1, -1, -1, device=self.digit_logits.device) - self.max_decimal_places
        return torch.pow(10.0, exps.to(torch.float64))  # (n_digits,)

    def _expand(self, mag: torch.Tensor, sign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # intermediate nodes are computed by the executor; their input slots stay 0 / +1
        return F.pad(mag, (0, mag.shape[-1])), F.pad(sign, (0, sign.shape[-1]), value=1.0)

    def soft(self) -> tuple[torch.Tensor, ...]:
        """Differentiable (V_mag, V_sign, O, G): expected digits and coefficients, tanh
        signs and sigmoid gates, in float64 for the executor."""
        digits = torch.arange(10, device=self.digit_logits.device, dtype=torch.float64)
        probs = self.digit_logits.double().softmax(-1)  # (B, T, D, n_digits, 10)
        mag = (probs @ digits) @ self._place_values()  # (B, T, D)
        sign = torch.tanh(-self.sign_logits.double())
        C = (self.coef_logits.shape[-1] - 1) // 2
        coefs = torch.arange(-C, C + 1, device=mag.device, dtype=torch.float64)
        O = self.coef_logits.double().softmax(-1) @ coefs  # (B, T, D, 2D)
        G = torch.sigmoid(self.gate_logits.double())
        return (*self._expand(mag, sign), O, G)

    def hard(self) -> tuple[torch.Tensor, ...]:
        """The discrete DAG the heads describe: argmax digits and coefficients, +-1
        signs, 0/1 gates. Magnitudes are integer / 10^places, so exact decimals."""
        digits = self.digit_logits.argmax(-1).to(torch.float64)  # (B, T, D, n_digits)
        n = digits.shape[-1]
        weights = torch.pow(10.0, torch.arange(n - 1, -1, -1, device=digits.device, dtype=torch.float64))
        mag = (digits @ weights) / 10.0 ** self.max_decimal_places  # (B, T, D)
        sign = torch.where(self.sign_logits > 0, -1.0, 1.0).double()
        C = (self.coef_logits.shape[-1] - 1) // 2
        O = (self.coef_logits.argmax(-1) - C).double()
        G = (self.gate_logits > 0).double()
        return (*self._expand(mag, sign), O, G)


class DAGPlanPredictor(nn.Module):
    """Heads from hidden states (B, T, n_embd) to a DAGPrediction.

    Values are predicted as decimal digits, not as magnitudes or log-magnitudes: the
    model reads its inputs as digit tokens, so copying digits is a classification it
    can get exactly right, and argmax digits give the exact decimal. A regressed
    (log-)magnitude would need 1e-9 relative precision from a float32 network to
    execute exactly. Operand coefficients are classes for the same reason.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        D, C = config.dag_depth, config.max_coefficient
        self.D, self.n_digits, self.n_coefs = D, config.max_digits + config.max_decimal_places, 2 * C + 1
        self.max_decimal_places = config.max_decimal_places
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(approximate="tanh"))
        hidden = 4 * config.n_embd
        self.digits = nn.Linear(hidden, D * self.n_digits * 10)
        self.signs = nn.Linear(hidden, D)
        self.coefs = nn.Linear(hidden, D * 2 * D * self.n_coefs)
        self.gates = nn.Linear(hidden, D)

    def forward(self, hidden: torch.Tensor) -> DAGPrediction:
        B, T, _ = hidden.shape
        D = self.D
        h = self.mlp(hidden)  # (B, T, 4 * n_embd)
        return DAGPrediction(
            digit_logits=self.digits(h).view(B, T, D, self.n_digits, 10),
            sign_logits=self.signs(h),
            coef_logits=self.coefs(h).view(B, T, D, 2 * D, self.n_coefs),
            gate_logits=self.gates(h),
            max_decimal_places=self.max_decimal_places,
        )


class GPT(nn.Module):
    """nanoGPT's GPT: forward(idx, targets) -> (logits, loss). With dag_depth > 0 it
    also carries DAG heads and an executor: predict_dag(idx) and execute(...)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = Backbone(config)
        if config.dag_depth > 0:
            self.dag_predictor = DAGPlanPredictor(config)
            self.executor = DAGExecutor(config.dag_depth)
            for m in self.dag_predictor.modules():
                self.transformer._init_weights(m)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.transformer(idx)  # (B, T, C)
        if targets is None:
            return self.transformer.lm_head(x[:, [-1], :]), None  # (B, 1, vocab): only the last position is needed
        logits = self.transformer.lm_head(x)  # (B, T, vocab)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def predict_dag(self, idx: torch.Tensor) -> DAGPrediction:
        if self.config.dag_depth == 0:
            raise ValueError("this model has dag_depth=0: it has no DAG heads")
        return self.dag_predictor(self.transformer(idx))

    def execute(self, V_mag, V_sign, O, G) -> torch.Tensor:
        """(B, T) float64 values of DAG tensors, e.g. DAGPrediction.hard()."""
        return self.executor(V_mag, V_sign, O, G)

    def get_num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas, device_type: str):
        return configure_optimizers(self, weight_decay, learning_rate, betas, device_type)

    @classmethod
    def from_pretrained(cls, name_or_dir: str, override_args: dict | None = None):
        """GPT-2 weights (gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a local Hugging
        Face GPT-2 directory) in the backbone; DAG heads, if any, start fresh."""
        override_args = override_args or {}
        allowed = {"dropout", "dag_depth", "max_digits", "max_decimal_places", "max_coefficient"}
        unknown = set(override_args) - allowed
        if unknown:
            raise ValueError(f"from_pretrained can only override {sorted(allowed)}, got {sorted(unknown)}")
        model = cls(GPTConfig(**gpt2_config_args(name_or_dir), **override_args))
        load_gpt2_weights(model.transformer, name_or_dir)
        return model
