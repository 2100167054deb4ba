#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/seeds/<target>/ from the repository's fixtures and a few tiny
hand-built files. The real weights are megabytes; each seed stays under 5 KB so the fuzzer mutates fast.

Usage: python3 tests/fuzz/make_seeds.py. Deterministic (gzip mtime 0, no file name), so re-running it
reproduces the committed seeds.
"""
import gzip, io, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    print(f"seeds/{target}/{name}: {len(data)} bytes")


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as g:
        g.write(data)
    return buf.getvalue()


def value_bytes(dtype, n):
    xs = [i * 0.01 for i in range(n)]
    if dtype == "F32":
        return struct.pack(f"<{n}f", *xs)
    if dtype == "F16":
        return struct.pack(f"<{n}e", *xs)
    if dtype == "BF16":  # the top half of the f32 bits (truncation is fine for seeds)
        return b"".join(struct.pack("<f", x)[2:] for x in xs)
    raise ValueError(dtype)


def safetensors(tensors, dtype, model_args=None):
    """A safetensors image: u64 LE header length, JSON header (padded with spaces to 8 bytes), data."""
    header, data = {}, b""
    if model_args is not None:
        header["__metadata__"] = {"model_args": model_args}
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        b = value_bytes(dtype, n)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def lin(prefix, rows, cols):
    return [(f"{prefix}.weight", [rows, cols]), (f"{prefix}.bias", [rows])]


# The smallest WNN+: hid 2, no edge-type embedding, 3 horizons.
WNN_ARGS = '{"gnn": false, "hid": 2, "edge_types": 0, "seq_len": 3}'
WNN_KEYS = lin("edge_proj.fc.0", 2, 5) + [k for m in (0, 2, 4) for k in lin(f"edge_mlp.fc.{m}", 2, 2)] \
    + lin("edge_mlp.fc.6", 3, 2)

# The smallest GNN: hid 2, one layer, ctx 2, lpe 1, two horizons, one feature slot, two edge types.
GNN_ARGS = ('{"hid": 2, "layers": 1, "ctx": 2, "lpe": 1, "seq_len": 2, "max_feat_size": 1, "edge_types": 2,'
            ' "wte_pos_enc": false}')
GNN_KEYS = [("layer_embed.weight", [2, 2])] + lin("node_proj.fc.0", 2, 1) + lin("edge_proj.fc.0", 2, 2) \
    + lin("gnn.convs.0.edge_encoder", 4, 2) + lin("gnn.convs.0.pre_nns.0.0", 2, 4) \
    + lin("gnn.convs.0.post_nns.0.0", 2, 4) + lin("gnn.convs.0.lin", 2, 2) + lin("edge_out.fc.0", 2, 2) \
    + lin("edge_out.fc.2", 2, 2)


def header_only(path):
    """The first 8 + header bytes of a real safetensors file: its whole header, none of its data."""
    with open(os.path.join(ROOT, path), "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return data[: 8 + n]


def weights_seeds():
    # The host's loader and the C ABI's nowcaster read the same files.
    for t in ("safetensors_weights", "safetensors_capi"):
        write(t, "wnn_hid2_f32", safetensors(WNN_KEYS, "F32", WNN_ARGS))
        write(t, "wnn_hid2_f16", safetensors(WNN_KEYS, "F16", WNN_ARGS))
        write(t, "gnn_hid2_f32", safetensors(GNN_KEYS, "F32", GNN_ARGS))
        write(t, "gnn_hid2_bf16", safetensors(GNN_KEYS, "BF16", GNN_ARGS))
        write(t, "nino_mlp_header_only", header_only("fixtures/weights/nino_mlp.safetensors"))
        write(t, "nino_no_posw_header_only", header_only("fixtures/weights/nino_no_posw.safetensors"))
    # A GNN the C ABI can nowcast a real graph with: 14 edge-type rows, so the self-loop (type 13) has one.
    gnn14 = GNN_ARGS.replace('"edge_types": 2', '"edge_types": 14')
    keys14 = [("layer_embed.weight", [14, 2])] + GNN_KEYS[1:]
    write("safetensors_capi", "gnn_hid2_types14_f32", safetensors(keys14, "F32", gnn14))


def tensor_seeds():
    t = "safetensors_tensor"
    write(t, "history_5x7_f32", safetensors([("history", [5, 7])], "F32"))
    write(t, "lpe_4x8_f32", safetensors([("lpe", [4, 8])], "F32"))
    write(t, "history_2x3_f16", safetensors([("history", [2, 3])], "F16"))
    write(t, "golden_debug_header_only", header_only("fixtures/golden/debug.safetensors"))


def idx_seeds():
    t = "idx"
    mini = os.path.join(ROOT, "fixtures", "fashion-mnist-mini")
    with gzip.open(os.path.join(mini, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        images = f.read()
    with open(os.path.join(mini, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        labels_gz = f.read()
    # Two real 28x28 images under a header rewritten to n = 2.
    two = struct.pack(">IIII", 0x803, 2, 28, 28) + images[16 : 16 + 2 * 28 * 28]
    write(t, "images_2x28x28", two)
    write(t, "images_2x28x28.gz", gz(two))
    write(t, "images_3x2x3", struct.pack(">IIII", 0x803, 3, 2, 3) + bytes(i * 14 for i in range(18)))
    labels = gzip.decompress(labels_gz)
    write(t, "labels_10", struct.pack(">II", 0x801, 10) + labels[8:18])
    write(t, "t10k-labels-idx1-ubyte.gz", labels_gz)


def cifar_seeds():
    # One record of each format (a label byte or two, then the red, green and blue 32x32 planes), raw and
    # gzipped: two records would pass the 5 KB a seed may have.
    t = "cifar"
    planes = bytes(range(256)) * 4 + bytes(1024) + bytes([255]) * 1024
    write(t, "cifar10_one_record", bytes([7]) + planes)
    write(t, "cifar10_one_record.gz", gz(bytes([7]) + planes))
    write(t, "cifar100_one_record", bytes([3, 42]) + planes)


def config_seeds():
    t = "model_config"
    for name in ("nino_mlp", "nino_mlp_h32", "nino_no_posw"):
        with open(os.path.join(ROOT, "fixtures", "weights", name + ".json"), "rb") as f:
            write(t, name, f.read())
    write(t, "wnn_hid2", WNN_ARGS.encode())
    write(t, "gnn_hid2", GNN_ARGS.encode())
    every = ('{"hid": 128, "layers": 3, "ctx": 5, "lpe": 8, "seq_len": 40, "max_feat_size": 9, "edge_types": 15,'
             ' "gnn": true, "wte_pos_enc": true, "vocab_size": 50257, "upd_scale": 1.0, "dms": true,'
             ' "improved_graph": true, "residual": true, "final_edge_update": false, "towers": 1,'
             ' "input_layer": "linear", "act_name": "silu", "scale_method": "std"}')
    write(t, "every_option", every.encode())
    write(t, "unknown_nested", b'{"chunk_size": 100000, "extra": [1, {"a": "b\\"c"}, [[]]], "hid": 8}')


def arch_seeds():
    t = "arch_spec"

    # channels, height, width and classes as little-endian u32 (kept mod 64 below bit 31), then the spec.
    def seed(c, h, w, k, spec):
        return struct.pack("<IIII", c, h, w, k) + spec.encode()

    write(t, "fm16", seed(1, 28, 28, 10, "conv:16,32,32"))
    write(t, "debug", seed(1, 28, 28, 10, "conv:4,6,6"))
    write(t, "mlp", seed(1, 28, 28, 10, "mlp:128,64"))
    write(t, "linear", seed(3, 8, 8, 2, " MLP: "))
    write(t, "huge_width", seed(1, 28, 28, 10, "mlp:18446744073709551615"))
    write(t, "huge_input", seed(0x80000001, 0x80000002, 0x80000003, 10, "conv:4"))


weights_seeds()
tensor_seeds()
idx_seeds()
cifar_seeds()
config_seeds()
arch_seeds()
