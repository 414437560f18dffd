"""Streaming per-token DAG dataset: expression text -> GPT-2 tokens -> at every token,
the DAG tensors of the expression that the text up to that token denotes.

Target rule for a token prefix (`prefix_target_text`):
- a prefix that ends inside a number (the next character continues it, as in "98" of
  "9876.5") is masked: the model cannot know the number yet;
- otherwise trailing operators, spaces and "(" are dropped and open parentheses are
  closed: "2.5 *" -> "2.5", "(1 + 2) * (3" -> "(1 + 2) * (3)"; a prefix with nothing
  left ("-", "(") or whose completion is not a valid DAG ("6 / (0" of "6 / (0 + 1)")
  is masked;
- positions past the end of the text are masked.

Examples are indexed: example i of a split is drawn from seeds derived from (seed, i),
so the stream is deterministic, batch b is the same whatever the number of DataLoader
workers (worker w makes batches b = w, w + W, ...; DataLoader reads workers in turn),
and a resumed run starts at its batch position. A text belongs to the validation split
iff crc32(respace(text)) % VAL_EVERY == 0, so the two splits never share an expression,
nor two spacings of one (`3*4` and `3 * 4`: a model that reads texts respaced reads them
as one).
"""
import zlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, fields
from typing import NamedTuple
from fractions import Fraction

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from data.dagset.batch import DAG_TARGETS, Batch, collate, empty_targets
from data.dagset.dag_plan import build_plan, plan_arrays
from data.dagset.fast_parse import lex, parse_lexemes, respace
from data.dagset.generate_expression import generate_expression
from data.dagset.text_format import PAD_TOKEN, encode, gpt2_encoding

VAL_EVERY = 16
_NUMBER_CHARS = frozenset("0123456789.")
_TRAILING = " +-*/("
_DROPPED = frozenset(("+", "-", "*", "/", "**", "("))


@dataclass
class StreamConfig:
    """Everything that decides the stream's content."""

    dag_depth: int = 4
    block_size: int = 32
    max_digits: int = 4
    max_decimal_places: int = 4
    min_expr_depth: int = 0
    max_expr_depth: int = 3  # binary operations; depth + 1 literals must fit dag_depth
    depth_power: float = 0.0  # depth d is drawn with weight (d + 1) ** depth_power: 0 uniform, > 0 more deep ones
    ops: str = "+-*/"
    p_unary_minus: float = 0.2
    p_parens: float = 0.2
    p_power: float = 0.0
    seed: int = 1337
    # how people also write expressions (generate_expression's style options; 0 = off)
    p_trailing_zeros: float = 0.0
    p_no_spaces: float = 0.0
    p_space_in_parens: float = 0.0
    p_neg_group: float = 0.0
    p_redundant_parens: float = 0.0
    respace: bool = False  # the model reads every text respaced (fast_parse.respace): `3*4` as `3 * 4`

    @classmethod
    def from_settings(cls, settings: dict) -> "StreamConfig":
        """The stream of a run's settings (a config dict): its fields that settings has."""
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})

    def __post_init__(self):
        if self.dag_depth < 1 or self.block_size < 1:
            raise ValueError(f"dag_depth and block_size must be >= 1, got {self.dag_depth}, {self.block_size}")
        if not 0 <= self.min_expr_depth <= self.max_expr_depth:
            raise ValueError(f"need 0 <= min_expr_depth <= max_expr_depth, got "
                             f"{self.min_expr_depth}, {self.max_expr_depth}")
        if self.depth_power < 0:
            raise ValueError(f"depth_power must be >= 0, got {self.depth_power}")
        if self.max_expr_depth + 1 > self.dag_depth:
            raise ValueError(f"max_expr_depth={self.max_expr_depth} has {self.max_expr_depth + 1} values, "
                             f"more than dag_depth={self.dag_depth} nodes hold")


# generate_expression's style options: the forms people write, all 0 (tidy texts) by default
FORM_KEYS = ("p_trailing_zeros", "p_no_spaces", "p_space_in_parens", "p_neg_group", "p_redundant_parens")
# the settings that decide which expressions are drawn: a training script's config keys
EXPRESSION_KEYS = ("max_digits", "max_decimal_places", "min_expr_depth", "max_expr_depth", "depth_power",
                   "p_unary_minus", "p_parens", "p_power", *FORM_KEYS)


def expression_defaults() -> dict:
    """StreamConfig's default of each EXPRESSION_KEYS setting."""
    return {k: StreamConfig.__dataclass_fields__[k].default for k in EXPRESSION_KEYS}


def prefix_target_text(text: str, end: int) -> str | None:
    """The expression text that text[:end] denotes, or None when it is masked."""
    if end < len(text) and text[end] in _NUMBER_CHARS and text[end - 1] in _NUMBER_CHARS:
        return None
    prefix = text[:end].rstrip(_TRAILING)
    if not prefix:
        return None
    return prefix + ")" * (prefix.count("(") - prefix.count(")"))


class ExampleMaker:
    """Turns expression texts into per-token targets (the hot loop of the data path)."""

    def __init__(self, cfg: StreamConfig):
        self.cfg = cfg
        self.enc = gpt2_encoding()
        self._token_len: dict[int, int] = {}
        depths = range(cfg.min_expr_depth, cfg.max_expr_depth + 1)
        weights = [(d + 1) ** cfg.depth_power for d in depths]
        self._depth_cdf = [sum(weights[:i + 1]) / sum(weights) for i in range(len(weights))]

    def depth_of(self, seed: int) -> int:
        """The expression depth a draw's seed gives: seed % n_depths when depth_power is 0
        (uniform), else from the seed's hash by the weights (d + 1) ** depth_power."""
        cfg = self.cfg
        n_depths = cfg.max_expr_depth - cfg.min_expr_depth + 1
        if cfg.depth_power == 0:
            return cfg.min_expr_depth + seed % n_depths
        u = zlib.crc32(seed.to_bytes(16, "little", signed=True)) / 2 ** 32  # uniform in [0, 1)
        return cfg.min_expr_depth + min(bisect_right(self._depth_cdf, u), n_depths - 1)

    def _token_ends(self, tokens: list[int]) -> list[int]:
        ends, pos = [], 0
        for t in tokens:
            n = self._token_len.get(t)
            if n is None:
                n = self._token_len[t] = len(self.enc.decode_single_token_bytes(t))
            pos += n
            ends.append(pos)
        return ends

    def reading(self, text: str) -> str:
        """The text as the model reads it: respaced when cfg.respace, else as written."""
        return respace(text) if self.cfg.respace else text

    def tokens(self, text: str) -> list[int]:
        return encode(text)

    def targets(self, text: str, tokens: list[int], start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Per-position arrays for one text whose tokens fit block_size, its expression
        text[start:stop] (the whole text by default; a Mathematics Dataset question has
        words around it: the positions before the expression are masked, those after it
        hold the whole expression's DAG). ValueError if the whole expression is not a DAG
        that fits dag_depth (a prefix that is not is masked)."""
        D, T = self.cfg.dag_depth, self.cfg.block_size
        stop = len(text) if stop is None else stop
        ex = {"idx": np.full(T, PAD_TOKEN, dtype=np.int64)} | empty_targets(T, D) | {
            "lit_index": np.zeros(T, dtype=np.int64),
            "lit_value": np.zeros(T),
            "lit_end": np.zeros(T, dtype=bool),
        }
        ex["idx"][: len(tokens)] = tokens
        # prefix_target_text on lexemes: the text is lexed once, and a prefix's target is
        # its first k lexemes (trailing operators and "(" dropped) plus closing parens
        lexemes = [(w, start + end) for w, end in lex(text[start:stop])]
        words = [w for w, _ in lexemes]
        token_ends = self._token_ends(tokens)
        literals = read_literals(lexemes, token_ends, ex)
        k, depth, last_k, last_t = 0, [0], -1, -1
        for t, end in enumerate(token_ends):
            if end < len(text) and text[end] in _NUMBER_CHARS and text[end - 1] in _NUMBER_CHARS:
                continue  # inside a number
            while k < len(lexemes) and lexemes[k][1] <= end:
                depth.append(depth[-1] + (words[k] == "(") - (words[k] == ")"))
                k += 1
            n = k
            while n and words[n - 1] in _DROPPED:
                n -= 1
            if n == 0:
                continue
            if n == last_k:  # e.g. "2.5 *" after "2.5": same DAG
                for key in DAG_TARGETS:
                    ex[key][t] = ex[key][last_t]
            else:
                target = words[:n] + [")"] * depth[n]
                try:
                    # where= names the whole text: a message is only needed if it fails
                    plan = build_plan(parse_lexemes(target, text))
                    arrays = plan_arrays(plan, D, where=text)
                except ValueError:  # a prefix can divide by zero: "6 / (0" of "6 / (0 + 3)"
                    if end >= stop:
                        raise
                    continue
                ex["V_mag"][t], ex["V_sign"][t], ex["O"][t], ex["G"][t] = arrays.V_mag, arrays.V_sign, arrays.O, arrays.G
                ex["value"][t] = float(arrays.value)
                ex["V_src"][t, :len(plan.values)] = value_sources(plan.values,
                                                                  [x for x in literals if x.lexeme < n])
            ex["mask"][t] = True
            last_k, last_t = n, t
        return ex


class Literal(NamedTuple):
    """One literal of a text."""

    lexeme: int  # its index among the text's lexemes
    magnitude: Fraction
    token: int  # the token where it ends


def read_literals(lexemes: list[tuple[str, int]], token_ends: list[int], ex: dict) -> list[Literal]:
    """The text's literals, and, in ex,
    each token's lit_index and the lit_value / lit_end of the token where each literal ends.

    lit_index is 1 + the index of the literal a token belongs to, and for the tokens
    between two literals (operators, parentheses) 1 + the index of the literal after
    them, which the text so far already tells: the count of literals before, plus one.
    So a literal's tokens and the operators in front of it share an index, and its last
    token finds the operator that decides its coefficient by that match, however many
    tokens GPT-2 split the literal into."""
    literals, t, after = [], 0, 0  # after: the token after the last literal so far
    for k, (word, end) in enumerate(lexemes):
        if word[0] not in _NUMBER_CHARS:
            continue
        start = end - len(word)
        t = bisect_right(token_ends, start, lo=t)  # the token holding the literal's first char
        t = bisect_left(token_ends, end, lo=t)  # ... and its last
        ex["lit_index"][after:t + 1] = len(literals) + 1
        mag = Fraction(word)
        ex["lit_value"][t], ex["lit_end"][t] = float(mag), True
        literals.append(Literal(k, mag, t))
        after = t + 1
    ex["lit_index"][after:len(token_ends)] = len(literals) + 1
    return literals


def value_sources(values: list[tuple[Fraction, int]], literals: list[Literal]) -> list[int]:
    """For each input value of a DAG plan (text order), the token where its literal ends:
    the next literal of that magnitude, so a -1 factor or an exponent, which are no
    values, is passed over; -2 for a value the text does not hold (the 1 of x**-k)."""
    sources, j = [], 0
    for mag, _ in values:
        hit = next((i for i in range(j, len(literals)) if literals[i].magnitude == mag), None)
        if hit is not None:
            j = hit + 1
        else:  # out of text order only for the 1 that x**-k puts before x
            hit = next((i for i, x in enumerate(literals) if x.magnitude == mag), None)
        sources.append(-2 if hit is None else literals[hit].token)
    return sources


def split_of(text: str) -> str:
    """'val' or 'train', by the tidy spacing of the text: generate_expression's default
    texts are their own respacing, so for them this is crc32(text) % VAL_EVERY."""
    return _split_of_tidy(respace(text))


def _split_of_tidy(tidy: str) -> str:
    return "val" if zlib.crc32(tidy.encode()) % VAL_EVERY == 0 else "train"


class Example(NamedTuple):
    text: str
    targets: dict[str, np.ndarray]  # per-token arrays (ExampleMaker.targets)


def candidate(maker: ExampleMaker, index: int, attempt: int) -> tuple[str, str]:
    """Draw `attempt` for example `index`, as the model reads it (with the forms people
    write and, with cfg.respace, respaced), and its tidy spacing (its split's key)."""
    cfg = maker.cfg
    seed = (cfg.seed * 1_000_003 + index) * 1_009 + attempt
    text = generate_expression(seed, maker.depth_of(seed), cfg.max_digits, cfg.max_decimal_places, cfg.ops,
                               cfg.p_unary_minus, cfg.p_parens, cfg.p_power,
                               p_trailing_zeros=cfg.p_trailing_zeros, p_no_spaces=cfg.p_no_spaces,
                               p_space_in_parens=cfg.p_space_in_parens, p_neg_group=cfg.p_neg_group,
                               p_redundant_parens=cfg.p_redundant_parens)
    tidy = respace(text)  # once: the split and, with cfg.respace, the text read
    return (tidy if cfg.respace else text), tidy


def draw_example(maker: ExampleMaker, split: str, index: int, fits=None) -> Example:
    """Example `index` of a split: the first candidate drawn from its seeds that belongs
    to the split, fits block_size and dag_depth, and passes fits(example) if given (the
    text stream's: its text with the answer fits a template)."""
    cfg = maker.cfg
    for attempt in range(10_000):
        text, tidy = candidate(maker, index, attempt)
        if _split_of_tidy(tidy) != split:
            continue
        tokens = maker.tokens(text)
        if len(tokens) > cfg.block_size:
            continue
        try:
            example = Example(text, maker.targets(text, tokens))
        except ValueError:  # needs more than dag_depth nodes
            continue
        if fits is None or fits(example):
            return example
    raise ValueError(f"no expression of example {index} fits block_size={cfg.block_size} and "
                     f"dag_depth={cfg.dag_depth}: raise them or lower max_expr_depth/max_digits")


def make_batch(maker: ExampleMaker, split: str, batch_index: int, batch_size: int) -> Batch:
    """Batch `batch_index` of a split: examples batch_index*B .. (batch_index+1)*B - 1."""
    return collate([draw_example(maker, split, i).targets
                    for i in range(batch_index * batch_size, (batch_index + 1) * batch_size)])


class DAGStream(IterableDataset):
    """Infinite stream of Batch records (data/dagset/batch.py).
    Use with DataLoader(stream, batch_size=None, num_workers=N).

    The j-th batch it yields (j = 0, 1, ...) is batch (start + j) * n_shards + shard of
    the split, so DDP rank r of W takes shard=r, n_shards=W, and a resumed run passes
    start = the number of batches this shard has already consumed."""

    def __init__(self, cfg: StreamConfig, split: str, batch_size: int, start: int = 0,
                 shard: int = 0, n_shards: int = 1):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if batch_size < 1 or start < 0 or not 0 <= shard < n_shards:
            raise ValueError(f"need batch_size >= 1, start >= 0 and 0 <= shard < n_shards, got "
                             f"{batch_size}, {start}, {shard}, {n_shards}")
        self.cfg, self.split, self.batch_size = cfg, split, batch_size
        self.start, self.shard, self.n_shards = start, shard, n_shards

    def make_maker(self):
        return ExampleMaker(self.cfg)

    def batch(self, maker, index: int) -> Batch:
        return make_batch(maker, self.split, index, self.batch_size)

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        maker = self.make_maker()  # made in the worker: a tokenizer is not shared between processes
        j = worker
        while True:
            yield self.batch(maker, (self.start + j) * self.n_shards + self.shard)
            j += n_workers
