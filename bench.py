"""
Benchmarks of the three places where time goes: making data, executing DAGs, training.

$ python bench.py                         # short: well under a minute on 2 cores
$ python bench.py --device=cuda --json_out=bench.json

Prints a table; with --json_out also writes JSON with (at least) data_examples_per_s
(one process), executor_dags_per_s (forward+backward, float64, batch 256 x block 32,
dag_depth 4) and train_data_wait_fraction (of the default config's training loop).
"""
import json
import os
import re
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
json_out = ""
# -----------------------------------------------------------------------------
apply_config(globals(), sys.argv[1:])
if threads > 0:
    torch.set_num_threads(threads)
here = os.path.dirname(os.path.abspath(__file__))


def data_rate(cfg: StreamConfig) -> float:
    """Examples per second made in this process."""
    maker = ExampleMaker(cfg)
    make_batch(maker, "train", 0, data_batch_size)  # warm up caches and tiktoken
    n, b, t0 = 0, 1, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += len(make_batch(maker, "train", b, data_batch_size)["idx"])
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
        n += len(next(loader)["idx"])
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


def train_rate() -> tuple[float, float]:
    """(iterations/s, fraction of iteration time waiting for data) of train_predictor.py
    with the default config: its log line for the second train_iters iterations, when
    the DataLoader workers are running and caches are warm."""
    with tempfile.TemporaryDirectory() as out:
        total = 2 * train_iters
        cmd = [sys.executable, os.path.join(here, "train_predictor.py"), train_config, f"--out_dir={out}",
               f"--device={device}", f"--max_iters={total}", f"--eval_interval={total}",
               f"--log_interval={train_iters}", "--eval_iters=1"]
        log = subprocess.run(cmd, capture_output=True, text=True, cwd=here)
    if log.returncode != 0:
        sys.exit(f"error: training benchmark failed: {log.stderr.strip().splitlines()[-1]}")
    ms, wait = map(float, re.findall(r"([\d.]+) ms/iter, data wait ([\d.]+)%", log.stdout)[-1])
    return 1000.0 / ms, wait / 100.0


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
results["train_iters_per_s"], results["train_data_wait_fraction"] = train_rate()

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
    ("  time waiting for data", f"{results['train_data_wait_fraction']:.1%}"),
]
print(f"device: {results['device']}, torch threads: {torch.get_num_threads()}")
width = max(len(name) for name, _ in rows)
for name, value in rows:
    print(f"{name:<{width}}  {value}")
if json_out:
    with open(json_out, "w") as f:
        json.dump(results, f, indent=2)
