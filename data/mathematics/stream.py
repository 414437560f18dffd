"""The predictor's training stream on the Mathematics Dataset (train_predictor.py with
dataset="mathematics"): Batch rows (data/dagset/batch.py) of the questions prepare.py
drew for training, read as written, with their DAG targets at the question's last
token and, with prefixes, at the prefixes of an expression question
(data/mathematics/rows.py).

Only the train-easy, train-medium and train-hard files of the interpolation modules are
read; the interpolate and extrapolate files never are. A question belongs to the
validation split iff crc32(question) % VAL_EVERY == 0, as an expression of the
project's own stream does, so the two splits never share a question (the same question
drawn in two files is in the same split). Row `index` of a split is its question at
position index % n of a permutation of the split's n questions drawn from (seed,
epoch = index // n): deterministic by (seed, index), whatever the number of DataLoader
workers, and every question once per epoch. A question whose tokens or DAG do not fit
block_size or dag_depth is passed over for the next one (`check_fits` says so before
training).
"""
import zlib
from dataclasses import dataclass

import numpy as np

from data.dagset.batch import Batch, collate
from data.dagset.streaming import VAL_EVERY, DAGStream
from data.dagset.text_format import gpt2_encoding
from data.mathematics.prepare import INTERPOLATION_MODULES, TRAIN_SPLITS, split_path
from data.mathematics.qa_file import QA, read_qa
from data.mathematics.questions import parse_question, question_dag_depth
from data.mathematics.rows import question_row


@dataclass
class MathConfig:
    """Everything that decides the stream's content."""

    data_dir: str = "data/mathematics"  # prepare.py's out_dir
    dag_depth: int = 12
    block_size: int = 64
    seed: int = 1337
    prefixes: bool = False  # also the DAGs of an expression question's prefixes (rows.question_row)

    def __post_init__(self):
        if self.dag_depth < 1 or self.block_size < 1:
            raise ValueError(f"dag_depth and block_size must be >= 1, got {self.dag_depth}, {self.block_size}")


def training_files(data_dir: str) -> list[str]:
    """The prepared files training reads: every train split of every interpolation module."""
    return [split_path(data_dir, split, module) for split in TRAIN_SPLITS for module in INTERPOLATION_MODULES]


def split_of(question: str) -> str:
    """'val' or 'train', by the question's text."""
    return "val" if zlib.crc32(question.encode()) % VAL_EVERY == 0 else "train"


def read_splits(data_dir: str) -> dict[str, list[QA]]:
    """The training files' lines by split; ValueError naming a missing file or a bad line
    (qa_file.read_qa), or a split with no question."""
    splits: dict[str, list[QA]] = {"train": [], "val": []}
    for path in training_files(data_dir):
        for qa in read_qa(path):
            splits[split_of(qa.question)].append(qa)
    for split, lines in splits.items():
        if not lines:
            raise ValueError(f"the training files in {data_dir!r} have no question in the {split!r} split")
    return splits


def check_fits(data_dir: str, dag_depth: int, block_size: int) -> None:
    """ValueError, naming the question and the setting that fits every training question,
    when one has more tokens than block_size or needs more DAG nodes than dag_depth."""
    lines = [qa for qas in read_splits(data_dir).values() for qa in qas]
    tokens = gpt2_encoding().encode_ordinary_batch([qa.question for qa in lines])
    longest = max(range(len(lines)), key=lambda i: len(tokens[i]))
    if len(tokens[longest]) > block_size:
        raise ValueError(f"the training question {lines[longest].question!r} is {len(tokens[longest])} GPT-2 tokens, "
                         f"more than block_size={block_size}: give block_size >= {len(tokens[longest])}")
    # a plan has at most one node more than its literals (a root sign step), so only the
    # questions with dag_depth literals or more are planned (planning all takes a minute)
    questions = (parse_question(qa.question) for qa in lines)
    depths = [(question_dag_depth(q), q.text) for q in questions if len(q.literals) >= dag_depth]
    if depths and max(depths)[0] > dag_depth:
        depth, question = max(depths)
        raise ValueError(f"the training question {question!r} needs dag_depth >= {depth}, more than "
                         f"dag_depth={dag_depth}: give dag_depth >= {depth}")


class MathRows:
    """Rows of the stream (`row(split, index)`); the files are read when it is made (in
    each DataLoader worker)."""

    def __init__(self, cfg: MathConfig):
        self.cfg = cfg
        self.lines = read_splits(cfg.data_dir)
        self._orders: dict[tuple[str, int], np.ndarray] = {}  # the current epoch's permutation per split

    def order(self, split: str, epoch: int) -> np.ndarray:
        key = (split, epoch)
        if key not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if k[0] != split}
            rng = np.random.default_rng([self.cfg.seed, epoch, split == "val"])
            self._orders[key] = rng.permutation(len(self.lines[split]))
        return self._orders[key]

    def row(self, split: str, index: int) -> dict[str, np.ndarray]:
        lines = self.lines[split]
        epoch, position = divmod(index, len(lines))
        order = self.order(split, epoch)
        for k in range(len(lines)):
            qa = lines[order[(position + k) % len(lines)]]
            try:
                row = question_row(parse_question(qa.question), self.cfg.dag_depth, self.cfg.block_size,
                                   self.cfg.prefixes)
            except ValueError:  # needs more than dag_depth nodes
                continue
            if row is not None:
                return row
        raise ValueError(f"no training question fits block_size={self.cfg.block_size} and "
                         f"dag_depth={self.cfg.dag_depth}")


def make_math_batch(rows: MathRows, split: str, batch_index: int, batch_size: int) -> Batch:
    """Batch `batch_index` of a split: rows batch_index*B .. (batch_index+1)*B - 1."""
    return collate([rows.row(split, i) for i in range(batch_index * batch_size, (batch_index + 1) * batch_size)])


class MathStream(DAGStream):
    """DAGStream's sharding and resume over the benchmark's rows (cfg a MathConfig)."""

    def make_maker(self):
        return MathRows(self.cfg)

    def batch(self, maker, index: int) -> Batch:
        return make_math_batch(maker, self.split, index, self.batch_size)
