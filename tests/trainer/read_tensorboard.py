"""Checks a run directory's TensorBoard curves with TensorBoard's own reader.

  read_tensorboard.py RUN_DIR [--expect-steps TAG=S1,S2,...]...

Loads RUN_DIR with tensorboard's EventAccumulator (the reader TensorBoard's
server uses, restarts and their purge of orphaned steps included) and
compares every scalar with metrics.jsonl: each "train" and "eval" record's
numbers (but epoch, step, time, wall_time, count) are the curve KIND/KEY at
its step; a "start" record at step S (a resumed run) drops what earlier
records logged after S.
Every curve must hold exactly those steps, each once, with the record's
value as float32. Prints "tensorboard: N tags, M points" on success.
"""

import argparse
import json
import os
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator

SKIPPED = {"epoch", "step", "time", "wall_time", "count"}


def expected_curves(run_dir):
    curves = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)  # every line must be valid JSON
            if record.get("kind") == "start":  # what earlier starts logged after it is orphaned
                for steps in curves.values():
                    for step in [s for s in steps if s > record["step"]]:
                        del steps[step]
            if record.get("kind") not in ("train", "eval"):
                continue
            for key, value in record.items():
                if key in SKIPPED or isinstance(value, (str, list)) or value is None:
                    continue
                curves.setdefault(f"{record['kind']}/{key}", {})[record["step"]] = value
    return curves


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--expect-steps", action="append", default=[],
                        help="TAG=S1,S2,...: the steps that curve must have")
    args = parser.parse_args()
    accumulator = event_accumulator.EventAccumulator(
        args.run_dir, size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    tags = sorted(accumulator.Tags()["scalars"])
    expected = expected_curves(args.run_dir)
    if tags != sorted(expected):
        sys.exit(f"tags {tags} != metrics.jsonl's {sorted(expected)}")
    points = 0
    for tag in tags:
        events = accumulator.Scalars(tag)
        steps = [e.step for e in events]
        want = expected[tag]
        if steps != sorted(want):
            sys.exit(f"{tag}: steps {steps}, metrics.jsonl has {sorted(want)}")
        for e in events:
            if e.value != np.float32(want[e.step]):
                sys.exit(f"{tag} at step {e.step}: {e.value} != {want[e.step]}")
        points += len(events)
    for spec in args.expect_steps:
        tag, steps = spec.split("=")
        got = [e.step for e in accumulator.Scalars(tag)]
        if got != [int(s) for s in steps.split(",")]:
            sys.exit(f"{tag}: steps {got}, expected {steps}")
    print(f"tensorboard: {len(tags)} tags, {points} points")


if __name__ == "__main__":
    main()
