"""The predictor's training stream on the Mathematics Dataset (data/mathematics/stream.py),
over a data_dir of the real generator lines of tests/fixtures/mathematics_sample.tsv:
every row's targets execute exactly to its answer, the splits are disjoint and cover
the training files once per epoch, rows are fixed by (seed, index), the test files are
never read, bad files are one-line errors, and prefix rows keep each question's target."""
import re

import numpy as np
import pytest

from data.dagset.batch import Batch
from data.dagset.exact_executor import execute_exact
from data.dagset.text_format import PAD_TOKEN, gpt2_encoding
from data.mathematics.answers import read_benchmark_answer
from data.mathematics.questions import parse_question, question_dag_depth
from data.mathematics.rows import question_row
from data.mathematics.stream import MathConfig, MathRows, MathStream, check_fits, make_math_batch, split_of
from tests.test_mathematics import fixture_lines


def write_prepared(path) -> None:
    """The fixture's training lines as prepared files in path; its test files hold lines
    that are no questions, which reading them would refuse."""
    lines = {}
    for split, module, question, answer in fixture_lines():
        lines.setdefault(f"{split}/{module}.txt", []).append(f"{question}\t{answer}")
    for name, rows in lines.items():
        (path / name).parent.mkdir(exist_ok=True, parents=True)
        test_file = name.startswith(("interpolate", "extrapolate"))
        (path / name).write_text("no question\n" if test_file else "\n".join(rows) + "\n")


@pytest.fixture
def data_dir(tmp_path):
    write_prepared(tmp_path)
    return tmp_path


def training_answers() -> dict[str, str]:
    return {q: a for split, _, q, a in fixture_lines() if split.startswith("train")}


def question_of(row: dict) -> str:
    return gpt2_encoding().decode([t for t in row["idx"].tolist() if t != PAD_TOKEN])


def test_rows_execute_exactly_to_their_answers(data_dir):
    rows, answers = MathRows(MathConfig(str(data_dir), dag_depth=7, block_size=40)), training_answers()
    for split in ("train", "val"):
        n = len(rows.lines[split])
        seen = []
        for i in range(n):
            row = rows.row(split, i)
            question = question_of(row)
            t = int(row["mask"].nonzero()[0][0])
            assert row["mask"].sum() == 1 and t == sum(row["idx"] != PAD_TOKEN) - 1
            # the magnitudes the copy head is trained to point at, read from the text
            ends = row["lit_end"].nonzero()[0].tolist()
            texts = re.findall(r"[0-9]+(?:\.[0-9]+)?", question)
            src = row["V_src"][t]
            magnitudes = [read_benchmark_answer(texts[ends.index(s)]) if s >= 0 else 0 for s in src]
            value = execute_exact(magnitudes, row["V_sign"][t], row["O"][t], row["G"][t])
            assert value == read_benchmark_answer(answers[question]), question
            assert split_of(question) == split
            seen.append(question)
        assert sorted(seen) == sorted(qa.question for qa in rows.lines[split])  # each once per epoch
    assert {split_of(q) for q in answers} == {"train", "val"}
    assert not {qa.question for qa in rows.lines["train"]} & {qa.question for qa in rows.lines["val"]}
    assert len(rows.lines["train"]) + len(rows.lines["val"]) == len(answers)


def test_rows_are_fixed_by_seed_and_index(data_dir):
    a, b = (MathRows(MathConfig(str(data_dir), dag_depth=7, block_size=40)) for _ in range(2))
    n = len(a.lines["train"])
    order = [question_of(a.row("train", i)) for i in range(2 * n)]
    assert [question_of(b.row("train", i)) for i in reversed(range(2 * n))] == order[::-1]
    assert order[:n] != order[n:] and sorted(order[:n]) == sorted(order[n:])  # a new permutation per epoch
    other = MathRows(MathConfig(str(data_dir), dag_depth=7, block_size=40, seed=1))
    assert [question_of(other.row("train", i)) for i in range(n)] != order[:n]
    batch = make_math_batch(a, "train", 1, 4)
    assert isinstance(batch, Batch) and batch.idx.shape == (4, 40) and batch.O.shape == (4, 40, 7, 14)
    assert [question_of({"idx": r}) for r in batch.idx.numpy()] == order[4:8]
    stream = iter(MathStream(MathConfig(str(data_dir), dag_depth=7, block_size=40), "train", 4, start=1))
    assert np.array_equal(next(stream).idx.numpy(), batch.idx.numpy())


def test_questions_that_do_not_fit_are_passed_over_and_checked(data_dir):
    rows = MathRows(MathConfig(str(data_dir), dag_depth=4, block_size=20))
    questions = [question_of(rows.row("train", i)) for i in range(len(rows.lines["train"]))]
    assert all(len(gpt2_encoding().encode(q)) <= 20 for q in questions) and len(set(questions)) < len(questions)
    tokens = max(len(gpt2_encoding().encode(q)) for q in training_answers())
    depth = max(question_dag_depth(parse_question(q)) for q in training_answers())
    check_fits(str(data_dir), depth, tokens)
    with pytest.raises(ValueError, match=f"is {tokens} GPT-2 tokens, more than block_size={tokens - 1}: "
                                         f"give block_size >= {tokens}"):
        check_fits(str(data_dir), depth, tokens - 1)
    with pytest.raises(ValueError, match=f"needs dag_depth >= {depth}, more than dag_depth={depth - 1}: "
                                         f"give dag_depth >= {depth}"):
        check_fits(str(data_dir), depth - 1, tokens)


def test_bad_training_files(data_dir):
    path = data_dir / "train-hard" / "arithmetic__mul.txt"
    path.write_text("What is 2 times 3?\t6\nWhat is 2 times 3?\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: expected question<TAB>answer")):
        MathRows(MathConfig(str(data_dir)))
    path.unlink()
    with pytest.raises(ValueError, match=re.escape(f"cannot read {str(path)!r}")):
        MathRows(MathConfig(str(data_dir)))
    with pytest.raises(ValueError, match="dag_depth and block_size must be >= 1"):
        MathConfig(str(data_dir), dag_depth=0)


def test_prefix_rows_add_the_expression_prefixes_and_keep_the_question_target(data_dir):
    plain = MathRows(MathConfig(str(data_dir), dag_depth=7, block_size=40))
    dense = MathRows(MathConfig(str(data_dir), dag_depth=7, block_size=40, prefixes=True))
    expression_rows = 0
    for i in range(len(plain.lines["train"])):
        a, b = plain.row("train", i), dense.row("train", i)
        t = int(a["mask"].nonzero()[0][0])
        assert b["mask"][t] and not b["mask"][t + 1:].any()  # the question's last token is the last target
        for key in ("idx", "lit_index", "lit_value", "lit_end"):
            assert np.array_equal(a[key], b[key])
        for key in ("V_mag", "V_sign", "O", "G", "value", "V_src"):
            assert np.array_equal(a[key][t], b[key][t]), key
        form = parse_question(question_of(a)).form
        assert (b["mask"].sum() > 1) == (form == "expression" and len(parse_question(question_of(a)).literals) > 1)
        expression_rows += form == "expression"
    assert expression_rows > 0


def test_prefix_targets_are_the_prefix_expressions():
    question = parse_question("Calculate (-2 + 6)*3/4.")
    row = question_row(question, 4, 20, prefixes=True)
    enc = gpt2_encoding()
    tokens = [enc.decode([t]) for t in row["idx"][:row["mask"].nonzero()[0][-1] + 1]]
    values = {"".join(tokens[:t + 1]): float(row["value"][t]) for t in row["mask"].nonzero()[0]}
    # before the expression nothing; then each prefix as the expressions stream reads it (an
    # operator keeps the DAG before it); not at "4", which a "." could continue as a number
    assert values == {"Calculate (-2": -2.0, "Calculate (-2 +": -2.0, "Calculate (-2 + 6": 4.0,
                      "Calculate (-2 + 6)*": 4.0, "Calculate (-2 + 6)*3": 12.0, "Calculate (-2 + 6)*3/": 12.0,
                      "Calculate (-2 + 6)*3/4.": 3.0}
    # a question too deep for dag_depth is the same one-line error with prefixes as without
    for prefixes in (False, True):
        with pytest.raises(ValueError, match=r"Calculate 1 \+ 2 \+ 3 \+ 4 \+ 5\.'.*needs dag_depth >= 5"):
            question_row(parse_question("Calculate 1 + 2 + 3 + 4 + 5."), 3, 64, prefixes=prefixes)
