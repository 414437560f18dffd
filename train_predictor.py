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

import torch
from torch.distributed import destroy_process_group

from common import (OPTIMIZER_DEFAULTS, StepTimer, autocast_context, claim_out_dir, fail, optimizer_step, resume_rng,
                    set_lr, save_if_due, setup_process, setup_training, train_batches, start_model, start_wandb,
                    stop_if_non_finite)
from config_checks import validate_config
from configurator import apply_config
from data.dagset.streaming import (EXPRESSION_KEYS, DAGStream, ExampleMaker, StreamConfig, expression_defaults, make_batch,
                                   trim_batch)
from models.dag_heads import Literals
from models.dag_model import BACKBONE_KEYS, HEAD_KEYS, GPTConfig
from models.predictor_only_model import PredictorOnlyModel
from predictor_utils import (DEFAULT_LOSS_WEIGHTS, LOSS_NAMES, dag_losses, final_token_metrics, loss_weights_of,
                             total_loss)

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
# the expressions drawn (max_digits, max_expr_depth, depth_power, the p_* of each form):
# StreamConfig's defaults (data/dagset/streaming.py) unless a config file or the command line sets them
globals().update(expression_defaults())
respace = False  # the model reads every expression respaced (`3*4-2` as `3 * 4 - 2`), in training and evaluation
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
step_states = False  # coefficients and gates also read a state per step, attended from the text
max_coefficient = 3
# loss weights: mag_weight, sign_weight, op_weight, gate_weight, exec_weight
globals().update(DEFAULT_LOSS_WEIGHTS)
# adamw optimizer: weight_decay, beta1, beta2, grad_clip, decay_lr, warmup_iters, min_lr (common.py)
globals().update(OPTIMIZER_DEFAULTS)
learning_rate = 1e-3
max_iters = 1000
lr_decay_iters = 1000
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


# every setting in its range; from scratch also fitting the others and the data drawn
# (a resumed run is checked again below, once its checkpoint's settings are in)
try:
    validate_config(config, full=init_from == "scratch")
except ValueError as e:
    fail(str(e))


proc = setup_process(device, backend)
device, device_type, master_process = proc.device, proc.device_type, proc.master
if master_process:  # writable, and this run's alone: out_dir/.lock is held until the process exits
    claim_out_dir(out_dir, lock=not eval_only)
torch.manual_seed(seed + proc.rank)
ctx = autocast_context(device_type, dtype)

# model init
model_keys = tuple(k for k in BACKBONE_KEYS + HEAD_KEYS if k != "vocab_size")
data_keys = ("batch_size", "gradient_accumulation_steps", *EXPRESSION_KEYS, "respace", "seed")
start = start_model("predictor", PredictorOnlyModel, GPTConfig, config, overridden, model_keys, data_keys, HEAD_KEYS,
                    device)
globals().update({k: config[k] for k in model_keys + data_keys})  # what the start decided
iter_num = start.iter_num
if init_from != "scratch":
    try:
        validate_config(config)
    except ValueError as e:
        fail(f"{e} (with the settings of init_from={init_from!r})")
training = setup_training("predictor", start, config, proc)
model, raw_model, optimizer = training.model, training.raw_model, training.optimizer
try:
    loss_weights = loss_weights_of(config)
except ValueError as e:
    fail(str(e))

try:
    stream_cfg = StreamConfig.from_settings(config)
except ValueError as e:
    fail(str(e))
train_iter = train_batches(DAGStream, stream_cfg, config, iter_num, proc)
val_maker = ExampleMaker(stream_cfg)
val_batches = [make_batch(val_maker, "val", b, batch_size) for b in range(eval_iters)]
resume_rng(start, device)
start = None  # free the checkpoint's memory


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


def eval_and_save(iter_num: int, final: bool = False) -> None:
    """Evaluate the model after iter_num steps and checkpoint it (never the untrained one,
    and never one whose validation loss is not finite)."""
    val = evaluate_val()
    print(f"iter {iter_num}: val loss {val['total']:.4f} | " + " ".join(f"{k} {val[k]:.4f}" for k in LOSS_NAMES)
          + f" | final-token exact {val['acc_exact']:.3f} structure {val['acc_structure']:.3f} "
          f"values {val['acc_values']:.3f} | {(time.time() - run_start) / 60:.2f} min")
    save_if_due(training, val, iter_num, final, wandb_run)


wandb_run = start_wandb(wandb_project, wandb_run_name, config) if wandb_log and master_process else None
if eval_only:
    if master_process:
        val = evaluate_val()
        print(" ".join(f"{k} {v:.4f}" for k, v in val.items()))
    sys.exit(0)

run_start = time.time()  # evaluation lines report the minutes since (plot_curve.py reads them)
timer = StepTimer(sync=time_parts)
while iter_num < max_iters:
    lr = set_lr(training, iter_num)
    # a resumed run starts where its checkpoint was evaluated and saved
    if iter_num % eval_interval == 0 and master_process and iter_num != training.resumed_at:
        eval_and_save(iter_num)
    timer.skip()  # evaluating and logging are no part of a step

    for micro_step in range(gradient_accumulation_steps):
        if proc.ddp:  # sync gradients only on the last micro step
            model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
        batch = to_device(next(train_iter))
        timer.mark("data")
        with ctx:
            pred = model(batch["idx"], Literals.from_batch(batch), at=batch["mask"])
        timer.mark("forward")
        executed = raw_model.execute(*pred.soft())
        timer.mark("executor")
        losses = dag_losses(pred, batch, executed)
        stop_if_non_finite("train", losses, iter_num, out_dir)
        loss = total_loss(losses, loss_weights) / gradient_accumulation_steps
        timer.mark("losses")
        training.scaler.scale(loss).backward()
        timer.mark("backward")
    optimizer_step(training)
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
        if wandb_run:
            wandb_run.log({"iter": iter_num, "lr": lr, "train/data_wait": ms["data"] / ms["total"],
                       **{f"train/{k}": v.item() for k, v in losses.items()}})
        timer.reset()
    iter_num += 1

if master_process:
    eval_and_save(iter_num, final=True)  # the run's last checkpoint holds its final iteration
if wandb_run:
    wandb_run.finish()
if proc.ddp:
    destroy_process_group()
