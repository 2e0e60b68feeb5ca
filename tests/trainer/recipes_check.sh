#!/bin/bash
# Every file in recipes/ parses as a --config and starts training: one step of
# its model and options on a small dataset (the command line only shrinks the
# batch, the step count and the threads), and the run's resolved config.ini
# holds the recipe's values.
# usage: recipes_check.sh CONVNET DATA WORKDIR
set -euo pipefail
convnet=$1 data=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
count=0
for recipe in "$here"/../../recipes/*.ini; do
  name=$(basename "$recipe" .ini)
  "$convnet" train --config "$recipe" --train-data "$data" --batch-size 2 --max-steps 1 \
    --threads 1 --loader-threads 1 --tensorboard off --run-dir "$work/$name" >"$work/$name.log" 2>&1 ||
    { echo "FAIL: $name" && cat "$work/$name.log" && exit 1; }
  # Every option the recipe sets (but the batch) is in the resolved configuration.
  /usr/bin/python3 - "$recipe" "$work/$name/config.ini" <<'PY'
import sys
def options(path):
    pairs = (line.split("=", 1) for line in open(path) if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}
def same(a, b):
    words = {"on": "true", "off": "false"}
    try:
        return float(a) == float(b)
    except ValueError:
        return words.get(a, a) == words.get(b, b)
recipe, resolved = options(sys.argv[1]), options(sys.argv[2])
for key, value in recipe.items():
    if key != "batch-size" and not same(value, resolved.get(key, "?")):
        sys.exit(f"{sys.argv[1]}: {key} = {value}, but config.ini has {resolved.get(key)}")
PY
  count=$((count + 1))
done
[ "$count" -ge 8 ]
echo "recipes: ok ($count)"
