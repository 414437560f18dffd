"""The DAG heads, one component per part of the DAG.

Each component owns its output layer, its targets, its loss, its soft decoding (what the
executor runs during training, differentiable) and its hard decoding (the discrete DAG
for evaluation). A new encoding of a part is one new class here and one entry in its
registry (VALUE_HEADS), chosen by a GPTConfig value (value_head='digits'|'copy').

Every component's forward reads `h` (B, T, H), the heads' shared hidden layer, the
text's `Literals` and the `Positions` to predict at, and returns logits for those N
positions only (N, ...): most positions of a training batch have no target, and the
heads cost about as much as the backbone. DAGPlanPredictor places them at their (B, T).
Its loss is per position (B, T), masked by the caller.
"""
import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from data.dagset.batch import Batch


class Literals(NamedTuple):
    """What the text says about its literals, per token (data/dagset/streaming.py
    computes it from the text, at training and at run time alike).

    index (B, T) int64: 1 + the index of the literal the token belongs to, 0 for none;
    value (B, T) float64: the magnitude of the literal that ends in this token, else 0;
    end (B, T) bool: a literal ends in this token."""

    index: torch.Tensor
    value: torch.Tensor
    end: torch.Tensor

    @classmethod
    def from_batch(cls, batch: Batch) -> "Literals":
        return cls(batch.lit_index, batch.lit_value, batch.lit_end)


class Positions(NamedTuple):
    """The N positions a prediction is made at: example b[i], token t[i] (row-major)."""

    b: torch.Tensor  # (N,) int64
    t: torch.Tensor  # (N,) int64

    @classmethod
    def where(cls, at: torch.Tensor) -> "Positions":
        return cls(*at.nonzero(as_tuple=True))

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, ...) at the N positions: (N, ...). index_select, whose backward adds
        rows (index_add): x[b, t]'s backward, an accumulating index_put, took about a
        third longer on the CPU in a profile of the quick start's steps."""
        return x.flatten(0, 1).index_select(0, self.b * x.shape[1] + self.t)

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) repeated for each position's example: (N, ...), as take."""
        return x.index_select(0, self.b)


class LiteralStates(NamedTuple):
    """The states h at the end tokens of the text's first n literals, and which of
    them each position has read. A record of the two rather than their (B, T, n, H)
    product: a layer projects the n states once, then broadcasts over positions."""

    states: torch.Tensor  # (B, n, H), zeros for a literal the text does not have
    read: torch.Tensor  # (B, T, n) bool: literal i ends at or before position t


def literal_states(h: torch.Tensor, literals: Literals, n: int) -> LiteralStates:
    """The first n literals' end states of h (B, T, H). Input node i of a DAG is literal
    i of its text (but for a -1 factor or an exponent before it), so these are the
    nodes' own states, each knowing the operator in front of it."""
    B, T, H = h.shape
    count = literals.end.long().cumsum(1)  # (B, T): literals ended so far
    ends = torch.full((B, n), T, device=h.device)  # position T: a zero row
    b, t = literals.end.nonzero(as_tuple=True)
    keep = count[b, t] <= n
    ends[b[keep], count[b, t][keep] - 1] = t[keep]
    padded = F.pad(h, (0, 0, 0, 1))  # (B, T+1, H)
    states = padded.gather(1, ends[:, :, None].expand(B, n, H))  # (B, n, H)
    read = torch.arange(n, device=h.device)[None, None, :] < count[:, :, None]  # (B, T, n)
    return LiteralStates(states, read)


def causal_coef_mask(D: int, device) -> torch.Tensor:
    """(D, 2D) bool: step k may only read nodes 0 .. D+k-1; the rest of O is never executed."""
    return torch.arange(2 * D, device=device)[None, :] < (D + torch.arange(D, device=device))[:, None]


def digit_targets(V_mag: torch.Tensor, max_digits: int, max_decimal_places: int) -> torch.Tensor:
    """Decimal digits, most significant first, of input magnitudes (..., D) float64 ->
    (..., D, max_digits + max_decimal_places) int64. ValueError if one does not fit."""
    scaled = torch.round(V_mag * 10.0 ** max_decimal_places).to(torch.int64)
    n = max_digits + max_decimal_places
    if (scaled >= 10 ** n).any():
        raise ValueError(f"an input value has more than max_digits={max_digits} integer digits")
    powers = 10 ** torch.arange(n - 1, -1, -1, device=V_mag.device)  # (n,)
    return (scaled.unsqueeze(-1) // powers) % 10


class DigitValues(nn.Module):
    """Input magnitudes as decimal digits, a 10-way class each: max_digits integer and
    max_decimal_places fractional digits. Argmax digits give exact decimals; a literal
    with more digits than that cannot be written."""

    name = "mag"

    def __init__(self, config, hidden: int):
        super().__init__()
        self.D, self.places = config.dag_depth, config.max_decimal_places
        self.max_digits = config.max_digits
        self.n = config.max_digits + config.max_decimal_places
        self.out = nn.Linear(hidden, self.D * self.n * 10)

    def forward(self, h: torch.Tensor, literals: Literals, at: Positions) -> torch.Tensor:
        return self.out(at.take(h)).view(-1, self.D, self.n, 10)  # (N, D, n_digits, 10)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        digits = digit_targets(batch.V_mag[..., :self.D], self.max_digits, self.places)  # (B, T, D, n)
        loss = F.cross_entropy(logits.flatten(0, -2), digits.flatten(), reduction="none")
        return loss.view(digits.shape).mean(dim=(-1, -2))

    def _place_values(self, device) -> torch.Tensor:
        exps = torch.arange(self.n - 1, -1, -1, device=device) - self.places
        return torch.pow(10.0, exps.to(torch.float64))  # (n,)

    def soft(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        digits = torch.arange(10, device=logits.device, dtype=torch.float64)
        return (logits.double().softmax(-1) @ digits) @ self._place_values(logits.device)  # (B, T, D)

    def hard(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        digits = logits.argmax(-1).to(torch.float64)  # (B, T, D, n)
        weights = torch.pow(10.0, torch.arange(self.n - 1, -1, -1, device=digits.device, dtype=torch.float64))
        return (digits @ weights) / 10.0 ** self.places  # integer / 10^places: an exact decimal


class CopyValues(nn.Module):
    """Input magnitudes copied from the text: slot i points at the token where one of
    the text's literals ends (or at 'none', value 0, for an unused slot), and takes
    that literal's exact value. Exact by construction, and not limited in digits: a
    literal longer than any seen in training is copied just as exactly.

    Pointer logits (N, D, T+1) are scaled dot products between a query per slot at
    position t and a key at each position s <= t where a literal ends; the last column
    is a learned 'none' key."""

    name = "mag"

    def __init__(self, config, hidden: int, key_size: int = 64):
        super().__init__()
        self.D, self.key_size = config.dag_depth, key_size
        self.query = nn.Linear(hidden, self.D * key_size)
        self.key = nn.Linear(hidden, key_size)
        self.none_key = nn.Parameter(torch.zeros(key_size))

    def forward(self, h: torch.Tensor, literals: Literals, at: Positions) -> torch.Tensor:
        B, T, _ = h.shape
        q = self.query(at.take(h)).view(-1, self.D, self.key_size).float()  # (N, D, K)
        k = torch.cat([self.key(h).float(), self.none_key.float().expand(B, 1, -1)], dim=1)  # (B, T+1, K)
        scores = torch.einsum("ndk,nsk->nds", q, at.rows(k)) / math.sqrt(self.key_size)  # (N, D, T+1)
        s = torch.arange(T + 1, device=h.device)
        allowed = (s[None, :] <= at.t[:, None]) & F.pad(literals.end, (0, 1))[at.b]
        allowed[:, T] = True  # (N, T+1): earlier literal ends, and 'none'
        return scores.masked_fill(~allowed[:, None, :], float("-inf"))

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        src = batch.V_src  # (B, T, D): position, -1 for none, -2 for a value not in the text
        T = logits.shape[1]
        # a value the text does not hold (the 1 of x**-k) is not trained: its target is
        # set to 'none', which every row allows, and weighted 0 (an -inf logit would
        # make the gradient NaN even at weight 0)
        target = torch.where(src < 0, T, src)
        loss = F.cross_entropy(logits.flatten(0, -2), target.flatten(), reduction="none").view(src.shape)
        return (loss * (src != -2)).mean(-1)

    def _candidates(self, literals: Literals) -> torch.Tensor:
        return F.pad(literals.value, (0, 1))  # (B, T+1): each position's literal, then 'none' = 0

    def soft(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        return torch.einsum("btds,bs->btd", logits.double().softmax(-1), self._candidates(literals))

    def hard(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        B, T, D, S = logits.shape
        choice = logits.argmax(-1).view(B, T * D)  # (B, T*D)
        return self._candidates(literals).gather(1, choice).view(B, T, D)


VALUE_HEADS = {"digits": DigitValues, "copy": CopyValues}


class PairLayer(nn.Module):
    """Per input node j, out_size logits from the position's state h_t and node j's own
    state (literal_states): a hidden layer over the pair, so the output can depend on
    both at once (the step at t that reads j, and the operator in front of j)."""

    def __init__(self, hidden: int, out_size: int, width: int = 256):
        super().__init__()
        self.here, self.node = nn.Linear(hidden, width), nn.Linear(hidden, width, bias=False)
        self.out = nn.Linear(width, out_size)

    def forward(self, h: torch.Tensor, literals: Literals, n: int, at: Positions) -> torch.Tensor:
        nodes = literal_states(h, literals, n)
        # node has no bias and read is 0/1, so projecting the n states before the
        # broadcast equals projecting the broadcast (N, n, H), at a fraction of its cost
        node = at.rows(self.node(nodes.states)) * at.take(nodes.read)[..., None]  # (N, n, width)
        return self.out(F.gelu(self.here(at.take(h))[:, None] + node))  # (N, n, out_size)


class StepStates(nn.Module):
    """A state per step k of the DAG at each position t: step k's own query from h_t
    attends over the states of positions <= t (a few heads), so each step can find the
    operator and the group of the text it computes rather than only what h_t holds of
    them; added to step k's own projection of h_t. (N, D, width)"""

    def __init__(self, config, hidden: int, width: int = 256, n_head: int = 4, key_size: int = 32):
        super().__init__()
        self.D, self.width, self.n_head, self.key_size = config.dag_depth, width, n_head, key_size
        self.query = nn.Linear(hidden, self.D * n_head * key_size)
        self.key = nn.Linear(hidden, n_head * key_size)
        self.value = nn.Linear(hidden, width)
        self.here = nn.Linear(hidden, self.D * width)

    def forward(self, h: torch.Tensor, at: Positions) -> torch.Tensor:
        B, T, _ = h.shape
        D, nh, K = self.D, self.n_head, self.key_size
        here = at.take(h)  # (N, hidden)
        q = self.query(here).view(-1, D, nh, K)  # (N, D, nh, K)
        k = at.rows(self.key(h).view(B, T, nh, K))  # (N, T, nh, K)
        v = at.rows(self.value(h).view(B, T, nh, self.width // nh))  # (N, T, nh, width/nh)
        scores = torch.einsum("ndhk,nshk->ndhs", q, k) / math.sqrt(K)  # (N, D, nh, T)
        allowed = torch.arange(T, device=h.device)[None, :] <= at.t[:, None]  # (N, T): causal
        weights = scores.masked_fill(~allowed[:, None, None, :], float("-inf")).softmax(-1)
        read = torch.einsum("ndhs,nshw->ndhw", weights, v).reshape(-1, D, self.width)  # (N, D, width)
        return F.gelu(self.here(here).view(-1, D, self.width) + read)


class Signs(nn.Module):
    """Input signs: a logit per input node, > 0 meaning negative."""

    name = "sign"

    def __init__(self, config, hidden: int):
        super().__init__()
        self.D = config.dag_depth
        self.out = nn.Linear(hidden, self.D)
        self.pair = PairLayer(hidden, 1) if config.literal_states else None

    def forward(self, h: torch.Tensor, literals: Literals, at: Positions) -> torch.Tensor:
        logits = self.out(at.take(h))  # (N, D)
        return logits if self.pair is None else logits + self.pair(h, literals, self.D, at).squeeze(-1)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        negative = (batch.V_sign[..., :self.D] < 0).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, negative, reduction="none").mean(-1)

    def soft(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        return torch.tanh(-logits.double())

    def hard(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        return torch.where(logits > 0, -1.0, 1.0).double()


class Coefficients(nn.Module):
    """Operand coefficients O (B, T, D, 2D) as classes -C..C; only the entries the
    causal mask lets a step read are trained."""

    name = "op"

    def __init__(self, config, hidden: int):
        super().__init__()
        self.D, self.C = config.dag_depth, config.max_coefficient
        self.out = nn.Linear(hidden, self.D * 2 * self.D * (2 * self.C + 1))
        self.pair = PairLayer(hidden, self.D * (2 * self.C + 1)) if config.literal_states else None
        self.steps = StepStates(config, hidden) if config.step_states else None
        if self.steps is not None:
            width = self.steps.width
            self.step_here = nn.Linear(width, width)
            self.input_node = nn.Linear(hidden, width, bias=False)
            self.step_node = nn.Linear(width, width, bias=False)
            self.step_out = nn.Linear(width, 2 * self.C + 1)

    def forward(self, h: torch.Tensor, literals: Literals, at: Positions) -> torch.Tensor:
        logits = self.out(at.take(h)).view(-1, self.D, 2 * self.D, 2 * self.C + 1)  # (N, D, 2D, 2C+1)
        if self.pair is not None:
            # how each step reads input node j also comes from node j's own state
            pair = self.pair(h, literals, self.D, at).view(-1, self.D, self.D, 2 * self.C + 1)  # (N, node, step, 2C+1)
            logits = torch.cat([logits[:, :, :self.D] + pair.transpose(1, 2), logits[:, :, self.D:]], dim=2)
        if self.steps is not None:
            logits = logits + self._step_pairs(h, literals, at)
        return logits

    def _step_pairs(self, h: torch.Tensor, literals: Literals, at: Positions) -> torch.Tensor:
        """Logits of step k reading node j from step k's state and node j's: input
        node i's literal state, or step j's own state. (N, D, 2D, 2C+1)"""
        z = self.steps(h, at)  # (N, D, width)
        nodes = literal_states(h, literals, self.D)
        inputs = at.rows(self.input_node(nodes.states)) * at.take(nodes.read)[..., None]  # (N, D, width)
        node = torch.cat([inputs, self.step_node(z)], dim=1)  # (N, 2D, width)
        return self.step_out(F.gelu(self.step_here(z)[:, :, None] + node[:, None]))  # (N, D, 2D, 2C+1)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = (batch.O.round().to(torch.int64) + self.C).clamp(0, 2 * self.C)  # (B, T, D, 2D)
        loss = F.cross_entropy(logits.flatten(0, -2), target.flatten(), reduction="none")
        causal = causal_coef_mask(self.D, loss.device).to(loss.dtype)
        return (loss.view(target.shape) * causal).sum(dim=(-1, -2)) / causal.sum()

    def soft(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        coefs = torch.arange(-self.C, self.C + 1, device=logits.device, dtype=torch.float64)
        return logits.double().softmax(-1) @ coefs

    def hard(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        return (logits.argmax(-1) - self.C).double()


class Gates(nn.Module):
    """Domain gates: a logit per step, > 0 meaning linear (+ -), else log (* /)."""

    name = "gate"

    def __init__(self, config, hidden: int):
        super().__init__()
        self.out = nn.Linear(hidden, config.dag_depth)
        self.steps = StepStates(config, hidden) if config.step_states else None
        self.step_out = nn.Linear(self.steps.width, 1) if config.step_states else None

    def forward(self, h: torch.Tensor, literals: Literals, at: Positions) -> torch.Tensor:
        logits = self.out(at.take(h))  # (N, D)
        if self.steps is not None:
            logits = logits + self.step_out(self.steps(h, at)).squeeze(-1)
        return logits

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, batch.G.to(logits.dtype), reduction="none").mean(-1)

    def soft(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        return torch.sigmoid(logits.double())

    def hard(self, logits: torch.Tensor, literals: Literals) -> torch.Tensor:
        return (logits > 0).double()
