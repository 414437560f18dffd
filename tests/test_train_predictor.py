"""End-to-end tests of train_predictor.py, run as a subprocess on a tiny model: config
errors, checkpoint files, bit-exact resume, DDP, wandb, non-finite losses, GPT-2 init
and a short run that learns."""
import os
import re
import runpy
import shutil
import subprocess
import sys

import pytest
import torch

from run.checkpoint import CHECKSUM_KEY

from models.dag_model import GPTConfig
from models.predictor_only_model import PredictorOnlyModel
from tests.script_runs import (ROOT, assert_one_line_error, assert_same_tensors, ckpts, finish, launch_script, load,
                               run_in_process)
from tests.test_math_stream import write_prepared

SCRIPT = os.path.join(ROOT, "train_predictor.py")
CONFIG = os.path.join(ROOT, "config", "train_predictor_config.py")
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--dag_depth=3",
        "--max_expr_depth=2", "--num_workers=0", "--eval_iters=1", "--log_interval=1"]
CKPT_KEYS = {"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config", "rng_state",
             "cuda_rng_state", "kind", "sha256"}  # the last one run/checkpoint.py adds and checks
# the resume tests need evaluations between the runs' ends, dropout (the RNG state), two
# micro steps (the data position) and a DataLoader worker (batches made elsewhere)
RESUME = ["--eval_interval=2", "--lr_decay_iters=8", "--warmup_iters=2", "--dropout=0.1",
          "--gradient_accumulation_steps=2", "--num_workers=1"]
BLOW_UP = ["--learning_rate=1e30", "--grad_clip=0.0", "--decay_lr=False", "--warmup_iters=0"]


def launch(*args: str, cwd: str = ROOT, launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start the script on the tiny model; args come after the config file and TINY."""
    return launch_script([SCRIPT, CONFIG, *TINY, *args], cwd, launcher)


def train(*args: str, ok: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return finish(launch(*args, **kwargs), ok)


def val_losses(stdout: str) -> dict[int, float]:
    return {int(m[1]): float(m[2]) for m in re.finditer(r"^iter (\d+): val loss (\S+) ", stdout, re.M)}


# ----------------------------------------------------------------------------- config


def test_gpu_config_runs_shrunk_on_cpu(tmp_path):
    # every key of the GPU config exists and has the right type; only size and device change
    env = os.environ.copy()
    env.update(OMP_NUM_THREADS="1")
    cmd = [sys.executable, SCRIPT, os.path.join(ROOT, "config", "train_predictor_gpu.py"), *TINY,
           f"--out_dir={tmp_path}", "--device=cpu", "--compile=False", "--max_iters=1", "--eval_interval=1"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert load(tmp_path / "ckpt_00000001.pt")["config"]["max_iters"] == 1


def test_unknown_key_exits_2_with_one_line():
    result = train("--nope=1", ok=False)
    assert result.returncode == 2
    assert_one_line_error(result, "config error: unknown key 'nope' (from --nope=1)")


@pytest.mark.parametrize("arg, status, message", [
    ("--max_iters=1.5", 2, "config error: key 'max_iters' expects int, got float (1.5)"),
    # only config keys can be set, not the script's other globals
    ("--torch=1", 2, "config error: unknown key 'torch' (from --torch=1)"),
    # rather than silently keeping every checkpoint (a [:-0] slice prunes nothing)
    ("--keep_checkpoints=0", 1, "error: keep_checkpoints must be >= 1, got 0"),
])
def test_bad_setting_stops_before_anything_runs(monkeypatch, capsys, arg, status, message):
    # in this process, which is safe as the script checks its config before it changes
    # any state (RNG, files, process group), and saves a subprocess's start-up time
    monkeypatch.setattr(sys, "argv", [SCRIPT, CONFIG, *TINY, arg])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(SCRIPT, run_name="__main__")
    assert stop.value.code == status
    assert capsys.readouterr().err.splitlines() == [message]


# ----------------------------------------------------------------------------- a run that learns


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("learn") / "out"
    result = train(f"--out_dir={out_dir}", "--max_iters=60", "--eval_interval=20", "--eval_iters=2",
                   "--log_interval=20", "--learning_rate=3e-3", "--warmup_iters=5", "--lr_decay_iters=60",
                   "--min_lr=3e-4", "--keep_checkpoints=2")
    return out_dir, result.stdout


def test_val_loss_falls(learning_run):
    _, stdout = learning_run
    val = val_losses(stdout)
    assert sorted(val) == [0, 20, 40, 60]
    assert val[60] < 0.5 * val[0]


def test_checkpoint_files(learning_run):
    out_dir, stdout = learning_run
    # saved at 20, 40, 60 (never the untrained model at 0); keep_checkpoints=2 leaves two
    assert ckpts(out_dir) == ["ckpt_00000040.pt", "ckpt_00000060.pt"]
    for iter_num in (40, 60):  # 60 = max_iters: the last checkpoint holds the final iteration
        ckpt = load(out_dir / f"ckpt_{iter_num:08d}.pt")
        assert set(ckpt) == CKPT_KEYS
        assert ckpt["iter_num"] == iter_num and ckpt["kind"] == "predictor"
        assert ckpt["rng_state"].dtype == torch.uint8 and ckpt["cuda_rng_state"] is None
        assert ckpt["config"]["max_iters"] == 60 and ckpt["config"]["out_dir"] == str(out_dir)
        assert ckpt["model_args"] == dict(n_layer=1, n_head=2, n_embd=32, block_size=32, bias=False, dropout=0.0,
                                          dag_depth=3, value_head="copy", max_digits=4, max_decimal_places=4,
                                          max_coefficient=3, literal_embedding=True, literal_states=True,
                                          step_states=False, vocab_size=50304)
        PredictorOnlyModel(GPTConfig(**ckpt["model_args"])).load_state_dict(ckpt["model"])
    best = load(out_dir / "ckpt_00000060.pt")["best_val_loss"]
    assert best == pytest.approx(min(val_losses(stdout).values()), abs=5e-5)  # printed to 4 places


def test_scratch_run_refuses_an_out_dir_with_newer_checkpoints(learning_run, tmp_path):
    out_dir = tmp_path / "out"
    shutil.copytree(learning_run[0], out_dir)
    result = train(f"--out_dir={out_dir}", "--max_iters=2", ok=False)
    assert_one_line_error(result, "already holds a checkpoint of iter 60, past iter 0")
    assert ckpts(out_dir) == ["ckpt_00000040.pt", "ckpt_00000060.pt"]


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def resumed_runs(tmp_path_factory):
    """Final checkpoints of 8 iterations run in one go, as 4 + resume to 8, and resumed
    from the 4-iteration checkpoint given as a path."""
    tmp = tmp_path_factory.mktemp("resume")
    whole, split, from_path = tmp / "whole", tmp / "split", tmp / "from_path"
    runs = [launch(f"--out_dir={whole}", "--max_iters=8", *RESUME),
            launch(f"--out_dir={split}", "--max_iters=4", *RESUME)]
    for proc in runs:
        finish(proc)
    # the resumed run prunes ckpt_4 from its out_dir, so the path run reads a copy
    shutil.copy(split / "ckpt_00000004.pt", tmp / "ckpt_00000004.pt")
    runs = [launch(f"--out_dir={split}", "--max_iters=8", "--init_from=resume", *RESUME),
            launch(f"--out_dir={from_path}", "--max_iters=8", f"--init_from={tmp / 'ckpt_00000004.pt'}", *RESUME)]
    resume_out = [finish(proc).stdout for proc in runs]
    return {name: load(d / "ckpt_00000008.pt") for name, d in
            [("whole", whole), ("split", split), ("from_path", from_path)]}, resume_out


@pytest.mark.parametrize("name", ["split", "from_path"])
def test_resume_is_bit_exact(resumed_runs, name):
    ckpts8, _ = resumed_runs
    whole, resumed = ckpts8["whole"], ckpts8[name]
    assert whole["iter_num"] == resumed["iter_num"] == 8
    assert_same_tensors(whole["model"], resumed["model"])
    assert whole["optimizer"]["state"].keys() == resumed["optimizer"]["state"].keys()
    for k in whole["optimizer"]["state"]:
        assert_same_tensors(whole["optimizer"]["state"][k], resumed["optimizer"]["state"][k])
    assert torch.equal(whole["rng_state"], resumed["rng_state"])
    assert whole["best_val_loss"] == resumed["best_val_loss"]


def test_resumed_run_starts_after_its_checkpoint(resumed_runs):
    _, (split_out, path_out) = resumed_runs
    # iter 4 was evaluated and saved by the first run: no second evaluation of it
    assert sorted(val_losses(split_out)) == sorted(val_losses(path_out)) == [6, 8]
    assert re.search(r"^resuming from .*ckpt_00000004\.pt$", split_out, re.M)
    assert re.search(r"^iter 4: loss ", split_out, re.M)


def test_resume_keeps_the_checkpoints_data_settings(tmp_path):
    train(f"--out_dir={tmp_path}", "--max_iters=2", "--eval_interval=2", "--seed=5", "--p_power=0.3",
          "--respace=True")
    # not given again: taken from the checkpoint; given again with another value: a note
    result = train(f"--out_dir={tmp_path}", "--max_iters=3", "--eval_interval=2", "--init_from=resume",
                   "--p_parens=0.5")
    assert "note: p_parens=0.5 replaces the checkpoint's 0.2" in result.stdout
    config = load(tmp_path / "ckpt_00000003.pt")["config"]
    assert (config["seed"], config["p_power"], config["p_parens"], config["respace"]) == (5, 0.3, 0.5, True)
    # a checkpoint saved before the dataset setting existed resumes on the expressions
    ckpt = torch.load(tmp_path / "ckpt_00000003.pt", weights_only=False)
    ckpt.pop(CHECKSUM_KEY)  # edited: its checksum no longer holds
    for k in ("dataset", "math_dir"):
        del ckpt["config"][k]
    torch.save(ckpt, tmp_path / "ckpt_00000003.pt")
    train(f"--out_dir={tmp_path}", "--max_iters=4", "--eval_interval=2", "--init_from=resume")
    assert load(tmp_path / "ckpt_00000004.pt")["config"]["dataset"] == "expressions"


def test_resume_with_empty_out_dir_is_one_line_error(tmp_path):
    result = train(f"--out_dir={tmp_path}", "--init_from=resume", ok=False)
    assert_one_line_error(result, "error: no checkpoint", str(tmp_path))


# ----------------------------------------------------------------------------- DDP


def test_ddp_two_ranks_equal_two_micro_steps(tmp_path):
    """Rank r reads batches r, r + 2, ...: two gloo ranks average the gradients of
    batches 0 and 1 in the first step, exactly as one process with two micro steps."""
    ddp = launch(f"--out_dir={tmp_path / 'ddp'}", "--max_iters=2", "--backend=gloo", "--device=cpu",
                 launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    single = launch(f"--out_dir={tmp_path / 'single'}", "--max_iters=2", "--gradient_accumulation_steps=2")
    finish(ddp)
    finish(single)
    assert ckpts(tmp_path / "ddp") == ["ckpt_00000002.pt"]
    ddp_ckpt, single_ckpt = load(tmp_path / "ddp" / "ckpt_00000002.pt"), load(tmp_path / "single" / "ckpt_00000002.pt")
    assert set(ddp_ckpt) == CKPT_KEYS and ddp_ckpt["iter_num"] == 2
    assert_same_tensors(ddp_ckpt["model"], single_ckpt["model"])


# ----------------------------------------------------------------------------- wandb


def test_wandb_offline_run_finishes(tmp_path):
    result = train("--out_dir=out", "--max_iters=2", "--wandb_log=True", cwd=str(tmp_path))
    assert ckpts(tmp_path / "out") == ["ckpt_00000002.pt"]
    runs = [d for d in os.listdir(tmp_path / "wandb") if d.startswith("offline-run-")]
    assert len(runs) == 1
    assert any(f.endswith(".wandb") for f in os.listdir(tmp_path / "wandb" / runs[0]))
    assert "iter 2: val loss" in result.stdout


# ----------------------------------------------------------------------------- non-finite loss


@pytest.mark.parametrize("eval_interval, kind", [(1, "val"), (100, "train")])
def test_non_finite_loss_stops_without_saving(learning_run, tmp_path, eval_interval, kind):
    """A huge learning rate from the 60-iteration checkpoint: the step at iter 60 makes the
    weights non-finite, so the losses at iter 61 are NaN, whether evaluation (before the
    step, at eval_interval=1) or training meets them first."""
    out_dir = tmp_path / "out"
    shutil.copytree(learning_run[0], out_dir)
    before = {name: (out_dir / name).read_bytes() for name in ckpts(out_dir)}
    result = train(f"--out_dir={out_dir}", "--init_from=resume", "--max_iters=70",
                   f"--eval_interval={eval_interval}", *BLOW_UP, ok=False)
    assert_one_line_error(result, f"error: non-finite {kind} mag loss (nan) at iter 61; stopped without saving, "
                                  f"last good checkpoint: {out_dir / 'ckpt_00000060.pt'}")
    assert {name: (out_dir / name).read_bytes() for name in ckpts(out_dir)} == before
    assert load(out_dir / "ckpt_00000060.pt")["iter_num"] == 60


# ----------------------------------------------------------------------------- GPT-2 init


def test_init_from_local_gpt2_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=32, vocab_size=50257, n_positions=64, bos_token_id=0, eos_token_id=0))
    hf.save_pretrained(tmp_path / "gpt2")
    train(f"--out_dir={tmp_path / 'out'}", f"--init_from={tmp_path / 'gpt2'}", "--block_size=32", "--max_iters=2")
    ckpt = load(tmp_path / "out" / "ckpt_00000002.pt")
    args = ckpt["model_args"]
    assert (args["n_layer"], args["n_embd"], args["vocab_size"], args["block_size"], args["bias"]) == (1, 32, 50257, 32, True)
    assert ckpt["model"]["transformer.wpe.weight"].shape == (32, 32)
    # the saved config describes the model trained, not the defaults it replaced (n_layer=4)
    assert {k: ckpt["config"][k] for k in args if k != "vocab_size"} == {k: v for k, v in args.items() if k != "vocab_size"}
    # the backbone starts from the saved weights: two Adam steps at warmup learning rates
    # (2e-5, 4e-5) move each weight by less than 1e-4
    moved = (ckpt["model"]["transformer.wte.weight"] - hf.transformer.wte.weight.detach()).abs().max().item()
    assert moved < 1e-3


def test_init_from_missing_directory_is_one_line_error(tmp_path):
    result = train(f"--out_dir={tmp_path}", "--init_from=/no/such/dir", ok=False)
    assert_one_line_error(result, "error: init_from='/no/such/dir'")


def test_mathematics_config_trains_on_the_benchmark_files(tmp_path):
    """config/train_predictor_mathematics.py, shrunk, on the real generator lines of the
    fixture; evaluate.py scores its checkpoint on the training files' questions."""
    write_prepared(tmp_path / "data")
    config = os.path.join(ROOT, "config", "train_predictor_mathematics.py")
    args = [f"--math_dir={tmp_path / 'data'}", "--n_layer=1", "--n_head=2", "--n_embd=32", "--batch_size=4",
            "--num_workers=0", "--eval_iters=1", "--max_iters=2", "--eval_interval=2", "--log_interval=1"]
    result = finish(launch_script([SCRIPT, config, *args, f"--out_dir={tmp_path / 'out'}"]))
    assert re.search(r"^iter 2: val loss \S+ .* final-token exact", result.stdout, re.M)
    ckpt = load(tmp_path / "out" / "ckpt_00000002.pt")
    assert ckpt["config"]["dataset"] == "mathematics" and ckpt["model_args"]["dag_depth"] == 12
    assert ckpt["config"]["math_prefixes"] is True
    scored = run_in_process(os.path.join(ROOT, "evaluate.py"), f"--out_dir={tmp_path / 'out'}",
                            f"--qa_file={tmp_path / 'data' / 'train-easy' / '*.txt'}")
    assert scored.returncode == 0, scored.stderr
    assert re.search(r"^all +35 [01]\.\d{4} \[", scored.stdout, re.M)
    too_small = finish(launch_script([SCRIPT, config, *args, "--block_size=16", f"--out_dir={tmp_path / 'x'}"]),
                       ok=False)
    assert_one_line_error(too_small, "GPT-2 tokens, more than block_size=16: give block_size >= ")
