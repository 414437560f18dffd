"""
Turn a local text file into a token corpus in nanoGPT's format: data/<name>/train.bin
and val.bin, GPT-2 BPE tokens as uint16, the text's last val_fraction (cut at a line
break) for validation. Works offline (tiktoken's gpt2 files from TIKTOKEN_CACHE_DIR).
An existing data/<name>/ with files in it is never overwritten: the run stops, and the
files stay. The folder appears whole or not at all: both files are written in a temp
folder beside it, which is then renamed (a full disk leaves nothing behind).

$ python data/prepare.py --input_file=notes.txt --name=notes
"""
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
from errors import fail  # noqa: E402
from configurator import apply_config  # noqa: E402
from data.dagset.text_format import encode  # noqa: E402

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
out_dir = os.path.join(data_dir or os.path.dirname(os.path.abspath(__file__)), name)
if os.path.lexists(out_dir) and not (os.path.isdir(out_dir) and not os.listdir(out_dir)):  # but an empty folder
    fail(f"{out_dir!r} already exists and is kept as it is: give another --name, or remove it first")
parent = os.path.dirname(out_dir)
if os.path.lexists(parent) and not os.path.isdir(parent):
    fail(f"cannot write {out_dir!r}: {parent!r} is not a directory")
tmp_dir = os.path.join(parent, f".{name}.tmp{os.getpid()}")
try:  # made before the text is encoded, so an out_dir that cannot be written stops the run now
    os.makedirs(parent, exist_ok=True)
    os.mkdir(tmp_dir)
except OSError as e:
    fail(f"cannot write {out_dir!r}: {e.strerror or e}")
try:
    splits = {}
    for split, part in zip(("train", "val"), split_text(text, val_fraction)):
        splits[split] = np.array(encode(part), dtype=np.uint16)
        if len(splits[split]) < 2:  # a block needs an input and a next token
            fail(f"the {split} split of {input_file!r} has {len(splits[split])} tokens, fewer than 2: "
                 f"give a longer text or another val_fraction")
    for split, tokens in splits.items():
        with open(os.path.join(tmp_dir, f"{split}.bin"), "wb") as f:
            f.write(tokens.tobytes())
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename
    os.replace(tmp_dir, out_dir)
except OSError as e:
    fail(f"cannot write {out_dir!r}: {e.strerror or e}; nothing was written")
finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)  # gone after the rename
for split, tokens in splits.items():
    print(f"{split}: {len(tokens):,} tokens -> {os.path.join(out_dir, split + '.bin')}")
