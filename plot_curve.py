"""
Learning curve of a train_predictor.py run, from its own log: final-token exact,
structure and values accuracy on the validation batches against training minutes.

$ python train_predictor.py config/train_predictor_config.py | tee train.log
$ python plot_curve.py --log=train.log --out=curve.png
Several runs on one plot: --log=a.log,b.log (labelled by file name).
"""
import os
import re
import sys

from configurator import apply_config

# -----------------------------------------------------------------------------
log = ""  # comma-separated train_predictor.py logs
out = "curve.png"
title = "DAG predictor: validation accuracy at the last token"

EVAL_LINE = re.compile(r"^iter (\d+): val loss .*final-token exact (\S+) structure (\S+) values (\S+) \| (\S+) min$", re.M)


def read_curve(path: str) -> dict[str, list[float]]:
    """The evaluation lines of a log as columns: iter, exact, structure, values, minutes."""
    with open(path) as f:
        rows = EVAL_LINE.findall(f.read())
    if not rows:
        raise ValueError(f"{path!r} has no evaluation lines of train_predictor.py")
    columns = ("iter", "exact", "structure", "values", "minutes")
    return {name: [float(row[i]) for row in rows] for i, name in enumerate(columns)}


def main() -> None:
    if not log:
        sys.exit("error: give --log=<train_predictor.py log>[,<log>...]")
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
