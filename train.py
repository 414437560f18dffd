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
import time

import torch
from torch.distributed import destroy_process_group

from checkpoint import check_resumable, load_checkpoint, one_line
from common import (OPTIMIZER_DEFAULTS, ModelStart, autocast_context, claim_out_dir, fail, optimizer_step, resume_rng,
                    set_lr, save_if_due, setup_process, setup_training, train_batches, start_model, start_wandb,
                    stop_if_non_finite)
from config_checks import validate_config
from configurator import apply_config
from data.dagset.streaming import EXPRESSION_KEYS, StreamConfig, expression_defaults, trim_batch
from data.dagset.text_stream import TextConfig, TextExampleMaker, TextStream, make_text_batch
from models.dag_heads import Literals
from models.dag_model import BACKBONE_KEYS, HEAD_KEYS, GPT, GPTConfig, Teacher
from predictor_utils import DEFAULT_LOSS_WEIGHTS, dag_losses, final_token_metrics, loss_weights_of, total_loss

# -----------------------------------------------------------------------------
# default config values: a tiny model on a laptop CPU (config/train_daggpt.py)
# I/O
out_dir = "out-daggpt"
eval_interval = 200
log_interval = 10
eval_iters = 4
eval_only = False
always_save_checkpoint = True
keep_checkpoints = 2
init_from = "scratch"  # 'scratch', 'resume' / 'latest', 'gpt2*' or a GPT-2 dir, or a .pt (this kind, or a predictor's)
# wandb logging
wandb_log = False
wandb_project = "nanogpt-dag"
wandb_run_name = "daggpt"
# data
batch_size = 32
block_size = 64
gradient_accumulation_steps = 1
num_workers = 1
# the expressions drawn (max_digits, max_expr_depth, depth_power, the p_* of each form):
# StreamConfig's defaults (data/dagset/streaming.py) unless a config file or the command line sets them
globals().update(expression_defaults())
depth_power = 2.0  # depth d drawn with weight (d + 1) ** 2: the deep ones, where errors are
corpus = ""  # a data/prepare.py corpus: a name under data/, or a folder with train.bin and val.bin
corpus_ratio = 0.0  # the fraction of rows from the corpus
# model: a plain GPT with dag_depth = 0 (the baseline), else DAG heads as the predictor's
dag_depth = 4
value_head = "copy"
literal_embedding = True
literal_states = False
step_states = False
max_coefficient = 3
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
# loss weights of the DAG heads (the next-token loss has weight 1):
# mag_weight, sign_weight, op_weight, gate_weight, exec_weight (predictor_utils.py)
globals().update(DEFAULT_LOSS_WEIGHTS)
# adamw optimizer: weight_decay, beta1, beta2, grad_clip, decay_lr, warmup_iters, min_lr from OPTIMIZER_DEFAULTS
globals().update(OPTIMIZER_DEFAULTS)
learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
# system
device = "cpu"
dtype = "bfloat16"  # autocast on CUDA only
compile = False
backend = "nccl"  # 'gloo' on CPUs
seed = 1337
# -----------------------------------------------------------------------------
config = {k: v for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))}
overridden = apply_config(config, sys.argv[1:])
globals().update(config)
# -----------------------------------------------------------------------------


def stream_settings(config: dict) -> dict:
    """Settings of the expression stream: a plain GPT (dag_depth=0) reads the same
    texts, drawn with the nodes its expressions need."""
    return config | {"dag_depth": config["dag_depth"] or config["max_expr_depth"] + 1}


try:
    validate_config(config, full=False, dag_depth_min=0)
    validate_config(stream_settings(config), full=init_from == "scratch", texts=True)
except ValueError as e:
    fail(str(e))
corpus_dir = corpus if not corpus or os.path.isdir(corpus) else os.path.join(os.path.dirname(__file__), "data", corpus)

proc = setup_process(device, backend)
device, device_type, master_process = proc.device, proc.device_type, proc.master
if master_process:
    claim_out_dir(out_dir, lock=not eval_only)
torch.manual_seed(seed + proc.rank)
ctx = autocast_context(device_type, dtype)


def warm_start(path: str) -> ModelStart | None:
    """A train_predictor.py checkpoint's backbone and DAG heads in a fresh language model
    (position embeddings past its block fresh too); None if path is no predictor's."""
    try:
        checkpoint = load_checkpoint(path, map_location=device)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if checkpoint.get("kind", "predictor") != "predictor":
        return None
    try:  # the keys a warm start reads; a shape set again must be the predictor's, but for block_size
        model_args = check_resumable(checkpoint, path, config, overridden, model_keys, (), ("dropout", "block_size"),
                                     needs=("model", "model_args", "iter_num"), use="start a language model")
    except ValueError as e:
        fail(str(e))
    try:
        model_args |= {"block_size": block_size}
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
    return ModelStart(model, model_args, 0, 1e9, None, None)


model_keys = tuple(k for k in BACKBONE_KEYS + HEAD_KEYS if k != "vocab_size")
data_keys = ("batch_size", "gradient_accumulation_steps", *EXPRESSION_KEYS, "seed", "corpus", "corpus_ratio")
start = warm_start(init_from) if init_from.endswith(".pt") else None
if start is None:
    start = start_model("lm", GPT, GPTConfig, config, overridden, model_keys, data_keys, HEAD_KEYS, device)
for k in model_keys:
    config[k] = getattr(start.model.config, k)
globals().update({k: config[k] for k in model_keys + data_keys})
iter_num = start.iter_num
training = setup_training("lm", start, config, proc)
raw_model = training.raw_model
try:
    if init_from != "scratch":  # checked again with the settings the start took
        validate_config(stream_settings(config), texts=True)
    loss_weights = loss_weights_of(config)
    text_cfg = TextConfig(StreamConfig.from_settings(stream_settings(config)), corpus_dir, corpus_ratio)
    # rows made here first: a template or corpus that does not fit stops the run in one
    # line now, not in a DataLoader worker later
    val_maker = TextExampleMaker(text_cfg)
    val_batches = [make_text_batch(val_maker, "val", b, batch_size) for b in range(eval_iters)]
    make_text_batch(val_maker, "train", 0, batch_size)
except ValueError as e:
    fail(str(e))
train_iter = train_batches(TextStream, text_cfg, config, iter_num, proc)
resume_rng(start, device)
start = None


def to_device(batch: dict) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in trim_batch(batch, 8 if compile else 1, "targets").items()}


def losses_of(model, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor, object]:
    """The next-token loss ('lm'), the DAG losses (with DAG heads), their weighted total, and the DAG prediction."""
    with ctx:
        if dag_depth:
            teacher = Teacher(batch["value"], batch["mask"])  # exact values re-enter where the row has them
            out = model(batch["idx"], batch["targets"], Literals.from_batch(batch), teacher)
        else:
            out = model(batch["idx"], batch["targets"])
    losses = {"lm": out.loss}
    if out.dag is not None:
        losses |= dag_losses(out.dag, batch, raw_model.execute(*out.dag.soft()))
        return losses, out.loss + total_loss(losses, loss_weights), out.dag
    return losses, out.loss, None


def evaluate_val() -> dict[str, float]:
    """Losses, and the DAG's final-token exactness on expression rows, averaged over the
    fixed validation batches."""
    raw_model.eval()
    per_batch = []
    with torch.no_grad():
        for batch in map(to_device, val_batches):
            losses, total, dag = losses_of(raw_model, batch)
            row = {k: v.item() for k, v in losses.items()} | {"total": total.item()}
            if dag is not None:
                metrics = final_token_metrics(dag, batch, raw_model.execute(*dag.hard()))
                row |= {f"acc_{k}": m[batch["mask"].any(1)].mean().item() for k, m in metrics.items()}
            per_batch.append(row)
    raw_model.train()
    return {k: sum(row[k] for row in per_batch) / len(per_batch) for k in per_batch[0]}


def eval_and_save(iter_num: int, final: bool = False) -> None:
    val = evaluate_val()
    dag_part = (f" | final-token exact {val['acc_exact']:.3f} structure {val['acc_structure']:.3f} "
                f"values {val['acc_values']:.3f}" if dag_depth else "")
    print(f"iter {iter_num}: val loss {val['total']:.4f} | lm {val['lm']:.4f}" + dag_part
          + f" | {(time.time() - run_start) / 60:.2f} min")
    save_if_due(training, val, iter_num, final, wandb_run)


wandb_run = start_wandb(wandb_project, wandb_run_name, config) if wandb_log and master_process else None
run_start = time.time()
if eval_only:
    if master_process:
        print(" ".join(f"{k} {v:.4f}" for k, v in evaluate_val().items()))
    sys.exit(0)

logged = (time.time(), iter_num)  # when the last log line was printed, and at which iteration
while iter_num < max_iters:
    lr = set_lr(training, iter_num)
    if iter_num % eval_interval == 0 and master_process and iter_num != training.resumed_at:
        eval_and_save(iter_num)
        logged = (time.time(), iter_num)  # evaluating is no part of a step

    for micro_step in range(gradient_accumulation_steps):
        if proc.ddp:
            training.model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
        losses, loss, _ = losses_of(training.model, to_device(next(train_iter)))
        stop_if_non_finite("train", losses, iter_num, out_dir)
        training.scaler.scale(loss / gradient_accumulation_steps).backward()
    optimizer_step(training)

    if iter_num % log_interval == 0 and master_process:
        ms = 1000 * (time.time() - logged[0]) / (iter_num + 1 - logged[1])
        print(f"iter {iter_num}: loss {loss.item():.4f} (" + " ".join(f"{k} {v.item():.4f}" for k, v in losses.items())
              + f") lr {lr:.2e}, {ms:.1f} ms/iter")
        if wandb_run:
            wandb_run.log({"iter": iter_num, "lr": lr, **{f"train/{k}": v.item() for k, v in losses.items()}})
        logged = (time.time(), iter_num + 1)
    iter_num += 1

if master_process:
    eval_and_save(iter_num, final=True)
if wandb_run:
    wandb_run.finish()
if proc.ddp:
    destroy_process_group()
