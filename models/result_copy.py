"""The result channel of the full model (train.py): the value the DAG executor computed
at a position re-enters the model as the GPT-2 tokens of its canonical decimal text,
and a pointer-generator head (See et al. 2017) may copy them into the answer.

A continuous embedding of the value cannot carry 6+ exact digits into the logits; a
copied token is exact by construction. So the answer a model writes is exact whenever
the DAG behind it is right, and the language model only has to learn *when* to copy.

The channel writes the project's canonical answer text (data/dagset/text_format.format_answer).
"""
import math
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from data.dagset.text_format import format_answer, gpt2_encoding

MAX_RESULT_TOKENS = 24  # GPT-2 tokens of a result the channel can hold (a 1e24 value with 6 decimals fits)
MAX_RESULT = 1e30  # larger values have no plain decimal text the channel could copy


@lru_cache(maxsize=65536)
def answer_tokens(value: float) -> tuple[int, ...]:
    """GPT-2 tokens of ' ' + format_answer(value), as an answer is written after
    'Answer:' or '='; () when the value has no text that fits the channel."""
    if not math.isfinite(value) or abs(value) >= MAX_RESULT:
        return ()
    tokens = tuple(gpt2_encoding().encode_ordinary(" " + format_answer(value)))
    return tokens if len(tokens) <= MAX_RESULT_TOKENS else ()


class ResultTokens(NamedTuple):
    """Per position t, the result the channel offers there and how far the text has
    written it. The result is that of the value at position s = t - written: the one
    whose text the text has been writing since s (the longest such run), else t's own
    (written 0). So once an answer is started, it is finished from the same value, even
    if the DAG predicted at a later position (which has read the answer's first digits
    as a new number) differs."""

    tokens: torch.Tensor  # (B, T, K) int64, 0 past length
    length: torch.Tensor  # (B, T) int64; 0: no value here
    written: torch.Tensor  # (B, T) int64: how many of the tokens the text has written since s

    @classmethod
    def of(cls, values: torch.Tensor, available: torch.Tensor, idx: torch.Tensor) -> "ResultTokens":
        """values (B, T) float64 where available (B, T) is True; idx (B, T) the text."""
        B, T = idx.shape
        K = MAX_RESULT_TOKENS
        b, t = available.cpu().nonzero(as_tuple=True)
        unique, inverse = values.detach().cpu()[b, t].unique(return_inverse=True)
        # the same value recurs along a row: each distinct one is formatted and tokenized once
        table = torch.zeros(len(unique), K, dtype=torch.int64)
        table_length = torch.zeros(len(unique), dtype=torch.int64)
        for u, v in enumerate(unique.tolist()):
            toks = answer_tokens(v)
            table[u, :len(toks)] = torch.tensor(toks, dtype=torch.int64)
            table_length[u] = len(toks)
        own = torch.zeros(B, T, K, dtype=torch.int64)  # each position's own value's tokens
        own_length = torch.zeros(B, T, dtype=torch.int64)
        own[b, t], own_length[b, t] = table[inverse], table_length[inverse]
        own, own_length = own.to(idx.device), own_length.to(idx.device)
        # window[b, t, m] = idx[b, t - K + 1 + m]: the last K tokens of the text at t
        window = F.pad(idx, (K - 1, 0), value=-1).unfold(1, K, 1)  # (B, T, K)
        tokens, length, written = own, own_length, torch.zeros_like(own_length)
        for j in range(1, K + 1):  # the text's last j tokens are the first j of position t - j's result
            before = F.pad(own, (0, 0, j, 0))[:, :T]  # (B, T, K): position t - j's tokens
            before_length = F.pad(own_length, (j, 0))[:, :T]
            started = (window[..., K - j:] == before[..., :j]).all(-1) & (j <= before_length)
            tokens = torch.where(started[..., None], before, tokens)
            length = torch.where(started, before_length, length)
            written = torch.where(started, j, written)
        return cls(tokens, length, written)


class ResultCopy(nn.Module):
    """Pointer-generator over the result tokens: p(y) = g p_lm(y) + (1 - g) sum_j a_j [r_j = y].

    The pointer a (B, T, K) scores each result token j from the position's state, the
    token's embedding, its slot j and whether j is the next one to write (j = written);
    the gate g from the state and how much of the result is written (none, some, all).
    Where no value is available, g = 1: the plain language model."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.query = nn.Linear(n_embd, n_embd)
        self.slot = nn.Embedding(MAX_RESULT_TOKENS, n_embd)
        self.is_next = nn.Embedding(2, n_embd)
        self.progress = nn.Embedding(3, n_embd)
        self.gate = nn.Linear(n_embd, 1)

    def forward(self, x: torch.Tensor, wte: nn.Embedding, result: ResultTokens) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C) at N positions, result's fields at the same positions (N, K), (N,)
        -> (log g (N,), log of the pointer (N, K))."""
        K, C = result.tokens.shape[-1], x.shape[-1]
        slots = torch.arange(K, device=x.device)
        keys = wte(result.tokens) + self.slot(slots) + self.is_next((slots == result.written[..., None]).long())
        scores = torch.einsum("nc,nkc->nk", self.query(x), keys).float() / math.sqrt(C)  # (N, K)
        # a position without a value keeps slot 0 finite: a row of -inf would make the
        # softmax's gradient NaN even where the result is not used
        scores = scores.masked_fill(slots >= result.length.clamp(min=1)[..., None], float("-inf"))
        progress = (result.written > 0).long() + (result.written == result.length).long() * (result.length > 0)
        gate = self.gate(x + self.progress(progress)).squeeze(-1).float()  # (N,)
        has = result.length > 0
        log_gate = torch.where(has, F.logsigmoid(gate), 0.0)
        log_pointer = torch.where(has[..., None], scores.log_softmax(-1), float("-inf"))
        return log_gate, log_pointer


def mixed_log_probs(lm_logits: torch.Tensor, log_gate: torch.Tensor, log_pointer: torch.Tensor,
                    tokens: torch.Tensor) -> torch.Tensor:
    """log p (N, vocab) of the mixture, for sampling."""
    probs = lm_logits.float().softmax(-1) * log_gate.exp()[..., None]
    copy = log_pointer.exp() * (1 - log_gate.exp())[..., None]  # (N, K)
    return probs.scatter_add(-1, tokens, copy).clamp_min(1e-30).log()


def mixed_nll(lm_logits: torch.Tensor, log_gate: torch.Tensor, log_pointer: torch.Tensor, tokens: torch.Tensor,
              targets: torch.Tensor) -> torch.Tensor:
    """Mean -log p(target) of the mixture over N positions (targets (N,)); the (N,
    vocab) mixture is never formed: the pointer's mass on a target is a sum over its K slots."""
    lm = -F.cross_entropy(lm_logits.float(), targets, reduction="none")  # (N,) log p_lm(target)
    on_target = (log_pointer.exp() * (tokens == targets[..., None])).sum(-1)  # (N,)
    copy = torch.log1p(-log_gate.exp().clamp(max=1 - 1e-7)) + on_target.clamp_min(1e-30).log()
    has = torch.isfinite(log_pointer).any(-1)  # a value to copy from
    return -torch.where(has, torch.logaddexp(log_gate + lm, copy), lm).mean()
