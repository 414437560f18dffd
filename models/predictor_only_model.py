"""The predictor-only model used to pretrain DAG prediction (train_predictor.py):
the GPT backbone and DAG heads without the language-model head, so no (B, T, vocab)
logits are ever computed."""
import torch

from models.dag_heads import Literals
from models.dag_model import GPT, DAGPrediction, GPTConfig


class PredictorOnlyModel(GPT):
    """forward(idx (B, T), literals, at) -> DAGPrediction at the positions at (B, T)
    marks (every position if None)."""

    writes_text = False  # no language-model loss: no result channel

    def __init__(self, config: GPTConfig):
        if config.dag_depth < 1:
            raise ValueError(f"a predictor-only model needs dag_depth >= 1, got {config.dag_depth}")
        super().__init__(config)

    def forward(self, idx: torch.Tensor, literals: Literals, at: torch.Tensor | None = None) -> DAGPrediction:
        return self.predict_dag(idx, literals, at)
