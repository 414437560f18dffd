"""
Train the DAG predictor: a GPT reads expression text and predicts, at every token, the
DAG of the expression read so far; a float64 executor runs it for the execution loss.

Single process:
$ python train_predictor.py config/train_predictor_config.py --batch_size=32
DDP, e.g. 2 processes on one machine:
$ torchrun --standalone --nproc_per_node=2 train_predictor.py config/train_predictor_config.py
Resume the newest checkpoint in out_dir:
$ python train_predictor.py config/train_predictor_config.py --init_from=resume
"""
import os
import sys
import time
from contextlib import nullcontext

import torch
from torch.distributed import destroy_process_group, init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from checkpoint import (OutDirError, check_resumable, checkpoint_iters, failed_save_message, latest_checkpoint,
                        load_checkpoint, one_line, prepare_out_dir, prune_checkpoints, resolve_checkpoint,
                        save_checkpoint)
from common import StepTimer
from config_checks import validate_config
from configurator import apply_config
from data.dagset.streaming import DAGStream, ExampleMaker, StreamConfig, make_batch, trim_batch
from models.dag_heads import Literals
from models.dag_model import BACKBONE_KEYS, HEAD_KEYS, GPTConfig
from models.predictor_only_model import PredictorOnlyModel
from predictor_utils import (LOSS_NAMES, dag_losses, final_token_metrics, first_non_finite, get_lr,
                             loss_weights_of, total_loss)

# -----------------------------------------------------------------------------
# default config values: a tiny model that learns on a laptop CPU in minutes
# I/O
out_dir = "out-predictor"
eval_interval = 100
log_interval = 10
eval_iters = 4
eval_only = False
always_save_checkpoint = True
keep_checkpoints = 2  # older ckpt_*.pt files in out_dir are deleted after each save
init_from = "scratch"  # 'scratch', 'resume' / 'latest', 'gpt2*' or a GPT-2 dir, or a path to a .pt file
# wandb logging
wandb_log = False
wandb_project = "nanogpt-dag"
wandb_run_name = "predictor"
# data
batch_size = 32
block_size = 32
gradient_accumulation_steps = 1
num_workers = 1  # DataLoader worker processes making data (0: in the training process)
max_digits = 4
max_decimal_places = 4
min_expr_depth = 0
max_expr_depth = 3
p_unary_minus = 0.2
p_parens = 0.2
p_power = 0.0
# the forms people also write (generate_expression.py): 0 = the generator's plain style
p_trailing_zeros = 0.0
p_no_spaces = 0.0
p_space_in_parens = 0.0
p_neg_group = 0.0
p_redundant_parens = 0.0
# model
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
dag_depth = 4
value_head = "copy"  # 'copy': point at the text's literals; 'digits': write each value's digits
literal_embedding = True  # each token's literal index is added to its embedding
literal_states = False  # signs and coefficients also read each input literal's own state
max_coefficient = 3
# loss weights
mag_weight = 1.0
sign_weight = 1.0
op_weight = 1.0
gate_weight = 1.0
exec_weight = 0.1
# adamw optimizer
learning_rate = 1e-3
max_iters = 1000
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
# learning rate decay settings
decay_lr = True
warmup_iters = 50
lr_decay_iters = 1000
min_lr = 1e-4
# system
device = "cpu"  # 'cpu', 'cuda', 'cuda:0', 'mps'
dtype = "bfloat16"  # 'float32', 'bfloat16' or 'float16'; autocast is used on CUDA only
compile = False
time_parts = False  # log each part of a step's time (waiting for the GPU between parts) to out_dir/step_times.json
backend = "nccl"  # DDP backend: 'nccl' on GPUs, 'gloo' on CPUs
seed = 1337
# -----------------------------------------------------------------------------
# overrides go through a dict of the config keys only, so --torch=1 is an unknown key
# rather than a type error, and nothing but config can be overwritten
config = {k: v for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))}
overridden = apply_config(config, sys.argv[1:])
globals().update(config)
# -----------------------------------------------------------------------------


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# every setting in its range; from scratch also fitting the others and the data drawn
# (a resumed run is checked again below, once its checkpoint's settings are in)
try:
    validate_config(config, full=init_from == "scratch")
except ValueError as e:
    fail(str(e))


ddp = int(os.environ.get("RANK", -1)) != -1
if ddp:
    init_process_group(backend=backend)
    ddp_rank = int(os.environ["RANK"])
    ddp_local_rank = int(os.environ["LOCAL_RANK"])
    ddp_world_size = int(os.environ["WORLD_SIZE"])
    if device.startswith("cuda"):
        device = f"cuda:{ddp_local_rank}"
        torch.cuda.set_device(device)
    master_process = ddp_rank == 0
else:
    ddp_rank, ddp_world_size, master_process = 0, 1, True
device_type = "cuda" if "cuda" in device else "cpu"
if master_process:
    try:  # writable, and this run's alone: out_dir/.lock is held until the process exits
        prepare_out_dir(out_dir, lock=not eval_only)
    except OutDirError as e:
        fail(str(e))
torch.manual_seed(seed + ddp_rank)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
if ptdtype is None:
    fail(f"dtype must be 'float32', 'bfloat16' or 'float16', got {dtype!r}")
ctx = nullcontext() if device_type == "cpu" else torch.autocast(device_type=device_type, dtype=ptdtype)

# model init
model_keys = tuple(k for k in BACKBONE_KEYS + HEAD_KEYS if k != "vocab_size")
data_keys = ("batch_size", "gradient_accumulation_steps", "min_expr_depth", "max_expr_depth",
             "p_unary_minus", "p_parens", "p_power", "p_trailing_zeros", "p_no_spaces", "p_space_in_parens",
             "p_neg_group", "p_redundant_parens", "seed")
iter_num, best_val_loss, checkpoint = 0, 1e9, None
if init_from == "scratch":
    model_args = {k: globals()[k] for k in model_keys} | {"vocab_size": 50304}
    model = PredictorOnlyModel(GPTConfig(**model_args))
elif init_from in ("resume", "latest") or init_from.endswith(".pt"):
    try:
        ckpt_path = resolve_checkpoint(init_from, out_dir)
        checkpoint = load_checkpoint(ckpt_path, map_location=device)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    print(f"resuming from {ckpt_path}")
    try:  # keys a resume reads; a shape set again must be the checkpoint's
        model_args = check_resumable(checkpoint, ckpt_path, config, overridden, model_keys, data_keys)
    except ValueError as e:
        fail(str(e))
    # the data settings follow the checkpoint too, so the run goes on with the stream it
    # had, unless the command line or config file sets them again
    for k in data_keys:
        if k in overridden and config[k] != checkpoint["config"].get(k):
            print(f"note: {k}={config[k]!r} replaces the checkpoint's {checkpoint['config'].get(k)!r}")
        elif k not in overridden:
            config[k] = globals()[k] = checkpoint["config"].get(k, config[k])
    try:
        model = PredictorOnlyModel(GPTConfig(**model_args))
        model.load_state_dict(checkpoint["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        fail(f"{ckpt_path!r} does not fit the model its model_args describe: {one_line(e)}")
    iter_num, best_val_loss = checkpoint["iter_num"], checkpoint["best_val_loss"]
else:
    overrides = {k: globals()[k] for k in HEAD_KEYS}
    try:
        model = PredictorOnlyModel.from_pretrained(init_from, overrides)
    except (ValueError, OSError) as e:
        fail(f"init_from={init_from!r}: {e}")
    if block_size > model.config.block_size:
        fail(f"block_size={block_size} exceeds the {model.config.block_size} positions of {init_from!r}")
    if block_size < model.config.block_size:
        model.transformer.crop_block_size(block_size)
    model_args = {k: getattr(model.config, k) for k in model_keys} | {"vocab_size": model.config.vocab_size}
# a checkpoint or GPT-2 decides the model's shape: the data and the saved config follow it
for k in model_keys:
    config[k] = globals()[k] = getattr(model.config, k)
if init_from != "scratch":
    try:
        validate_config(config)
    except ValueError as e:
        fail(f"{e} (with the settings of init_from={init_from!r})")
model.to(device)
# checkpoints past this run's start belong to another run: `resume` would pick them up and
# keep_checkpoints would prune this run's own saves in their favour
newer = [i for i in checkpoint_iters(out_dir) if i > iter_num]
if newer and not eval_only:
    fail(f"out_dir {out_dir!r} already holds a checkpoint of iter {newer[-1]}, past iter {iter_num} "
         f"where this run starts: use another out_dir")

scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16" and device_type == "cuda"))
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
if checkpoint is not None:
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, ValueError, RuntimeError) as e:
        fail(f"the optimizer state of {ckpt_path!r} does not fit its model: {one_line(e)}")
resumed_at = iter_num if checkpoint is not None else None
# the plain module: its state_dict has no "_orig_mod." / "module." prefixes, and running it
# (evaluation on the master only) starts no DDP collective
raw_model = model
if compile:
    model = torch.compile(model)
if ddp:
    model = DDP(model, device_ids=[ddp_local_rank] if device_type == "cuda" else None)
try:
    loss_weights = loss_weights_of(config)
except ValueError as e:
    fail(str(e))

# data: micro-batch j of this rank is batch j * world_size + rank of the train split
try:
    stream_cfg = StreamConfig(dag_depth=dag_depth, block_size=block_size, max_digits=max_digits,
                              max_decimal_places=max_decimal_places, min_expr_depth=min_expr_depth,
                              max_expr_depth=max_expr_depth, p_unary_minus=p_unary_minus,
                              p_parens=p_parens, p_power=p_power, p_trailing_zeros=p_trailing_zeros,
                              p_no_spaces=p_no_spaces, p_space_in_parens=p_space_in_parens,
                              p_neg_group=p_neg_group, p_redundant_parens=p_redundant_parens, seed=seed)
except ValueError as e:
    fail(str(e))
train_stream = DAGStream(stream_cfg, "train", batch_size, start=iter_num * gradient_accumulation_steps,
                         shard=ddp_rank, n_shards=ddp_world_size)
# the loader draws worker seeds from its own generator, never from the global RNG
# pinned batches let to_device's non_blocking copies overlap the GPU's work
loader = DataLoader(train_stream, batch_size=None, num_workers=num_workers, generator=torch.Generator(),
                    persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None,
                    pin_memory=device_type == "cuda")
train_iter = iter(loader)
val_maker = ExampleMaker(stream_cfg)
val_batches = [make_batch(val_maker, "val", b, batch_size) for b in range(eval_iters)]
if checkpoint is not None:
    torch.set_rng_state(checkpoint["rng_state"])
    if device_type == "cuda" and checkpoint["cuda_rng_state"] is not None:
        torch.cuda.set_rng_state(checkpoint["cuda_rng_state"][0], device)
    checkpoint = None  # free memory


def to_device(batch: dict) -> dict:
    # cut the padding after the batch's longest expression (a compiled model sees
    # lengths in steps of 8, so it compiles a few shapes rather than one per length)
    return {k: v.to(device, non_blocking=True) for k, v in trim_batch(batch, 8 if compile else 1).items()}


@torch.no_grad()
def evaluate_val() -> dict[str, float]:
    """Loss components and final-token accuracy over the fixed validation batches."""
    raw_model.eval()
    sums: dict[str, float] = {}
    for batch in val_batches:
        batch = to_device(batch)
        with ctx:
            pred = raw_model(batch["idx"], Literals.from_batch(batch), at=batch["mask"])
        losses = dag_losses(pred, batch, raw_model.execute(*pred.soft()))
        losses["total"] = total_loss(losses, loss_weights)
        metrics = final_token_metrics(pred, batch, raw_model.execute(*pred.hard()))
        for k, v in list(losses.items()) + [(f"acc_{k}", m.mean()) for k, m in metrics.items()]:
            sums[k] = sums.get(k, 0.0) + v.item() / len(val_batches)
    raw_model.train()
    return sums


def save(iter_num: int) -> None:
    ckpt = {
        "model": raw_model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "model_args": model_args,
        "iter_num": iter_num,
        "best_val_loss": best_val_loss,
        "config": config,
        "rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state_all() if device_type == "cuda" else None,
        "data_position": iter_num * gradient_accumulation_steps,
    }
    try:
        path = save_checkpoint(ckpt, out_dir, iter_num)
    except (OSError, ValueError) as e:  # disk full, non-finite weights: the last good checkpoint stays
        fail(failed_save_message(e, out_dir, iter_num))
    print(f"saved {path}")
    prune_checkpoints(out_dir, keep_checkpoints)


def fail_non_finite(kind: str, losses: dict, iter_num: int) -> None:
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


def eval_and_save(iter_num: int, final: bool = False) -> None:
    """Evaluate the model after iter_num steps and checkpoint it (never the untrained one,
    and never one whose validation loss is not finite)."""
    global best_val_loss
    val = evaluate_val()
    print(f"iter {iter_num}: val loss {val['total']:.4f} | " + " ".join(f"{k} {val[k]:.4f}" for k in LOSS_NAMES)
          + f" | final-token exact {val['acc_exact']:.3f} structure {val['acc_structure']:.3f} "
          f"values {val['acc_values']:.3f} | {(time.time() - run_start) / 60:.2f} min")
    fail_non_finite("val", val, iter_num)
    if wandb_log:
        wandb.log({"iter": iter_num, "lr": lr, **{f"val/{k}": v for k, v in val.items()}})
    improved = val["total"] < best_val_loss
    best_val_loss = min(best_val_loss, val["total"])
    if iter_num > 0 and (improved or always_save_checkpoint or final):
        save(iter_num)


if wandb_log and master_process:
    import wandb
    # without credentials there is no account to sync to: log to disk instead of
    # letting wandb.init wait on the network
    has_key = bool(os.environ.get("WANDB_API_KEY")) or os.path.exists(os.path.expanduser("~/.netrc"))
    mode = os.environ.get("WANDB_MODE") or ("online" if has_key else "offline")
    try:
        wandb.init(project=wandb_project, name=wandb_run_name, config=config, mode=mode,
                   settings=wandb.Settings(init_timeout=60))
    except Exception as e:  # a logging service must never stop a training run
        print(f"wandb unavailable ({type(e).__name__}: {e}); continuing without it")
        wandb_log = False
elif wandb_log:
    wandb_log = False

lr = get_lr(iter_num, learning_rate, warmup_iters, lr_decay_iters, min_lr) if decay_lr else learning_rate
if eval_only:
    if master_process:
        val = evaluate_val()
        print(" ".join(f"{k} {v:.4f}" for k, v in val.items()))
    sys.exit(0)

run_start = time.time()  # evaluation lines report the minutes since (plot_curve.py reads them)
timer = StepTimer(sync=time_parts)
while iter_num < max_iters:
    lr = get_lr(iter_num, learning_rate, warmup_iters, lr_decay_iters, min_lr) if decay_lr else learning_rate
    for group in optimizer.param_groups:
        group["lr"] = lr
    # a resumed run starts where its checkpoint was evaluated and saved
    if iter_num % eval_interval == 0 and master_process and iter_num != resumed_at:
        eval_and_save(iter_num)
    timer.skip()  # evaluating and logging are no part of a step

    for micro_step in range(gradient_accumulation_steps):
        if ddp:  # sync gradients only on the last micro step
            model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
        batch = to_device(next(train_iter))
        timer.mark("data")
        with ctx:
            pred = model(batch["idx"], Literals.from_batch(batch), at=batch["mask"])
        timer.mark("forward")
        executed = raw_model.execute(*pred.soft())
        timer.mark("executor")
        losses = dag_losses(pred, batch, executed)
        fail_non_finite("train", losses, iter_num)
        loss = total_loss(losses, loss_weights) / gradient_accumulation_steps
        timer.mark("losses")
        scaler.scale(loss).backward()
        timer.mark("backward")
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    timer.mark("optimizer")
    timer.step_done()

    # logged under the iteration whose model gave the loss, like val losses and checkpoints
    if iter_num % log_interval == 0 and master_process:
        ms = timer.ms_per_step()
        parts = " ".join(f"{k} {v.item():.4f}" for k, v in losses.items())
        times = " (" + ", ".join(f"{k} {v:.1f}" for k, v in ms.items() if k != "total") + ")" if time_parts else ""
        print(f"iter {iter_num}: loss {loss.item() * gradient_accumulation_steps:.4f} ({parts}) "
              f"lr {lr:.2e}, {ms['total']:.1f} ms/iter{times}, data wait {ms['data'] / ms['total']:.1%}")
        if time_parts:
            timer.write_json(os.path.join(out_dir, "step_times.json"))
        if wandb_log:
            wandb.log({"iter": iter_num, "lr": lr, "train/data_wait": ms["data"] / ms["total"],
                       **{f"train/{k}": v.item() for k, v in losses.items()}})
        timer.reset()
    iter_num += 1

if master_process:
    eval_and_save(iter_num, final=True)  # the run's last checkpoint holds its final iteration
if wandb_log:
    wandb.finish()
if ddp:
    destroy_process_group()
