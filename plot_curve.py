"""
Learning curve of a training run, from the records it logs (out_dir/log.jsonl):
final-token exact, structure and values accuracy on the validation batches against
training minutes.

$ python train_predictor.py config/train_predictor_config.py --log_json=True
$ python plot_curve.py --log=out-predictor/log.jsonl --out=curve.png
Several runs on one plot: --log=a/log.jsonl,b/log.jsonl (labelled by file name).
"""
import json
import os
import sys

from configurator import apply_config

# -----------------------------------------------------------------------------
log = ""  # comma-separated log.jsonl files of training runs
out = "curve.png"
title = "DAG predictor: validation accuracy at the last token"


def read_curve(path: str) -> dict[str, list[float]]:
    """The evaluation records of a log as columns: iter, exact, structure, values, minutes."""
    with open(path) as f:
        records = [r for r in map(json.loads, filter(str.strip, f)) if "acc_exact" in r.get("val", {})]
    if not records:
        raise ValueError(f"{path!r} has no evaluation lines of train_predictor.py")
    return {"iter": [float(r["iter"]) for r in records], "minutes": [r["minutes"] for r in records]} | {
        k: [r["val"][f"acc_{k}"] for r in records] for k in ("exact", "structure", "values")}


def main() -> None:
    if not log:
        sys.exit("error: give --log=<out_dir/log.jsonl>[,<log>...]")
    try:
        curves = {os.path.basename(path): read_curve(path) for path in log.split(",")}
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, c in curves.items():
        line, = ax.plot(c["minutes"], c["exact"], marker="o", ms=3, label=f"{label}: exact")
        ax.plot(c["minutes"], c["structure"], ls="--", color=line.get_color(), label=f"{label}: structure")
    ax.set_xlabel("training wall-clock minutes (2 CPU cores)")
    ax.set_ylabel("fraction of validation expressions")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    apply_config(globals(), sys.argv[1:])
    main()
