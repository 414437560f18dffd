"""Exact answers to the Mathematics Dataset's questions (evaluate.py --qa_file): files of
`question<TAB>answer` lines, the dataset's own strings (data/mathematics/qa_file.py),
scored for either kind of checkpoint. An answer is exact when the string written
equals the dataset's answer string.

- A predictor (train_predictor.py) reads the question as written
  (data/mathematics/rows.py); the DAG it predicts at the question's last token is run
  by the exact executor (data/dagset/exact_executor.py): a copy head's input values are the
  exact values of the literals it points at, read from the question's text as
  Fractions (a 19-digit literal is no float64), a digit head's are the decimals its
  digits write. The value is written as the dataset writes answers
  (answers.format_benchmark_answer, from the question's literals). A DAG that divides
  by zero, or whose value a decimal question cannot write, gives no answer: wrong.
- A language model (train.py) is asked rows.lm_prompt(question) and writes its answer
  greedily, to the end of the line.

A question whose tokens do not fit the model's block_size (for a language model, with
room for one answer token) is scored as wrong and counted ("unfit"), as evaluate.py
does for its held-out set. Every line is read and checked before anything is run, and
bad input is a ValueError naming file:line: a malformed line, an answer the dataset's
format cannot read, a question in none of the arithmetic modules' forms, and one whose
DAG needs more than the checkpoint's dag_depth (naming the depth that fits them all).
"""
from fractions import Fraction
from typing import NamedTuple

import torch

from data.dagset.batch import collate
from data.dagset.exact_executor import execute_exact
from data.dagset.text_format import encode
from data.mathematics.answers import format_benchmark_answer
from data.mathematics.qa_file import file_labels, qa_paths, read_qa
from data.mathematics.questions import BenchmarkQuestion, parse_question, question_dag_depth
from data.mathematics.rows import lm_prompt, question_row
from models.dag_heads import Literals
from run.answer_eval import wilson_interval
from run.kinds import Loaded
from run.text_generation import complete_line

MAX_ANSWER_TOKENS = 32  # the dataset's longest answers (22 characters) take fewer GPT-2 tokens


class Item(NamedTuple):
    """One question to score: its file's label, file:line, the question read, the answer."""

    label: str
    where: str
    question: BenchmarkQuestion
    answer: str


def read_items(pattern: str, dag_depth: int) -> list[Item]:
    """Every line of the files a path or glob names, checked (see the module docstring);
    dag_depth 0 (a plain language model) computes no DAG, so any depth is fine."""
    paths = qa_paths(pattern)
    items, deepest = [], None  # deepest: (depth, where) of the question needing most nodes
    for path, label in zip(paths, file_labels(paths)):
        for qa in read_qa(path):
            where = f"{path}:{qa.line}"
            try:
                question = parse_question(qa.question)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            depth = question_dag_depth(question) if dag_depth else 0
            if depth > dag_depth and (deepest is None or depth > deepest[0]):
                deepest = (depth, f"{where}: question {qa.question!r} has {len(question.literals)} literals "
                                  f"and needs dag_depth >= {depth}")
            items.append(Item(label, where, question, qa.answer))
    if deepest is not None:
        raise ValueError(f"{deepest[1]}, more than the checkpoint's dag_depth={dag_depth}: the questions need "
                         f"a checkpoint with dag_depth >= {deepest[0]}")
    return items


def exact_magnitudes(value_head: str, logits: torch.Tensor, lit_index: torch.Tensor,
                     question: BenchmarkQuestion, places: int) -> list[Fraction]:
    """The D input values a value head's logits at one position choose, exactly.

    copy: logits (D, T+1) point at the token where a literal ends (lit_index (T,) says
    which literal) or at 'none' (T): 0. digits: logits (D, n, 10), each value's n
    decimal digits with `places` of them after the point."""
    choice = logits.argmax(-1).tolist()
    if value_head == "copy":
        T = len(lit_index)
        return [Fraction(0) if s == T else question.literals[lit_index[s].item() - 1].value for s in choice]
    return [Fraction(int("".join(map(str, digits))), 10 ** places) for digits in choice]


def written_answer(question: BenchmarkQuestion, magnitudes: list[Fraction], V_sign, O, G) -> str:
    """The answer a hard DAG writes for a question; "" when it divides by zero or its
    value has no text in the question's answer format."""
    try:
        value = execute_exact(magnitudes, V_sign, O, G)
        return format_benchmark_answer(value, [lit.text for lit in question.literals])
    except ValueError:
        return ""


@torch.no_grad()
def predictor_answers(loaded: Loaded, items: list[Item], batch_size: int) -> list[str | None]:
    """Each question's written answer by a predictor, None for one that does not fit."""
    model, cfg = loaded.model, loaded.model.config
    device = next(model.parameters()).device
    answers: list[str | None] = [None] * len(items)
    for start in range(0, len(items), batch_size):
        # rows are made per batch: a row holds every position's targets (MBs at dag_depth 12)
        chunk = [(i, row) for i in range(start, min(start + batch_size, len(items)))
                 if (row := question_row(items[i].question, cfg.dag_depth, cfg.block_size)) is not None]
        if not chunk:
            continue
        batch = collate([row for _, row in chunk]).trim().to(device)
        pred = model(batch.idx, Literals.from_batch(batch), at=batch.mask)
        _, V_sign, O, G = (t.cpu() for t in pred.hard())
        mag_logits, lit_index = pred.logits["mag"].float().cpu(), batch.lit_index.cpu()
        for b, (i, _) in enumerate(chunk):
            t = int(batch.mask[b].nonzero()[0])  # the question's last token
            question = items[i].question
            magnitudes = exact_magnitudes(cfg.value_head, mag_logits[b, t], lit_index[b], question,
                                          cfg.max_decimal_places)
            answers[i] = written_answer(question, magnitudes, V_sign[b, t], O[b, t], G[b, t])
    return answers


def lm_answer(loaded: Loaded, question: str) -> str | None:
    """A language model's answer, greedily decoded to the end of its line; None when the
    prompt leaves no room in block_size for an answer token."""
    prompt = lm_prompt(question)
    if len(encode(prompt)) >= loaded.model.config.block_size:
        return None
    return complete_line(loaded.model, prompt, MAX_ANSWER_TOKENS)


def summary(hits: list[bool], unfit: int) -> dict:
    """exact, n, the 95% Wilson interval (low, high) and the count of unfit questions."""
    n = len(hits)
    low, high = wilson_interval(sum(hits), n)
    return {"exact": sum(hits) / n, "n": n, "low": low, "high": high, "unfit": unfit}


def evaluate_qa(loaded: Loaded, items: list[Item], batch_size: int) -> dict[str, dict]:
    """Score every item, print a row per file (and all, for several files), and return
    {label: summary, ..., "all": summary}."""
    if loaded.kind.name == "predictor":
        answers = predictor_answers(loaded, items, batch_size)
    else:
        answers = [lm_answer(loaded, item.question.text) for item in items]
    by_label: dict[str, list[tuple[bool, bool]]] = {}
    for item, written in zip(items, answers):
        by_label.setdefault(item.label, []).append((written == item.answer, written is None))
    rows = {label: summary([hit for hit, _ in r], sum(unfit for _, unfit in r)) for label, r in by_label.items()}
    rows["all"] = summary([hit for r in by_label.values() for hit, _ in r], sum(row["unfit"] for row in rows.values()))
    asked = "read as written" if loaded.kind.name == "predictor" else "asked as 'question\\n'"
    print(f"{len(items)} questions {asked}; exact answers with 95% Wilson intervals")
    width = max(len("file"), *map(len, rows))
    print(f"{'file':<{width}} {'n':>6} {'exact':>23} {'unfit':>6}")
    for label, row in (rows if len(by_label) > 1 else {k: rows[k] for k in by_label}).items():
        print(f"{label:<{width}} {row['n']:>6} {row['exact']:.4f} [{row['low']:.4f},{row['high']:.4f}] "
                  f"{row['unfit']:>6}")
    return rows
