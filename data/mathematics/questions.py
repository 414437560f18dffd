"""Reading a question of the Mathematics Dataset's arithmetic modules (prepare.py) as an
expression of this project's grammar (data/dagset/fast_parse.py), and its DAG targets.

The package (mathematics_dataset 1.0.1, modules/arithmetic.py) asks in these forms, p
and q signed decimal numbers, E an expression of + - * / and parentheses printed as
Python reads it (sample/ops.py):

    add  {p} + {q}, {p}+{q}, Work out / Calculate {p} + {q}., What is {p} + {q}?,
         Add / Sum / Total of / Put together / Add together {p} and {q}., What is {p} plus {q}?
    sub  {p} - {q}, Work out / Calculate {p} - {q}., What is {p} - {q}?,
         What is {p} minus / take away {q}?, What is {q} less than {p}?, Subtract {q} from {p}.,
         What is the difference / distance between {p} and {q}? (also {q} and {p}; p >= q)
    mul  {p}*{q}, {p} * {q}, Calculate {p}*{q}., Work out {p} * {q}., Multiply / Product of
         {p} and {q}., What is the product of {p} and {q}?, {p} times {q}, What is {p} times {q}?
    div  Divide {p} by {q}., {p} divided by {q}, What is / Calculate {p} divided by {q}?/.
    E    {E}, What is {E}?, Evaluate {E}., Calculate {E}., What is the value of {E}?

The symbol forms are expressions with a wrapper. The word forms are rewritten as
expressions whose literals stay in text order, as every DAG target of the project has
them: `What is 5 less than 12?` is `-5 + 12`, and `the difference between A and B` is
`A - B` or `-A + B`, whichever is not negative (the package asks it only when the
difference is p - q >= 0, with p first or second).

A literal is an unsigned number (its sign is an operator, as in fast_parse.lex);
`Literal` keeps its text and character span in the question.
"""
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from data.dagset.dag_plan import DAGPlan, build_plan, plan_arrays, plan_size
from data.dagset.fast_parse import lex, parse_lexemes, quote

# A literal as the package writes one: digits, or digits.digits (display.Decimal). Not
# fast_parse.lex's wider rule, which would read the "24." of "Divide 138288 by 24." as
# a number: a sentence's full stop is no decimal point.
_LITERAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"  # signed
_P, _Q = f"(?P<p>{_NUMBER})", f"(?P<q>{_NUMBER})"
# (form, pattern over the whole question): the word forms, each with its expression
_WORD_FORMS = [(form, re.compile(pattern)) for form, pattern in (
    ("add", rf"(?:Add|Sum|Total of|Put together|Add together) {_P} and {_Q}\."),
    ("add", rf"What is {_P} plus {_Q}\?"),
    ("sub", rf"What is {_P} (?:minus|take away) {_Q}\?"),
    ("less_than", rf"What is {_Q} less than {_P}\?"),
    ("less_than", rf"Subtract {_Q} from {_P}\."),
    ("difference", rf"What is the (?:difference|distance) between {_P} and {_Q}\?"),
    ("mul", rf"(?:Multiply|Product of) {_P} and {_Q}\."),
    ("mul", rf"What is the product of {_P} and {_Q}\?"),
    ("mul", rf"What is {_P} times {_Q}\?"),
    ("mul", rf"{_P} times {_Q}"),
    ("div", rf"Divide {_P} by {_Q}\."),
    ("div", rf"What is {_P} divided by {_Q}\?"),
    ("div", rf"Calculate {_P} divided by {_Q}\."),
    ("div", rf"{_P} divided by {_Q}"),
)]
# (prefix, suffix) around an expression, longest prefix first
_WRAPPERS = (("What is the value of ", "?"), ("What is ", "?"), ("Evaluate ", "."), ("Calculate ", "."),
             ("Work out ", "."), ("", ""))


class Literal(NamedTuple):
    """An unsigned literal of a question: its text and where it stands (text[start:end])."""

    text: str
    start: int
    end: int

    @property
    def value(self) -> Fraction:
        """The literal's exact value, as written (not a float64)."""
        return Fraction(self.text)


@dataclass(frozen=True)
class BenchmarkQuestion:
    """A question read: its form ("add", "sub", "less_than", "difference", "mul", "div",
    "expression"), the same computation as an expression of the project's grammar, and
    its literals in text order (the expression's literals, in the same order)."""

    text: str
    form: str
    expression: str
    literals: tuple[Literal, ...]


class QuestionTargets(NamedTuple):
    """A question's DAG targets at one dag_depth D: plan_arrays' float64 arrays, the
    exact magnitude of every input node (V_mag is float64, which cannot hold a
    17-digit literal), which literal each input node is (a -1 factor is a sign, no
    node: `(-1)*5` has one node), and the exact value."""

    V_mag: np.ndarray  # (2D,)
    V_sign: np.ndarray  # (2D,)
    O: np.ndarray  # (D, 2D)
    G: np.ndarray  # (D,)
    magnitudes: tuple[Fraction, ...]  # (D,): exact input node magnitudes, 0 past the plan's values
    sources: tuple[int, ...]  # per plan value: the index of its literal in question.literals
    value: Fraction


def _operand(number: str) -> str:
    return f"({number})" if number.startswith("-") else number


def _word_expression(form: str, p: str, q: str) -> str:
    """The expression of a word form, its literals in the text's order."""
    if form == "less_than":  # "q less than p", "subtract q from p": p - q, with q first in the text
        return f"-{_operand(q)} + {_operand(p)}"
    if form == "difference":  # p, q in text order; the package asks only for the non-negative one
        return f"{p} - {_operand(q)}" if Fraction(p) >= Fraction(q) else f"-{_operand(p)} + {_operand(q)}"
    op = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[form]
    return f"{p} {op} {_operand(q)}"


def _read_form(text: str) -> tuple[str, str]:
    """(form, expression) of a question; ValueError when it is in no form of the package's."""
    for form, pattern in _WORD_FORMS:
        m = pattern.fullmatch(text)
        if m:
            return form, _word_expression(form, m["p"], m["q"])
    for prefix, suffix in _WRAPPERS:
        if text.startswith(prefix) and text.endswith(suffix) and len(text) > len(prefix) + len(suffix):
            inner = text[len(prefix):len(text) - len(suffix)]
            try:
                lex(inner)
            except ValueError:
                continue
            return "expression", inner
    raise ValueError(f"question {quote(text)} is in none of the arithmetic modules' forms "
                     f"(Add X and Y., What is X less than Y?, Calculate E., ...: see data/mathematics/questions.py)")


def parse_question(text: str) -> BenchmarkQuestion:
    """Read a question of the arithmetic modules (see the module docstring); ValueError
    naming the question and what is wrong for anything else."""
    form, expression = _read_form(text)
    words = [w for w, _ in lex(expression)]
    if "**" in words:
        raise ValueError(f"question {quote(text)} has a power '**': the arithmetic modules ask + - * / only")
    try:
        parse_lexemes(words, expression)
    except ValueError as e:
        raise ValueError(f"question {quote(text)}: {e}") from None
    literals = tuple(Literal(m.group(), m.start(), m.end()) for m in _LITERAL.finditer(text))
    in_expression = [w for w in words if w[0] in "0123456789."]
    if [lit.text for lit in literals] != in_expression:  # e.g. digits in a word around the expression
        raise ValueError(f"question {quote(text)}: its numbers {[lit.text for lit in literals]} are not the "
                         f"literals of its expression {in_expression}")
    return BenchmarkQuestion(text, form, expression, literals)


def question_plan(question: BenchmarkQuestion) -> DAGPlan:
    """The canonical DAG plan of a question: dag_plan.build_plan of its expression's tree."""
    return build_plan(parse_lexemes([w for w, _ in lex(question.expression)], question.expression))


def question_dag_depth(question: BenchmarkQuestion) -> int:
    """The smallest dag_depth that holds the question's plan."""
    return plan_size(question_plan(question))


def question_targets(question: BenchmarkQuestion, dag_depth: int) -> QuestionTargets:
    """The question's DAG targets at dag_depth (ValueError, naming the question and the
    depth that fits, when it needs more)."""
    plan = question_plan(question)
    V_mag, V_sign, O, G, value = plan_arrays(plan, dag_depth, where=f"question {quote(question.text)}")
    sources, j = [], 0
    for magnitude, _ in plan.values:  # in text order; a literal 1 that is only a sign is passed over
        while question.literals[j].value != magnitude:
            j += 1
        sources.append(j)
        j += 1
    magnitudes = tuple(magnitude for magnitude, _ in plan.values) + (Fraction(0),) * (dag_depth - len(plan.values))
    return QuestionTargets(V_mag, V_sign, O, G, magnitudes, tuple(sources), value)
