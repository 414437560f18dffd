"""
Benchmarks of the three places where time goes: making data, executing DAGs, training.

$ python bench.py                         # short: well under a minute on 2 cores
$ python bench.py --device=cuda --json_out=bench.json

Prints a table; with --json_out also writes JSON with (at least) data_examples_per_s
(one process), executor_dags_per_s (forward+backward, float64, batch 256 x block 32,
dag_depth 4), train_ms_<part> (the default config's training step, part by part, timed
inside its loop: data, forward, executor, losses, backward, optimizer, total) and
train_data_wait_fraction. --baseline=<git revision> also times that revision's training
step and this tree's, from the wall clock of the same runs, taking turns:
$ python bench.py --baseline=44770b2
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from configurator import apply_config, read_config_file
from data.dagset.streaming import DAGStream, ExampleMaker, StreamConfig, make_batch
from models.dag_executor import DAGExecutor

# -----------------------------------------------------------------------------
seconds = 3.0  # per data / executor measurement
device = "cpu"
threads = 0  # torch threads for the executor runs; 0 keeps torch's default
# data settings: dag_depth 4, 4 integer digits, 4 decimals, block size 32
dag_depth = 4
block_size = 32
max_digits = 4
max_decimal_places = 4
data_batch_size = 64
workers = 2  # DataLoader workers for the multi-process figure
train_config = "config/train_predictor_config.py"
gpu_config = "config/train_predictor_gpu.py"  # its data settings are measured too
train_iters = 50  # training iterations measured, after as many to warm up
train_args = ""  # more settings for this tree's training runs, e.g. "--literal_states=False"
baseline = ""  # a git revision (commit, tag) whose training step to time beside this tree's, with its own train_config
json_out = ""
# -----------------------------------------------------------------------------
apply_config(globals(), sys.argv[1:])
here = os.path.dirname(os.path.abspath(__file__))
if baseline:  # a revision that does not exist is an error now, not after the other measurements
    rev = subprocess.run(["git", "-C", here, "rev-parse", "--verify", "--quiet", f"{baseline}^{{commit}}"],
                         capture_output=True, text=True)
    if rev.returncode != 0:
        sys.exit(f"error: baseline={baseline!r} is not a commit of this repository")
if threads > 0:
    torch.set_num_threads(threads)


def data_rate(cfg: StreamConfig) -> float:
    """Examples per second made in this process."""
    maker = ExampleMaker(cfg)
    make_batch(maker, "train", 0, data_batch_size)  # warm up caches and tiktoken
    n, b, t0 = 0, 1, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += len(make_batch(maker, "train", b, data_batch_size).idx)
        b += 1
    return n / (time.perf_counter() - t0)


def data_rate_workers(cfg: StreamConfig, n_workers: int) -> float:
    """Examples per second arriving through a DataLoader with n_workers processes."""
    loader = iter(DataLoader(DAGStream(cfg, "train", data_batch_size), batch_size=None,
                             num_workers=n_workers, prefetch_factor=2))
    for _ in range(n_workers):  # workers started and running
        next(loader)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += len(next(loader).idx)
    return n / (time.perf_counter() - t0)


def executor_rate(B: int, T: int, D: int, backend: str = "auto") -> float:
    """DAGs per second, forward + backward with gradients for all four inputs."""
    g = torch.Generator().manual_seed(0)

    def leaf(*shape, scale=1.0, shift=0.0):
        x = (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift).to(device)
        return x.requires_grad_()

    inputs = (leaf(B, T, 2 * D, scale=100.0), leaf(B, T, 2 * D, scale=2.0, shift=-1.0),
              leaf(B, T, D, 2 * D, scale=2.0, shift=-1.0), leaf(B, T, D))
    executor = DAGExecutor(D, backend=backend)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():  # as in training: gradients flow on to the heads, nothing accumulates
        torch.autograd.grad(executor(*inputs).sum(), inputs)

    for _ in range(3):
        step()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
        if n % 10 == 0:
            sync()
    sync()
    return n * B * T / (time.perf_counter() - t0)


def run_training(tree: str, iters: int, out: str, *extra: str) -> float:
    """Seconds of wall clock for `iters` iterations of tree's train_predictor.py with its
    train_config (each run also evaluates at its start and end and saves once); this
    tree's runs add train_args."""
    extra = (*extra, *train_args.split()) if tree == here else extra
    cmd = [sys.executable, os.path.join(tree, "train_predictor.py"), os.path.join(tree, train_config),
           f"--out_dir={out}", f"--device={device}", f"--max_iters={iters}", f"--eval_interval={iters}",
           f"--log_interval={train_iters}", "--eval_iters=1", *extra]
    t0 = time.perf_counter()
    log = subprocess.run(cmd, capture_output=True, text=True, cwd=tree)
    if log.returncode != 0:
        lines = log.stderr.strip().splitlines() or ["no output"]
        sys.exit(f"error: training benchmark in {tree} failed: {lines[-1]}")
    return time.perf_counter() - t0


def step_parts() -> dict[str, float]:
    """Milliseconds per part of a train_predictor.py step (data, forward, executor,
    losses, backward, optimizer, total), measured inside the training loop over the
    second train_iters iterations, when the data workers run and caches are warm."""
    with tempfile.TemporaryDirectory() as out:
        run_training(here, 2 * train_iters, out, "--time_parts=True")
        with open(os.path.join(out, "step_times.json")) as f:
            return json.load(f)["ms_per_step"]


def ms_per_iter(trees: dict[str, str]) -> dict[str, float]:
    """Milliseconds per iteration of each tree's training, from the wall clock of runs of
    train_iters and 2 * train_iters iterations: their difference holds train_iters steps
    and nothing else (start-up, evaluation and saving cancel). Trees take turns, so a
    change in the machine's speed falls on all of them."""
    seconds = {name: 0.0 for name in trees}
    for sign, iters in ((-1, train_iters), (1, 2 * train_iters)):
        for name, tree in trees.items():
            with tempfile.TemporaryDirectory() as out:
                seconds[name] += sign * run_training(tree, iters, out)
    return {name: 1000.0 * s / train_iters for name, s in seconds.items()}


def exported(rev: str, into: str) -> str:
    """The files of git revision rev of this repository, written under `into`."""
    archive = subprocess.run(["git", "-C", here, "archive", "--format=tar", rev], capture_output=True)
    if archive.returncode != 0:
        sys.exit(f"error: baseline={rev!r}: {archive.stderr.decode().strip().splitlines()[-1]}")
    subprocess.run(["tar", "-x", "-C", into], input=archive.stdout, check=True)
    return into


cfg = StreamConfig(dag_depth=dag_depth, block_size=block_size, max_digits=max_digits,
                   max_decimal_places=max_decimal_places, max_expr_depth=dag_depth - 1)
deep = StreamConfig(dag_depth=dag_depth + 1, block_size=block_size, max_digits=max_digits,
                    max_decimal_places=max_decimal_places, min_expr_depth=dag_depth, max_expr_depth=dag_depth)
gpu = read_config_file(os.path.join(here, gpu_config))
gpu_data = StreamConfig(dag_depth=gpu["dag_depth"], block_size=gpu["block_size"], max_digits=gpu["max_digits"],
                        max_decimal_places=gpu["max_decimal_places"], max_expr_depth=gpu["max_expr_depth"])
results = {
    "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)",
    "data_examples_per_s": data_rate(cfg),
    f"data_examples_per_s_{workers}_workers": data_rate_workers(cfg, workers),
    f"data_examples_per_s_all_depth_{dag_depth}": data_rate(deep),
    "data_examples_per_s_gpu_config": data_rate(gpu_data),
}
executor_shapes = [(256, 32, 4), (64, 32, 8), (256, 32, 8)]
for B, T, D in executor_shapes:
    results[f"executor_dags_per_s_B{B}_T{T}_D{D}"] = executor_rate(B, T, D)
results["executor_dags_per_s"] = results["executor_dags_per_s_B256_T32_D4"]
implementation = "C kernel" if DAGExecutor(4).uses_kernel(torch.device(device)) else "torch"
if implementation == "C kernel":  # and for comparison: the torch implementation (what CUDA runs), one thread
    results["executor_dags_per_s_torch"] = executor_rate(256, 32, 4, backend="torch")
    threads_used = torch.get_num_threads()
    torch.set_num_threads(1)
    results["executor_dags_per_s_1_thread"] = executor_rate(256, 32, 4)
    torch.set_num_threads(threads_used)
parts = step_parts()
results |= {f"train_ms_{k}": v for k, v in parts.items()}
results["train_iters_per_s"] = 1000.0 / parts["total"]
results["train_data_wait_fraction"] = parts["data"] / parts["total"]
if baseline:
    with tempfile.TemporaryDirectory() as old_tree:
        wall = ms_per_iter({"this tree": here, baseline: exported(baseline, old_tree)})
    results["train_ms_per_iter_wall"], results["baseline_ms_per_iter_wall"] = wall["this tree"], wall[baseline]
    results["baseline"] = baseline

rows = [
    ("data, 1 process (dag_depth 4: 0-3 operations)", f"{results['data_examples_per_s']:,.0f} examples/s"),
    (f"data, {workers} DataLoader workers", f"{results[f'data_examples_per_s_{workers}_workers']:,.0f} examples/s"),
    (f"data, 1 process, all {dag_depth}-operation expressions",
     f"{results[f'data_examples_per_s_all_depth_{dag_depth}']:,.0f} examples/s"),
    (f"data, 1 process, {gpu_config} (dag_depth {gpu['dag_depth']}, block {gpu['block_size']})",
     f"{results['data_examples_per_s_gpu_config']:,.0f} examples/s"),
    (f"  its {gpu['num_workers']} workers feed at most (if they scale)",
     f"{results['data_examples_per_s_gpu_config'] * gpu['num_workers'] / gpu['batch_size']:.1f} iters/s"),
    *[(f"executor fwd+bwd float64 ({implementation}), B={B} T={T} D={D}",
       f"{results[f'executor_dags_per_s_B{B}_T{T}_D{D}'] / 1e6:.2f} M DAGs/s") for B, T, D in executor_shapes],
    *[(name, f"{results[key] / 1e6:.2f} M DAGs/s") for name, key in (
        ("executor, torch implementation, B=256 T=32 D=4", "executor_dags_per_s_torch"),
        ("executor, C kernel on 1 thread, B=256 T=32 D=4", "executor_dags_per_s_1_thread")) if key in results],
    (f"train_predictor.py ({train_config}, {device})", f"{results['train_iters_per_s']:.2f} iters/s"),
    *[(f"  {k}", f"{parts[k]:.1f} ms/iter") for k in parts],
    ("  time waiting for data", f"{results['train_data_wait_fraction']:.1%}"),
    *[(name, f"{results[key]:.1f} ms/iter") for name, key in (
        ("step by wall clock, this tree", "train_ms_per_iter_wall"),
        (f"step by wall clock, {baseline}", "baseline_ms_per_iter_wall")) if key in results],
]
print(f"device: {results['device']}, torch threads: {torch.get_num_threads()}")
width = max(len(name) for name, _ in rows)
for name, value in rows:
    print(f"{name:<{width}}  {value}")
if json_out:
    with open(json_out, "w") as f:
        json.dump(results, f, indent=2)
