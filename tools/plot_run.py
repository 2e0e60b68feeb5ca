#!/usr/bin/python3
"""Draws a convnet run as one PNG, without a server (Debian's python3-matplotlib).

  plot_run.py RUN_DIR [--output PNG]
      loss and top-1 (train and validation) against epochs, the learning
      rate, img/s and the data-wait share over time; the title names the
      model, the global batch and the best validation top-1. Default output:
      RUN_DIR/report.png.
  plot_run.py --confusion FILE [--output PNG]
      the confusion matrix of an evaluation: FILE is a run directory (its
      newest eval-<step>.json), an eval-<step>.json, the JSON line of
      `convnet eval --per-class`, or a `convnet predict` output (.h5: /logits
      and /labels). Default output: FILE's directory/confusion.png.

Records of a resumed run replace those an earlier start logged from the
resumed step on, as TensorBoard does. Prints the PNG's path.
"""

import argparse
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_records(run_dir):
    """metrics.jsonl's records, each start dropping what earlier starts logged after its step."""
    records = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "start":
                records = [x for x in records if x.get("step", 0) <= r["step"]]
            records.append(r)
    return records


def last_start(records):
    starts = [r for r in records if r.get("kind") == "start"]
    return starts[-1] if starts else {}


def series(records, kind, key, steps_per_epoch):
    rows = [r for r in records if r.get("kind") == kind and r.get(key) is not None]
    x = [r["step"] / steps_per_epoch if steps_per_epoch else r["step"] for r in rows]
    return x, [r[key] for r in rows]


def plot_report(run_dir, output):
    records = read_records(run_dir)
    start = last_start(records)
    per_epoch = start.get("steps_per_epoch")
    unit = "epoch" if per_epoch else "step"
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, key, label in ((axes[0][0], "loss", "loss"), (axes[0][1], "top1", "top-1")):
        for kind, name, style in (("train", "train", "-"), ("eval", "validation", "o-")):
            x, y = series(records, kind, key, per_epoch)
            if x:
                ax.plot(x, [v * (100 if key == "top1" else 1) for v in y], style, label=name)
        ax.set_xlabel(unit)
        ax.set_ylabel(label + (" (%)" if key == "top1" else ""))
        ax.legend()
        ax.grid(alpha=0.3)
    x, lr = series(records, "train", "lr", per_epoch)
    axes[1][0].plot(x, lr)
    axes[1][0].set_xlabel(unit)
    axes[1][0].set_ylabel("learning rate")
    axes[1][0].grid(alpha=0.3)
    plot_speed(axes[1][1], [r for r in records if r.get("kind") == "train"])
    evals = [r for r in records if r.get("kind") == "eval"]
    best = max(evals, key=lambda r: r["top1"]) if evals else None
    title = f"{start.get('model', os.path.basename(run_dir))}, global batch {start.get('global_batch', '?')}"
    if best:
        title += f", best validation top-1 {100 * best['top1']:.2f}% (epoch {best['epoch']})"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=100)


def plot_speed(ax, train):
    """img/s and data-wait share against wall time since the first record."""
    if not train:
        return
    t0 = train[0].get("wall_time", 0)
    seconds = [r.get("wall_time", 0) - t0 for r in train]
    unit, scale = ("hours", 3600) if seconds[-1] > 7200 else ("minutes", 60)
    hours = [s / scale for s in seconds]
    ax.plot(hours, [r["img_per_s"] for r in train], color="tab:blue")
    ax.set_xlabel(unit + " (wall clock)")
    ax.set_ylabel("img/s", color="tab:blue")
    ax.grid(alpha=0.3)
    wait = ax.twinx()
    wait.plot(hours, [100 * r["data_wait"] for r in train], color="tab:orange")
    wait.set_ylabel("data wait (%)", color="tab:orange")


def read_confusion(path):
    """(matrix, class names, title) from a run dir, an eval JSON, or a predict .h5."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "eval-*.json")))
        if not files:
            sys.exit(f"plot_run.py: {path} has no eval-<step>.json (no validation data?)")
        path = files[-1]
    if path.endswith(".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            logits, labels = np.asarray(f["logits"]), np.asarray(f["labels"])
        k = logits.shape[1]
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (labels, logits.argmax(1)), 1)
        return matrix, [str(c) for c in range(k)], os.path.basename(path)
    with open(path) as f:
        record = json.loads(f.readline())
    if "confusion" not in record:
        sys.exit(f"plot_run.py: {path} has no confusion matrix (more than 100 classes?)")
    title = os.path.basename(path) + (f", step {record['step']}" if "step" in record else "")
    return np.asarray(record["confusion"]), record["class_names"], title


def plot_confusion(path, output):
    matrix, names, title = read_confusion(path)
    rows = matrix.sum(1, keepdims=True)
    share = matrix / np.maximum(rows, 1)
    size = min(max(6, 0.45 * len(names)), 16)
    fig, ax = plt.subplots(figsize=(size + 2, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(names) <= 50:  # more classes: indices on the axes
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 20:
        for t in range(len(names)):
            for p in range(len(names)):
                ax.text(p, t, str(int(matrix[t, p])), ha="center", va="center", fontsize=7,
                        color="white" if share[t, p] > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="share of the true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title}: top-1 {100 * accuracy:.2f}% of {int(matrix.sum())}")
    fig.tight_layout()
    fig.savefig(output, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--confusion", help="run dir, eval JSON or predict .h5")
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.confusion:
        base = args.confusion if os.path.isdir(args.confusion) else os.path.dirname(args.confusion)
        output = args.output or os.path.join(base or ".", "confusion.png")
        plot_confusion(args.confusion, output)
    elif args.run_dir:
        output = args.output or os.path.join(args.run_dir, "report.png")
        plot_report(args.run_dir, output)
    else:
        parser.error("give RUN_DIR or --confusion FILE")
    print(output)


if __name__ == "__main__":
    main()
