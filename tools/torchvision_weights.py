#!/usr/bin/python3
"""Converts between a torchvision state_dict and convnet's weights file.

The weights file (models/weights_file.h, docs/formats.md) is HDF5:
  /                        attributes model (str), num_classes, in_channels,
                           format_version (int64)
  /model/<state_dict key>  float32 dataset of the tensor's shape; int64 scalar
                           for num_batches_tracked

Subcommands:
  to-h5    --state-dict FILE.pth --model NAME --num-classes K --in-channels C --output OUT.h5
           checks the state_dict against the model's PyTorch definition (keys
           and shapes), then writes it;
  from-h5  --input IN.h5 --output FILE.pth
           writes the file's /model group as a state_dict of torch tensors;
  init     --model NAME [--num-classes K] [--in-channels C] [--seed S] --output OUT.h5
           builds the model in PyTorch (torchvision for the ImageNet ResNets and
           DenseNets, tests/models/reference_models.py for the rest) with its
           default initialization, seeded, and writes it.

Outputs are written to OUT.tmp and renamed over OUT, so an interrupted run
never leaves a file that looks complete. Needs Debian's python3-torch,
python3-torchvision and python3-h5py: run with /usr/bin/python3.
"""

import argparse
import os
import sys

import h5py
import numpy as np
import torch

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(REPO, "tests", "models"))
import reference_models  # noqa: E402

FORMAT_VERSION = 1


class ConversionError(Exception):
    pass


def write_weights_group(f, state_dict, model, num_classes, in_channels):
    """Writes the root attributes and the /model group into the open h5py file `f`."""
    f.attrs["model"] = model
    f.attrs["num_classes"] = np.int64(num_classes)
    f.attrs["in_channels"] = np.int64(in_channels)
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    group = f.create_group("model")
    for key, tensor in state_dict.items():
        value = tensor.detach().cpu()
        if key.endswith("num_batches_tracked"):
            group.create_dataset(key, data=np.int64(value.item()))
        else:
            group.create_dataset(key, data=value.to(torch.float32).numpy())


def write_weights(path, state_dict, model, num_classes, in_channels):
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            write_weights_group(f, state_dict, model, num_classes, in_channels)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_weights(path):
    """(metadata dict, state_dict) of a weights file."""
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConversionError(f"{path}: not an HDF5 file ({e})") from e
    with f:
        missing = [a for a in ("model", "num_classes", "in_channels", "format_version")
                   if a not in f.attrs]
        if missing or "model" not in f:
            raise ConversionError(f"{path}: not a convnet weights file (missing "
                                  f"{', '.join(missing) if missing else 'the /model group'})")
        model = f.attrs["model"]
        meta = {
            "model": model.decode() if isinstance(model, bytes) else str(model),
            "num_classes": int(f.attrs["num_classes"]),
            "in_channels": int(f.attrs["in_channels"]),
            "format_version": int(f.attrs["format_version"]),
        }
        if meta["format_version"] != FORMAT_VERSION:
            raise ConversionError(f"{path}: format_version {meta['format_version']}, this tool "
                                  f"reads {FORMAT_VERSION}")
        keys = list(f["model"].keys())
        # HDF5 lists keys alphabetically; restore state_dict order from the PyTorch definition.
        try:
            order = list(reference_models.build(meta["model"], meta["num_classes"],
                                                meta["in_channels"]).state_dict())
        except ValueError:
            order = []
        rank = {k: i for i, k in enumerate(order)}
        keys.sort(key=lambda k: (rank.get(k, len(rank)), k))
        state_dict = {}
        for key in keys:
            data = f["model"][key][()]
            if key.endswith("num_batches_tracked"):
                state_dict[key] = torch.tensor(int(data), dtype=torch.int64)
            else:
                state_dict[key] = torch.from_numpy(np.asarray(data, dtype=np.float32).copy())
    return meta, state_dict


def check_against_model(state_dict, model, num_classes, in_channels):
    """Raises naming every key that is missing, extra or of another shape than the definition."""
    expected = reference_models.build(model, num_classes, in_channels).state_dict()
    problems = []
    for key, value in expected.items():
        if key not in state_dict:
            problems.append(f"missing {key} {tuple(value.shape)}")
        elif tuple(state_dict[key].shape) != tuple(value.shape):
            problems.append(f"{key}: shape {tuple(state_dict[key].shape)}, "
                            f"{model} expects {tuple(value.shape)}")
    problems += [f"extra {key}" for key in state_dict if key not in expected]
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ConversionError(f"the state_dict does not match {model} with {num_classes} classes "
                              f"and {in_channels} input channels:\n  {shown}{more}")


def load_state_dict(path):
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such file")
    state = torch.load(path, map_location="cpu")
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConversionError(f"{path}: not a state_dict (a dict of tensors)")
    # DataParallel / DistributedDataParallel checkpoints prefix every key.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def to_h5(args):
    state = load_state_dict(args.state_dict)
    num_classes = args.num_classes or reference_models.default_classes(args.model)
    check_against_model(state, args.model, num_classes, args.in_channels)
    write_weights(args.output, state, args.model, num_classes, args.in_channels)


def from_h5(args):
    _, state = read_weights(args.input)
    tmp = args.output + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, args.output)


def init(args):
    num_classes = args.num_classes or reference_models.default_classes(args.model)
    torch.manual_seed(args.seed)
    model = reference_models.build(args.model, num_classes, args.in_channels)
    write_weights(args.output, model.state_dict(), args.model, num_classes, args.in_channels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("to-h5", help="torchvision state_dict (.pth) -> weights file")
    p.add_argument("--state-dict", required=True, help="torch.save'd state_dict")
    p.add_argument("--model", required=True, help="convnet model name, e.g. resnet50")
    p.add_argument("--num-classes", type=int, default=0, help="0: the model's default")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--output", required=True)
    p.set_defaults(run=to_h5)
    p = sub.add_parser("from-h5", help="weights file -> state_dict (.pth)")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.set_defaults(run=from_h5)
    p = sub.add_parser("init", help="a freshly initialized PyTorch model -> weights file")
    p.add_argument("--model", required=True)
    p.add_argument("--num-classes", type=int, default=0, help="0: the model's default")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True)
    p.set_defaults(run=init)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ConversionError, ValueError) as e:
        print(f"torchvision_weights.py {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
