#!/bin/bash
# Every JSON line convnet prints parses, whatever the names inside: a dataset
# file name and class names with quotes, backslashes, tabs, line breaks,
# control characters and non-ASCII text go through `convnet inspect`,
# `convnet train` (its result line and metrics.jsonl) and `eval --per-class`,
# and Python's json module gives them back exactly.
# usage: json_strings_check.sh CONVNET WORKDIR
set -euo pipefail
convnet=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
data=$work/'we"ird	na\me é.h5'
run=$work/'run "é"'
/usr/bin/python3 - "$data" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["images"] = (np.arange(24 * 8 * 8) % 251).astype(np.uint8).reshape(24, 8, 8, 1)
    f["labels"] = np.arange(24) % 6
    f.attrs["num_classes"] = np.int64(6)
    f.attrs["class_names"] = ["tab\there", 'quote"d', "back\\slash", "é ü 猫", "ctl\x01\x1f", "new\nline"]
PY
"$convnet" inspect "$data" >"$work/inspect.json" 2>/dev/null
"$convnet" train --model resnet20 --train-data "$data" --val-data "$data" --batch-size 8 \
  --epochs 1 --threads 1 --loader-threads 1 --recipe none --run-dir "$run" 2>/dev/null |
  tail -1 >"$work/train.json"
"$convnet" eval --checkpoint "$run/model.h5" --data "$data" --per-class --threads 1 \
  2>/dev/null >"$work/eval.json"
/usr/bin/python3 - "$work" "$data" "$run" <<'PY'
import glob, json, sys
work, data, run = sys.argv[1:]
names = ["tab\there", 'quote"d', "back\\slash", "é ü 猫", "ctl\x01\x1f", "new\nline"]
inspect = json.load(open(f"{work}/inspect.json"))
assert inspect["file"] == data and inspect["class_names"] == names, inspect
assert json.load(open(f"{work}/train.json"))["model"] == run + "/model.h5"
evaluation = json.load(open(f"{work}/eval.json"))
assert evaluation["class_names"] == names and sum(evaluation["class_count"]) == 24, evaluation
for line in open(f"{run}/metrics.jsonl"):
    json.loads(line)
per_class = json.load(open(glob.glob(f"{run}/eval-*.json")[0]))
assert per_class["class_names"] == names, per_class
print("json_strings: ok")
PY
