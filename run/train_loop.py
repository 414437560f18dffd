"""The training loop of both scripts (train_predictor.py, train.py): validation over fixed
batches, evaluating and saving, the log lines (printed, and as JSON records in
out_dir/log.jsonl, which plot_curve.py reads) and the timing of a step's parts. A script
brings its settings, its data and `losses_of(model, batch, mark)`."""
import json
import os
import time
from typing import Callable, Iterator

import torch
from torch.distributed import destroy_process_group

from data.dagset.batch import Batch
from models.dag_model import final_token_metrics
from run.common import Process, Training, optimizer_step, save_if_due, set_lr, start_wandb, stop_if_non_finite

LOG_NAME = "log.jsonl"
# losses_of(model, batch, mark) -> (loss components, their weighted total, the DAG
# prediction or None); mark(part) is StepTimer.mark, called after "forward", "executor", "losses"
LossesOf = Callable[..., tuple[dict[str, torch.Tensor], torch.Tensor, object]]


def no_mark(part: str) -> None:
    pass


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

    def ms_per_step(self) -> dict[str, float]:
        """Each part's mean milliseconds per step, and their total."""
        parts = {k: 1000.0 * v / max(1, self.steps) for k, v in self.seconds.items()}
        return parts | {"total": sum(parts.values())}

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"steps": self.steps, "ms_per_step": self.ms_per_step()}, f, indent=2)


@torch.no_grad()
def evaluate_val(model: torch.nn.Module, losses_of: LossesOf, val_batches: list[Batch],
                 prepare: Callable[[Batch], Batch]) -> dict[str, float]:
    """Loss components, their total and the DAG's final-token rates (acc_*, over the rows
    that hold an expression), each the mean over the fixed validation batches."""
    model.eval()
    per_batch = []
    for batch in map(prepare, val_batches):
        losses, total, dag = losses_of(model, batch)
        row = {k: v.item() for k, v in losses.items()} | {"total": total.item()}
        if dag is not None:
            metrics = final_token_metrics(dag, batch, model.execute(*dag.hard()))
            row |= {f"acc_{k}": m[batch.mask.any(1)].mean().item() for k, m in metrics.items()}
        per_batch.append(row)
    model.train()
    return {k: sum(row[k] for row in per_batch) / len(per_batch) for k in per_batch[0]}


def write_record(config: dict, record: dict) -> None:
    """With log_json, one line of out_dir/log.jsonl: what a log line prints, as numbers."""
    if config["log_json"]:
        with open(os.path.join(config["out_dir"], LOG_NAME), "a") as f:
            f.write(json.dumps(record) + "\n")


def eval_line(iter_num: int, val: dict[str, float], shown: tuple[str, ...], minutes: float) -> str:
    dag = (f" | final-token exact {val['acc_exact']:.3f} structure {val['acc_structure']:.3f} "
           f"values {val['acc_values']:.3f}" if "acc_exact" in val else "")
    return (f"iter {iter_num}: val loss {val['total']:.4f} | " + " ".join(f"{k} {val[k]:.4f}" for k in shown)
            + f"{dag} | {minutes:.2f} min")


def train(training: Training, proc: Process, losses_of: LossesOf, train_iter: Iterator[Batch],
          val_batches: list[Batch], shown: tuple[str, ...]) -> None:
    """Train from training.iter_num to max_iters: evaluate (and save) every eval_interval
    iterations and at the end, log every log_interval (and to wandb, with wandb_log); or,
    with eval_only, print the validation losses once. shown: the loss components an
    evaluation line prints."""
    c, master = training.config, proc.master

    def prepare(batch: Batch) -> Batch:
        # cut the padding after the batch's last used position (a compiled model sees
        # lengths in steps of 8, so it compiles a few shapes rather than one per length)
        return batch.trim(8 if c["compile"] else 1).to(proc.device)
    out_dir, gas = c["out_dir"], c["gradient_accumulation_steps"]
    if c["eval_only"]:
        if master:
            print(" ".join(f"{k} {v:.4f}" for k, v in evaluate_val(training.raw_model, losses_of, val_batches,
                                                                   prepare).items()))
        return
    run_start = time.time()  # evaluation lines report the minutes since (plot_curve.py reads them)
    wandb_run = start_wandb(c["wandb_project"], c["wandb_run_name"], c) if c["wandb_log"] and master else None

    def eval_and_save(iter_num: int, final: bool = False) -> None:
        val = evaluate_val(training.raw_model, losses_of, val_batches, prepare)
        minutes = (time.time() - run_start) / 60
        print(eval_line(iter_num, val, shown, minutes))
        write_record(c, {"iter": iter_num, "val": val, "minutes": minutes})
        save_if_due(training, val, iter_num, final, wandb_run)

    timer = StepTimer(sync=c["time_parts"])
    iter_num = training.iter_num
    while iter_num < c["max_iters"]:
        lr = set_lr(training, iter_num)
        # a resumed run starts where its checkpoint was evaluated and saved
        if iter_num % c["eval_interval"] == 0 and master and iter_num != training.resumed_at:
            eval_and_save(iter_num)
        timer.skip()  # evaluating and logging are no part of a step
        for micro_step in range(gas):
            if proc.ddp:  # sync gradients only on the last micro step
                training.model.require_backward_grad_sync = micro_step == gas - 1
            batch = prepare(next(train_iter))
            timer.mark("data")
            losses, loss, _ = losses_of(training.model, batch, timer.mark)
            stop_if_non_finite("train", losses, iter_num, out_dir)
            training.scaler.scale(loss / gas).backward()
            timer.mark("backward")
        optimizer_step(training)
        timer.mark("optimizer")
        timer.steps += 1
        # logged under the iteration whose model gave the loss, like val losses and checkpoints
        if iter_num % c["log_interval"] == 0 and master:
            ms = timer.ms_per_step()
            parts = " ".join(f"{k} {v.item():.4f}" for k, v in losses.items())
            times = (" (" + ", ".join(f"{k} {v:.1f}" for k, v in ms.items() if k != "total") + ")"
                     if c["time_parts"] else "")
            print(f"iter {iter_num}: loss {loss.item():.4f} ({parts}) lr {lr:.2e}, {ms['total']:.1f} ms/iter{times}, "
                  f"data wait {ms['data'] / ms['total']:.1%}")
            record = {"iter": iter_num, "loss": loss.item(), "lr": lr, "ms_per_iter": ms["total"],
                      "data_wait": ms["data"] / ms["total"], **{k: v.item() for k, v in losses.items()}}
            write_record(c, record)
            if c["time_parts"]:
                timer.write_json(os.path.join(out_dir, "step_times.json"))
            if wandb_run:
                wandb_run.log({"iter": iter_num, "lr": lr, "train/data_wait": record["data_wait"],
                               **{f"train/{k}": v.item() for k, v in losses.items()}})
            timer.reset()
        iter_num += 1

    if master:
        eval_and_save(iter_num, final=True)  # the run's last checkpoint holds its final iteration
    if wandb_run:
        wandb_run.finish()
    if proc.ddp:
        destroy_process_group()
