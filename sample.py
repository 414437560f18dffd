"""
Sample from a train.py model (a GPT with DAG heads, or the plain baseline), as nanoGPT's sample.py:
$ python sample.py --out_dir=out-daggpt --start="What is 2.5 * 3 + 1 equal to?" --temperature=0
--start=FILE:prompt.txt reads the prompt from a file. Bad input: one line on stderr, exit 1.
"""
import sys

import torch

from common import fail
from configurator import apply_config
from models.result_copy import gpt2_encoding
from text_generation import generate, load_lm

# -----------------------------------------------------------------------------
out_dir = "out-daggpt"
ckpt_path = ""  # a checkpoint file; empty: the newest in out_dir
start = "\n"  # the prompt, or FILE:<path>
num_samples = 3
max_new_tokens = 40
temperature = 0.8  # 0: greedy
top_k = 200
seed = 1337
device = "cpu"
# -----------------------------------------------------------------------------
apply_config(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------

if num_samples < 1 or max_new_tokens < 1 or temperature < 0 or top_k < 1:
    fail(f"need num_samples, max_new_tokens, top_k >= 1 and temperature >= 0, got {num_samples}, "
         f"{max_new_tokens}, {top_k}, {temperature}")
if start.startswith("FILE:"):
    try:
        with open(start[5:], encoding="utf-8") as f:
            start = f.read()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read the prompt file: {e}")
try:
    lm = load_lm(out_dir, ckpt_path, device)
except (FileNotFoundError, ValueError) as e:
    fail(str(e))
enc = gpt2_encoding()
prompt = enc.encode_ordinary(start)
if not prompt:
    fail("--start is empty: give a prompt")
if len(prompt) > lm.model.config.block_size:
    fail(f"--start is {len(prompt)} tokens, longer than the model's block_size={lm.model.config.block_size}")
print(f"{lm.path} (iter {lm.iter_num}): {lm.kind}")
torch.manual_seed(seed)
for _ in range(num_samples if temperature > 0 else 1):  # greedy decoding gives one continuation
    out = generate(lm.model, torch.tensor([prompt], device=device), max_new_tokens, temperature, top_k)
    print(enc.decode(out[0].tolist()))
    print("---------------")
