"""How a model reads a question of the Mathematics Dataset: the one rule for each kind.

The predictor (train_predictor.py) reads the question exactly as written, in GPT-2
tokens, with no template around it; `question_row` makes its Batch row
(data/dagset/batch.py): the tokens, every token's literal info from the question's own
literal spans (questions.Literal; not fast_parse.lex, which reads the "24." of
"Divide 138288 by 24." as a number), and the DAG targets at the question's last token
only, where the whole question has been read. Training (data/mathematics/stream.py)
and evaluation (run/qa_eval.py) both make rows here.

A language model (train.py) is asked `lm_prompt(question)`: the question, then a line
break, and its answer is the text it writes after that, to the end of the line. A
language model trained on the benchmark is to be trained on `lm_prompt(question) +
answer`, so that it is asked as it learned; today's language models, which know only
the project's templates, are asked the same way.
"""
from functools import lru_cache

import numpy as np

from data.dagset.batch import empty_targets
from data.dagset.streaming import ExampleMaker, StreamConfig, read_literals
from data.dagset.text_format import PAD_TOKEN, encode, gpt2_encoding
from data.mathematics.questions import BenchmarkQuestion, question_targets


def lm_prompt(question: str) -> str:
    """What a language model is given to answer a question (see the module docstring)."""
    return question + "\n"


def literal_rows(question: BenchmarkQuestion, tokens: list[int], block_size: int) -> tuple[dict, list[int]]:
    """lit_index, lit_value, lit_end (block_size,) of a question's tokens, from its
    literal spans, and the token where each literal ends."""
    enc = gpt2_encoding()
    # the questions are ASCII (parse_question reads no other), so a byte is a character
    token_ends = np.cumsum([len(enc.decode_single_token_bytes(t)) for t in tokens]).tolist()
    ex = {"lit_index": np.zeros(block_size, dtype=np.int64), "lit_value": np.zeros(block_size),
          "lit_end": np.zeros(block_size, dtype=bool)}
    literals = read_literals([(lit.text, lit.end) for lit in question.literals], token_ends, ex)
    return ex, [lit.token for lit in literals]


@lru_cache(maxsize=8)
def _prefix_maker(dag_depth: int, block_size: int) -> ExampleMaker:
    # only its targets() is used: nothing is drawn, so the drawing settings stay the
    # defaults but max_expr_depth, which must fit any dag_depth >= 1
    return ExampleMaker(StreamConfig(dag_depth=dag_depth, block_size=block_size, max_expr_depth=0))


def question_row(question: BenchmarkQuestion, dag_depth: int, block_size: int,
                 prefixes: bool = False) -> dict[str, np.ndarray] | None:
    """A question's Batch row (see the module docstring), None when its tokens are more
    than block_size; ValueError, naming the question and the depth that fits, when its
    DAG needs more than dag_depth nodes. With prefixes, a question that is an expression
    in a wrapper (`Calculate E.`) also has the DAG of every prefix of E where the
    expressions stream has one (ExampleMaker.targets): more to learn from per question."""
    tokens = encode(question.text)
    if len(tokens) > block_size:
        return None
    if prefixes and question.form == "expression":
        start = question.text.rindex(question.expression)
        try:
            return _prefix_maker(dag_depth, block_size).targets(question.text, tokens, start,
                                                                start + len(question.expression))
        except ValueError:
            question_targets(question, dag_depth)  # raises, naming the question and the depth that fits
            raise
    targets = question_targets(question, dag_depth)
    literals, ends = literal_rows(question, tokens, block_size)
    row = {"idx": np.full(block_size, PAD_TOKEN, dtype=np.int64)} | empty_targets(block_size, dag_depth) | literals
    row["idx"][:len(tokens)] = tokens
    last = len(tokens) - 1
    row["V_mag"][last], row["V_sign"][last] = targets.V_mag, targets.V_sign
    row["O"][last], row["G"][last] = targets.O, targets.G
    row["value"][last] = float(targets.value)
    row["V_src"][last, :len(targets.sources)] = [ends[j] for j in targets.sources]
    row["mask"][last] = True
    return row
