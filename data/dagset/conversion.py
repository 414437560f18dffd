"""SymPy expression <-> DAG tensors: the reference conversion.

`expression_to_tensors` is the source of truth for what a training target is;
`tensor_to_expression` turns a DAG (a target or a model's prediction) back into a
readable SymPy expression with the same value.

Text is read without `sympy.parse_expr`: its unevaluated parse folds and reorders what
people write (`-(6.75 - 1.25)` becomes the single Float -5.5, `2 * -(3 + 4)` becomes
Mul(2, -7)), while the target rule is that a DAG's input values are the text's own
literals in text order (signs become coefficients, a -1 factor is a sign). `_to_sympy`
therefore
- lexes the text with fast_parse.lex, which defines the language of both paths (what
  characters, numbers and nesting are allowed, with the same plain-words errors), and
- parses the grammar independently of fast_parse's parser: Python's own `ast` (the
  parser SymPy runs underneath, so precedence and associativity are Python's) reads
  the lexemes with every number replaced by a placeholder name, and the tree is built
  as SymPy objects the way parse_expr would without folding: Add/Mul with
  evaluate=False, `a - b` as Add(a, Mul(-1, b)), `a / b` as Mul(a, Pow(b, -1)), `-x` as
  Mul(-1, x), `x**k` as Pow(x, k), literals as Integer(text) or Float(text).
  The one value a text does not hold is the 1 of a negative power: `x**-k` is built as
  Div(1, x**k) wherever it stands, as fast_parse.py reads it.
normalize_expression then rewrites that tree into Sub/Div/Neg as for any SymPy input,
and `_tree` walks the result: the SymPy path shares only the lexer and dag_plan.py with
the fast path. SymPy expressions are accepted as they are.
"""
import ast
from fractions import Fraction

import sympy
import torch
from sympy import Add, Float, Integer, Mul, Pow, Rational

from data.dagset.dag_plan import MAX_EXACT_BITS, DAGPlan, build_plan, plan_arrays, plan_size, power_cost
from data.dagset.fast_parse import MAX_EXPONENT, lex, quote
from data.dagset.normalize import Div, Neg, Sub, normalize_expression, number_value


def _exponent(node: ast.expr, literals: list[str], text: str) -> int:
    """The whole-number exponent of a power: a literal, optionally signed."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign *= -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if not (isinstance(node, ast.Name) and "." not in literals[int(node.id[1:])]):
        raise ValueError(f"non-integer power in {quote(text)}: only whole-number exponents such as 2 or -3 "
                         f"are supported")
    k = sign * int(literals[int(node.id[1:])])
    if abs(k) > MAX_EXPONENT:
        raise ValueError(f"exponent {k} in {quote(text)} is too large: exponents must be whole numbers "
                         f"from {-MAX_EXPONENT} to {MAX_EXPONENT}")
    return k


def _chain(node: ast.BinOp, ops: tuple) -> list[tuple[type, ast.expr]]:
    """A left-associative chain a op b op c ... as [(None, a), (op, b), (op, c), ...],
    walked without recursion."""
    links = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, ops):
        links.append((type(node.op), node.right))
        node = node.left
    links.append((None, node))
    return links[::-1]


def _from_ast(node: ast.expr, literals: list[str], text: str) -> sympy.Basic:
    def build(x: ast.expr) -> sympy.Basic:
        return _from_ast(x, literals, text)

    if isinstance(node, ast.Name):
        literal = literals[int(node.id[1:])]
        return Float(literal) if "." in literal else Integer(int(literal))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return Mul(Integer(-1), build(node.operand), evaluate=False)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return build(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        return Add(*[build(x) if op is not ast.Sub else Mul(Integer(-1), build(x), evaluate=False)
                     for op, x in _chain(node, (ast.Add, ast.Sub))], evaluate=False)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
        return Mul(*[build(x) if op is not ast.Div else Pow(build(x), Integer(-1), evaluate=False)
                     for op, x in _chain(node, (ast.Mult, ast.Div))], evaluate=False)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, k = build(node.left), _exponent(node.right, literals, text)
        if k >= 0:
            return Pow(base, Integer(k), evaluate=False)
        # x**-k is 1 / x**k wherever it stands (normalize_expression makes a lone Pow(x, -k)
        # that, but a factor Pow(x, -k) of a product a divisor: 3 * 2**-1 would lose its 1)
        return Div(Integer(1), base if k == -1 else Pow(base, Integer(-k), evaluate=False))
    if isinstance(node, ast.Call):
        raise ValueError(f"cannot parse {quote(text)}: an operator is missing before '('")
    raise ValueError(f"cannot parse {quote(text)}: it is not an arithmetic expression")


def _parse_text(text: str) -> sympy.Basic:
    """SymPy expression of arithmetic text, unevaluated, literals in text order."""
    words = [w for w, _ in lex(text)]
    literals = [w for w in words if w[0] in "0123456789."]
    names = iter(range(len(literals)))
    source = " ".join(f"_{next(names)}" if w[0] in "0123456789." else w for w in words)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        if words.count("(") != words.count(")"):
            raise ValueError(f"cannot parse {quote(text)}: unbalanced parentheses") from None
        raise ValueError(f"cannot parse {quote(text)}: it is not a well-formed expression "
                         f"(an operator or a number is missing or out of place)") from None
    return _from_ast(tree.body, literals, text)


def _to_sympy(expr) -> tuple[sympy.Basic, str | None]:
    """The SymPy expression of expr (text or SymPy) and, for text, its quote for errors."""
    if isinstance(expr, str):
        return _parse_text(expr), quote(expr)
    if not isinstance(expr, sympy.Basic):
        raise ValueError(f"expected a SymPy expression or text, got {type(expr).__name__}")
    return expr, None


def _normalized_tree(expr) -> tuple[tuple, Fraction | None, object]:
    """(tree, exact value or None, what errors call it) of a SymPy expression or text."""
    expr, text = _to_sympy(expr)
    try:
        tree, value = _tree(normalize_expression(expr))
    except ValueError as e:  # "division by zero in '1 / (2 - 2)'": say in which text
        if text is None:
            raise
        raise ValueError(f"{text}: {e}") from None
    return tree, value, text or expr


def _tree(expr: sympy.Basic) -> tuple[tuple, Fraction | None]:
    """Tree of tuples (see dag_plan.py) and exact value of a normalized expression. The
    value is None where computing it exactly would take too long (9**999 / 9**998):
    plan_arrays, which checks every DAG node, estimates such values before computing."""
    if expr.is_Number:
        v = number_value(expr)
        return ("num", v), v
    children = [_tree(a) for a in expr.args]
    if isinstance(expr, Neg):
        (t, v), = children
        return ("add", [(t, -1)]), None if v is None else -v
    if isinstance(expr, (Add, Sub)):
        coefs = [1] + [1 if isinstance(expr, Add) else -1] * (len(children) - 1)
        tree = ("add", [(t, c) for (t, _), c in zip(children, coefs)])
        if any(v is None for _, v in children):
            return tree, None
        return tree, sum((c * v for (_, v), c in zip(children, coefs)), Fraction(0))
    if isinstance(expr, Pow):
        exps = [int(expr.exp)]
        children = children[:1]
    else:
        exps = [1] + [1 if isinstance(expr, Mul) else -1] * (len(children) - 1)
    for (_, v), e in zip(children, exps):
        if v == 0 and e < 0:
            raise ValueError(f"division by zero in '{expr}'")
    tree = ("mul", [(t, e) for (t, _), e in zip(children, exps)])
    if any(v == 0 and e > 0 for (_, v), e in zip(children, exps)):
        return tree, Fraction(0)
    if any(v is None for _, v in children) or power_cost(
            (v.numerator, v.denominator, e) for (_, v), e in zip(children, exps)) > MAX_EXACT_BITS:
        return tree, None
    value = Fraction(1)
    for (_, v), e in zip(children, exps):
        value *= v ** e
    return tree, value


def expression_plan(expr) -> DAGPlan:
    """Canonical DAG plan of a SymPy expression (or text, read as _parse_text does)."""
    return build_plan(_normalized_tree(expr)[0])


def expression_dag_depth(expr) -> int:
    """Smallest dag_depth that holds the expression."""
    return plan_size(expression_plan(expr))


def expression_to_tensors(expr, dag_depth: int):
    """(V_mag, V_sign, O, G) float64 tensors of shapes (1, 1, 2D), (1, 1, 2D),
    (1, 1, D, 2D), (1, 1, D) for a SymPy expression (or text), D = dag_depth."""
    if dag_depth < 1:
        raise ValueError(f"dag_depth must be >= 1, got {dag_depth}")
    tree, _, where = _normalized_tree(expr)  # errors quote text as written
    V_mag, V_sign, O, G, _ = plan_arrays(build_plan(tree), dag_depth, where=where)
    return tuple(torch.from_numpy(a)[None, None] for a in (V_mag, V_sign, O, G))


def _leaf(mag: float, sign: float) -> sympy.Basic:
    x = Float(repr(mag)) if mag != int(mag) else Integer(int(mag))
    return Neg(x) if sign < 0 and mag != 0 else x


def _coefficient(c: float) -> sympy.Basic:
    return Integer(round(c)) if abs(c - round(c)) < 1e-6 else Float(repr(c))


def _combine(pos: list, neg: list, identity, op, inverse_op, scale) -> sympy.Basic:
    """pos[0] op pos[1] ... inverse_op neg[0] ...; each term (x, c) is x scaled by c."""
    def term(x, c):
        return x if c == 1 else scale(x, c)

    ps = [term(x, c) for x, c in pos]
    ns = [term(x, c) for x, c in neg]
    head = ps[0] if len(ps) == 1 else op(*ps, evaluate=False) if ps else None
    if not ns:
        return head if head is not None else identity
    if head is None and op is Mul:
        head = identity
    elif head is None:  # -a - b: nothing to subtract from, so negate the first term
        head, ns = Neg(ns[0]), ns[1:]
    return inverse_op(head, *ns) if ns else head


def tensor_to_expression(V_mag, V_sign, O, G) -> sympy.Basic:
    """Readable SymPy expression of one DAG; leading batch/time dims of size 1 are
    allowed. Gates are read as linear when G > 0.5, coefficients within 1e-6 of an
    integer as that integer; the result has the value of the DAG's last node."""
    V_mag, V_sign, O, G = (torch.as_tensor(t).detach().double().cpu() for t in (V_mag, V_sign, O, G))
    D = G.shape[-1]
    V_mag, V_sign, O, G = V_mag.reshape(2 * D), V_sign.reshape(2 * D), O.reshape(D, 2 * D), G.reshape(D)
    nodes: list[sympy.Basic] = [_leaf(float(m), float(s)) for m, s in zip(V_mag[:D], V_sign[:D])]
    for k in range(D):
        terms = [(nodes[j], _coefficient(float(O[k, j]))) for j in range(D + k) if O[k, j] != 0]
        pos = [(x, c) for x, c in terms if c > 0]
        neg = [(x, -c) for x, c in terms if c < 0]
        if G[k] > 0.5:
            nodes.append(_combine(pos, neg, Integer(0), Add, Sub, lambda x, c: Mul(c, x, evaluate=False)))
        else:
            nodes.append(_combine(pos, neg, Integer(1), Mul, Div, lambda x, c: Pow(x, c, evaluate=False)))
    return nodes[-1]


def exact_value(expr) -> Rational:
    """Exact rational value of a SymPy arithmetic expression (or text)."""
    _, v, where = _normalized_tree(expr)
    if v is None:
        raise ValueError(f"the value of {where} is too large to compute exactly")
    return Rational(v.numerator, v.denominator)
