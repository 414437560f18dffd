"""Streaming text dataset of the full model (train.py): arithmetic questions and
statements in a few templates, answered in the canonical number format
(data/dagset/text_format.format_answer):

    What is 12.5 * 4 - 3 equal to?\\nAnswer: 47
    12.5 * 4 - 3 = 47
    Compute 12.5 * 4 - 3\\nResult: 47

Each row is one text, then <|endoftext|> (the model learns to stop), padded; its
next-token targets are -1 past the end. The expression is drawn as in the predictor's
stream (draw_example: same seeds, same train/validation split by the expression's text)
and its per-token DAG targets are placed where the expression is read; every position
after it (the template's tail and the answer) has the whole expression's DAG, so the
value of the question is there when the answer is written. The literals (Literals) are
read from the whole row by `row_literals`, the one function that does so at training
and at run time (sample.py, evaluate.py).

Every template's expression starts after a space or at the text's start and is followed
by a space or a line break: both are GPT-2 pre-token boundaries, so the row's tokens are
the whole text's own encoding (checked for every row).

With corpus_ratio > 0, that fraction of rows are windows of a token corpus
(data/<name>/train.bin, val.bin from data/prepare.py), without DAG targets, so the
model stays a language model.
"""
import codecs
import os
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from data.dagset.batch import DAG_TARGETS, Batch, collate, empty_targets
from data.dagset.dag_plan import build_plan, plan_arrays
from data.dagset.fast_parse import parse_text
from data.dagset.streaming import DAGStream, ExampleMaker, StreamConfig, draw_example, read_literals
from data.dagset.text_format import GPT2_VOCAB, PAD_TOKEN, format_answer, gpt2_encoding

TEMPLATES = ("What is {e} equal to?\nAnswer: {a}", "{e} = {a}", "Compute {e}\nResult: {a}")
_NUMBER = re.compile(rb"[0-9]+\.?[0-9]*|\.[0-9]+")  # a decimal literal, as fast_parse.lex reads one
# a number of free text longer than this is no literal: every DAG value is within
# [1e-100, 1e100], and float() of a longer one may overflow (int() refuses 4,300 digits)
MAX_LITERAL_CHARS = 100
CORPUS_CHUNK = 1 << 22  # tokens a corpus check reads at a time


@lru_cache(maxsize=256)  # a text row asks twice: does it fit a template, and for its row
def exact_answer(expression: str, dag_depth: int) -> str:
    """The canonical text of an expression's exact value; ValueError for text that is no
    expression, needs more than dag_depth nodes or divides by zero."""
    return format_answer(plan_arrays(build_plan(parse_text(expression)), dag_depth, where=repr(expression)).value)


def question(expression: str) -> str:
    """The prompt that asks for an expression's value (the first template, cut before
    its answer): the format evaluate.py asks in."""
    return TEMPLATES[0].split(" {a}")[0].replace("{e}", expression)


def read_corpus(path: str, min_tokens: int = 2) -> np.memmap:
    """A prepare.py token file, read whole once to check it; ValueError naming it if it
    is missing, has fewer than min_tokens tokens, or is not uint16 GPT-2 tokens: a token
    past GPT-2's vocabulary anywhere, half of it token 0 (int32 or int64 tokens read as
    uint16), or UTF-8 text without a zero byte (GPT-2's common tokens, as '.' and '\\n',
    all have one: a text file named .bin)."""
    if not os.path.isfile(path):
        raise ValueError(f"corpus file {path!r} does not exist (make it with data/prepare.py)")
    size = os.path.getsize(path)
    if size % 2:
        raise ValueError(f"corpus file {path!r} is not uint16 tokens: {size} bytes, an odd number")
    if size // 2 < min_tokens:
        raise ValueError(f"corpus file {path!r} has {size // 2} tokens, fewer than the {min_tokens} of one row "
                         f"(block_size + 1): give a longer corpus")
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    top, zeros, zero_byte = 0, 0, False
    for start in range(0, len(tokens), CORPUS_CHUNK):
        chunk = tokens[start:start + CORPUS_CHUNK]
        top, zeros = max(top, int(chunk.max())), zeros + len(chunk) - int(np.count_nonzero(chunk))
        zero_byte = zero_byte or not chunk.view(np.uint8).all()
    if top >= GPT2_VOCAB:
        raise ValueError(f"corpus file {path!r} holds token {top}, past GPT-2's vocabulary of {GPT2_VOCAB}: "
                         f"not uint16 GPT-2 tokens (make it with data/prepare.py)")
    if zeros * 2 >= len(tokens):
        raise ValueError(f"corpus file {path!r} is {zeros} of {len(tokens)} token 0: int32 or int64 tokens, "
                         f"not uint16 GPT-2 tokens (make it with data/prepare.py)")
    if not zero_byte and is_utf8(path):
        raise ValueError(f"corpus file {path!r} is UTF-8 text, not tokens: make its tokens with data/prepare.py")
    return tokens


def is_utf8(path: str) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(2 * CORPUS_CHUNK):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


@dataclass
class TextConfig:
    """Everything that decides the text stream: the expressions, and the corpus mix."""

    expressions: StreamConfig = field(default_factory=StreamConfig)  # its block_size is the rows'
    corpus_dir: str = ""  # a data/prepare.py folder (train.bin, val.bin); "" for none
    corpus_ratio: float = 0.0  # the fraction of rows taken from the corpus

    def __post_init__(self):
        if not 0 <= self.corpus_ratio <= 1:
            raise ValueError(f"corpus_ratio must be in [0, 1], got {self.corpus_ratio}")
        if self.corpus_ratio > 0 and not self.corpus_dir:
            raise ValueError(f"corpus_ratio={self.corpus_ratio} needs a corpus_dir")


def row_literals(token_bytes: list[bytes], T: int) -> dict[str, np.ndarray]:
    """lit_index, lit_value, lit_end (T,) of a row's tokens (their bytes), as
    read_literals gives them for an expression: every decimal number in the text counts."""
    ex = {"lit_index": np.zeros(T, dtype=np.int64), "lit_value": np.zeros(T), "lit_end": np.zeros(T, dtype=bool)}
    text = b"".join(token_bytes)
    token_ends = np.cumsum([len(b) for b in token_bytes]).tolist()
    lexemes = [(m.group().decode(), m.end()) for m in _NUMBER.finditer(text) if len(m.group()) <= MAX_LITERAL_CHARS]
    read_literals(lexemes, token_ends, ex)
    return ex


class TextExampleMaker:
    """Rows of the text stream (`row(split, index)`); picklable parts only until used."""

    def __init__(self, cfg: TextConfig):
        self.cfg = cfg
        self.T = cfg.expressions.block_size
        self.maker = ExampleMaker(cfg.expressions)
        self.enc = gpt2_encoding()
        self.corpus = {}
        if cfg.corpus_ratio > 0:
            self.corpus = {s: read_corpus(os.path.join(cfg.corpus_dir, f"{s}.bin"), self.T + 1)
                           for s in ("train", "val")}

    def _hash(self, *parts: int) -> int:
        return zlib.crc32(np.array([self.cfg.expressions.seed, *parts], dtype=np.int64).tobytes())

    def row(self, split: str, index: int) -> dict[str, np.ndarray]:
        """Row `index` of a split: idx, targets (T,), the DAG targets and the literals."""
        if self.corpus and self._hash(index, 1) / 2 ** 32 < self.cfg.corpus_ratio:
            return self.corpus_row(split, index)
        return self.text_row(split, index)

    def text_row(self, split: str, index: int) -> dict[str, np.ndarray]:
        """An expression whose text, answered, fits no template in the block is passed
        over, as the expression stream passes over one longer than block_size (and
        config_checks refuses a block_size that the drawn texts do not fit)."""
        expression, targets = draw_example(self.maker, split, index, fits=self.fits)
        answer = exact_answer(expression, self.cfg.expressions.dag_depth)
        first = self._hash(index, 2) % len(TEMPLATES)
        # the first template that fits, from the drawn one on
        return next(row for template in TEMPLATES[first:] + TEMPLATES[:first]
                    if (row := self.place(template, expression, answer, targets)) is not None)

    def fits(self, example) -> bool:
        """Whether a drawn expression, answered, fits a template in the block."""
        answer = exact_answer(example.text, self.cfg.expressions.dag_depth)
        return min(text_lengths(self.maker, example.text, answer)) <= self.T

    def place(self, template: str, expression: str, answer: str, targets: dict) -> dict | None:
        """The row of one template, or None if it does not fit the block."""
        head, piece, tail = template_parts(template, expression, answer)
        head_tokens, piece_tokens, tail_tokens = (self.maker.tokens(part) for part in (head, piece, tail))
        tokens = head_tokens + piece_tokens + tail_tokens
        if len(tokens) > self.T:
            return None
        if tokens != self.maker.tokens(head + piece + tail):
            raise ValueError(f"template {template!r} splits {expression!r} off mid-token")
        start, n = len(head_tokens), len(piece_tokens)
        # (T, ...) arrays, padding after n: the drawn expression's own unless a space now leads it
        expr = targets if piece == expression else self.maker.targets(piece, piece_tokens)
        row = {"idx": np.full(self.T, PAD_TOKEN, dtype=np.int64), "targets": np.full(self.T, -1, dtype=np.int64)}
        row["idx"][:len(tokens)] = tokens
        row["targets"][:len(tokens)] = tokens[1:] + [PAD_TOKEN]
        last = start + n - 1  # the expression's last token: its whole DAG
        for key in DAG_TARGETS:
            a = np.roll(expr[key], start, axis=0)  # the rolled-in rows are padding: no target
            if key == "V_src":
                a = np.where(a >= 0, a + start, a)
            a[last + 1:len(tokens)] = a[last]
            row[key] = a
        return row | row_literals([self.enc.decode_single_token_bytes(t) for t in tokens], self.T)

    def corpus_row(self, split: str, index: int) -> dict[str, np.ndarray]:
        data, T = self.corpus[split], self.T
        start = self._hash(index, 3) % (len(data) - T)
        window = data[start:start + T + 1].astype(np.int64)
        D = self.cfg.expressions.dag_depth
        row = {"idx": window[:-1], "targets": window[1:]} | empty_targets(T, D)
        return row | row_literals([self.enc.decode_single_token_bytes(int(t)) for t in row["idx"]], T)


def template_parts(template: str, expression: str, answer: str) -> tuple[str, str, str]:
    """A template's text in the three parts that are tokenized apart: before the
    expression, the expression (with the space before it, which belongs to its first
    token), and after it, with the answer."""
    head, tail = template.split("{e}")
    piece = expression if not head else " " + expression
    return head.rstrip(" "), piece, tail.replace("{a}", answer)


def text_lengths(maker: ExampleMaker, expression: str, answer: str) -> list[int]:
    """The tokens of an expression's text, answered, in each template."""
    return [sum(len(maker.tokens(part)) for part in template_parts(t, expression, answer)) for t in TEMPLATES]


def make_text_batch(maker: TextExampleMaker, split: str, batch_index: int, batch_size: int) -> Batch:
    """Batch `batch_index` of a split: rows batch_index*B .. (batch_index+1)*B - 1."""
    return collate([maker.row(split, i) for i in range(batch_index * batch_size, (batch_index + 1) * batch_size)])


class TextStream(DAGStream):
    """DAGStream's sharding and resume over text rows (cfg a TextConfig): Batch records
    with next-token targets."""

    def make_maker(self):
        return TextExampleMaker(self.cfg)

    def batch(self, maker, index: int) -> Batch:
        return make_text_batch(maker, self.split, index, self.batch_size)
