"""
Sample from a train.py model (a GPT with DAG heads, or the plain baseline), as nanoGPT's sample.py:
$ python sample.py --out_dir=out-daggpt --start="What is 2.5 * 3 + 1 equal to?" --temperature=0
--start=FILE:prompt.txt reads the prompt from a file. Tokens are printed as they are made;
a sample ends at <|endoftext|> (the end of every training text) or after max_new_tokens.
Bad input: one line on stderr, exit 1.
"""
import codecs
import sys

import torch

from configurator import apply_config
from data.dagset.text_format import PAD_TOKEN, encode, gpt2_encoding
from errors import fail
from run.config_checks import require_valid_config
from run.kinds import load_model
from run.text_generation import generate

# -----------------------------------------------------------------------------
out_dir = "out-daggpt"
ckpt_path = ""  # a checkpoint file; empty: the newest in out_dir
start = "\n"  # the prompt, or FILE:<path>
num_samples = 3
max_new_tokens = 40  # at most config_checks.MAX_NEW_TOKENS
temperature = 0.8  # 0: greedy
top_k = 200
seed = 1337
device = "cpu"  # 'cpu', 'cuda', 'cuda:0', 'mps'
# -----------------------------------------------------------------------------
apply_config(globals(), sys.argv[1:])
# -----------------------------------------------------------------------------

require_valid_config({k: globals()[k] for k in ("num_samples", "max_new_tokens", "temperature", "top_k", "seed",
                                                 "device")}, full=False)
if start.startswith("FILE:"):
    try:
        with open(start[5:], encoding="utf-8") as f:
            start = f.read()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read the prompt file: {e}")
try:
    lm = load_model(out_dir, ckpt_path, device, kinds=("lm",))
except (FileNotFoundError, ValueError) as e:
    fail(str(e))
enc = gpt2_encoding()
prompt = encode(start)
if not prompt:
    fail("--start is empty: give a prompt")
if len(prompt) > lm.model.config.block_size:
    fail(f"--start is {len(prompt)} tokens, longer than the model's block_size={lm.model.config.block_size}")
print(f"{lm.path} (iter {lm.iter_num}): {lm.description}")
torch.manual_seed(seed)
for _ in range(num_samples if temperature > 0 else 1):  # greedy decoding gives one continuation
    print(start, end="", flush=True)
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may take several tokens
    for token in generate(lm.model, torch.tensor([prompt], device=device), max_new_tokens, temperature, top_k,
                          stop=(PAD_TOKEN,)):
        if token != PAD_TOKEN:
            print(text.decode(enc.decode_single_token_bytes(token)), end="", flush=True)
    print(text.decode(b"", final=True))
    print("---------------")
