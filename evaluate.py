"""
Evaluate a DAG predictor checkpoint of train_predictor.py, or a train.py language model
(exact answers written in text, for both the DAG model and the plain baseline:
run/answer_eval.py; the same flags).

Final-token accuracy by expression depth, on a fixed, seeded held-out set of
validation-split expressions drawn as in training:
$ python evaluate.py --out_dir=out-predictor --n_per_depth=200 --json_out=eval.json
The prediction after the last token of each expression in a file (one per line;
blank lines and lines starting with '#' are skipped):
$ python evaluate.py --expressions_file=expressions.txt
One expression's predicted DAG, step by step, next to its target DAG:
$ python evaluate.py --expr="2.5*3+1"
Texts are read as the run read them: respaced (`2.5*3+1` as `2.5 * 3 + 1`) if it trained
with respace=True; --read_as=respaced or --read_as=written chooses.
Exact answers to the Mathematics Dataset's questions, files of question<TAB>answer
lines (a path, or a quoted glob for a row per file), for either kind (run/qa_eval.py):
$ python evaluate.py --qa_file='data/mathematics/interpolate/*.txt' --json_out=interpolate.json
The newest checkpoint in out_dir is used unless --ckpt_path names one. Bad input
stops the run with one line on stderr and exit status 1, before anything is evaluated.
"""
import dataclasses
import json
import os
import sys
import tempfile

import numpy as np
import torch

from configurator import apply_config
from data.dagset.batch import collate
from data.dagset.conversion import tensor_to_expression
from data.dagset.dag_plan import build_plan, plan_arrays
from data.dagset.fast_parse import parse_text
from data.dagset.streaming import FORM_KEYS, ExampleMaker, StreamConfig, make_batch
from data.mathematics.qa_file import qa_paths
from errors import fail
from models.dag_heads import Literals
from models.dag_model import final_token_metrics, relative_error
from run.answer_eval import expressions_table, from_file, held_out, question_row, table, text_rows, wilson_interval
from run.config_checks import require_valid_config
from run.kinds import load_model
from run.qa_eval import evaluate_qa, read_items

# -----------------------------------------------------------------------------
out_dir = "out-predictor"
ckpt_path = ""  # a checkpoint file; empty: the newest ckpt_*.pt in out_dir
device = "cpu"  # 'cpu', 'cuda', 'cuda:0', 'mps'
seed = 2024  # seed of the held-out set
n_per_depth = 200  # held-out examples per expression depth
batch_size = 64
json_out = ""  # also write the results to this JSON file
expressions_file = ""  # evaluate these expressions instead of the held-out set
expr = ""  # show the predicted DAG of this one expression
qa_file = ""  # score the exact answers of question<TAB>answer lines: a file, or a glob for a row per file
read_as = ""  # texts read as the checkpoint's run read them (""), or "respaced" or "written" whatever it did
# -----------------------------------------------------------------------------
given_keys = apply_config(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------


for key, what in (("expr", "an expression"), ("expressions_file", "a file of expressions"),
                  ("qa_file", "a file or glob of question<TAB>answer lines")):
    if key in given_keys and not globals()[key].strip():  # given, but empty: not the held-out set asked for silently
        fail(f"--{key} is empty: give {what}")
if sum(map(bool, (expr, expressions_file, qa_file))) > 1:
    fail("give one of --expr, --expressions_file and --qa_file")
if expr and json_out:
    fail("--json_out is for the held-out set, --expressions_file and --qa_file, not --expr")
if read_as not in ("", "respaced", "written"):
    fail(f"read_as must be 'respaced' or 'written' (or empty: as the run read), got {read_as!r}")
if qa_file and read_as:
    fail("--read_as is for expressions: --qa_file questions are read as written")
require_valid_config({k: globals()[k] for k in ("n_per_depth", "batch_size", "seed", "device")}, full=False)
json_dir = os.path.dirname(os.path.abspath(json_out))  # checked now, not after the evaluation
if json_out and os.path.isdir(json_out):
    fail(f"json_out={json_out!r} is a directory: give a file name")
if json_out and not (os.path.isdir(json_dir) and os.access(json_dir, os.W_OK)):
    fail(f"cannot write json_out={json_out!r}: {json_dir!r} is not a writable directory")
if qa_file:
    try:
        qa_paths(qa_file)  # a missing file or an empty glob, before the model is loaded
    except ValueError as e:
        fail(f"--qa_file: {e}")

try:
    loaded = load_model(out_dir, ckpt_path, device)
except (FileNotFoundError, ValueError) as e:
    fail(str(e))
model, ckpt_path = loaded.model, loaded.path


def read_expressions(path: str) -> list[tuple[int, str]]:
    """(line number, expression) of each line of a file but blank and '#' lines."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read expressions_file: {e}")
    items = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")]
    if not items:
        fail(f"no expressions in {path!r}")
    return items


def write_json(result: dict) -> None:
    """json_out written whole or not at all: a temp file beside it, then renamed."""
    fd, tmp = tempfile.mkstemp(prefix=".json_out_", dir=json_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"checkpoint": ckpt_path, "iter_num": loaded.iter_num} | result, f, indent=2)
        os.replace(tmp, json_out)
    except OSError as e:
        fail(f"cannot write json_out={json_out!r}: {e.strerror or e}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def evaluate_lm() -> dict:
    """A train.py language model: exact answers written in text (run/answer_eval.py)."""
    try:
        rows = text_rows(loaded)
    except ValueError as e:
        fail(f"the config in {ckpt_path!r} does not make a data stream: {e}")
    print(f"checkpoint {ckpt_path} (iter {loaded.iter_num}): a train.py language model, {loaded.description}")
    if not (expr or expressions_file):
        return held_out(loaded, seed, n_per_depth)
    items = [(0, expr)] if expr else read_expressions(expressions_file)
    checked = []
    for line_number, text in items:  # all checked before any is run
        try:
            true, row = question_row(rows, text)
            if row is None:
                raise ValueError(f"{text!r} asked as a question and answered is longer than "
                                 f"block_size={model.config.block_size}")
            checked.append((true, row))
        except ValueError as e:
            fail(f"{expressions_file}:{line_number}: {e}" if expressions_file else str(e))
    return from_file(loaded, [text for _, text in items], checked)


def predictor_maker() -> ExampleMaker:
    """The held-out set is drawn like the training data, but in the generator's tidy
    forms for every checkpoint (the forms people write, which some runs train on, are
    the human-written file's), read as the run read (respaced or not). The model's shape
    wins over the recorded config: train_predictor.py records the config before a
    resumed run takes its shape (dag_depth, block_size, max_digits, ...) from the
    checkpoint it resumes."""
    settings = loaded.config | loaded.model_args
    tidy = dict.fromkeys(FORM_KEYS, 0.0)
    try:
        respaced = read_as == "respaced" if read_as else settings.get("respace", False)
        return ExampleMaker(StreamConfig.from_settings(settings | tidy | {"seed": seed, "respace": respaced}))
    except ValueError as e:
        fail(f"the config in {ckpt_path!r} does not make a data stream: {e}")


# per-example yes/no metrics, reported with a 95% interval; the others are per-element fractions
RATES = ("exact", "close", "structure", "values")


def summary(metrics: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """n, the mean of each metric over a list of final_token_metrics results, and the
    95% Wilson interval (<name>_low, <name>_high) of each yes/no rate."""
    joined = {k: torch.cat([m[k] for m in metrics]) for k in metrics[0]}
    n = len(joined["exact"])
    row = {"n": n} | {k: v.mean().item() for k, v in joined.items()}
    for k in RATES:
        row[f"{k}_low"], row[f"{k}_high"] = wilson_interval(joined[k].sum().item(), n)
    return row


@torch.no_grad()
def held_out_metrics(depth: int) -> list[dict[str, torch.Tensor]]:
    """final_token_metrics of examples 0 .. n_per_depth-1 of the validation split at one depth."""
    depth_maker = ExampleMaker(dataclasses.replace(stream_cfg, min_expr_depth=depth, max_expr_depth=depth))
    parts = []
    for b in range(-(-n_per_depth // batch_size)):
        # the last batch is cut at n_per_depth, so batch_size does not change the set
        batch = make_batch(depth_maker, "val", b, batch_size).trim().map(lambda t: t[:n_per_depth - b * batch_size])
        batch = batch.to(device)
        pred = model(batch.idx, Literals.from_batch(batch), at=batch.mask)
        parts.append(final_token_metrics(pred, batch, model.execute(*pred.hard())))
    return parts


def evaluate_held_out() -> dict:
    parts = {str(d): held_out_metrics(d) for d in range(stream_cfg.min_expr_depth, stream_cfg.max_expr_depth + 1)}
    rows = {d: summary(p) for d, p in parts.items()} | {"all": summary([m for p in parts.values() for m in p])}
    print(f"{n_per_depth} validation examples per expression depth, seed {seed}; rates with 95% Wilson intervals")
    table(rows, 19)
    return {"by_depth": {d: rows[d] for d in parts}, "all": rows["all"]}


def checked(text: str) -> tuple[list[int], dict[str, np.ndarray]]:
    """Tokens and per-token training targets of an expression that the model can read
    and whose DAG it can write, read as the model reads it (respaced, if it was trained
    so); ValueError saying why for any other text."""
    cfg = model.config
    text = maker.reading(text)
    # The training stream's parser and DAG plan, so the targets are those the model
    # learned. conversion.py's SymPy parser is no fit here: it runs its input as Python,
    # and it folds numeric groups under a unary minus, as "-(0.1 + 0.2)" -> one Float.
    plan = build_plan(parse_text(text))
    # a copy head copies any literal; a digit head writes only max_digits.max_decimal_places
    for mag, _ in plan.values if cfg.value_head == "digits" else ():
        if mag >= 10 ** cfg.max_digits:
            raise ValueError(f"{text!r} has a literal with more than max_digits={cfg.max_digits} integer digits")
        if (mag * 10 ** cfg.max_decimal_places).denominator != 1:
            raise ValueError(f"{text!r} has a literal with more than "
                             f"max_decimal_places={cfg.max_decimal_places} decimals")
    # raises for more nodes than dag_depth, a division by zero or a value beyond 1e100
    if abs(plan_arrays(plan, cfg.dag_depth, where=repr(text)).O).max() > cfg.max_coefficient:
        raise ValueError(f"{text!r} needs a power beyond max_coefficient={cfg.max_coefficient}")
    tokens = maker.tokens(text)
    if len(tokens) > cfg.block_size:
        raise ValueError(f"{text!r} is {len(tokens)} tokens, more than block_size={cfg.block_size}")
    return tokens, maker.targets(text, tokens)


def last_target(example: dict[str, np.ndarray], n_tokens: int) -> tuple[tuple[torch.Tensor, ...], float]:
    """Target DAG tensors (leading dims 1, 1) and exact value after the last token."""
    dag = tuple(torch.from_numpy(example[k][n_tokens - 1])[None, None] for k in ("V_mag", "V_sign", "O", "G"))
    return dag, float(example["value"][n_tokens - 1])


@torch.no_grad()
def predict(example: dict[str, np.ndarray], n_tokens: int) -> tuple[tuple[torch.Tensor, ...], float, dict]:
    """(hard DAG after the last token, its executed value, final_token_metrics)."""
    batch = collate([example]).map(lambda t: t[:, :n_tokens]).to(device)
    pred = model(batch.idx, Literals.from_batch(batch))
    hard = pred.hard()
    executed = model.execute(*hard)
    return tuple(t[:, -1:] for t in hard), executed[0, -1].item(), final_token_metrics(pred, batch, executed)


def evaluate_file(path: str) -> dict:
    # every line is checked before any is run, so a bad line stops the run before its table
    items = []
    for line_number, text in read_expressions(path):
        try:
            items.append((text, *checked(text)))
        except ValueError as e:
            fail(f"{path}:{line_number}: {e}")
    records, parts = [], []
    for text, tokens, example in items:
        _, predicted, metrics = predict(example, len(tokens))
        parts.append(metrics)
        records.append({"expression": text, "predicted": predicted, "true": last_target(example, len(tokens))[1]}
                       | {k: v.item() for k, v in metrics.items()})
    return expressions_table(records, f"{'predicted':>16} {'true':>16} exact close",
                             lambda r: f"{r['predicted']:>16.12g} {r['true']:>16.12g} "
                                       f"{'yes' if r['exact'] else 'no':>5} {'yes' if r['close'] else 'no':>5}",
                             summary(parts), 19)


def step_text(terms: list[tuple[str, int]], linear: bool) -> str:
    """'n1 + 2*n3 - n4' (linear) or 'n1 * n3**2 / n4' (log domain) of (node, coefficient) terms."""
    plus, minus, empty = (" + ", " - ", "0") if linear else (" * ", " / ", "1")
    text = ""
    for name, c in terms:
        term = name if abs(c) == 1 else f"{abs(c)}*{name}" if linear else f"{name}**{abs(c)}"
        if text:
            text += (minus if c < 0 else plus) + term
        else:
            text = ("-" if linear else "1 / ") + term if c < 0 else term
    return text or empty


def dag_lines(V_mag: torch.Tensor, V_sign: torch.Tensor, O: torch.Tensor, G: torch.Tensor) -> list[str]:
    """One DAG (leading dims of size 1) as lines: input nodes n0 .. n{D-1} with their
    values, then step k writing node n{D+k}; the last node is the result."""
    D = G.shape[-1]
    values = (V_sign * V_mag).reshape(2 * D)[:D].tolist()
    O, G = O.reshape(D, 2 * D).tolist(), G.reshape(D).tolist()
    lines = [f"n{i} = {v:.12g}" for i, v in enumerate(values)]
    for k in range(D):
        terms = [(f"n{j}", int(O[k][j])) for j in range(D + k) if int(O[k][j]) != 0]
        terms.sort(key=lambda term: term[1] < 0)  # "n3 - n0", not "-n0 + n3"
        text = f"n{D + k} = {step_text(terms, G[k] > 0.5)}"
        lines.append(f"{text:<24} {'linear' if G[k] > 0.5 else 'log'}")
    return lines


def show_expression(text: str) -> None:
    try:
        tokens, example = checked(text)
    except ValueError as e:
        fail(str(e))
    dag, predicted, metrics = predict(example, len(tokens))
    target, value = last_target(example, len(tokens))
    read = maker.reading(text)
    print(f"expression: {text} ({len(tokens)} tokens{f', read as {read!r}' if read != text else ''})")
    for name, tensors in (("predicted", dag), ("target", target)):
        print(f"{name} DAG after the last token:")
        for line in dag_lines(*tensors):
            print(f"  {line}")
        print(f"  = {tensor_to_expression(*tensors)}")
    error = relative_error(torch.tensor(predicted), torch.tensor(value)).item()
    print(f"predicted value: {predicted:.12g}")
    print(f"true value:      {value:.12g}")
    print(f"relative error:  {error:.3g} (exact: {'yes' if metrics['exact'].item() else 'no'}, "
          f"close: {'yes' if metrics['close'].item() else 'no'})")


def evaluate_qa_file() -> dict:
    """Exact answers to every question of the qa files (run/qa_eval.py), each line checked first."""
    try:
        items = read_items(qa_file, model.config.dag_depth)
    except ValueError as e:
        fail(str(e))
    about = f": a train.py language model, {loaded.description}" if loaded.kind.name == "lm" else ""
    print(f"checkpoint {ckpt_path} (iter {loaded.iter_num}){about}")
    return evaluate_qa(loaded, items, batch_size)


if qa_file:
    result = evaluate_qa_file()
elif loaded.kind.name == "lm":
    result = evaluate_lm()
else:
    maker = predictor_maker()
    stream_cfg = maker.cfg
    print(f"checkpoint {ckpt_path} (iter {loaded.iter_num})")
    result = show_expression(expr) if expr else evaluate_file(expressions_file) if expressions_file else \
        evaluate_held_out()
if json_out:
    write_json(result)
