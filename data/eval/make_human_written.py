"""Writes data/eval/human_written.txt: 300 held-out expressions as people type them.

    python data/eval/make_human_written.py

The file tests whether a model reads the forms people write and the training generator
writes rarely or never (by default): trailing zeros (`3.0`, `12.50`), no spaces
(`3*4-2`), extra spaces (`( 3 + 4 )`), a unary minus on a literal and on a group
(`-(6.75 - 1.25)`, `2 * -(3 + 4)`), double negation (`5 - -3`, `4--(2/8)`), redundant
parentheses (`(3)`, `((1 + 2))`) and mixed integers and decimals (`7 / 2.5 + 1`).

It is deliberately not made with generate_expression: this small writer has its own
templates and its own seed, so the set is not a sample of the training distribution.
Line i shows form FORMS[i % 8] (other forms may show up too). Every line has 0 to 3
binary operations, literals of at most 4 integer digits and 4 decimals (as written),
is in the validation split (streaming.split_of: crc32 of its respaced text % 16 == 0;
candidates are drawn until one is, so no line, as written or respaced, can ever be a
training example), parses in both paths (fast_parse.py and
conversion.py) to identical tensors that fit dag_depth=4, and is at most 32 GPT-2
tokens (the block_size of the default model). The output is the same on every run.
"""
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

N_LINES = 300
SEED = "human_written/v2"  # v1 chose lines by crc32 of the text as written
DAG_DEPTH = 4
MAX_TOKENS = 32
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "human_written.txt")
FORMS = ("trailing_zeros", "no_spaces", "extra_spaces", "minus_literal", "minus_group",
         "double_negation", "redundant_parens", "mixed_int_float")
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _literal(rng: random.Random, kind: str) -> str:
    """A decimal literal: kind 'int', 'dec' (no trailing zero) or 'zeros' (trailing zeros)."""
    n_int = rng.choice((1, 1, 2, 2, 3, 4))
    whole = str(rng.randrange(1, 10) if n_int == 1 else rng.randrange(10 ** (n_int - 1), 10 ** n_int))
    if kind == "int":
        return whole
    if kind == "zeros" and rng.random() < 0.5:  # 3.0, 12.00
        return whole + "." + "0" * rng.choice((1, 1, 2))
    n_dec = rng.choice((1, 2, 3) if kind == "zeros" else (1, 1, 2, 2, 3, 4))
    digits = f"{rng.randrange(1, 10 ** n_dec):0{n_dec}d}".rstrip("0")
    if rng.random() < 0.25:
        whole = "0"
    if kind == "zeros":  # 12.50, 2.250, 0.1200
        digits += "0" * min(4 - len(digits), rng.choice((1, 1, 2)))
    return f"{whole}.{digits}"


def _tree(rng: random.Random, n_ops: int) -> tuple:
    """Random binary tree: ("lit", index) leaves numbered in text order later."""
    if n_ops == 0:
        return ("lit",)
    n_left = rng.randrange(n_ops)
    return (rng.choice("+-*/"), _tree(rng, n_left), _tree(rng, n_ops - 1 - n_left))


def _subtrees(node: tuple, path=()) -> list:
    out = [(path, node)]
    if node[0] != "lit":
        out += _subtrees(node[1], path + (1,)) + _subtrees(node[2], path + (2,))
    return out


class _Writer:
    """Renders a tree with Python's precedence (parentheses only where needed), plus the
    marks of a form: literals' kinds, negated literals or groups, redundant or spaced
    parentheses, operator spacing."""

    def __init__(self, rng: random.Random, tree: tuple, kinds: list[str]):
        self.rng, self.tree, self.kinds = rng, tree, kinds
        self.negate: set = set()  # paths of negated nodes (literals or groups)
        self.wrap: set = set()  # paths of redundantly parenthesized nodes
        self.double: set = set()  # paths of doubly negated literals: -(-3), or - -3
        self.double_spaced = False
        self.space_parens = False
        self.op_space = " "
        self.i = 0

    def paren(self, text: str) -> str:
        return f"( {text} )" if self.space_parens else f"({text})"

    def render(self, node: tuple, path=()) -> str:
        if node[0] == "lit":
            text = self.kinds[self.i]
            self.i += 1
            if path in self.negate:
                text = "-" + text
            if path in self.double:
                text = f"- -{text}" if self.double_spaced and not path else f"-(-{text})"
            if path in self.wrap:
                text = self.paren(text)
            return text
        op, left, right = node
        parts = []
        for side, child in ((1, left), (2, right)):
            text = self.render(child, path + (side,))
            child_path = path + (side,)
            if child[0] != "lit" and child_path not in self.negate and child_path not in self.wrap:
                needs = _PREC[child[0]] < _PREC[op] or (side == 2 and _PREC[child[0]] == _PREC[op] and op in "-/")
                if needs:
                    text = self.paren(text)
            parts.append(text)
        sep = self.op_space + op + self.op_space
        text = sep.join(parts)
        if path in self.negate:
            text = "-" + self.paren(text)
        elif path in self.wrap:
            text = self.paren(text)
        return text


def _candidate(rng: random.Random, form: str) -> str:
    needs_op = form in ("no_spaces", "minus_group", "mixed_int_float")
    n_ops = rng.randrange(1 if needs_op else 0, 4)
    tree = _tree(rng, n_ops)
    n_lits = n_ops + 1
    kinds = [rng.choice(("int", "dec")) for _ in range(n_lits)]
    if form == "trailing_zeros":
        for i in rng.sample(range(n_lits), rng.randint(1, min(2, n_lits))):
            kinds[i] = "zeros"
    if form == "mixed_int_float":
        kinds[0], kinds[1] = ("int", "dec") if rng.random() < 0.5 else ("dec", "int")
        rng.shuffle(kinds)
    w = _Writer(rng, tree, [_literal(rng, k) for k in kinds])
    nodes = _subtrees(tree)
    groups = [p for p, node in nodes if node[0] != "lit"]
    leaves = [p for p, node in nodes if node[0] == "lit"]
    if form == "no_spaces":
        w.op_space = ""
    elif form == "extra_spaces":
        w.space_parens = True
        if not any(_needs_parens(tree, p) for p in groups) or rng.random() < 0.3:
            w.wrap.add(rng.choice(groups[1:] or leaves if n_ops else [()]))
    elif form == "minus_literal":
        for p in rng.sample(leaves, rng.randint(1, min(2, len(leaves)))):
            w.negate.add(p)
    elif form == "minus_group":
        w.negate.add(rng.choice(groups))
    elif form == "double_negation":
        minus_rights = [p + (2,) for p, node in nodes if node[0] == "-"]
        if minus_rights:  # 5 - -3, 4 - -(2/8)
            w.negate.add(rng.choice(minus_rights))
            if rng.random() < 0.4:
                w.op_space = ""  # 4--(2/8)
        else:  # -(-3) * 2, - -3
            w.double.add(rng.choice(leaves))
            w.double_spaced = rng.random() < 0.3
    elif form == "redundant_parens":
        choice = rng.random()
        if choice < 0.5:
            w.wrap.add(rng.choice(leaves))  # (3)
        elif groups:
            w.wrap.add(rng.choice(groups))  # (2 * 3) + 4, or the whole expression
        else:
            w.wrap.add(())
        if rng.random() < 0.2:
            text = w.render(tree)
            return f"({text})"  # ((1 + 2)), ((3))
    return w.render(tree)


def _needs_parens(tree: tuple, path: tuple) -> bool:
    if not path:
        return False
    parent = tree
    for side in path[:-1]:
        parent = parent[side]
    child = parent[path[-1]]
    return _PREC[child[0]] < _PREC[parent[0]] or (
        path[-1] == 2 and _PREC[child[0]] == _PREC[parent[0]] and parent[0] in "-/")


def check_line(text: str, maker=None) -> None:
    """ValueError unless text is a usable held-out line (see the module docstring)."""
    import numpy as np

    from data.dagset.conversion import expression_to_tensors
    from data.dagset.dag_plan import build_plan, plan_arrays
    from data.dagset.fast_parse import lex, parse_text
    from data.dagset.streaming import split_of

    if split_of(text) != "val":
        raise ValueError(f"{text!r} is not in the validation split")
    words = [w for w, _ in lex(text)]
    literals = [w for w in words if w[0] in "0123456789."]
    if not 1 <= len(literals) <= 4:
        raise ValueError(f"{text!r} has {len(literals)} literals")
    for lit in literals:
        whole, _, decimals = lit.partition(".")
        if len(whole) > 4 or len(decimals) > 4:
            raise ValueError(f"{text!r}: literal {lit!r} has too many digits")
    fast = plan_arrays(build_plan(parse_text(text)), DAG_DEPTH, where=repr(text))
    ref = expression_to_tensors(text, DAG_DEPTH)
    for a, b in zip(fast, ref):
        if not np.array_equal(a, b[0, 0].numpy()):
            raise ValueError(f"{text!r}: the two paths disagree")
    if maker is not None and len(maker.tokens(text)) > MAX_TOKENS:
        raise ValueError(f"{text!r} is more than {MAX_TOKENS} tokens")


def make_lines() -> list[str]:
    from data.dagset.streaming import ExampleMaker, StreamConfig, split_of

    maker = ExampleMaker(StreamConfig())
    rng = random.Random(SEED)
    lines, seen = [], set()
    for i in range(N_LINES):
        form = FORMS[i % len(FORMS)]
        while True:
            text = _candidate(rng, form)
            if text in seen or split_of(text) != "val":
                continue
            try:
                check_line(text, maker)
            except ValueError:  # a division by zero, a value out of range, too long
                continue
            break
        seen.add(text)
        lines.append(text)
    return lines


if __name__ == "__main__":
    lines = make_lines()
    with open(PATH, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} lines to {PATH}")
