#!/usr/bin/env bash
# Reproduces a recipe's accuracy end to end: launch/reproduce.sh fashion-mnist
#   installs what is missing, builds convnet, converts Debian's Fashion-MNIST,
#   trains recipes/fashion-mnist.ini on the 60,000 training images with 2 MPI
#   ranks (resuming RUN_DIR's newest checkpoint if a run was interrupted),
#   evaluates the final weights once on the 10,000 test images, draws
#   RUN_DIR/report.png, and prints the evaluation as its last line (the JSON
#   of `convnet eval`).
# Environment: SEED (default 1), RUN_DIR (default run/reproduce/fashion-mnist-seed$SEED),
# BUILD_DIR (default build), RANKS (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-}
[[ "$what" == fashion-mnist ]] || { echo "usage: launch/reproduce.sh fashion-mnist" >&2; exit 2; }
seed=${SEED:-1}
run_dir=${RUN_DIR:-$root/run/reproduce/fashion-mnist-seed$seed}
build=${BUILD_DIR:-$root/build}
ranks=${RANKS:-2}
data=$root/run/reproduce/data
fashion=/usr/share/datasets/fashion-mnist
start=$SECONDS

"$root/launch/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target convnet >/dev/null
convnet=$build/bin/convnet
mkdir -p "$data"
classes="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
for split in train t10k; do
  out=$data/fashion_$split.h5
  [[ -s "$out" ]] || "$convnet" convert idx --images "$fashion/$split-images-idx3-ubyte.gz" \
    --labels "$fashion/$split-labels-idx1-ubyte.gz" --class-names "$classes" --output "$out"
done

mpi_flags=(-np "$ranks" --oversubscribe --bind-to none)
[[ $(id -u) -eq 0 ]] && mpi_flags+=(--allow-run-as-root)
mpirun "${mpi_flags[@]}" "$convnet" train --config "$root/recipes/fashion-mnist.ini" \
  --train-data "$data/fashion_train.h5" --seed "$seed" --threads 1 --loader-threads 1 \
  --resume auto --run-dir "$run_dir"
echo "reproduce: trained in $(((SECONDS - start) / 60)) min; report" \
  "$(/usr/bin/python3 "$root/tools/plot_run.py" "$run_dir")"
"$convnet" eval --checkpoint "$run_dir/model.h5" --data "$data/fashion_t10k.h5" \
  --batch-size 250 --per-class >"$run_dir/test_eval.json"
echo "reproduce: $(((SECONDS - start) / 60)) min in all; per-class results in $run_dir/test_eval.json"
/usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps({k: r[k] for k in ("top1", "top5", "loss", "count")}))' "$run_dir/test_eval.json"
