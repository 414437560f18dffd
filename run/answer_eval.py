"""Exact-answer evaluation of a train.py language model (evaluate.py runs it for an 'lm'
checkpoint): each expression is asked in the training question format, the answer is
decoded greedily to the end of its line, and it is exact when it equals the canonical
text of the expression's exact value (data/dagset/text_format.format_answer). For a model
with DAG heads, the DAG it predicts after the question (where the answer is written)
is also scored, so one sees whether an error comes from the plan or from the writing.

A held-out question that, with its answer, is longer than the model's block_size (a
model trained with a small one) cannot be asked as training asked: it is scored as
wrong on every rate, so every model is scored on the same set, and the count of such
questions is printed and kept in the JSON ("unfit")."""
import dataclasses
import math

import torch

from data.dagset.batch import collate
from data.dagset.streaming import ExampleMaker, StreamConfig, draw_example
from data.dagset.text_format import encode
from data.dagset.text_stream import TEMPLATES, TextConfig, TextExampleMaker, exact_answer, question
from models.dag_heads import Literals
from models.dag_model import final_token_metrics
from run.kinds import Loaded
from run.text_generation import answer

RATES = ("answer_exact", "dag_exact", "structure", "values")


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate successes / n (n >= 1)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def stream_config(lm: Loaded, seed: int) -> StreamConfig:
    """The expression settings the model was trained on, with the held-out seed."""
    max_expr_depth = lm.config.get("max_expr_depth", StreamConfig.max_expr_depth)
    settings = lm.config | {"dag_depth": lm.model.config.dag_depth or max_expr_depth + 1,
                            "block_size": lm.model.config.block_size}
    return StreamConfig.from_settings(settings | {"seed": seed})


def question_row(rows: TextExampleMaker, expression: str) -> tuple[str, dict | None]:
    """The canonical answer of an expression and its training row in the question
    format, None if the question and its answer are longer than block_size; ValueError
    saying why for an expression the model cannot be asked."""
    cfg = rows.cfg.expressions
    true = exact_answer(expression, cfg.dag_depth)
    tokens = rows.maker.tokens(expression)
    if len(tokens) > cfg.block_size:
        return true, None
    return true, rows.place(TEMPLATES[0], expression, true, rows.maker.targets(expression, tokens))


@torch.no_grad()
def score(lm: Loaded, expression: str, true: str, row: dict | None) -> dict:
    """The model's answer to one expression and, with DAG heads, its DAG's final-token
    metrics; every rate 0 for a question that does not fit (row None)."""
    if row is None:
        return {"expression": expression, "answer": "", "true": true, "fits": False} | dict.fromkeys(
            RATES if lm.model.config.dag_depth else RATES[:1], 0.0)
    written = answer(lm.model, expression)
    record = {"expression": expression, "answer": written, "true": true, "fits": True,
              "answer_exact": float(written == true)}
    if lm.model.config.dag_depth:
        n = len(encode(question(expression)))
        batch = collate([row]).map(lambda t: t[:, :n]).to(next(lm.model.parameters()).device)
        batch.mask = torch.zeros_like(batch.mask)
        batch.mask[0, n - 1] = True  # the position after which the answer is written
        pred = lm.model.predict_dag(batch.idx, Literals.from_batch(batch), at=batch.mask)
        metrics = final_token_metrics(pred, batch, lm.model.execute(*pred.hard()))
        record |= {"dag_exact": metrics["exact"].item(), "structure": metrics["structure"].item(),
                   "values": metrics["values"].item()}
    return record


def summary(records: list[dict]) -> dict:
    row = {"n": len(records), "unfit": sum(not r["fits"] for r in records)}
    for k in RATES:
        if k in records[0]:
            hits = sum(r[k] for r in records)
            row[k] = hits / len(records)
            row[f"{k}_low"], row[f"{k}_high"] = wilson_interval(hits, len(records))
    return row


def table(rows: dict[str, dict], width: int = 21) -> None:
    """Print summary rows by label (a depth, or all): each yes/no rate, a key with <key>_low
    and <key>_high, with its 95% interval; any other mean (not n, unfit) as it is."""
    names = [k for k in rows["all"] if k not in ("n", "unfit") and not k.endswith(("_low", "_high"))]
    print(f"{'depth':>5} {'n':>5} " + " ".join(f"{k:>{width}}" if f"{k}_low" in rows["all"] else f"{k:>6}"
                                             for k in names))
    for label, row in rows.items():
        print(f"{label:>5} {row['n']:>5} " + " ".join(
            f"{row[k]:.3f} [{row[k + '_low']:.3f},{row[k + '_high']:.3f}]".rjust(width) if f"{k}_low" in row
            else f"{row[k]:6.3f}" for k in names))


def expressions_table(records: list[dict], head: str, cells, total: dict, width: int = 21) -> dict:
    """Print a line per expression (head: the column names after 'expression'; cells(record):
    that line's), then the rates of them all; the result for JSON."""
    column = max(len("expression"), *(len(r["expression"]) for r in records))
    print(f"{'expression':<{column}} {head}")
    for r in records:
        print(f"{r['expression']:<{column}} {cells(r)}")
    print(f"{total['n']} expressions, rates with 95% Wilson intervals:")
    table({"all": total}, width)
    return {"expressions": records, "all": total}


def held_out(lm: Loaded, seed: int, n_per_depth: int) -> dict:
    """Examples 0 .. n_per_depth-1 of the validation split at each trained depth."""
    cfg = stream_config(lm, seed)
    rows = TextExampleMaker(TextConfig(cfg))
    by_depth = {}
    for depth in range(cfg.min_expr_depth, cfg.max_expr_depth + 1):
        maker = ExampleMaker(dataclasses.replace(cfg, min_expr_depth=depth, max_expr_depth=depth))
        texts = [draw_example(maker, "val", i).text for i in range(n_per_depth)]
        by_depth[str(depth)] = [score(lm, text, *question_row(rows, text)) for text in texts]
    table_rows = {d: summary(r) for d, r in by_depth.items()}
    table_rows["all"] = summary([r for records in by_depth.values() for r in records])
    print(f"{n_per_depth} validation expressions per depth, seed {seed}, asked as {question('<e>')!r}; "
          f"rates with 95% Wilson intervals")
    table(table_rows)
    unfit = table_rows["all"]["unfit"]
    if unfit:
        print(f"{unfit} of {table_rows['all']['n']} questions, answered, are longer than block_size={cfg.block_size}: "
              f"scored as wrong")
    return {"by_depth": {d: table_rows[d] for d in by_depth}, "all": table_rows["all"]}


def text_rows(lm: Loaded) -> TextExampleMaker:
    """The rows a model was trained on (for question_row)."""
    return TextExampleMaker(TextConfig(stream_config(lm, 0)))


def from_file(lm: Loaded, expressions: list[str], checked: list[tuple[str, dict]]) -> dict:
    records = [score(lm, e, *c) for e, c in zip(expressions, checked)]
    return expressions_table(records, f"{'answer':>22} {'true':>22} exact", lambda r: f"{r['answer']:>22} "
                             f"{r['true']:>22} {'yes' if r['answer_exact'] else 'no':>5}", summary(records))
