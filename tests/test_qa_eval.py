"""Scoring question<TAB>answer files (run/qa_eval.py, data/mathematics/qa_file.py,
data/mathematics/rows.py) in process: a DAG that is the question's target writes the
dataset's answer string for every real generator line, through both value heads; the
table and summary of untrained tiny models of both kinds; one-line errors for bad input.
evaluate.py's --qa_file runs are in tests/test_evaluate.py."""
import re
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from data.mathematics.qa_file import file_labels, qa_paths, read_qa
from data.mathematics.questions import parse_question
from data.mathematics.rows import lm_prompt, question_row
from models.dag_model import GPT, GPTConfig
from models.predictor_only_model import PredictorOnlyModel
from run.kinds import KINDS, Loaded
from run.qa_eval import evaluate_qa, exact_magnitudes, read_items, summary, written_answer
from tests.test_mathematics import fixture_lines

D, T = 12, 64


def test_target_dags_write_every_fixture_answer():
    """The row's targets at the last token, read back as a copy head's pointers or a
    digit head's digits, executed exactly and written, give the dataset's string."""
    places, n_digits = 20, 40  # the fixture literals: up to 19 integer digits, up to 13 decimals
    for _, _, text, answer in fixture_lines():
        question = parse_question(text)
        row = question_row(question, D, T)
        t = int(row["mask"].nonzero()[0][0])
        assert t == sum(row["idx"] != 50256) - 1 and row["mask"].sum() == 1  # targets at the last token only
        src = torch.from_numpy(row["V_src"][t])
        pointers = F.one_hot(torch.where(src < 0, T, src), T + 1).float()  # (D, T+1)
        lit_index = torch.from_numpy(row["lit_index"])
        copied = exact_magnitudes("copy", pointers, lit_index, question, places)
        scaled = [int(m * 10 ** places) for m in copied]
        digits = F.one_hot(torch.tensor([[int(c) for c in f"{s:0{n_digits}d}"] for s in scaled]), 10).float()
        assert exact_magnitudes("digits", digits, lit_index, question, places) == copied
        assert all(isinstance(m, Fraction) for m in copied)
        dag = (row["V_sign"][t], row["O"][t], row["G"][t])
        assert written_answer(question, copied, *dag) == answer, text


def test_literal_info_comes_from_the_questions_spans():
    question = parse_question("Divide 138288 by 24.")  # "24." is no literal: the full stop is a sentence's
    row = question_row(question, 2, 16)
    ends = row["lit_end"].nonzero()[0].tolist()
    assert row["lit_value"][ends].tolist() == [138288.0, 24.0] and row["lit_index"][ends].tolist() == [1, 2]
    assert row["V_src"][row["mask"]][0].tolist() == ends
    assert question_row(question, 2, 4) is None  # more tokens than block_size
    assert lm_prompt("What is 2 + 3?") == "What is 2 + 3?\n"


def test_unscorable_dag_writes_no_answer():
    question = parse_question("Divide 6 by 3.")
    O = torch.zeros(2, 4)
    O[0, 0], O[0, 1], O[1, 2] = 1, -1, 1  # 6 / 0
    assert written_answer(question, [Fraction(6), Fraction(0)], torch.ones(4), O, torch.zeros(2)) == ""
    decimal = parse_question("What is 0.5 times 3?")  # 1/3 has no decimal text
    assert written_answer(decimal, [Fraction(1), Fraction(3)], torch.ones(4), O, torch.zeros(2)) == ""


@pytest.fixture
def qa_dir(tmp_path):
    lines = {}
    for split, module, question, answer in fixture_lines():
        lines.setdefault(f"{split}/{module}.txt", []).append(f"{question}\t{answer}")
    for name, rows in lines.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    return tmp_path


def tiny(kind: str, block_size: int = T, dag_depth: int = D) -> Loaded:
    torch.manual_seed(0)
    config = GPTConfig(block_size=block_size, n_layer=1, n_head=2, n_embd=32, dag_depth=dag_depth,
                       value_head="copy", literal_embedding=True)
    model = PredictorOnlyModel(config) if kind == "predictor" else GPT(config)
    return Loaded(model.eval(), KINDS[kind], "tiny.pt", 0, {}, {})


def test_tables_of_both_kinds(qa_dir, capsys):
    items = read_items(str(qa_dir / "interpolate" / "*.txt"), D)
    assert [i.label for i in items][:1] == ["arithmetic__add_or_sub"] and len(items) == 35
    rows = evaluate_qa(tiny("predictor"), items, 8)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "35 questions read as written; exact answers with 95% Wilson intervals"
    assert [line.split()[0] for line in out[2:]] == list(rows)  # a row per file, then all
    assert rows["all"]["n"] == 35 and sum(r["n"] for k, r in rows.items() if k != "all") == 35
    assert set(rows["all"]) == {"exact", "n", "low", "high", "unfit"}
    assert 0 <= rows["all"]["low"] <= rows["all"]["exact"] <= rows["all"]["high"] <= 1
    one = read_items(str(qa_dir / "interpolate" / "arithmetic__mul.txt"), 0)
    rows = evaluate_qa(tiny("lm", block_size=18, dag_depth=0), one, 8)  # one prompt is 18 tokens: unfit
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("6 questions asked as 'question\\n'") and len(out) == 3  # one file: its row
    assert rows["all"]["unfit"] == 1 and rows["arithmetic__mul"] == rows["all"]


def test_summary_is_exact_with_its_wilson_interval():
    row = summary([True] * 99 + [False], 1)
    assert (row["exact"], row["n"], row["unfit"]) == (0.99, 100, 1)
    assert row["low"] == pytest.approx(0.9455, abs=1e-4) and row["high"] == pytest.approx(0.9982, abs=1e-4)


def bad_file(tmp_path, text: str) -> str:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("What is 2 + 3?\t5\nWhat is 2 + 3? 5\n", "bad.txt:2: expected question<TAB>answer, both non-empty"),
    ("What is 2 + 3?\t\n", "bad.txt:1: expected question<TAB>answer, both non-empty"),
    ("\t5\n", "bad.txt:1: expected question<TAB>answer, both non-empty"),
    ("What is 2 + 3?\t5\t5\n", "bad.txt:1: expected question<TAB>answer"),
    ("What is 2 + 3?\tfive\n", "bad.txt:1: answer 'five' is not an integer, a decimal or a fraction p/q"),
    ("What is 2 / 3?\t2/0\n", "bad.txt:1: answer '2/0' divides by zero"),
    ("", "has no question<TAB>answer lines"),
    ("Frobnicate 3.\t3\n", "bad.txt:1: question 'Frobnicate 3.' is in none of the arithmetic modules' forms"),
])
def test_bad_lines_name_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        read_items(bad_file(tmp_path, text), D)
    assert "\n" not in str(e.value)


def test_too_deep_says_which_dag_depth_fits(tmp_path):
    path = bad_file(tmp_path, "What is 2 + 3?\t5\nCalculate 1 + 2 + 3 + 4 + 5.\t15\nWhat is 1 + 2 + 3 + 4?\t10\n")
    with pytest.raises(ValueError, match=re.escape("bad.txt:2: question 'Calculate 1 + 2 + 3 + 4 + 5.' has 5 literals "
                                                   "and needs dag_depth >= 5, more than the checkpoint's "
                                                   "dag_depth=3: the questions need a checkpoint with dag_depth >= 5")):
        read_items(path, 3)
    assert len(read_items(path, 0)) == 3  # a plain language model computes no DAG


def test_paths_and_labels(qa_dir):
    with pytest.raises(ValueError, match="'nowhere.txt' is not a file"):
        qa_paths("nowhere.txt")
    with pytest.raises(ValueError, match=r"no file matches '.*/\*.csv'"):
        qa_paths(str(qa_dir / "*.csv"))
    paths = qa_paths(str(qa_dir / "train-*" / "arithmetic__mul.txt"))
    assert file_labels(paths) == [f"train-{s}/arithmetic__mul" for s in ("easy", "hard", "medium")]
    assert read_qa(paths[0])[0].line == 1
