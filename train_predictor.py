"""
Train the DAG predictor: a GPT reads expression text and predicts, at every token, the
DAG of the expression read so far; a float64 executor runs it for the execution loss.

Single process:
$ python train_predictor.py config/train_predictor_config.py --batch_size=32
DDP, e.g. 2 processes on one machine:
$ torchrun --standalone --nproc_per_node=2 train_predictor.py config/train_predictor_config.py
Resume the newest checkpoint in out_dir:
$ python train_predictor.py config/train_predictor_config.py --init_from=resume
On the Mathematics Dataset's arithmetic training questions (data/mathematics/prepare.py first):
$ python train_predictor.py config/train_predictor_mathematics.py
"""
import sys

import torch

from configurator import apply_config
from data.dagset.batch import Batch
from data.dagset.streaming import DAGStream, ExampleMaker, StreamConfig, expression_defaults, make_batch
from data.mathematics.stream import MathConfig, MathRows, MathStream, make_math_batch
from errors import fail
from models.dag_heads import Literals
from models.dag_model import DAGPrediction
from predictor_utils import DEFAULT_LOSS_WEIGHTS, LOSS_NAMES, dag_losses, loss_weights_of, total_loss
from run.common import (OPTIMIZER_DEFAULTS, autocast_context, claim_out_dir, resume_rng, setup_process, setup_training,
                        start_wandb, train_batches)
from run.config_checks import validate_config
from run.kinds import KINDS, MODEL_KEYS, start_model
from run.train_loop import no_mark, train

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
log_json = False  # also write each log line as a JSON record to out_dir/log.jsonl (plot_curve.py reads it)
init_from = "scratch"  # 'scratch', 'resume' / 'latest', 'gpt2*' or a GPT-2 dir, or a path to a .pt file
# wandb logging
wandb_log = False
wandb_project = "nanogpt-dag"
wandb_run_name = "predictor"
# data
dataset = "expressions"  # 'expressions': the project's generator, drawn by the settings below; 'mathematics':
# the Mathematics Dataset's training questions, read as written (data/mathematics/stream.py)
math_dir = "data/mathematics"  # with dataset='mathematics': the out_dir of data/mathematics/prepare.py
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
# adamw optimizer: weight_decay, beta1, beta2, grad_clip, decay_lr, warmup_iters, min_lr (run/common.py)
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

start = start_model(KINDS["predictor"], config, overridden, device)
globals().update({k: config[k] for k in MODEL_KEYS + KINDS["predictor"].data_keys})  # what the start decided
if init_from != "scratch":
    try:
        validate_config(config)
    except ValueError as e:
        fail(f"{e} (with the settings of init_from={init_from!r})")
training = setup_training("predictor", start, config, proc)
raw_model = training.raw_model
try:
    loss_weights = loss_weights_of(config)
    if dataset == "mathematics":
        stream_cls, stream_cfg = MathStream, MathConfig(math_dir, dag_depth, block_size, seed)
        val_rows = MathRows(stream_cfg)
        val_batches = [make_math_batch(val_rows, "val", b, batch_size) for b in range(eval_iters)]
    else:
        stream_cls, stream_cfg = DAGStream, StreamConfig.from_settings(config)
        val_maker = ExampleMaker(stream_cfg)
        val_batches = [make_batch(val_maker, "val", b, batch_size) for b in range(eval_iters)]
except ValueError as e:
    fail(str(e))
train_iter = train_batches(stream_cls, stream_cfg, config, start.iter_num, proc)
resume_rng(start, device)
start = None  # free the checkpoint's memory


def losses_of(model, batch: Batch, mark=no_mark) -> tuple[dict[str, torch.Tensor], torch.Tensor, DAGPrediction]:
    """The DAG losses, their weighted total, and the DAG prediction."""
    with ctx:
        pred = model(batch.idx, Literals.from_batch(batch), at=batch.mask)
    mark("forward")
    executed = raw_model.execute(*pred.soft())
    mark("executor")
    losses = dag_losses(pred, batch, executed)
    total = total_loss(losses, loss_weights)
    mark("losses")
    return losses, total, pred


wandb_run = start_wandb(wandb_project, wandb_run_name, config) if wandb_log and master_process else None
train(training, proc, losses_of, train_iter, val_batches, LOSS_NAMES, wandb_run)
