"""The GPT that predicts DAGs.

DAGPlanPredictor maps each position's hidden state to the fixed-size DAG tensors
(V_mag, V_sign, O, G) that DAGExecutor (models/dag_executor.py) runs in float64, and GPT
is the nanoGPT backbone plus these heads (with dag_depth=0, exactly a plain nanoGPT GPT).
As a language model (train.py), GPT executes the DAG wherever the text has read a
number, and the value re-enters through ResultCopy (models/result_copy.py): the next
token may be copied from the value's own decimal text.
"""
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from data.dagset.batch import Batch
from models.base_model import Backbone, configure_optimizers, gpt2_config_args, load_gpt2_weights
from models.dag_executor import DAGExecutor
from models.dag_heads import VALUE_HEADS, Coefficients, Gates, Literals, Positions, Signs, causal_coef_mask
from models.result_copy import MAX_RESULT_TOKENS, ResultCopy, ResultTokens, mixed_log_probs, mixed_nll

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
    value_head: str = "digits"  # how input values are written: 'digits' or 'copy' (models/dag_heads.py)
    max_digits: int = 4  # integer digits of an input value the digit head can write
    max_decimal_places: int = 4
    max_coefficient: int = 3  # operand coefficients are classes -C..C
    literal_embedding: bool = False  # add an embedding of each token's literal index to its input
    literal_states: bool = False  # signs and coefficients also read each input literal's own state
    step_states: bool = False  # coefficients and gates also read a state per step, attended from the text

    def __post_init__(self):
        if self.value_head not in VALUE_HEADS:
            raise ValueError(f"value_head must be one of {sorted(VALUE_HEADS)}, got {self.value_head!r}")


# GPTConfig fields that a checkpoint or a GPT-2 backbone decides; the rest belong to the heads
BACKBONE_KEYS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "bias")
HEAD_KEYS = tuple(f.name for f in fields(GPTConfig) if f.name not in BACKBONE_KEYS)
MAX_LITERALS = 32  # literal-index embeddings; later literals share the last one


@dataclass
class DAGPrediction:
    """The heads' logits for every position (one entry per component, by name), with
    the components and the text's literals needed to decode them."""

    logits: dict[str, torch.Tensor]
    components: dict[str, nn.Module]
    literals: Literals

    def _decode(self, how: str) -> tuple[torch.Tensor, ...]:
        part = {name: getattr(c, how)(self.logits[name], self.literals) for name, c in self.components.items()}
        mag, sign = part["mag"], part["sign"]  # (B, T, D) each
        # intermediate nodes are computed by the executor; their input slots stay 0 / +1
        return F.pad(mag, (0, mag.shape[-1])), F.pad(sign, (0, sign.shape[-1]), value=1.0), part["op"], part["gate"]

    def soft(self) -> tuple[torch.Tensor, ...]:
        """Differentiable (V_mag, V_sign, O, G) in float64 for the executor: expected
        values and coefficients, tanh signs and sigmoid gates."""
        return self._decode("soft")

    def hard(self) -> tuple[torch.Tensor, ...]:
        """The discrete DAG the heads describe: argmax values and coefficients, +-1
        signs, 0/1 gates."""
        return self._decode("hard")


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


class DAGPlanPredictor(nn.Module):
    """Heads from hidden states (B, T, n_embd) to a DAGPrediction: a shared hidden
    layer, then one component per part of the DAG (models/dag_heads.py).

    Values and operand coefficients are classes, not regressions: argmax gives exact
    digits, literals and integer coefficients, while a regressed (log-)magnitude would
    need 1e-9 relative precision from a float32 network to execute exactly."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = 4 * config.n_embd
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, hidden), nn.GELU(approximate="tanh"))
        parts = (VALUE_HEADS[config.value_head], Signs, Coefficients, Gates)
        self.parts = nn.ModuleDict({cls.name: cls(config, hidden) for cls in parts})

    def forward(self, hidden: torch.Tensor, literals: Literals, at: torch.Tensor | None = None) -> DAGPrediction:
        """Logits (B, T, ...) at the positions where at (B, T) is True (all if None);
        the others hold 0, no prediction, for the caller to mask."""
        B, T, _ = hidden.shape
        h = self.mlp(hidden)  # (B, T, 4 * n_embd)
        positions = Positions.where(torch.ones(B, T, dtype=torch.bool, device=h.device) if at is None else at)
        logits = {}
        for name, part in self.parts.items():
            packed = part(h, literals, positions)  # (N, ...)
            if at is None:  # every position, in row-major order
                logits[name] = packed.view(B, T, *packed.shape[1:])
            else:
                logits[name] = packed.new_zeros(B, T, *packed.shape[1:]).index_put((positions.b, positions.t), packed)
        return DAGPrediction(logits, dict(self.parts.items()), literals)


class Teacher(NamedTuple):
    """The exact values a training row knows: value (B, T) float64 where mask (B, T)."""

    value: torch.Tensor
    mask: torch.Tensor


class LMOutput(NamedTuple):
    logits: torch.Tensor  # (B, T, vocab), or (B, 1, vocab) without targets; log-probabilities with DAG heads
    loss: torch.Tensor | None  # next-token cross-entropy over targets != -1
    dag: DAGPrediction | None  # the DAG heads' prediction where the text has read a literal


class GPT(nn.Module):
    """nanoGPT's GPT: forward(idx, targets) -> LMOutput(logits, loss, dag). With
    dag_depth > 0 it also carries DAG heads, an executor and the result channel:
    forward needs the text's literals, and predict_dag(idx) and execute(...) give the
    DAG alone."""

    writes_text = True  # a subclass that only predicts DAGs has no result channel

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = Backbone(config)
        if config.dag_depth > 0:
            self.dag_predictor = DAGPlanPredictor(config)
            self.executor = DAGExecutor(config.dag_depth)
            if config.literal_embedding:
                self.literal_emb = nn.Embedding(MAX_LITERALS + 1, config.n_embd)
            for m in self.dag_predictor.modules():
                self.transformer._init_weights(m)
            if config.literal_embedding:
                self.transformer._init_weights(self.literal_emb)
            if self.writes_text:
                self.result_copy = ResultCopy(config.n_embd)
                for m in self.result_copy.modules():
                    self.transformer._init_weights(m)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, literals: Literals | None = None,
                teacher: Teacher | None = None) -> LMOutput:
        """Next-token logits of idx (B, T) and the mean loss against targets (B, T).
        With targets, logits (N, vocab) are those of the N positions whose target is
        not -1, row-major (the others, padding, are never computed: the vocab-sized
        head is most of a small model's step); without, (B, 1, vocab) of the last
        position. With DAG heads, pass the text's literals (Literals.from_batch); the
        value that re-enters is the executed hard DAG, or teacher's exact one where it
        has one (training), and the logits are the mixture's log-probabilities."""
        B, T = idx.shape
        at = targets != -1 if targets is not None else (torch.arange(T, device=idx.device) == T - 1).expand(B, T)
        if self.config.dag_depth == 0:
            x = self.transformer(idx)  # (B, T, C)
            logits = self.transformer.lm_head(x[at])  # (N, vocab)
            if targets is None:
                return LMOutput(logits.view(B, 1, -1), None, None)
            return LMOutput(logits, F.cross_entropy(logits, targets[at]), None)
        if literals is None:
            raise ValueError("a GPT with DAG heads reads the text's literals: pass literals=")
        x = self.transformer(idx, self._literal_input(literals))  # (B, T, C)
        available = literals.end.cumsum(1) > 0  # (B, T): a value exists from the first literal on
        # the heads run where the DAG losses (training) or the result channel need them: a
        # generating model's last position and those an answer it is writing may have started at
        if targets is None:
            available = available & (torch.arange(T, device=idx.device) >= T - 1 - MAX_RESULT_TOKENS)
        dag = self.dag_predictor(x, literals, at=available)
        with torch.no_grad():
            values = self.execute(*dag.hard())  # (B, T) float64
            if teacher is not None:
                values = torch.where(teacher.mask, teacher.value, values)
        result = ResultTokens(*(r[at] for r in ResultTokens.of(values, available, idx)))  # (N, K), (N,), (N,)
        x = x[at]  # (N, C)
        log_gate, log_pointer = self.result_copy(x, self.transformer.wte, result)
        lm_logits = self.transformer.lm_head(x)  # (N, vocab)
        if targets is None:
            return LMOutput(mixed_log_probs(lm_logits, log_gate, log_pointer, result.tokens).view(B, 1, -1), None, dag)
        return LMOutput(lm_logits, mixed_nll(lm_logits, log_gate, log_pointer, result.tokens, targets[at]), dag)

    def _literal_input(self, literals: Literals) -> torch.Tensor | None:
        # the literal index is read off the text, like the tokens: place in the
        # expression that GPT-2's context-dependent number splits do not give
        return self.literal_emb(literals.index.clamp(max=MAX_LITERALS)) if self.config.literal_embedding else None

    def predict_dag(self, idx: torch.Tensor, literals: Literals, at: torch.Tensor | None = None) -> DAGPrediction:
        """The DAG heads' prediction at the positions of idx (B, T) where at (B, T) is
        True (every position if None; elsewhere logits 0), from the text's literals
        (Literals.from_batch), which the heads may read."""
        if self.config.dag_depth == 0:
            raise ValueError("this model has dag_depth=0: it has no DAG heads")
        return self.dag_predictor(self.transformer(idx, self._literal_input(literals)), literals, at)

    def execute(self, V_mag, V_sign, O, G) -> torch.Tensor:
        """(B, T) float64 values of DAG tensors, e.g. DAGPrediction.hard()."""
        return self.executor(V_mag, V_sign, O, G)

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas, device_type: str):
        return configure_optimizers(self, weight_decay, learning_rate, betas, device_type)

    @classmethod
    def from_pretrained(cls, name_or_dir: str, override_args: dict | None = None):
        """GPT-2 weights (gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a local Hugging
        Face GPT-2 directory) in the backbone; DAG heads, if any, start fresh."""
        override_args = override_args or {}
        allowed = set(HEAD_KEYS)
        unknown = set(override_args) - allowed
        if unknown:
            raise ValueError(f"from_pretrained can only override {sorted(allowed)}, got {sorted(unknown)}")
        model = cls(GPTConfig(**gpt2_config_args(name_or_dir), **override_args))
        load_gpt2_weights(model.transformer, name_or_dir)
        return model
