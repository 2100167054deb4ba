#!/usr/bin/env python3
"""Copy a NiNo safetensors model with model_args.upd_scale set; the tensors are left untouched.

Usage: scripts/set-upd-scale.py SRC DST SCALE
"""
import json
import os
import struct
import sys

if len(sys.argv) != 4:
    sys.exit(__doc__.strip())
src, dst, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(src, "rb") as f:
    b = f.read()
n = struct.unpack("<Q", b[:8])[0]
header = json.loads(b[8 : 8 + n])
meta = header.setdefault("__metadata__", {})
args = json.loads(meta.get("model_args", "{}"))
args["upd_scale"] = scale
meta["model_args"] = json.dumps(args)
hb = json.dumps(header).encode()
hb += b" " * (-len(hb) % 8)
tmp = dst + ".tmp"
with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + b[8 + n :])
os.replace(tmp, dst)
