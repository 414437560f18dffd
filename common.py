"""Run plumbing shared by the training scripts, so each script's training loop is all
that is its own: one-line errors, DDP and autocast setup, starting a model (from
scratch, a checkpoint or GPT-2), checkpoints with their RNG states, the non-finite-loss
stop, wandb, and timing the parts of a step."""
import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterator, NoReturn

import torch
from torch.distributed import init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from checkpoint import (OutDirError, check_resumable, checkpoint_iters, failed_save_message, latest_checkpoint, load_checkpoint,
                        one_line, prepare_out_dir, prune_checkpoints, resolve_checkpoint, save_checkpoint)
from predictor_utils import first_non_finite, get_lr


# the training scripts' AdamW and schedule defaults (nanoGPT's, with beta2 0.99 for small
# models): weight_decay, beta1, beta2, grad_clip (0: none), decay_lr (cosine from
# learning_rate to min_lr after warmup_iters linear steps)
OPTIMIZER_DEFAULTS = {"weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0, "decay_lr": True,
                      "warmup_iters": 50, "min_lr": 1e-4}


def fail(message: str) -> NoReturn:
    """Stop the run: one line on stderr (also for library messages that span several), exit 1."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(1)


@dataclass
class Process:
    """This process's place in the run: DDP rank and world size, and its device."""

    ddp: bool
    rank: int
    local_rank: int
    world_size: int
    device: str

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return "cuda" if "cuda" in self.device else "cpu"


def setup_process(device: str, backend: str) -> Process:
    """A DDP process when torchrun started this one (RANK is set), else a single one."""
    if int(os.environ.get("RANK", -1)) == -1:
        return Process(False, 0, 0, 1, device)
    init_process_group(backend=backend)
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    return Process(True, int(os.environ["RANK"]), local_rank, int(os.environ["WORLD_SIZE"]), device)


def claim_out_dir(out_dir: str, lock: bool) -> None:
    """out_dir created and writable, and (lock=True) this run's alone until the process exits."""
    try:
        prepare_out_dir(out_dir, lock=lock)
    except OutDirError as e:
        fail(str(e))


def autocast_context(device_type: str, dtype: str):
    """bf16 / fp16 autocast on CUDA; on the CPU everything runs in float32."""
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if ptdtype is None:
        fail(f"dtype must be 'float32', 'bfloat16' or 'float16', got {dtype!r}")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return nullcontext() if device_type == "cpu" else torch.autocast(device_type=device_type, dtype=ptdtype)


@dataclass
class ModelStart:
    """Where a run starts: its model, the args that rebuild it, the iteration and best
    validation loss it starts from, and the checkpoint it resumes (None otherwise)."""

    model: torch.nn.Module
    model_args: dict
    iter_num: int
    best_val_loss: float
    checkpoint: dict | None
    ckpt_path: str | None


def start_model(kind: str, model_cls, config_cls, config: dict, overridden, model_keys: tuple, data_keys: tuple,
                head_keys: tuple, device: str) -> ModelStart:
    """The model a run starts from, by config["init_from"]: 'scratch'; 'resume' /
    'latest' / a .pt path (a checkpoint of this kind: its shape, and its data settings
    unless the run sets them again); or a GPT-2 name or directory (its backbone, the
    config's head_keys). config takes the settings that the start decides (shape, and a
    resume's data settings), in place. Every failure is one line and exit 1."""
    init_from, out_dir = config["init_from"], config["out_dir"]
    if init_from == "scratch":
        model_args = {k: config[k] for k in model_keys} | {"vocab_size": 50304}
        return ModelStart(model_cls(config_cls(**model_args)), model_args, 0, 1e9, None, None)
    if init_from in ("resume", "latest") or init_from.endswith(".pt"):
        try:
            ckpt_path = resolve_checkpoint(init_from, out_dir)
            checkpoint = load_checkpoint(ckpt_path, map_location=device)
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
        if checkpoint.get("kind", "predictor") != kind:  # checkpoints before 'kind' are all predictors
            fail(f"{ckpt_path!r} holds a {checkpoint.get('kind', 'predictor')!r} model, not a {kind!r} one: "
                 f"resume it with its own training script")
        print(f"resuming from {ckpt_path}")
        try:  # keys a resume reads; a shape set again must be the checkpoint's
            model_args = check_resumable(checkpoint, ckpt_path, config, overridden, model_keys, data_keys)
        except ValueError as e:
            fail(str(e))
        # the data settings follow the checkpoint too, so the run goes on with the
        # stream it had, unless the command line or config file sets them again
        for k in data_keys:
            if k in overridden and config[k] != checkpoint["config"].get(k):
                print(f"note: {k}={config[k]!r} replaces the checkpoint's {checkpoint['config'].get(k)!r}")
            elif k not in overridden:
                config[k] = checkpoint["config"].get(k, config[k])
        try:
            model = model_cls(config_cls(**model_args))
            model.load_state_dict(checkpoint["model"])
        except (TypeError, ValueError, RuntimeError) as e:
            fail(f"{ckpt_path!r} does not fit the model its model_args describe: {one_line(e)}")
        start = ModelStart(model, model_args, checkpoint["iter_num"], checkpoint["best_val_loss"], checkpoint,
                           ckpt_path)
    else:
        try:
            model = model_cls.from_pretrained(init_from, {k: config[k] for k in head_keys})
        except (ValueError, OSError) as e:
            fail(f"init_from={init_from!r}: {e}")
        block_size = config["block_size"]
        if block_size > model.config.block_size:
            fail(f"block_size={block_size} exceeds the {model.config.block_size} positions of {init_from!r}")
        if block_size < model.config.block_size:
            model.transformer.crop_block_size(block_size)
        model_args = {k: getattr(model.config, k) for k in model_keys} | {"vocab_size": model.config.vocab_size}
        start = ModelStart(model, model_args, 0, 1e9, None, None)
    # a checkpoint or GPT-2 decides the model's shape: the data and the saved config follow it
    for k in model_keys:
        config[k] = getattr(start.model.config, k)
    return start


@dataclass
class Training:
    """What a training loop steps and saves: the model as called (compiled, DDP-wrapped),
    the plain module (saved, evaluated on the master without DDP collectives), its
    optimizer and grad scaler, the iteration a resume starts at (None from scratch),
    and what its checkpoints record (kind, model_args, config, best validation loss)."""

    model: torch.nn.Module
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    resumed_at: int | None
    kind: str
    model_args: dict
    config: dict
    device: str
    best_val_loss: float


def setup_training(kind: str, start: ModelStart, config: dict, proc: Process) -> Training:
    """The started model on its device with its optimizer (a resume's state loaded),
    compiled and DDP-wrapped as config says. A scratch run into an out_dir that holds
    checkpoints past its start is refused: `resume` would pick them up, and
    keep_checkpoints would prune this run's own saves in their favour."""
    model, iter_num, out_dir = start.model, start.iter_num, config["out_dir"]
    model.to(proc.device)
    newer = [i for i in checkpoint_iters(out_dir) if i > iter_num]
    if newer and not config["eval_only"]:
        fail(f"out_dir {out_dir!r} already holds a checkpoint of iter {newer[-1]}, past iter {iter_num} "
             f"where this run starts: use another out_dir")
    scaler = torch.amp.GradScaler(proc.device_type, enabled=(config["dtype"] == "float16" and
                                                             proc.device_type == "cuda"))
    optimizer = model.configure_optimizers(config["weight_decay"], config["learning_rate"],
                                           (config["beta1"], config["beta2"]), proc.device_type)
    resume_optimizer(optimizer, start)
    raw_model = model
    if config["compile"]:
        model = torch.compile(model)
    if proc.ddp:
        model = DDP(model, device_ids=[proc.local_rank] if proc.device_type == "cuda" else None)
    return Training(model, raw_model, optimizer, scaler, iter_num if start.checkpoint is not None else None, kind,
                    start.model_args, config, proc.device, start.best_val_loss)


def save_if_due(training: Training, val: dict[str, float], iter_num: int, final: bool, log) -> None:
    """After an evaluation: stop on a non-finite validation loss (rates, acc_*, are not
    losses), log to wandb (log: the wandb module or None), and checkpoint (never the
    untrained model) if the loss improved, always_save_checkpoint is set, or it is the end."""
    stop_if_non_finite("val", {k: v for k, v in val.items() if not k.startswith("acc_")}, iter_num,
                       training.config["out_dir"])
    if log:
        log.log({"iter": iter_num, **{f"val/{k}": v for k, v in val.items()}})
    improved = val["total"] < training.best_val_loss
    training.best_val_loss = min(training.best_val_loss, val["total"])
    if iter_num > 0 and (improved or training.config["always_save_checkpoint"] or final):
        save_run(training.kind, training.raw_model, training.optimizer, training.model_args, iter_num,
                 training.best_val_loss, training.config, training.device, training.config["keep_checkpoints"])


def set_lr(training: Training, iter_num: int) -> float:
    """Set the config's learning rate of iteration iter_num (nanoGPT's schedule if decay_lr) and return it."""
    c = training.config
    lr = get_lr(iter_num, c["learning_rate"], c["warmup_iters"], c["lr_decay_iters"], c["min_lr"]) \
        if c["decay_lr"] else c["learning_rate"]
    for group in training.optimizer.param_groups:
        group["lr"] = lr
    return lr


def optimizer_step(training: Training) -> None:
    """Clip the summed gradients (config grad_clip; 0: no clipping), step, and clear them."""
    grad_clip = training.config["grad_clip"]
    if grad_clip != 0.0:
        training.scaler.unscale_(training.optimizer)
        torch.nn.utils.clip_grad_norm_(training.model.parameters(), grad_clip)
    training.scaler.step(training.optimizer)
    training.scaler.update()
    training.optimizer.zero_grad(set_to_none=True)


def train_batches(stream_cls, stream_cfg, config: dict, iter_num: int, proc: Process) -> Iterator[dict]:
    """The training split's batches from iteration iter_num on: micro-batch j of this
    rank is batch j * world_size + rank (stream_cls: DAGStream or one of its kind),
    made by config["num_workers"] DataLoader workers."""
    start = iter_num * config["gradient_accumulation_steps"]
    stream = stream_cls(stream_cfg, "train", config["batch_size"], start=start, shard=proc.rank,
                        n_shards=proc.world_size)
    workers = config["num_workers"]
    # the loader draws worker seeds from its own generator, never from the global RNG;
    # pinned batches let non_blocking copies to the GPU overlap its work
    return iter(DataLoader(stream, batch_size=None, num_workers=workers, generator=torch.Generator(),
                           persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                           pin_memory=proc.device_type == "cuda"))


def resume_optimizer(optimizer: torch.optim.Optimizer, start: ModelStart) -> None:
    if start.checkpoint is not None:
        try:
            optimizer.load_state_dict(start.checkpoint["optimizer"])
        except (KeyError, ValueError, RuntimeError) as e:
            fail(f"the optimizer state of {start.ckpt_path!r} does not fit its model: {one_line(e)}")


def resume_rng(start: ModelStart, device: str) -> None:
    """The RNG states a checkpoint saved (dropout continues where it was)."""
    if start.checkpoint is not None:
        torch.set_rng_state(start.checkpoint["rng_state"])
        if "cuda" in device and start.checkpoint.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(start.checkpoint["cuda_rng_state"][0], device)


def save_run(kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_args: dict,
             iter_num: int, best_val_loss: float, config: dict, device: str, keep: int) -> None:
    """Checkpoint config["out_dir"]/ckpt_<iter_num>.pt with nanoGPT's keys, the RNG
    states and the kind of model it holds ('predictor', 'lm'), then keep the newest `keep`.
    A failed save stops the run in one line; the last good checkpoint stays."""
    ckpt = {
        "kind": kind,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "model_args": model_args,
        "iter_num": iter_num,
        "best_val_loss": best_val_loss,
        "config": config,
        "rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state_all() if "cuda" in device else None,
    }
    out_dir = config["out_dir"]
    try:
        path = save_checkpoint(ckpt, out_dir, iter_num)
    except (OSError, ValueError) as e:  # disk full, non-finite weights
        fail(failed_save_message(e, out_dir, iter_num))
    print(f"saved {path}")
    prune_checkpoints(out_dir, keep)


def stop_if_non_finite(kind: str, losses: dict, iter_num: int, out_dir: str) -> None:
    """Stop before anything is saved if a loss component is NaN or infinite."""
    losses = {k: torch.as_tensor(v).detach() for k, v in losses.items()}  # val losses are floats
    bad = first_non_finite(losses)
    if bad is None:
        return
    try:
        last = latest_checkpoint(out_dir)
    except FileNotFoundError:
        last = "none"
    fail(f"non-finite {kind} {bad} loss ({losses[bad].item()}) at iter {iter_num}; stopped "
         f"without saving, last good checkpoint: {last}")


def start_wandb(project: str, name: str, config: dict):
    """The wandb module, logging this run, or None if wandb cannot start. Without
    credentials there is no account to sync to: it logs to disk instead of letting
    wandb.init wait on the network."""
    import wandb
    has_key = bool(os.environ.get("WANDB_API_KEY")) or os.path.exists(os.path.expanduser("~/.netrc"))
    mode = os.environ.get("WANDB_MODE") or ("online" if has_key else "offline")
    try:
        wandb.init(project=project, name=name, config=config, mode=mode, settings=wandb.Settings(init_timeout=60))
    except Exception as e:  # a logging service must never stop a training run
        print(f"wandb unavailable ({type(e).__name__}: {e}); continuing without it")
        return None
    return wandb


class StepTimer:
    """Wall time of each part of a training step, summed since the last reset: mark(part)
    adds the time since the previous mark to that part. With sync=True it waits for the
    GPU before each reading, so a part's time is its own rather than the time to queue
    it (and the run is slower); on a CPU every part has finished when mark() is called."""

    def __init__(self, sync: bool = False):
        self.sync = sync and torch.cuda.is_available()
        self.reset()

    def reset(self) -> None:
        self.seconds: dict[str, float] = {}
        self.steps = 0
        self.skip()

    def skip(self) -> None:
        """Start the next part now: the time since the previous mark counts nowhere."""
        if self.sync:
            torch.cuda.synchronize()
        self.last = time.perf_counter()

    def mark(self, part: str) -> None:
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - self.last
        self.last = now

    def step_done(self) -> None:
        self.steps += 1

    def ms_per_step(self) -> dict[str, float]:
        """Each part's mean milliseconds per step, and their total."""
        parts = {k: 1000.0 * v / max(1, self.steps) for k, v in self.seconds.items()}
        return parts | {"total": sum(parts.values())}

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"steps": self.steps, "ms_per_step": self.ms_per_step()}, f, indent=2)
