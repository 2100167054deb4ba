#!/usr/bin/env python3
"""Cut an MLP-head NiNo checkpoint to its first H horizons (same weights, k then runs from H down to 1).

Usage: scripts/truncate-horizons.py IN.safetensors H OUT.safetensors

Keeps the rows of `edge_out.fc.2` that predict horizons 1..=H (rows are feature-major: row j*S + t is
feature j at horizon t+1) and writes `model_args` with `seq_len` H. Predictions at k <= H are unchanged
(checked with `nino nowcast`). Standard library only.
"""
import json
import os
import struct
import sys

# The two defaults of `nino_core::nowcast::weights::Config` the cut needs when `model_args` omits them
# (the published checkpoints do); every other argument is passed through as the file has it.
SEQ_LEN, MAX_FEAT_SIZE = 40, 9
HEAD = "edge_out.fc.2."


def main(src, hor, dst):
    with open(src, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    args = json.loads(meta.get("model_args", "{}"))
    if HEAD + "weight" not in header:
        sys.exit(f"no `{HEAD}weight`: only the MLP head's output rows can be cut")
    seq, feat = args.get("seq_len", SEQ_LEN), args.get("max_feat_size", MAX_FEAT_SIZE)
    if not 1 <= hor <= seq:
        sys.exit(f"H must be in 1..={seq}")
    out, blobs, off = {}, [], 0
    for key in sorted(header):
        t = header[key]
        if t["dtype"] != "F32":
            sys.exit(f"{key}: only F32 tensors are supported")
        s, e = t["data_offsets"]
        blob, shape = data[s:e], list(t["shape"])
        if key.startswith(HEAD):
            row = 4 * (shape[1] if len(shape) == 2 else 1)
            blob = b"".join(blob[(j * seq + h) * row:(j * seq + h + 1) * row]
                            for j in range(feat) for h in range(hor))
            shape[0] = feat * hor
        out[key] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    args["seq_len"] = hor
    meta["model_args"] = json.dumps(args, separators=(",", ":"))
    meta["derived_from"] = f"{src}: horizons 1..={hor} of {seq}"
    out["__metadata__"] = meta
    hb = json.dumps(out, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    os.replace(tmp, dst)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
