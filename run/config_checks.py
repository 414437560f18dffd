"""
Config checks shared by the scripts, in one place.

    validate_config(config)                  # raises ValueError: one line naming the key
                                             # and its allowed range

config is the script's dict of config keys after overrides. Every key of RANGES
that the dict holds is checked; keys the table does not know pass through, and
keys the dict lacks are skipped, so every script (train.py, train_predictor.py,
sample.py, evaluate.py) uses the same function. Then come checks across keys (n_head
divides n_embd, expression depths against dag_depth, digits against what
digit_targets represents exactly) and, for scripts that stream DAG data, checks on
drawn data (see check_data_fits). With full=False only the per-key ranges and the
device are checked: for a resumed run, whose model shape and data settings come from
the checkpoint, the script calls validate_config again once the config is final.
The training scripts' settings without a range here are in NO_RANGE.
"""
import dataclasses
import math

import torch
from torch.distributed import Backend

from errors import fail
from models.dag_heads import VALUE_HEADS

DTYPES = ("float32", "bfloat16", "float16")
# digit_targets rounds V_mag * 10**max_decimal_places (float64) to int64: exact only
# while the literal has at most 15 significant digits, float64's guaranteed decimal
# precision (int64 itself would hold 18)
MAX_SIGNIFICANT_DIGITS = 15
# the largest power generate_expression writes (x**2 or x**3) is a coefficient of O
MAX_POWER = 3
# examples drawn per expression depth by check_data_fits
DRAWS_PER_DEPTH = 64
DEVICES = ("cpu", "cuda", "mps")  # 'cuda:<n>' names one GPU
# sample.py's bound on a sample's length: every training text is one row of block_size
# tokens (64 in the configs, GPT-2's 1,024 at most) ending at <|endoftext|>, so 10,000
# tokens is ten of GPT-2's contexts; --max_new_tokens=1000000000 (a slip of zeros)
# would run for weeks on a CPU
MAX_NEW_TOKENS = 10_000
# settings of the training scripts with no range here: any value of the default's type
# (which configurator.py enforces) is valid, or the code that reads them checks them
# before training, in one line (init_from: kinds.start_model; corpus: the text stream;
# math_dir: check_data_fits)
NO_RANGE = {"wandb_log", "wandb_project", "wandb_run_name", "eval_only", "always_save_checkpoint",
            "init_from", "corpus", "math_dir", "math_prefixes", "literal_embedding", "literal_states", "step_states",
            "bias", "respace", "decay_lr", "compile", "time_parts", "log_json"}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def at_least(low: int, integer: bool = True):
    return (lambda v: (_int(v) if integer else _number(v)) and v >= low), f">= {low}"


def above(low):
    return (lambda v: _number(v) and v > low), f"> {low}"


def in_range(low, high, closed: bool = True):
    if closed:
        return (lambda v: _number(v) and low <= v <= high), f"in [{low}, {high}]"
    return (lambda v: _number(v) and low <= v < high), f"in [{low}, {high})"


def int_range(low, high):
    return (lambda v: _int(v) and low <= v <= high), f"an integer in {low}..{high}"


def one_of(*allowed):
    return (lambda v: v in allowed), "one of " + ", ".join(map(repr, allowed))


def non_empty_str():
    return (lambda v: isinstance(v, str) and v.strip() != ""), "a non-empty path"


RANGES = {
    "out_dir": non_empty_str(),
    "batch_size": at_least(1),
    "block_size": at_least(1),
    "dag_depth": at_least(1),
    "n_layer": at_least(1),
    "n_head": at_least(1),
    "n_embd": at_least(1),
    "dropout": in_range(0, 1, closed=False),
    "learning_rate": above(0),
    "min_lr": at_least(0, integer=False),
    "num_workers": at_least(0),
    "max_digits": int_range(1, MAX_SIGNIFICANT_DIGITS),
    "max_decimal_places": int_range(0, MAX_SIGNIFICANT_DIGITS - 1),  # max_digits >= 1
    "min_expr_depth": at_least(0),
    "max_expr_depth": at_least(0),
    "depth_power": at_least(0, integer=False),
    "corpus_ratio": in_range(0, 1),
    "max_coefficient": at_least(1),
    "beta1": in_range(0, 1, closed=False),
    "beta2": in_range(0, 1, closed=False),
    "weight_decay": at_least(0, integer=False),
    # grad_clip < 0 would clip to a negative norm: every step goes uphill
    "grad_clip": at_least(0, integer=False),
    "max_iters": at_least(1),
    "warmup_iters": at_least(0),
    "lr_decay_iters": at_least(0),
    "eval_iters": at_least(1),
    "log_interval": at_least(1),
    "eval_interval": at_least(1),
    # keep_checkpoints=0 would keep every checkpoint (a [:-0] slice prunes nothing)
    "keep_checkpoints": at_least(1),
    "gradient_accumulation_steps": at_least(1),
    "dtype": one_of(*DTYPES),
    "value_head": one_of(*VALUE_HEADS),
    "dataset": one_of("expressions", "mathematics"),
    "backend": one_of(*(b for b in Backend.backend_list if b != "undefined")),
    # the text stream hashes the seed as an int64; torch.manual_seed takes up to 2**64 - 1
    "seed": int_range(0, 2 ** 63 - 1),
    # sample.py and evaluate.py
    "num_samples": at_least(1),
    "max_new_tokens": int_range(1, MAX_NEW_TOKENS),
    "temperature": at_least(0, integer=False),  # 0: greedy
    "top_k": at_least(1),
    "n_per_depth": at_least(1),
}
# keys checked by their name's shape: probabilities and loss weights
PREFIX_RANGES = {"p_": in_range(0, 1)}
SUFFIX_RANGES = {"_weight": at_least(0, integer=False)}


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _rule(key: str, dag_depth_min: int):
    if key == "dag_depth":
        return at_least(dag_depth_min)
    if key in RANGES:
        return RANGES[key]
    for prefix, rule in PREFIX_RANGES.items():
        if key.startswith(prefix):
            return rule
    for suffix, rule in SUFFIX_RANGES.items():
        if key.endswith(suffix):
            return rule
    return None


def check_device(device: str) -> None:
    """ValueError if device is no device name, or names an accelerator this machine does not have."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and kind != "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:<n>' or 'mps', got {device!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} needs CUDA, but this machine has none "
                             f"(torch.cuda.is_available() is False): use device='cpu'")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} needs MPS, which this machine does not have: use device='cpu'")


def check_ranges(config: dict, dag_depth_min: int = 1) -> None:
    """ValueError naming the first key (table order, then the rest) out of its range."""
    keys = [k for k in RANGES if k in config] + [k for k in config if k not in RANGES]
    for key in keys:
        rule = _rule(key, dag_depth_min)
        if rule is None:
            continue
        ok, allowed = rule
        value = config[key]
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            raise ValueError(f"{key} must be {allowed}, got {_show(value)}")
    if "device" in config:
        check_device(config["device"])


def check_across_keys(config: dict) -> None:
    """ValueError for settings that are each in range but do not fit together."""
    get = config.get
    if "n_embd" in config and "n_head" in config and config["n_embd"] % config["n_head"]:
        raise ValueError(f"n_embd={config['n_embd']} must be a multiple of n_head={config['n_head']}")
    if "min_expr_depth" in config and "max_expr_depth" in config and config["min_expr_depth"] > config["max_expr_depth"]:
        raise ValueError(f"min_expr_depth={config['min_expr_depth']} must be <= "
                         f"max_expr_depth={config['max_expr_depth']}")
    if get("dag_depth", 0) > 0 and "max_expr_depth" in config and config["max_expr_depth"] + 1 > config["dag_depth"]:
        d = config["max_expr_depth"]
        raise ValueError(f"max_expr_depth={d} needs dag_depth >= {d + 1} (an expression of {d} operations "
                         f"has {d + 1} values), got dag_depth={config['dag_depth']}")
    if "max_digits" in config and "max_decimal_places" in config:
        total = config["max_digits"] + config["max_decimal_places"]
        if total > MAX_SIGNIFICANT_DIGITS:
            raise ValueError(f"max_digits + max_decimal_places must be <= {MAX_SIGNIFICANT_DIGITS} (the digits "
                             f"a float64 holds exactly), got {config['max_digits']} + "
                             f"{config['max_decimal_places']} = {total}")
    if get("dataset") == "mathematics" and (get("value_head", "copy") != "copy" or get("respace")):
        # literals of up to 19 digits: only a copy head writes them; questions are read as written
        raise ValueError(f"dataset='mathematics' needs value_head='copy' and respace=False, got "
                         f"value_head={get('value_head', 'copy')!r}, respace={get('respace', False)}")
    if get("math_prefixes") and get("dataset", "expressions") != "mathematics":
        raise ValueError(f"math_prefixes=True is for dataset='mathematics' (its questions' prefixes), got "
                         f"dataset={get('dataset', 'expressions')!r}")
    if get("p_power", 0) > 0 and "max_coefficient" in config and config["max_coefficient"] < MAX_POWER:
        raise ValueError(f"max_coefficient must be >= {MAX_POWER} with p_power > 0 (powers up to "
                         f"x**{MAX_POWER}), got max_coefficient={config['max_coefficient']}, "
                         f"p_power={config['p_power']}")


def check_data_fits(config: dict, draws_per_depth: int = DRAWS_PER_DEPTH, texts: bool = False) -> None:
    """ValueError if the data stream the config describes would not be the data asked for.

    Draws `draws_per_depth` expressions (deterministic, from config["seed"]) at each
    depth min_expr_depth..max_expr_depth as the stream draws them (streaming.candidate:
    with the forms people write and, with respace, respaced), and fails
    - if most (more than half) of one depth's expressions are longer than block_size
      tokens, or need more than dag_depth nodes: the stream skips such expressions
      silently, so that depth would be all but missing from training (block_size=4
      with max_expr_depth=3 trains on short expressions only);
    - with texts=True (train.py's text stream), if any drawn expression, answered in the
      longest template (the question evaluate.py asks), is longer than block_size: a
      template adds a known few tokens to every text, so a block that does not hold the
      drawn texts is too small for the data, not a cap on it;
    - if a drawn expression's target needs an operand coefficient |O| above
      max_coefficient, which the model's coefficient classes -C..C cannot say.
    A sample, not a bound: a depth whose expressions mostly fit passes even if a few
    are skipped (and the streams pass over the rare text the sample missed). Skipped
    unless the config sets dag_depth, block_size and max_coefficient. With
    dataset='mathematics', every training question of math_dir must fit block_size and
    dag_depth (data/mathematics/stream.check_fits) instead."""
    from data.dagset.streaming import ExampleMaker, StreamConfig, candidate
    from data.dagset.text_stream import exact_answer, text_lengths
    from data.mathematics.stream import check_fits

    if config.get("dataset") == "mathematics":
        check_fits(config["math_dir"], config["dag_depth"], config["block_size"])
        return

    names = [f.name for f in dataclasses.fields(StreamConfig) if f.name != "ops"]
    if not all(k in config for k in ("dag_depth", "block_size", "max_coefficient")):
        return
    cfg = StreamConfig.from_settings({k: config[k] for k in names if k in config})  # defaults for the rest
    max_coefficient, worst = 0, None
    for depth in range(cfg.min_expr_depth, cfg.max_expr_depth + 1):
        # the stream's own draws (its seeds, forms and respacing), at one depth
        maker = ExampleMaker(dataclasses.replace(cfg, min_expr_depth=depth, max_expr_depth=depth))
        too_long, too_deep, longest = 0, 0, 0
        for i in range(draws_per_depth):
            text, _ = candidate(maker, i, 0)
            tokens = maker.tokens(text)
            try:
                example = maker.targets(text, tokens) if len(tokens) <= cfg.block_size else None
            except ValueError:
                too_deep += 1
                continue
            length = len(tokens)
            if texts and example is not None:
                length = max(text_lengths(maker, text, exact_answer(text, cfg.dag_depth)))
            if length > cfg.block_size:
                too_long, longest = too_long + 1, max(longest, length)
                continue
            coefficients = abs(example["O"][example["mask"]])
            if coefficients.size and coefficients.max() > max_coefficient:
                max_coefficient, worst = int(coefficients.max()), text
        if texts and too_long:
            raise ValueError(f"block_size={cfg.block_size} is too small for the texts of depth {depth}: {too_long} "
                             f"of {draws_per_depth} drawn expressions, answered in the longest template, are "
                             f"longer (up to {longest} tokens); raise block_size to {longest} or more, or lower "
                             f"max_expr_depth/max_digits")
        if too_long * 2 > draws_per_depth:
            raise ValueError(f"block_size={cfg.block_size} is too small for expressions of depth {depth}: "
                             f"{too_long} of {draws_per_depth} drawn are longer (up to {longest} tokens) and "
                             f"would be skipped; raise block_size or lower max_expr_depth/max_digits")
        if too_deep * 2 > draws_per_depth:
            raise ValueError(f"dag_depth={cfg.dag_depth} is too small for expressions of depth {depth}: "
                             f"{too_deep} of {draws_per_depth} drawn need more nodes and would be skipped; "
                             f"raise dag_depth or lower max_expr_depth/p_power")
    if max_coefficient > config["max_coefficient"]:
        raise ValueError(f"max_coefficient={config['max_coefficient']} is below the coefficient "
                         f"{max_coefficient} that the data needs (e.g. {worst!r})")


def validate_config(config: dict, full: bool = True, dag_depth_min: int = 1, data: bool = True,
                    texts: bool = False) -> None:
    """Raise ValueError (one line: the key, its allowed range and the value) for the
    first setting of config that is out of range or does not fit the others.

    full=False checks the per-key ranges and the device only; data=False skips the
    drawn-data checks (check_data_fits); texts=True checks the drawn data as train.py's
    texts; dag_depth_min=0 allows a plain GPT."""
    check_ranges(config, dag_depth_min)
    if full:
        check_across_keys(config)
        if data and config.get("dag_depth", 0) > 0:
            check_data_fits(config, texts=texts)


def require_valid_config(config: dict, after: str = "", **checks) -> None:
    """validate_config(config, **checks) for a script: a setting that fails it stops the
    run with its line (and `after`, saying where the settings came from), exit status 1."""
    try:
        validate_config(config, **checks)
    except ValueError as e:
        fail(f"{e}{after}")
