"""Run plumbing shared by the training scripts: the settings they share, DDP and
autocast setup, the started model on its device with its optimizer, the learning-rate
schedule and optimizer step, the training batches, checkpoints with their RNG states,
the non-finite-loss stop, and wandb. The loop that uses them is train_loop.py; where a
model starts is kinds.py."""
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.distributed import init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from errors import fail, one_line
from run.checkpoint import (OutDirError, checkpoint_iters, failed_save_message, latest_checkpoint, prepare_out_dir,
                            prune_checkpoints, save_checkpoint)


# the settings both training scripts share, with their defaults; each script sets its own
# out_dir, intervals, block_size, iterations and data, and a config file or the command
# line any of these
RUN_DEFAULTS = {
    # I/O
    "eval_iters": 4,
    "eval_only": False,
    "always_save_checkpoint": True,
    "keep_checkpoints": 2,  # older ckpt_*.pt files in out_dir are deleted after each save
    "log_json": False,  # also write each log line as a JSON record to out_dir/log.jsonl (plot_curve.py reads it)
    # 'scratch', 'resume' / 'latest', 'gpt2*' or a GPT-2 dir, or a .pt (train.py: its kind, or a predictor's)
    "init_from": "scratch",
    "wandb_log": False,
    "wandb_project": "nanogpt-dag",
    # data
    "batch_size": 32,
    "gradient_accumulation_steps": 1,
    "num_workers": 1,  # DataLoader worker processes making data (0: in the training process)
    # model: a GPT with DAG heads (train.py: a plain GPT with dag_depth 0, the baseline)
    "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False,
    "dag_depth": 4,
    "value_head": "copy",  # 'copy': point at the text's literals; 'digits': write each value's digits
    "literal_embedding": True,  # each token's literal index is added to its embedding
    "literal_states": False,  # signs and coefficients also read each input literal's own state
    "step_states": False,  # coefficients and gates also read a state per step, attended from the text
    "max_coefficient": 3,
    # AdamW (nanoGPT's, with beta2 0.99 for small models); grad_clip 0: none; decay_lr: cosine
    # from learning_rate to min_lr after warmup_iters linear steps
    "learning_rate": 1e-3, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0,
    "decay_lr": True, "warmup_iters": 50, "min_lr": 1e-4,
    # system
    "device": "cpu",  # 'cpu', 'cuda', 'cuda:0', 'mps'
    "dtype": "bfloat16",  # 'float32', 'bfloat16' or 'float16'; autocast is used on CUDA only
    "compile": False,
    "time_parts": False,  # log each part of a step's time (waiting for the GPU between parts) to out_dir/step_times.json
    "backend": "nccl",  # DDP backend: 'nccl' on GPUs, 'gloo' on CPUs
    "seed": 1337,
}


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


def start_process(config: dict) -> tuple[Process, object]:
    """This process of the run (setup_process) and its autocast context (bf16 / fp16 on
    CUDA; on the CPU everything runs in float32); the master's out_dir made writable
    and, unless eval_only, this run's alone (out_dir/.lock, held until the process
    exits); the seed set for this rank. config["dtype"] is checked (validate_config)."""
    proc = setup_process(config["device"], config["backend"])
    if proc.master:
        try:
            prepare_out_dir(config["out_dir"], lock=not config["eval_only"])
        except OutDirError as e:
            fail(str(e))
    torch.manual_seed(config["seed"] + proc.rank)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config["dtype"]]
    return proc, nullcontext() if proc.device_type == "cpu" else torch.autocast(proc.device_type, dtype)


@dataclass
class ModelStart:
    """Where a run starts: its model, the args that rebuild it, the iteration and best
    validation loss it starts from, and the checkpoint it resumes (None otherwise)."""

    model: torch.nn.Module
    model_args: dict
    iter_num: int = 0
    best_val_loss: float = 1e9
    checkpoint: dict | None = None
    ckpt_path: str | None = None


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
    iter_num: int  # where the run starts
    resumed_at: int | None
    kind: str
    model_args: dict
    config: dict
    best_val_loss: float


def setup_training(kind: str, start: ModelStart, config: dict, proc: Process) -> Training:
    """The started model on its device with its optimizer (a resume's state and RNG states loaded),
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
    if start.checkpoint is not None:
        try:
            optimizer.load_state_dict(start.checkpoint["optimizer"])
        except (KeyError, ValueError, RuntimeError) as e:
            fail(f"the optimizer state of {start.ckpt_path!r} does not fit its model: {one_line(e)}")
        torch.set_rng_state(start.checkpoint["rng_state"])  # dropout continues where it was
        if "cuda" in proc.device and start.checkpoint.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(start.checkpoint["cuda_rng_state"][0], proc.device)
    raw_model = model
    if config["compile"]:
        model = torch.compile(model)
    if proc.ddp:
        model = DDP(model, device_ids=[proc.local_rank] if proc.device_type == "cuda" else None)
    return Training(model, raw_model, optimizer, scaler, iter_num, iter_num if start.checkpoint is not None else None, kind,
                    start.model_args, config, start.best_val_loss)


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
        save_run(training, iter_num)


def get_lr(it: int, learning_rate: float, warmup_iters: int, lr_decay_iters: int, min_lr: float) -> float:
    """nanoGPT's schedule: linear warmup, cosine decay to min_lr, then constant."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


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


def save_run(training: Training, iter_num: int) -> None:
    """Checkpoint out_dir/ckpt_<iter_num>.pt with nanoGPT's keys, the RNG states and the
    kind of model it holds ('predictor', 'lm'), then keep the newest keep_checkpoints.
    A failed save stops the run in one line; the last good checkpoint stays."""
    ckpt = {
        "kind": training.kind,
        "model": training.raw_model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "model_args": training.model_args,
        "iter_num": iter_num,
        "best_val_loss": training.best_val_loss,
        "config": training.config,
        "rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state_all() if "cuda" in training.config["device"] else None,
    }
    out_dir = training.config["out_dir"]
    try:
        path = save_checkpoint(ckpt, out_dir, iter_num)
    except (OSError, ValueError) as e:  # disk full, non-finite weights
        fail(failed_save_message(e, out_dir, iter_num))
    print(f"saved {path}")
    prune_checkpoints(out_dir, training.config["keep_checkpoints"])


def stop_if_non_finite(kind: str, losses: dict, iter_num: int, out_dir: str) -> None:
    """Stop before anything is saved if a loss component is NaN or infinite."""
    losses = {k: torch.as_tensor(v).detach() for k, v in losses.items()}  # val losses are floats
    bad = next((name for name, value in losses.items() if not torch.isfinite(value).item()), None)
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
