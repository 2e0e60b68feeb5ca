#!/usr/bin/env bash
# The demo job (README's first command): installs what is missing, builds
# convnet, converts Fashion-MNIST from Debian's dataset-fashion-mnist package,
# trains resnet20 (1 input channel) data-parallel on 2 MPI ranks, and
# evaluates the saved model on the 10,000 test images.
#
# Environment: BUILD_DIR (default build), DEMO_DIR (default run/demo),
# DEMO_EPOCHS (default 3), DEMO_RANKS (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
demo=${DEMO_DIR:-$root/run/demo}
epochs=${DEMO_EPOCHS:-3}
ranks=${DEMO_RANKS:-2}
fashion=/usr/share/datasets/fashion-mnist
start=$SECONDS

"$root/launch/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target convnet
convnet=$build/bin/convnet
echo "demo: built in $((SECONDS - start)) s"

mkdir -p "$demo"
classes="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
"$convnet" convert idx --images $fashion/train-images-idx3-ubyte.gz \
  --labels $fashion/train-labels-idx1-ubyte.gz --class-names "$classes" \
  --output "$demo/fashion_train.h5"
"$convnet" convert idx --images $fashion/t10k-images-idx3-ubyte.gz \
  --labels $fashion/t10k-labels-idx1-ubyte.gz --class-names "$classes" \
  --output "$demo/fashion_test.h5"

# One compute thread per rank on this 2-core machine; the loader's work on
# 28x28 images is small. No augmentation: 3 epochs are too few for random
# crops to pay off.
rm -rf "$demo/run"  # a new run each time (a run directory refuses a second fresh run)
mpi_flags=(-np "$ranks" --oversubscribe --bind-to none)
[[ $(id -u) -eq 0 ]] && mpi_flags+=(--allow-run-as-root)
mpirun "${mpi_flags[@]}" "$convnet" train --model resnet20 \
  --train-data "$demo/fashion_train.h5" --epochs "$epochs" --batch-size 32 --recipe none \
  --lr 0.05 --nesterov --schedule cosine --weight-decay 5e-4 --threads 1 --loader-threads 1 \
  --log-every 100 --run-dir "$demo/run"

result=$("$convnet" eval --checkpoint "$demo/run/model.h5" --data "$demo/fashion_test.h5" \
  --batch-size 250 --per-class | tail -1)
echo "$result" >"$demo/eval.json"
top1=$(/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["top1"])' <<<"$result")
echo "demo: eval $(/usr/bin/python3 -c 'import json, sys; r = json.load(sys.stdin); print(json.dumps({k: r[k] for k in ("top1", "top5", "loss", "count")}))' <<<"$result")"
echo "demo: training report $(/usr/bin/python3 "$root/tools/plot_run.py" "$demo/run")," \
  "confusion matrix $(/usr/bin/python3 "$root/tools/plot_run.py" --confusion "$demo/eval.json")"
echo "demo: Fashion-MNIST test accuracy $(awk -v t="$top1" 'BEGIN { printf "%.2f%%", 100 * t }')" \
  "after $epochs epochs on $ranks ranks; $((SECONDS - start)) s in all"
awk -v t="$top1" 'BEGIN { exit !(t >= 0.90) }' || { echo "demo: below 90%" >&2; exit 1; }
