#!/bin/bash
# A CMYK JPEG (as PIL writes them: Adobe, inverted) decodes to the RGB that
# PIL converts it to. usage: cmyk_jpeg_check.sh CONVNET WORKDIR
set -euo pipefail
convnet=$1 work=$2
rm -rf "$work" && mkdir -p "$work/tree/a"
/usr/bin/python3 - "$work" <<'PY'
import sys
import numpy as np
from PIL import Image
work = sys.argv[1]
y, x = np.mgrid[0:40, 0:60]
rgb = np.stack([x * 4, y * 6, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
Image.fromarray(rgb).convert("CMYK").save(f"{work}/tree/a/cmyk.jpg", quality=95)
np.save(f"{work}/reference.npy", np.asarray(Image.open(f"{work}/tree/a/cmyk.jpg").convert("RGB")))
PY
"$convnet" convert imagefolder --input "$work/tree" --output "$work/cmyk.h5" --size 40x60 >/dev/null
/usr/bin/python3 - "$work" <<'PY'
import sys
import h5py
import numpy as np
work = sys.argv[1]
ours = np.asarray(h5py.File(f"{work}/cmyk.h5", "r")["images"][0]).astype(int)
reference = np.load(f"{work}/reference.npy").astype(int)
worst = np.abs(ours - reference).max()
print("largest difference to PIL:", worst)
assert worst <= 1, worst
print("cmyk: ok")
PY
