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

from configurator import script_config
from data.dagset.batch import Batch
from data.dagset.streaming import DAGStream, ExampleMaker, StreamConfig, expression_defaults, make_batch
from data.mathematics.stream import MathConfig, MathRows, MathStream, make_math_batch
from errors import fail
from models.dag_heads import Literals
from models.dag_model import DAGPrediction
from predictor_utils import DEFAULT_LOSS_WEIGHTS, LOSS_NAMES, dag_losses, loss_weights_of, total_loss
from run.common import RUN_DEFAULTS, setup_training, start_process, train_batches
from run.config_checks import require_valid_config
from run.kinds import KINDS, start_model
from run.train_loop import no_mark, train

# -----------------------------------------------------------------------------
# default config values: a tiny model that learns on a laptop CPU in minutes; the
# settings both training scripts share (I/O, model, AdamW, system) are RUN_DEFAULTS
globals().update(RUN_DEFAULTS)
out_dir = "out-predictor"
eval_interval = 100
log_interval = 10
wandb_run_name = "predictor"
# data
dataset = "expressions"  # 'expressions': the project's generator, drawn by the settings below; 'mathematics':
# the Mathematics Dataset's training questions, read as written (data/mathematics/stream.py)
math_dir = "data/mathematics"  # with dataset='mathematics': the out_dir of data/mathematics/prepare.py
math_prefixes = False  # with dataset='mathematics': also train on the DAG of each prefix of a `Calculate E.` question
block_size = 32
# the expressions drawn (max_digits, max_expr_depth, depth_power, the p_* of each form):
# StreamConfig's defaults (data/dagset/streaming.py) unless a config file or the command line sets them
globals().update(expression_defaults())
respace = False  # the model reads every expression respaced (`3*4-2` as `3 * 4 - 2`), in training and evaluation
# loss weights: mag_weight, sign_weight, op_weight, gate_weight, exec_weight
globals().update(DEFAULT_LOSS_WEIGHTS)
max_iters = 1000
lr_decay_iters = 1000
# -----------------------------------------------------------------------------
config, overridden = script_config(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------


# every setting in its range; from scratch also fitting the others and the data drawn
# (a resumed run is checked again below, once its checkpoint's settings are in)
require_valid_config(config, full=config["init_from"] == "scratch")


proc, ctx = start_process(config)
start = start_model(KINDS["predictor"], config, overridden, proc.device)
if config["init_from"] != "scratch":  # config now holds the settings the start took
    require_valid_config(config, f" (with the settings of init_from={config['init_from']!r})")
training = setup_training("predictor", start, config, proc)
raw_model = training.raw_model
try:
    loss_weights = loss_weights_of(config)
    batch_size, eval_iters = config["batch_size"], config["eval_iters"]
    if config["dataset"] == "mathematics":
        stream_cls, stream_cfg = MathStream, MathConfig(config["math_dir"], config["dag_depth"], config["block_size"],
                                                        config["seed"], config["math_prefixes"])
        val_rows = MathRows(stream_cfg)
        val_batches = [make_math_batch(val_rows, "val", b, batch_size) for b in range(eval_iters)]
    else:
        stream_cls, stream_cfg = DAGStream, StreamConfig.from_settings(config)
        val_maker = ExampleMaker(stream_cfg)
        val_batches = [make_batch(val_maker, "val", b, batch_size) for b in range(eval_iters)]
except ValueError as e:
    fail(str(e))
train_iter = train_batches(stream_cls, stream_cfg, config, start.iter_num, proc)
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


train(training, proc, losses_of, train_iter, val_batches, LOSS_NAMES)
