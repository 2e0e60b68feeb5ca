#!/bin/bash
# Fine-tuning from a PyTorch checkpoint: a torchvision ResNet-18's state_dict
# (random weights: nothing can be downloaded), converted with
# tools/torchvision_weights.py, gives PyTorch's logits in convnet predict; then
# convnet train --init-weights starts from it with another class count (a
# fresh classifier) and other input channels (--adapt-stem), and trains.
# usage: fine_tune_check.sh CONVNET DATA WORKDIR
set -euo pipefail
convnet=$1 data=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
tools=$here/../../tools
rm -rf "$work" && mkdir -p "$work"
/usr/bin/python3 - "$data" "$work" <<'PY'
import sys, h5py, torch, torchvision
data, work = sys.argv[1:]
with h5py.File(data, "r") as src, h5py.File(f"{work}/small.h5", "w") as dst:
    for name, value in src.attrs.items():
        dst.attrs[name] = value
    dst["images"] = src["images"][:64]
    dst["labels"] = src["labels"][:64]
torch.manual_seed(4)
model = torchvision.models.resnet18(num_classes=1000)  # 3 input channels, ImageNet head
torch.save(model.state_dict(), f"{work}/resnet18.pth")
gray = torchvision.models.resnet18(num_classes=1000)
gray.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
torch.save(gray.state_dict(), f"{work}/resnet18_gray.pth")
PY
/usr/bin/python3 "$tools/torchvision_weights.py" to-h5 --state-dict "$work/resnet18_gray.pth" \
  --model resnet18 --num-classes 1000 --in-channels 1 --output "$work/resnet18_gray.h5"
/usr/bin/python3 "$tools/torchvision_weights.py" to-h5 --state-dict "$work/resnet18.pth" \
  --model resnet18 --num-classes 1000 --in-channels 3 --output "$work/resnet18.h5"
# The same logits as PyTorch on the dataset's normalized images.
"$convnet" predict --checkpoint "$work/resnet18_gray.h5" --data "$work/small.h5" --threads 1 \
  --output "$work/logits.h5" >/dev/null
/usr/bin/python3 - "$work" <<'PY'
import sys, h5py, numpy as np, torch, torchvision
work = sys.argv[1]
gray = torchvision.models.resnet18(num_classes=1000)
gray.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
gray.load_state_dict(torch.load(f"{work}/resnet18_gray.pth"))
gray.eval()
with h5py.File(f"{work}/small.h5", "r") as f:
    mean, std = f.attrs["mean"], f.attrs["std"]
    x = (np.asarray(f["images"], np.float32) / 255 - mean) / std  # (N, H, W, 1)
with torch.no_grad():
    expected = gray(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
got = np.asarray(h5py.File(f"{work}/logits.h5", "r")["logits"])
error = np.abs(got - expected).max() / np.abs(expected).max()
print(f"convnet predict vs PyTorch: max error {error:.2e} of the largest logit")
assert error < 1e-4, error
PY
# A predict output's confusion matrix renders (tools/plot_run.py).
/usr/bin/python3 "$tools/plot_run.py" --confusion "$work/logits.h5" --output "$work/confusion.png"
test -s "$work/confusion.png"
train=(--model resnet18 --train-data "$work/small.h5" --batch-size 16 --epochs 8 --lr 0.02
       --threads 1 --loader-threads 1 --log-every 4 --seed 1)
"$convnet" train "${train[@]}" --init-weights "$work/resnet18_gray.h5" --run-dir "$work/tuned" \
  >"$work/tuned.log"
grep "classifier fc.weight re-initialized for 10 classes (the file has 1000)" "$work/tuned.log"
/usr/bin/python3 - "$work/tuned/metrics.jsonl" <<'PY'
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "train"]
print("fine-tuning losses", [round(v, 3) for v in losses])
assert losses[-1] < 0.75 * losses[0], losses
PY
# A 3-channel ImageNet model on 1-channel data: refused, then adapted.
! "$convnet" train "${train[@]}" --init-weights "$work/resnet18.h5" --run-dir "$work/refused" \
  >"$work/refused.log" 2>&1
grep "was trained on 3-channel images but the data has 1: its stem conv1.weight" "$work/refused.log"
"$convnet" train "${train[@]}" --max-steps 2 --init-weights "$work/resnet18.h5" --adapt-stem \
  --run-dir "$work/adapted" >"$work/adapted.log"
grep "stem conv1.weight adapted from 3 to 1 input channels (summed)" "$work/adapted.log"
echo "fine_tune: ok"
