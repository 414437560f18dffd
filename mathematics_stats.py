"""
Checks every question data/mathematics/prepare.py wrote and measures what a model needs to answer them:

$ python mathematics_stats.py [--data_dir=data/mathematics] [--json_out=stats.json]

Per file (split and module): every question is read (questions.parse_question), its
DAG plan executed exactly (data/dagset/exact_executor.py on question_targets' arrays) and
compared with the dataset's answer value, and the answer written
(answers.format_benchmark_answer) and compared with the dataset's answer string. Then
the sizes: literals, DAG steps and the dag_depth that holds the plan, the longest
literal's digits, question and answer lengths in characters and GPT-2 tokens (the
answer as written after a space), how many answers the float64 executor alone could
not have given (even rounded to the answer's own decimal places or denominator), how
many the project's canonical answer format (text_format.format_answer: 6 decimal
places, 15 digits, no fractions) writes otherwise even from the exact value, and how
many test questions are also training questions. Exits 1 if any question fails a check.
"""
import json
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np
import tiktoken
import torch

from configurator import apply_config
from data.dagset.dag_plan import plan_size
from data.dagset.exact_executor import execute_exact
from data.dagset.text_format import format_answer
from data.mathematics.answers import format_benchmark_answer, read_benchmark_answer
from data.mathematics.prepare import (
    EXTRAPOLATION_MODULES, INTERPOLATION_MODULES, TEST_SPLITS, TRAIN_SPLITS, split_path)
from data.mathematics.qa_file import QA, read_qa
from data.mathematics.questions import parse_question, question_plan, question_targets
from errors import fail
from models.dag_executor import DAGExecutor


@dataclass
class FileStats:
    """The checks and sizes of one file's questions (max and mean over them)."""

    split: str
    module: str
    n: int = 0
    failures: list[str] = field(default_factory=list)  # "question<TAB>answer: what went wrong"
    literals: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)  # plan_size: the dag_depth that holds the plan
    digits: list[int] = field(default_factory=list)  # the longest literal's digits
    question_chars: list[int] = field(default_factory=list)
    question_tokens: list[int] = field(default_factory=list)
    answer_chars: list[int] = field(default_factory=list)
    answer_tokens: list[int] = field(default_factory=list)
    float64_wrong: int = 0
    canonical_differs: int = 0  # answers that text_format.format_answer, the project's format, writes otherwise
    in_train: int = 0


def _float64_gives(value: float, exact: Fraction, answer: str) -> bool:
    """Whether a float64 result, read by an optimistic reader that knows the answer's
    form, gives the answer: rounded to the answer's decimal places, or to the nearest
    fraction with the answer's denominator."""
    if "/" in answer:
        return Fraction(value).limit_denominator(exact.denominator) == exact
    places = len(answer.partition(".")[2])
    return round(Fraction(value), places) == exact


def check_file(stats: FileStats, pairs: list[QA], enc: tiktoken.Encoding, train: set[str]) -> None:
    """Fill stats from one file's questions."""
    read = []  # (question, answer, BenchmarkQuestion, plan) of the questions that parse
    for question, answer, _ in pairs:
        try:
            q = parse_question(question)
            read.append((question, answer, q, question_plan(q)))
        except ValueError as e:
            stats.failures.append(f"{question}\t{answer}: {e}")
    depth = max((plan_size(plan) for *_, plan in read), default=1)
    rows, values = [], []
    for question, answer, q, plan in read:
        try:  # at one depth for the whole file, so the float executor runs them as one batch
            t = question_targets(q, depth)
            value = execute_exact(t.magnitudes, t.V_sign, t.O, t.G)
            problems = [] if value == read_benchmark_answer(answer) else [f"executed {value}"]
            written = format_benchmark_answer(value, [lit.text for lit in q.literals])
            problems += [] if written == answer else [f"written {written!r}"]
        except ValueError as e:
            problems = [str(e)]
        if problems:
            stats.failures.append(f"{question}\t{answer}: {'; '.join(problems)}")
            continue
        stats.literals.append(len(q.literals))
        stats.steps.append(len(plan.steps))
        stats.depth.append(plan_size(plan))
        stats.digits.append(max(sum(c.isdigit() for c in lit.text) for lit in q.literals))
        stats.question_chars.append(len(question))
        stats.question_tokens.append(len(enc.encode_ordinary(question)))
        stats.answer_chars.append(len(answer))
        stats.answer_tokens.append(len(enc.encode_ordinary(" " + answer)))
        stats.in_train += question in train
        stats.canonical_differs += format_answer(value) != answer
        rows.append(t)
        values.append((value, answer))
    stats.n = len(pairs)
    if rows:
        arrays = [torch.from_numpy(np.stack([getattr(t, name) for t in rows]))
                  for name in ("V_mag", "V_sign", "O", "G")]
        with torch.no_grad():
            floats = DAGExecutor(depth)(*arrays).tolist()
        stats.float64_wrong = sum(not _float64_gives(x, v, a) for x, (v, a) in zip(floats, values))


def summary(stats: FileStats) -> dict:
    """stats for JSON: counts as they are, each size as its min, max, mean and histogram."""
    out = {}
    for key, value in asdict(stats).items():
        if key == "failures":
            out["failed"], out["first_failures"] = len(value), value[:5]
        elif isinstance(value, list):
            out[key] = {"min": min(value), "max": max(value), "mean": sum(value) / len(value),
                        "counts": dict(sorted(Counter(value).items()))} if value else None
        else:
            out[key] = value
    return out


def _spread(xs: list[int]) -> str:
    return f"{min(xs)}-{max(xs)} ({sum(xs) / len(xs):.1f})" if xs else "-"


def table(all_stats: list[FileStats]) -> str:
    """A markdown table: checks, then each size as min-max (mean)."""
    head = ("| split | module | n | failed | literals | steps | dag_depth | digits | question chars | question tokens "
            "| answer chars | answer tokens | float64 wrong | format_answer differs | in train |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in all_stats:
        lines.append(f"| {s.split} | {s.module.removeprefix('arithmetic__')} | {s.n} | {len(s.failures)} | "
                     f"{_spread(s.literals)} | {_spread(s.steps)} | {_spread(s.depth)} | {_spread(s.digits)} | "
                     f"{_spread(s.question_chars)} | {_spread(s.question_tokens)} | {_spread(s.answer_chars)} | "
                     f"{_spread(s.answer_tokens)} | {s.float64_wrong} | {s.canonical_differs} | {s.in_train} |")
    return "\n".join(lines)


def main() -> None:
    config = {"data_dir": os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mathematics"),
              "json_out": ""}
    apply_config(config, sys.argv[1:])
    files = [(split, module, split_path(config["data_dir"], split, module))
             for split in TRAIN_SPLITS + TEST_SPLITS for module in INTERPOLATION_MODULES + EXTRAPOLATION_MODULES]
    files = [f for f in files if os.path.isfile(f[2])]
    if not files:
        fail(f"no prepared files under {config['data_dir']!r}: run data/mathematics/prepare.py first")
    enc = tiktoken.get_encoding("gpt2")
    try:
        qa = {path: read_qa(path) for *_, path in files}
    except ValueError as e:
        fail(e)
    train = {line.question for split, _, path in files if split in TRAIN_SPLITS for line in qa[path]}
    all_stats = []
    for split, module, path in files:
        stats = FileStats(split, module)
        check_file(stats, qa[path], enc, train if split in TEST_SPLITS else set())
        all_stats.append(stats)
    print(table(all_stats))
    failed = sum(len(s.failures) for s in all_stats)
    for s in all_stats:
        for failure in s.failures[:5]:
            print(f"FAILED {s.split}/{s.module}: {failure}")
    print(f"{sum(s.n for s in all_stats):,} questions in {len(all_stats)} files, {failed} failed")
    if config["json_out"]:
        with open(config["json_out"], "w") as f:
            json.dump([summary(s) for s in all_stats], f, indent=1)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
