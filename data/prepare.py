"""
Turn a local text file into a token corpus in nanoGPT's format: data/<name>/train.bin
and val.bin, GPT-2 BPE tokens as uint16, the text's last val_fraction (cut at a line
break) for validation. Works offline (tiktoken's gpt2 files from TIKTOKEN_CACHE_DIR).

$ python data/prepare.py --input_file=notes.txt --name=notes
"""
import os
import re
import sys

import numpy as np
import tiktoken

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
from common import fail  # noqa: E402
from configurator import apply_config  # noqa: E402

# -----------------------------------------------------------------------------
input_file = ""  # the text file (UTF-8)
name = ""  # the corpus: data/<name>/
val_fraction = 0.1
data_dir = ""  # the folder <name>/ goes in; empty: this data/ folder
# -----------------------------------------------------------------------------
apply_config(globals(), sys.argv[1:])


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """(train, val): val is the text's last val_fraction, from the line break nearest
    before that point (or exactly there if the text has no line break before it)."""
    cut = round(len(text) * (1 - val_fraction))
    at = text.rfind("\n", 0, cut)
    cut = at + 1 if at > 0 else cut
    return text[:cut], text[cut:]


if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
    fail(f"name must be letters, digits, '_' or '-' (a folder under data/), got {name!r}")
if not 0 < val_fraction < 1:
    fail(f"val_fraction must be in (0, 1), got {val_fraction}")
try:
    with open(input_file, encoding="utf-8") as f:
        text = f.read()
except (OSError, UnicodeDecodeError) as e:
    fail(f"cannot read input_file={input_file!r}: {' '.join(str(e).split())}")
enc = tiktoken.get_encoding("gpt2")
assert enc.n_vocab <= 2 ** 16  # every token id fits uint16
splits = {}
for split, part in zip(("train", "val"), split_text(text, val_fraction)):
    splits[split] = np.array(enc.encode_ordinary(part), dtype=np.uint16)
    if len(splits[split]) < 2:  # a block needs an input and a next token
        fail(f"the {split} split of {input_file!r} has {len(splits[split])} tokens, fewer than 2: "
             f"give a longer text or another val_fraction")
out_dir = os.path.join(data_dir or os.path.dirname(os.path.abspath(__file__)), name)
os.makedirs(out_dir, exist_ok=True)
for split, tokens in splits.items():
    tokens.tofile(os.path.join(out_dir, f"{split}.bin"))
    print(f"{split}: {len(tokens):,} tokens -> {os.path.join(out_dir, split + '.bin')}")
