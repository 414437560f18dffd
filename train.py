"""
Train the full model: a GPT language model on arithmetic questions and statements
(data/dagset/text_stream.py) whose DAG heads compute each question's value exactly,
and whose answer tokens can be copied from that value's decimal text
(models/result_copy.py). With --dag_depth=0 the same script trains a plain GPT: the
baseline, on the same tokens.

$ python train.py config/train_daggpt.py
$ python train.py config/train_daggpt.py --dag_depth=0 --out_dir=out-gpt
Warm start from a predictor (backbone and DAG heads; the result channel starts fresh):
$ python train.py config/train_daggpt.py --init_from=out-predictor/ckpt_00006000.pt
DDP: torchrun --standalone --nproc_per_node=2 train.py config/train_daggpt.py --backend=gloo
Resume the newest checkpoint in out_dir: --init_from=resume
"""
import os
import sys

import torch

from configurator import script_config
from data.dagset.batch import Batch
from data.dagset.streaming import StreamConfig, expression_defaults
from data.dagset.text_stream import TextConfig, TextExampleMaker, TextStream, make_text_batch
from errors import fail
from models.dag_heads import Literals
from models.dag_model import DAGPrediction, Teacher
from predictor_utils import DEFAULT_LOSS_WEIGHTS, dag_losses, loss_weights_of, total_loss
from run.common import RUN_DEFAULTS, setup_training, start_process, train_batches
from run.config_checks import require_valid_config, validate_config
from run.kinds import KINDS, start_model
from run.train_loop import no_mark, train

# -----------------------------------------------------------------------------
# default config values: a tiny model on a laptop CPU (config/train_daggpt.py); the
# settings both training scripts share (I/O, model, AdamW, system) are RUN_DEFAULTS
globals().update(RUN_DEFAULTS)
out_dir = "out-daggpt"
eval_interval = 200
log_interval = 10
wandb_run_name = "daggpt"
# data
block_size = 64
# the expressions drawn (max_digits, max_expr_depth, depth_power, the p_* of each form):
# StreamConfig's defaults (data/dagset/streaming.py) unless a config file or the command line sets them
globals().update(expression_defaults())
depth_power = 2.0  # depth d drawn with weight (d + 1) ** 2: the deep ones, where errors are
corpus = ""  # a data/prepare.py corpus: a name under data/, or a folder with train.bin and val.bin
corpus_ratio = 0.0  # the fraction of rows from the corpus
# loss weights of the DAG heads (the next-token loss has weight 1):
# mag_weight, sign_weight, op_weight, gate_weight, exec_weight (predictor_utils.py)
globals().update(DEFAULT_LOSS_WEIGHTS)
max_iters = 2000
lr_decay_iters = 2000
# -----------------------------------------------------------------------------
config, overridden = script_config(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------


def stream_settings(config: dict) -> dict:
    """Settings of the expression stream: a plain GPT (dag_depth=0) reads the same
    texts, drawn with the nodes its expressions need."""
    return config | {"dag_depth": config["dag_depth"] or config["max_expr_depth"] + 1}


require_valid_config(config, full=False, dag_depth_min=0)
require_valid_config(stream_settings(config), full=config["init_from"] == "scratch", texts=True)

proc, ctx = start_process(config)
start = start_model(KINDS["lm"], config, overridden, proc.device)
training = setup_training("lm", start, config, proc)
raw_model = training.raw_model
try:
    if config["init_from"] != "scratch":  # checked again with the settings the start took
        validate_config(stream_settings(config), texts=True)
    loss_weights = loss_weights_of(config)
    corpus = config["corpus"]  # a name under data/, or a folder
    corpus_dir = corpus if not corpus or os.path.isdir(corpus) else os.path.join(os.path.dirname(__file__), "data",
                                                                                 corpus)
    text_cfg = TextConfig(StreamConfig.from_settings(stream_settings(config)), corpus_dir, config["corpus_ratio"])
    # rows made here first: a template or corpus that does not fit stops the run in one
    # line now, not in a DataLoader worker later
    val_maker = TextExampleMaker(text_cfg)
    val_batches = [make_text_batch(val_maker, "val", b, config["batch_size"]) for b in range(config["eval_iters"])]
    make_text_batch(val_maker, "train", 0, config["batch_size"])
except ValueError as e:
    fail(str(e))
train_iter = train_batches(TextStream, text_cfg, config, start.iter_num, proc)
start = None


def losses_of(model, batch: Batch, mark=no_mark) -> tuple[dict[str, torch.Tensor], torch.Tensor, DAGPrediction | None]:
    """The next-token loss ('lm'), the DAG losses (with DAG heads), their weighted total, and the DAG prediction."""
    with ctx:
        if config["dag_depth"]:
            teacher = Teacher(batch.value, batch.mask)  # exact values re-enter where the row has them
            out = model(batch.idx, batch.targets, Literals.from_batch(batch), teacher)
        else:
            out = model(batch.idx, batch.targets)
    mark("forward")
    losses = {"lm": out.loss}
    if out.dag is None:
        return losses, out.loss, None
    executed = raw_model.execute(*out.dag.soft())
    mark("executor")
    losses |= dag_losses(out.dag, batch, executed)
    total = out.loss + total_loss(losses, loss_weights)
    mark("losses")
    return losses, total, out.dag


train(training, proc, losses_of, train_iter, val_batches, ("lm",))
