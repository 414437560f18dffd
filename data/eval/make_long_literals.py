"""Writes data/eval/long_literals.txt: 200 held-out expressions whose literals are longer
than the default training data's (up to 7 integer digits and 6 decimals, where training
has 4 and 4).

    python data/eval/make_long_literals.py

For a copy head (value_head='copy'), which copies a literal's value from the text rather
than writing its digits, this measures whether the structure it learned carries over to
numbers it never saw. Drawn with generate_expression from its own seed, 50 lines per
depth 0-3, every line in the validation split, fitting dag_depth=4 and 32 GPT-2 tokens.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from data.dagset.dag_plan import build_plan, plan_arrays  # noqa: E402
from data.dagset.fast_parse import parse_text  # noqa: E402
from data.dagset.generate_expression import generate_expression  # noqa: E402
from data.dagset.streaming import split_of  # noqa: E402

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "long_literals.txt")
PER_DEPTH, MAX_DIGITS, MAX_DECIMALS, DAG_DEPTH, MAX_TOKENS = 50, 7, 6, 4, 32
SEED = 777_000


def lines() -> list[str]:
    import tiktoken
    enc = tiktoken.get_encoding("gpt2")
    out = []
    for depth in range(4):
        seed = SEED + depth * 1_000_000
        found = 0
        while found < PER_DEPTH:
            seed += 1
            text = generate_expression(seed, depth, MAX_DIGITS, MAX_DECIMALS)
            literals = [w for w in text.replace("(", " ").replace(")", " ").replace("-", " ").split()
                        if w[0].isdigit()]
            too_long = any(len(w.split(".")[0]) > 4 or len(w.partition(".")[2]) > 4 for w in literals)
            if not too_long or split_of(text) != "val" or len(enc.encode_ordinary(text)) > MAX_TOKENS:
                continue
            try:
                plan_arrays(build_plan(parse_text(text)), DAG_DEPTH)
            except ValueError:
                continue
            out.append(text)
            found += 1
    return out


if __name__ == "__main__":
    with open(PATH, "w") as f:
        f.write("\n".join(lines()) + "\n")
    print(f"wrote {PATH}")
