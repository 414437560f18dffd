"""The kinds of model this project trains, and the one way to build each: from a
checkpoint (evaluate.py, sample.py, a resume) and at the start of a training run
(from scratch, a checkpoint of its kind, GPT-2, or a warm start from a predictor).
Every failure is one line: ValueError from load_model, exit 1 from start_model."""
from dataclasses import dataclass

import torch

from data.dagset.streaming import EXPRESSION_KEYS
from errors import fail, one_line
from models.dag_model import BACKBONE_KEYS, GPT, HEAD_KEYS, GPTConfig
from models.predictor_only_model import PredictorOnlyModel
from run.checkpoint import check_resumable, latest_checkpoint, load_checkpoint, resolve_checkpoint
from run.common import ModelStart

# the settings that decide a model's shape (vocab_size is GPT-2's, padded)
MODEL_KEYS = tuple(k for k in BACKBONE_KEYS + HEAD_KEYS if k != "vocab_size")
# what evaluate.py and sample.py read from a checkpoint
LOAD_KEYS = ("model", "model_args", "iter_num", "config")


@dataclass(frozen=True)
class Kind:
    name: str  # a checkpoint's "kind"
    model_cls: type  # built from GPTConfig(**model_args)
    title: str  # in words, for messages
    checkpoint: str  # a whole checkpoint of it, in words
    data_keys: tuple  # the data settings a resume keeps from its checkpoint


KINDS = {
    "predictor": Kind("predictor", PredictorOnlyModel, "train_predictor.py DAG predictor",
                      "train_predictor.py checkpoint",
                      ("batch_size", "gradient_accumulation_steps", "dataset", "math_dir", "math_prefixes",
                       *EXPRESSION_KEYS, "respace", "seed")),
    "lm": Kind("lm", GPT, "train.py language model", "whole train.py checkpoint",
               ("batch_size", "gradient_accumulation_steps", *EXPRESSION_KEYS, "seed", "corpus", "corpus_ratio")),
}


def kind_of(checkpoint: dict) -> str:
    """The kind of model a checkpoint holds; checkpoints from before 'kind' are all predictors."""
    return checkpoint.get("kind", "predictor")


def check_kind(checkpoint: dict, path: str, kinds: tuple[str, ...]) -> Kind:
    """The checkpoint's Kind, ValueError unless it is one of kinds."""
    found = kind_of(checkpoint)
    if found not in kinds:
        raise ValueError(f"{path!r} holds a {found!r} model, not a {' or a '.join(KINDS[k].title for k in kinds)}")
    return KINDS[found]


@dataclass
class Loaded:
    """A model built from a checkpoint, in eval mode on its device."""

    model: torch.nn.Module
    kind: Kind
    path: str
    iter_num: int
    model_args: dict
    config: dict  # the run's config

    @property
    def description(self) -> str:
        """A language model, in words."""
        d = self.model.config.dag_depth
        return f"GPT with DAG heads (dag_depth={d}) and result copy" if d else "plain GPT (dag_depth=0, the baseline)"


def build(kind: Kind, checkpoint: dict, path: str) -> torch.nn.Module:
    """The checkpoint's model, its weights loaded; ValueError if they do not fit."""
    try:
        model = kind.model_cls(GPTConfig(**checkpoint["model_args"]))
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path!r} does not fit the model its model_args describe: {one_line(e)}") from None
    return model


def load_model(out_dir: str, ckpt_path: str = "", device: str = "cpu", kinds: tuple[str, ...] = tuple(KINDS)) -> Loaded:
    """A checkpoint's model (the newest in out_dir unless ckpt_path names one); ValueError
    or FileNotFoundError (one line) for a missing file, a kind not in kinds, or a
    checkpoint without the keys its kind's script saves."""
    path = ckpt_path or latest_checkpoint(out_dir)
    checkpoint = load_checkpoint(path, map_location=device)
    kind = check_kind(checkpoint, path, kinds)
    missing = [k for k in LOAD_KEYS if k not in checkpoint]
    if missing or not isinstance(checkpoint["config"], dict):
        raise ValueError(f"{path!r} is not a {kind.checkpoint}: it has no {', '.join(missing) or 'config dict'}")
    model = build(kind, checkpoint, path)
    return Loaded(model.to(device).eval(), kind, path, checkpoint["iter_num"], checkpoint["model_args"],
                  checkpoint["config"])


def start_model(kind: Kind, config: dict, overridden: list[str], device: str) -> ModelStart:
    """The model a run starts from, by config["init_from"]: 'scratch'; 'resume' /
    'latest' / a .pt path (a checkpoint of this kind: its shape, and its data settings
    unless the run sets them again; for a language model also a predictor's: a warm
    start); or a GPT-2 name or directory (its backbone, the config's head settings).
    config takes the settings that the start decides (shape, and a resume's data
    settings), in place. Every failure is one line and exit 1."""
    init_from = config["init_from"]
    if init_from == "scratch":
        model_args = {k: config[k] for k in MODEL_KEYS} | {"vocab_size": 50304}
        start = ModelStart(kind.model_cls(GPTConfig(**model_args)), model_args)
    elif init_from in ("resume", "latest") or init_from.endswith(".pt"):
        try:
            path = resolve_checkpoint(init_from, config["out_dir"])
            checkpoint = load_checkpoint(path, map_location=device)
            # a language model also starts from a predictor's file (a warm start), never its out_dir
            warm = kind.name == "lm" and init_from.endswith(".pt")
            found = check_kind(checkpoint, path, (kind.name, "predictor") if warm else (kind.name,))
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
        start = resume(kind, checkpoint, path, config, overridden) if found == kind else warm_start(
            checkpoint, path, config, overridden)
    else:
        start = from_gpt2(kind, init_from, config)
    # a checkpoint or GPT-2 decides the model's shape: the data and the saved config follow it
    for k in MODEL_KEYS:
        config[k] = getattr(start.model.config, k)
    return start


# data settings added after checkpoints were saved without them, with the value every
# such checkpoint was trained with: those checkpoints resume as they were
ADDED_DATA_KEYS = {"dataset": "expressions", "math_dir": "data/mathematics", "math_prefixes": False}


def resume(kind: Kind, checkpoint: dict, path: str, config: dict, overridden: list[str]) -> ModelStart:
    print(f"resuming from {path}")
    if isinstance(checkpoint.get("config"), dict):
        checkpoint["config"] = {k: v for k, v in ADDED_DATA_KEYS.items() if k in kind.data_keys} | checkpoint["config"]
    try:  # keys a resume reads; a shape set again must be the checkpoint's
        model_args = check_resumable(checkpoint, path, config, overridden, MODEL_KEYS, kind.data_keys)
    except ValueError as e:
        fail(str(e))
    # the data settings follow the checkpoint too, so the run goes on with the
    # stream it had, unless the command line or config file sets them again
    for k in kind.data_keys:
        if k in overridden and config[k] != checkpoint["config"].get(k):
            print(f"note: {k}={config[k]!r} replaces the checkpoint's {checkpoint['config'].get(k)!r}")
        elif k not in overridden:
            config[k] = checkpoint["config"].get(k, config[k])
    try:
        model = build(kind, checkpoint | {"model_args": model_args}, path)
    except ValueError as e:
        fail(str(e))
    return ModelStart(model, model_args, iter_num=checkpoint["iter_num"], best_val_loss=checkpoint["best_val_loss"],
                      checkpoint=checkpoint, ckpt_path=path)


def warm_start(checkpoint: dict, path: str, config: dict, overridden: list[str]) -> ModelStart:
    """A predictor's backbone and DAG heads in a fresh language model (position
    embeddings past its block fresh too; the result channel starts fresh)."""
    try:  # the keys a warm start reads; a shape set again must be the predictor's, but for block_size
        model_args = check_resumable(checkpoint, path, config, overridden, MODEL_KEYS, (), ("dropout", "block_size"),
                                     needs=("model", "model_args", "iter_num"), use="start a language model")
    except ValueError as e:
        fail(str(e))
    try:
        model_args |= {"block_size": config["block_size"]}
        model = GPT(GPTConfig(**model_args))
        state = checkpoint["model"]
        wpe = model.transformer.wpe.weight.detach().clone()
        n = min(len(wpe), len(state["transformer.wpe.weight"]))
        wpe[:n] = state["transformer.wpe.weight"][:n]
        missing, unexpected = model.load_state_dict(state | {"transformer.wpe.weight": wpe}, strict=False)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        fail(f"{path!r} does not fit a language model of its shape: {one_line(e)}")
    if unexpected or any(not k.startswith("result_copy.") for k in missing):
        fail(f"{path!r} does not fit a language model of its shape: missing {missing}, unexpected {unexpected}")
    print(f"warm start from the predictor {path} (iter {checkpoint['iter_num']})")
    return ModelStart(model, model_args)


def from_gpt2(kind: Kind, init_from: str, config: dict) -> ModelStart:
    """GPT-2's backbone (a name or a directory) under fresh heads, cropped to block_size."""
    try:
        model = kind.model_cls.from_pretrained(init_from, {k: config[k] for k in HEAD_KEYS})
    except (ValueError, OSError) as e:
        fail(f"init_from={init_from!r}: {e}")
    block_size = config["block_size"]
    if block_size > model.config.block_size:
        fail(f"block_size={block_size} exceeds the {model.config.block_size} positions of {init_from!r}")
    if block_size < model.config.block_size:
        model.transformer.crop_block_size(block_size)
    return ModelStart(model, {k: getattr(model.config, k) for k in MODEL_KEYS} | {"vocab_size": model.config.vocab_size})
