#!/bin/bash
# Hostile input against convnet (ctest hardening.*, issue 22): each case runs
# convnet the way a user could get wrong and asserts the exit status, that
# the message names the culprit, and that nothing already written was
# damaged.
# usage: hardening_check.sh CASE CONVNET DATA WORKDIR [MPIEXEC]
#   options        options out of range or of the wrong kind: exit 1 naming the option
#   normalization  a dataset whose mean/std is NaN, inf, 0 or out of range: exit 1 naming
#                  the file and the channel, before anything is written
#   types          a count stored as a float, a parameter stored as an integer: exit 1
#                  naming the file and the attribute or key (HDF5 would convert them); eval
#                  of raw images of another size than the training size: exit 1 naming both
#                  sizes and --crop / --allow-size-change
#   full_disk      a run directory on a 1, 3 and 4 MiB tmpfs (root only, else skipped): exit 1
#                  with "disk full?" (not a crash), no temporary left, every checkpoint
#                  left behind reads back
#   stale_temporaries  NAME.tmp-PID files of killed writes are removed when a run starts
#   ranks_disagree two ranks (mpirun) given data of another length, image size, class
#                  count or pixels: exit 1 naming the field and both values, no hang, no
#                  training
#   early_signal   SIGTERM pending before convnet train starts (blocked by the parent):
#                  the run stops after its first step with a checkpoint, exit 75, resumable
#   nonfinite_weights  eval of a model.h5 with a NaN weight: exit 1 naming the file and key
#   outputs        predict --output a FIFO, a device node, the input dataset or the model:
#                  exit 1 naming it, nothing replaced; FIFO inputs (dataset, --config)
#                  refused at once instead of blocking
#   run_files      metrics.jsonl on /dev/full refused; a directory in the newest
#                  checkpoint's place is skipped as damaged (resumes from the one
#                  before); --momentum 0 checkpoints write, resume and verify
#   damaged_metadata  /images dimensions that disagree with the recorded ones; strings
#                  stored fixed-length (checksummed object headers, not the global
#                  heap); finite weights with non-finite logits; --crop 2^31 in eval
#   small_images   1x1 and 2x2 images: --recipe cifar (pad-4 crops of mostly padding, which
#                  made the gradients explode) is refused naming the size and --recipe none;
#                  auto picks none there and resnet20 trains to a finite model, its loss
#                  falling, as PyTorch's does; a DenseNet refuses images below its
#                  minimum, naming the model and the size
#   inspect_damage convnet inspect of damaged checkpoints (a flipped data byte, a missing,
#                  extra or reshaped key, a NaN weight, a short momentum, an impossible
#                  training-state field, a flipped bit in the root's or a key's object header,
#                  a recorded std of 0): exit 1 naming the damage as damage; --quick still
#                  reads the files whose attributes are intact
#   all_damaged    --resume auto where every checkpoint is damaged: exit 1 saying so, without
#                  advising the --resume auto it was given
#   run_lock       a second training in a run directory in use: exit 1 naming the holder,
#                  the first run's files untouched; after kill -9 of the holder the
#                  directory is free again (no stale lock)
set -euo pipefail
case_name=$1 convnet=$2 data=$3 work=$4 mpiexec=${5:-mpirun}
rm -rf "$work" && mkdir -p "$work"

# expect_error MESSAGE COMMAND...: the command exits 1 and its output contains MESSAGE
# (a hang is ctest's timeout).
expect_error() {
  local message=$1 status=0
  shift
  "$@" >"$work/out.log" 2>&1 || status=$?
  if [ "$status" -ne 1 ]; then
    echo "FAIL: exit status $status (expected 1) from: $*" && cat "$work/out.log" && exit 1
  fi
  if ! grep -qF -- "$message" "$work/out.log"; then
    echo "FAIL: no '$message' from: $*" && cat "$work/out.log" && exit 1
  fi
}

# flip_data_byte FILE: flips a bit inside the data of /model/fc.weight (chunked
# and checksummed), which a damaged disk or copy could do.
flip_data_byte() {
  /usr/bin/python3 - "$1" <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    dataset = f["model/fc.weight"].id
    offset = dataset.get_offset()
    offset = offset if offset is not None else dataset.get_chunk_info(0).byte_offset
with open(sys.argv[1], "r+b") as raw:
    raw.seek(offset + 5)
    byte = raw.read(1)[0]
    raw.seek(offset + 5)
    raw.write(bytes([byte ^ 0x10]))
EOF
}

# train OPTIONS...: convnet train of resnet20 on the test data, with small
# defaults for the options not given.
train() {
  local args=("$@") defaults=(--train-data "$data" --max-steps 1 --threads 1 --loader-threads 1) i
  for ((i = 0; i < ${#defaults[@]}; i += 2)); do
    [[ " ${args[*]} " == *" ${defaults[i]} "* ]] || args+=("${defaults[i]}" "${defaults[i + 1]}")
  done
  "$convnet" train --model resnet20 --batch-size 4 "${args[@]}"
}

case $case_name in
options)
  cpus=$(getconf _NPROCESSORS_ONLN)
  expect_error "--threads must lie in [0, $cpus]" train --run-dir "$work/r" --threads 1000
  expect_error "--threads must lie in [0, $cpus]" train --run-dir "$work/r" --threads -1
  expect_error "--threads must lie in [0, $cpus]" \
    "$convnet" bench --model resnet20 --batch-size 2 --steps 1 --threads 1000
  expect_error "--loader-threads must lie in [1, " \
    train --run-dir "$work/r" --loader-threads 100000
  expect_error "--max-steps must be >= 0" train --run-dir "$work/r" --max-steps -5
  expect_error "--comm-timeout must be a positive number" \
    train --run-dir "$work/r" --comm-timeout -1
  expect_error "--crop must lie in [0, 16384]" train --run-dir "$work/r" --crop -5
  expect_error "--crop must lie in [0, 16384]" train --run-dir "$work/r" --crop 2147483648
  expect_error "--lr must be a positive number" train --run-dir "$work/r" --lr nan
  expect_error "--momentum must lie in [0, 1)" train --run-dir "$work/r" --momentum 1.5
  expect_error "--config $work is a directory" train --run-dir "$work/r" --config "$work"
  expect_error "--milestones '1,,2' has an empty item" train --run-dir "$work/r" --milestones 1,,2
  expect_error "--milestones '5,1' must increase" train --run-dir "$work/r" --milestones 5,1
  expect_error "--lr-min must lie in [0, --lr)" train --run-dir "$work/r" --lr-min 0.5
  expect_error "--random-erase must lie in [0, 1]" train --run-dir "$work/r" --random-erase 2
  expect_error "--clip-grad-norm must be a non-negative number" \
    train --run-dir "$work/r" --clip-grad-norm -1
  expect_error "--bn-momentum must lie in (0, 1]" train --run-dir "$work/r" --bn-momentum 0
  expect_error "--model-ema-decay must lie in (0, 1)" \
    train --run-dir "$work/r" --model-ema --model-ema-decay 1
  # A switch's value that is no on/off word is a usage error (exit 2) naming both.
  status=0
  train --run-dir "$work/r" --nesterov maybe >"$work/out.log" 2>&1 || status=$?
  [ "$status" -eq 2 ] && grep -qF "the argument ('maybe') for option '--nesterov'" "$work/out.log" ||
    { echo "FAIL: --nesterov maybe: status $status" && cat "$work/out.log" && exit 1; }
  # A stray word (a missing "--") is a usage error (exit 2) naming it.
  status=0
  train --run-dir "$work/r" extra >"$work/out.log" 2>&1 || status=$?
  [ "$status" -eq 2 ] && grep -q "unexpected argument 'extra'" "$work/out.log" ||
    { echo "FAIL: a stray argument: status $status" && cat "$work/out.log" && exit 1; }
  test ! -e "$work/r"  # refused before the run directory is made
  echo "options: ok"
  ;;
normalization)
  for bad in "mean nan" "mean inf" "mean 2.5" "std 0" "std inf" "std nan" "std 1e-6" "std -0.2"; do
    set -- $bad
    copy="$work/bad_$1_$2.h5"
    cp "$data" "$copy"
    /usr/bin/python3 - "$copy" "$1" "$2" <<'EOF'
import sys, h5py, numpy
path, name, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
with h5py.File(path, "r+") as f:
    values = numpy.array(f.attrs[name], dtype=numpy.float64)
    values[0] = value
    f.attrs[name] = values
EOF
    expect_error "$copy: " train --train-data "$copy" --run-dir "$work/run_$1_$2"
    grep -q "$1 of channel 0\|std of channel 0" "$work/out.log" ||
      { echo "FAIL: the channel is not named for $bad" && cat "$work/out.log" && exit 1; }
    test ! -e "$work/run_$1_$2/model.h5"
  done
  echo "normalization: ok"
  ;;
types)
  copy="$work/float_classes.h5"
  cp "$data" "$copy"
  /usr/bin/python3 -c "import h5py, sys; h5py.File(sys.argv[1], 'r+').attrs['num_classes'] = 10.7" \
    "$copy"
  expect_error "$copy: attribute 'num_classes' is stored as a non-integer type" \
    train --train-data "$copy" --run-dir "$work/r1"
  train --run-dir "$work/r2" >/dev/null
  /usr/bin/python3 - "$work/r2/model.h5" <<'EOF'
import sys, h5py, numpy
with h5py.File(sys.argv[1], "r+") as f:
    weight = numpy.array(f["model/fc.weight"])
    del f["model/fc.weight"]
    f["model/fc.weight"] = numpy.round(weight * 100).astype(numpy.int64)
EOF
  expect_error "model.h5: key fc.weight is stored as a non-floating-point type" \
    "$convnet" eval --checkpoint "$work/r2/model.h5" --data "$data" --threads 1
  # eval of images of another size than the training size: refused, naming both and the options
  train --run-dir "$work/r3" >/dev/null
  /usr/bin/python3 - "$data" "$work/larger.h5" <<'EOF'
import sys, h5py, numpy
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as out:
    for key, value in f.attrs.items():
        out.attrs[key] = value
    out.attrs["height"], out.attrs["width"] = 32, 32
    out["images"] = numpy.pad(numpy.array(f["images"][:64]), ((0, 0), (2, 2), (2, 2), (0, 0)))
    out["labels"] = numpy.array(f["labels"][:64])
EOF
  expect_error "larger.h5 holds 32x32 images but $work/r3/model.h5 was trained on 28x28: pass --crop 28" \
    "$convnet" eval --checkpoint "$work/r3/model.h5" --data "$work/larger.h5" --threads 1
  "$convnet" eval --checkpoint "$work/r3/model.h5" --data "$work/larger.h5" --threads 1 \
    --allow-size-change >/dev/null
  echo "types: ok"
  ;;
full_disk)
  if [ "$(id -u)" -ne 0 ]; then echo "full_disk: skipped (mounting a tmpfs needs root)" && exit 0; fi
  for size in 1 3 4; do
    disk="$work/disk_$size"
    mkdir -p "$disk"
    mount -t tmpfs -o size=${size}m tmpfs "$disk"
    trap 'umount "$disk" 2>/dev/null || true' EXIT
    expect_error "(disk full?)" train --max-steps 3 --checkpoint-every 1steps --run-dir "$disk/run"
    if ls "$disk/run" | grep -q '\.tmp-'; then echo "FAIL: a temporary was left" && exit 1; fi
    for checkpoint in "$disk"/run/checkpoint-*.h5; do
      [ -e "$checkpoint" ] || continue
      "$convnet" inspect "$checkpoint" >/dev/null ||
        { echo "FAIL: $checkpoint does not read back" && exit 1; }
    done
    umount "$disk"
    trap - EXIT
  done
  echo "full_disk: ok"
  ;;
stale_temporaries)
  train --max-steps 1 --run-dir "$work/run" >/dev/null
  echo partial >"$work/run/checkpoint-000000030.h5.tmp-999"
  echo partial >"$work/run/model.h5.tmp-123456"
  echo mine >"$work/run/notes.tmp-draft"  # not a convnet temporary: kept
  train --max-steps 2 --run-dir "$work/run" --resume auto >"$work/out.log" 2>&1
  grep -q "removed $work/run/checkpoint-000000030.h5.tmp-999" "$work/out.log"
  test ! -e "$work/run/checkpoint-000000030.h5.tmp-999" && test ! -e "$work/run/model.h5.tmp-123456"
  test -e "$work/run/notes.tmp-draft"
  # predict's output temporary of a killed write (its process is gone) goes too.
  sleep 0 & dead=$!
  wait "$dead"
  echo partial >"$work/logits.h5.tmp-$dead"
  "$convnet" predict --checkpoint "$work/run/model.h5" --data "$data" --threads 1 \
    --output "$work/logits.h5" >"$work/out.log" 2>&1
  grep -q "removed $work/logits.h5.tmp-$dead" "$work/out.log"
  test ! -e "$work/logits.h5.tmp-$dead" && test -s "$work/logits.h5"
  echo "stale_temporaries: ok"
  ;;
ranks_disagree)
  # variant KIND FILE: the test data changed in one respect.
  /usr/bin/python3 - "$data" "$work" <<'EOF'
import sys, h5py, numpy
source, work = sys.argv[1], sys.argv[2]
def variant(name, images, labels, classes):
    with h5py.File(source, "r") as f, h5py.File(f"{work}/{name}.h5", "w") as out:
        for key, value in f.attrs.items():
            out.attrs[key] = value
        out.attrs["height"], out.attrs["width"] = images.shape[1], images.shape[2]
        out.attrs["num_classes"] = classes
        out.attrs["class_names"] = [str(c) for c in range(classes)]
        out["images"], out["labels"] = images, labels
with h5py.File(source, "r") as f:
    images, labels = numpy.array(f["images"]), numpy.array(f["labels"])
    classes = int(f.attrs["num_classes"])
variant("shorter", images[:5000], labels[:5000], classes)
variant("larger", numpy.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), labels, classes)
variant("more_classes", images, labels, classes + 1)
variant("other_pixels", 255 - images, labels, classes)  # same header and labels
EOF
  rank() { echo -np 1 "$convnet" train --model resnet20 --batch-size 4 --max-steps 2 --threads 1 \
    --loader-threads 1 --run-dir "$work/run" --train-data "$1"; }
  for kind in shorter larger more_classes other_pixels; do
    expect_error "differ from rank 0" timeout -k 5 120 "$mpiexec" --oversubscribe --bind-to none \
      $(rank "$data") : $(rank "$work/$kind.h5")
    case $kind in
    shorter) grep -q "training samples: '10000' on rank 0, '5000' on rank 1" "$work/out.log" ;;
    larger) grep -q "training image shape (HxWxC; 0: encoded): '28x28x1' on rank 0, '32x32x1' on rank 1" "$work/out.log" ;;
    more_classes) grep -q "training classes: '10' on rank 0, '11' on rank 1" "$work/out.log" ;;
    other_pixels) grep -q "training images (fingerprint of 16 samples): '[0-9]*' on rank 0" "$work/out.log" ;;
    esac || { echo "FAIL: the field is not named for $kind" && cat "$work/out.log" && exit 1; }
    test ! -e "$work/run/model.h5"
  done
  echo "ranks_disagree: ok"
  ;;
early_signal)
  status=0
  /usr/bin/python3 - "$convnet" train --model resnet20 --batch-size 4 --train-data "$data" \
    --max-steps 50 --threads 1 --loader-threads 1 --run-dir "$work/run" >"$work/out.log" 2>&1 <<'EOF' || status=$?
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGTERM)  # pending until convnet unblocks it
    os.execv(sys.argv[1], sys.argv[1:])
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
sys.exit(code if code >= 0 else 128 - code)
EOF
  [ "$status" -eq 75 ] || { echo "FAIL: exit status $status (expected 75)" && cat "$work/out.log" && exit 1; }
  ls "$work/run"/checkpoint-*.h5 >/dev/null
  train --max-steps 3 --run-dir "$work/run" --resume auto >"$work/again.log" 2>&1
  grep -q "resuming from" "$work/again.log"
  echo "early_signal: ok"
  ;;
nonfinite_weights)
  train --run-dir "$work/r" >/dev/null
  /usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); f['model/fc.weight'][0, 0] = float('nan')" \
    "$work/r/model.h5"
  expect_error "model.h5: key fc.weight holds non-finite values" \
    "$convnet" eval --checkpoint "$work/r/model.h5" --data "$data" --threads 1
  echo "nonfinite_weights: ok"
  ;;
outputs)
  train --run-dir "$work/r" >/dev/null
  predict() { "$convnet" predict --checkpoint "$work/r/model.h5" --threads 1 "$@"; }
  mkfifo "$work/fifo"
  expect_error "$work/fifo exists and is not a regular file" \
    predict --data "$data" --output "$work/fifo"
  test -p "$work/fifo"
  if [ "$(id -u)" -eq 0 ]; then  # a device node standing in for /dev/null
    mknod -m 666 "$work/null" c 1 3
    expect_error "$work/null exists and is not a regular file" \
      predict --data "$data" --output "$work/null"
    test -c "$work/null"
  fi
  cp "$data" "$work/data.h5"
  before=$(md5sum <"$work/data.h5")
  expect_error "the output $work/data.h5 is the input $work/data.h5" \
    predict --data "$work/data.h5" --output "$work/data.h5"
  expect_error "is the input $work/r/model.h5" \
    predict --data "$data" --output "$work/r/model.h5"
  [ "$(md5sum <"$work/data.h5")" = "$before" ]
  "$convnet" inspect "$work/r/model.h5" | grep -q '"verified": "yes"'
  # Inputs that are FIFOs end at once instead of blocking the reader.
  expect_error "$work/fifo: dataset file is not a regular file" timeout 20 \
    "$convnet" train --model resnet20 --train-data "$work/fifo" --run-dir "$work/f1"
  expect_error "--config $work/fifo is not a regular file" timeout 20 \
    "$convnet" train --config "$work/fifo" --run-dir "$work/f2"
  # A center crop larger than the resized image is refused, not clamped.
  expect_error "--resize 20 is smaller than the center crop 24 (--crop)" \
    "$convnet" eval --checkpoint "$work/r/model.h5" --data "$data" --resize 20 --crop 24
  expect_error "--resize 20 is smaller than the center crop 28 (the model's training size" \
    "$convnet" eval --checkpoint "$work/r/model.h5" --data "$data" --resize 20
  echo "outputs: ok"
  ;;
converters)
  # IDX files with bytes after their declared items, and class names that
  # repeat or are empty: errors before anything is written.
  /usr/bin/python3 - "$work" <<'EOF'
import struct, sys
work = sys.argv[1]
with open(f"{work}/images.idx", "wb") as f:
    f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 2, 2) + bytes(16))
with open(f"{work}/labels.idx", "wb") as f:
    f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 4) + bytes([0, 1, 2, 1]))
with open(f"{work}/labels_long.idx", "wb") as f:
    f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 4) + bytes([0, 1, 2, 1]) + b"extra")
EOF
  idx() { "$convnet" convert idx --images "$work/images.idx" --output "$work/out.h5" "$@"; }
  expect_error "$work/labels_long.idx: 5 bytes follow the 4 items its header declares" \
    idx --labels "$work/labels_long.idx"
  expect_error "class name 'cat' is given twice (classes 0 and 2)" \
    idx --labels "$work/labels.idx" --class-names cat,dog,cat
  expect_error "class 1 has an empty name" idx --labels "$work/labels.idx" --class-names cat,,dog
  test ! -e "$work/out.h5"
  idx --labels "$work/labels.idx" --class-names cat,dog,bird >/dev/null
  "$convnet" inspect "$work/out.h5" | grep -q '"class_names": \["cat", "dog", "bird"\]'
  echo "converters: ok"
  ;;
run_files)
  # metrics.jsonl on a full device: the run fails saying so (it was silent).
  mkdir -p "$work/full"
  ln -s /dev/full "$work/full/metrics.jsonl"
  expect_error "metrics.jsonl exists and is not a regular file" train --run-dir "$work/full"
  # A directory where the newest checkpoint belongs is a damaged checkpoint,
  # not a reason to start afresh.
  train --max-steps 2 --checkpoint-every 1steps --run-dir "$work/r" >/dev/null
  rm "$work/r/checkpoint-000000002.h5"
  mkdir "$work/r/checkpoint-000000002.h5"
  train --max-steps 3 --resume auto --run-dir "$work/r" >"$work/resumed.log" 2>&1
  grep -q "skipping damaged checkpoint: .*checkpoint-000000002.h5: file is not a regular file" \
    "$work/resumed.log"
  grep -q "resuming from .*checkpoint-000000001.h5" "$work/resumed.log"
  # --momentum 0 keeps no momentum buffer; its checkpoints still write and resume.
  train --momentum 0 --max-steps 2 --run-dir "$work/m0" >/dev/null
  train --momentum 0 --max-steps 3 --resume auto --run-dir "$work/m0" >/dev/null
  "$convnet" inspect "$work/m0/checkpoint-000000003.h5" | grep -q '"verified": "yes"'
  echo "run_files: ok"
  ;;
damaged_metadata)
  # /images 16 million pixels wide while the file records 28 (a flipped header
  # byte in an unchecksummed file): refused before any read, not 9 GB later.
  /usr/bin/python3 - "$data" "$work/wide.h5" <<'EOF'
import sys, h5py, numpy
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as out:
    for key, value in f.attrs.items():
        out.attrs[key] = value
    out["images"] = numpy.zeros((4, 28, 30, 1), numpy.uint8)
    out["labels"] = numpy.arange(4, dtype=numpy.int64)
EOF
  expect_error "wide.h5: damaged file: /images has width 30 but the file records 28" \
    train --train-data "$work/wide.h5" --run-dir "$work/w"
  # Files convert and train write keep strings in checksummed object headers
  # (fixed length), not in HDF5's global heap, which has no checksum.
  train --run-dir "$work/r" >/dev/null
  /usr/bin/python3 - "$work/r/model.h5" <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    for name in ("model", "config", "kind") if "kind" in f.attrs else ("model",):
        assert not f.attrs.get_id(name).get_type().is_variable_str(), name
EOF
  # Finite weights too large for finite logits: an error, not "loss": nan.
  /usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); f['model/fc.weight'][...] = 3e38" \
    "$work/r/model.h5"
  expect_error "model.h5: the model's outputs are not finite" \
    "$convnet" eval --checkpoint "$work/r/model.h5" --data "$data" --threads 1
  expect_error "--crop must lie in [0, 16384], got 2147483648" \
    "$convnet" eval --checkpoint "$work/r/model.h5" --data "$data" --threads 1 --crop 2147483648
  echo "damaged_metadata: ok"
  ;;
small_images)
  for size in 1 2; do
    /usr/bin/python3 - "$data" "$work/small$size.h5" "$size" <<'EOF'
import sys, h5py, numpy
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(src, "r") as f, h5py.File(dst, "w") as out:
    for key, value in f.attrs.items():
        out.attrs[key] = value
    out.attrs["height"], out.attrs["width"] = size, size
    images = numpy.array(f["images"][:2048], dtype=numpy.float64)
    k = images.shape[1] // size
    images = images[:, :k * size, :k * size].reshape(-1, size, k, size, k, images.shape[3])
    out["images"] = images.mean(axis=(2, 4)).round().astype(numpy.uint8)
    out["labels"] = numpy.array(f["labels"][:2048])
EOF
    expect_error "--recipe cifar pads 4 pixels and crops, which needs images of at least 8x8; $work/small$size.h5 holds ${size}x${size} images" \
      train --train-data "$work/small$size.h5" --recipe cifar --run-dir "$work/cifar$size"
    test ! -e "$work/cifar$size/model.h5"
    "$convnet" train --model resnet20 --train-data "$work/small$size.h5" --batch-size 32 \
      --max-steps 60 --log-every 10 --threads 1 --loader-threads 1 --run-dir "$work/auto$size" \
      >"$work/auto$size.log"
    grep -q "recipe none" "$work/auto$size.log"
    /usr/bin/python3 - "$work/auto$size" <<'EOF'
import json, sys, h5py, numpy
run = sys.argv[1]
with h5py.File(run + "/model.h5", "r") as f:
    for key, value in f["model"].items():
        assert numpy.isfinite(numpy.asarray(value, dtype=numpy.float64)).all(), key
losses = [r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if r.get("kind") == "train"]
assert losses[-1] < losses[0], losses
EOF
  done
  expect_error "model densenet_bc_100_k12 needs images of at least 4x4 (its poolings would leave no pixel of smaller ones); got 2x2" \
    "$convnet" train --model densenet_bc_100_k12 --train-data "$work/small2.h5" --batch-size 4 \
    --max-steps 1 --threads 1 --loader-threads 1 --run-dir "$work/densenet"
  echo "small_images: ok"
  ;;
inspect_damage)
  train --max-steps 2 --checkpoint-every 1steps --run-dir "$work/r" >/dev/null
  good="$work/r/checkpoint-000000002.h5"
  "$convnet" inspect "$good" | grep -q '"verified": "yes"'
  for damage in flip root_header key_header std_zero missing extra reshaped nan short_momentum \
    world_size epoch; do
    copy="$work/$damage.h5"
    cp "$good" "$copy"
    if [ "$damage" = flip ]; then
      flip_data_byte "$copy"
    else
      /usr/bin/python3 - "$copy" "$damage" <<'EOF'
import sys, h5py, numpy
path, damage = sys.argv[1], sys.argv[2]
with h5py.File(path, "r+") as f:
    if damage == "missing":
        del f["model/fc.bias"]
    elif damage == "extra":
        f["model/fc2.weight"] = numpy.zeros((2, 2), numpy.float32)
    elif damage == "reshaped":
        w = numpy.array(f["model/fc.weight"]); del f["model/fc.weight"]
        f["model/fc.weight"] = w.reshape(w.shape[1], w.shape[0])
    elif damage == "nan":
        f["model/conv1.weight"][0, 0, 0, 0] = float("nan")
    elif damage == "short_momentum":
        m = numpy.array(f["optimizer/momentum"]); del f["optimizer/momentum"]
        f["optimizer/momentum"] = m[:-10]
    elif damage == "world_size":
        f.attrs["world_size"] = numpy.int64(0)
    elif damage == "epoch":
        f.attrs["epoch"] = numpy.int64(2**40)
    elif damage == "std_zero":
        f.attrs["std"] = numpy.zeros(len(f.attrs["std"]))
header = {"root_header": "/", "key_header": "model/fc.weight"}.get(damage)
if header:  # a bit of a checksummed object header (HDF5 metadata) flipped
    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f[header].id).addr
    with open(path, "r+b") as raw:
        raw.seek(address + 8)
        byte = raw.read(1)[0]
        raw.seek(address + 8)
        raw.write(bytes([byte ^ 0x10]))
EOF
    fi
    case $damage in
    flip) message="flip.h5: /model/fc.weight does not read back (checksum mismatch)" ;;
    root_header) message="root_header.h5: damaged file: the HDF5 metadata holding attribute 'model' does not read back" ;;
    key_header) message="key_header.h5: damaged file: its HDF5 metadata does not read back" ;;
    std_zero) message="std_zero.h5: damaged normalization: channel 0 has the recorded mean" ;;
    missing) message="missing key fc.bias" ;;
    extra) message="fc2.weight" ;;
    reshaped) message="key fc.weight has shape" ;;
    nan) message="key conv1.weight holds non-finite values" ;;
    short_momentum) message="momentum" ;;
    world_size) message="damaged training state: world_size is 0" ;;
    epoch) message="damaged training state: epoch is 1099511627776" ;;
    esac
    expect_error "$message" "$convnet" inspect "$copy"
    case $damage in
    flip | root_header | key_header | std_zero | world_size | epoch) ;;  # --quick sees it too
    *) "$convnet" inspect --quick "$copy" >/dev/null || { echo "FAIL: inspect --quick of $damage" && exit 1; } ;;
    esac
  done
  echo "inspect_damage: ok"
  ;;
all_damaged)
  train --max-steps 2 --checkpoint-every 1steps --run-dir "$work/r" >/dev/null
  for checkpoint in "$work"/r/checkpoint-*.h5; do flip_data_byte "$checkpoint"; done
  expect_error "every checkpoint in $work/r is damaged" \
    train --max-steps 4 --run-dir "$work/r" --resume auto
  if grep -q "pass --resume auto" "$work/out.log"; then
    echo "FAIL: advises the --resume auto it was given" && cat "$work/out.log" && exit 1
  fi
  echo "all_damaged: ok"
  ;;
run_lock)
  run="$work/run"
  "$convnet" train --model resnet20 --batch-size 4 --train-data "$data" --threads 1 \
    --loader-threads 1 --max-steps 100000 --log-every 1 --checkpoint-every 1000steps \
    --run-dir "$run" >"$work/first.log" 2>&1 &
  first=$!
  for _ in $(seq 300); do grep -qs '"kind": "train"' "$run/metrics.jsonl" && break; sleep 0.1; done
  grep -q "pid $first on host" "$run/.lock"
  before=$(md5sum "$run/config.ini")
  expect_error "is in use by another convnet train (pid $first on host" \
    train --max-steps 5 --run-dir "$run" --resume auto
  grep -q "choose another --run-dir" "$work/out.log"
  test "$(md5sum "$run/config.ini")" = "$before"
  kill -0 "$first"  # the first run goes on
  kill -9 "$first"
  wait "$first" || true
  train --max-steps 2 --run-dir "$work/run" --resume auto >"$work/again.log" 2>&1 ||
    { echo "FAIL: the directory stayed locked after its holder died" && cat "$work/again.log" && exit 1; }
  echo "run_lock: ok"
  ;;
*)
  echo "unknown case $case_name" && exit 2
  ;;
esac
