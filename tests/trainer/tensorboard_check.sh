#!/bin/bash
# convnet train's TensorBoard event files, read by TensorBoard's own reader
# (the tensorboard package from PyPI, in the virtual environment that
# launch/install-deps.sh creates): every curve equals metrics.jsonl, and a run
# resumed from an older checkpoint than its last log line continues its
# curves with no overlap and no gap; --tensorboard off writes none.
# usage: tensorboard_check.sh CONVNET DATA WORKDIR
set -euo pipefail
convnet=$1 data=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
venv=${CONVNET_VENV:-$HOME/.cache/convnet-venv}
[[ -x "$venv/bin/python" ]] || { echo "no $venv: run launch/install-deps.sh" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
/usr/bin/python3 - "$data" "$work/small.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as dst:
    for name, value in src.attrs.items():
        dst.attrs[name] = value
    dst["images"] = src["images"][:64]
    dst["labels"] = src["labels"][:64]
PY
# 64 images, batch 8: 8 steps per epoch, validation at steps 8 and 16.
common=(--model resnet20 --train-data "$work/small.h5" --val-data "$work/small.h5" --epochs 2
        --batch-size 8 --lr 0.05 --seed 2 --threads 1 --loader-threads 1 --log-every 2
        --checkpoint-every 4steps --keep 10 --run-dir "$work/run")
# A run that dies after logging step 14 with its newest checkpoint at step 8.
"$convnet" train "${common[@]}" --max-steps 14 >"$work/first.log"
rm "$work/run/checkpoint-000000012.h5" "$work/run/checkpoint-000000014.h5"
"$convnet" train "${common[@]}" --resume auto >"$work/second.log"
grep -q "resuming from .*checkpoint-000000008.h5" "$work/second.log"
test "$(ls "$work"/run/events.out.tfevents.* | wc -l)" = 2
"$venv/bin/python" "$here/read_tensorboard.py" "$work/run" \
  --expect-steps train/loss=2,4,6,8,10,12,14,16 --expect-steps eval/top1=8,16
# Per-class results next to each evaluation; the PNG report and confusion
# matrix (tools/plot_run.py) render the run: images of the expected size that
# are not blank.
test -f "$work/run/eval-000000008.json" && test -f "$work/run/eval-000000016.json"
/usr/bin/python3 "$here/../../tools/plot_run.py" "$work/run" | grep -q "report.png"
/usr/bin/python3 "$here/../../tools/plot_run.py" --confusion "$work/run" | grep -q "confusion.png"
/usr/bin/python3 - "$work/run/report.png" "$work/run/confusion.png" <<'PY'
import sys
import matplotlib.image
for path in sys.argv[1:]:
    image = matplotlib.image.imread(path)[..., :3]
    inked = (image.min(axis=2) < 0.9).mean()  # share of pixels that are not near-white
    assert image.shape[0] >= 400 and image.shape[1] >= 400, (path, image.shape)
    assert 0.02 < inked < 0.9 and len(set(map(tuple, image.reshape(-1, 3)[::97]))) > 8, (path, inked)
    print(path, image.shape, f"{100 * inked:.1f}% inked")
PY
"$convnet" train --model resnet20 --train-data "$work/small.h5" --batch-size 8 --threads 1 \
  --loader-threads 1 --max-steps 2 --tensorboard off --run-dir "$work/off" >/dev/null
! ls "$work"/off/events.out.tfevents.* 2>/dev/null
echo "tensorboard: ok"
