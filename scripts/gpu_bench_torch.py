#!/usr/bin/env python3
"""PyTorch on the same GPU, for scripts/gpu-check.sh: the FM-16 training step (batch 128, Adam) and an
eager PyTorch version of the NiNo step's math (nino-core's folded path: the same products, gathers and
scatter-means, on the FM-16 graph of fixtures/golden/fm16.safetensors, with weights of the published
model's shapes). Written from nino-core's formulas, not from the reference implementation; its results
are not compared, only timed. Needs torch and safetensors; prints one line and exits 0 where torch or a
GPU is missing."""
import os
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
except ImportError as e:
    print(f"PyTorch baseline skipped: {e}")
    sys.exit(0)
if not torch.cuda.is_available():
    print("PyTorch baseline skipped: torch sees no GPU")
    sys.exit(0)

dev = torch.device("cuda")
root = os.environ.get("NINO_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
fx = load_file(os.path.join(root, "golden", "fm16.safetensors"))


def per_call(warm, n, f):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        f()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


# Training step: the reference conv net of FM-16 (3x3 convs 16, 32, 32; first stride 2 unpadded).
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, stride=2), torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)).to(dev)
opt = torch.optim.Adam(net.parameters(), lr=0.006)
x = fx["batch_x"].to(dev).repeat(16, 1, 1, 1)
y = (torch.arange(128, device=dev) * 7) % 10


def train_step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return loss.item()  # as nino's step returns its loss


t_train = per_call(10, 200, train_step)

# NiNo step: folded GNN, H = 128, two evaluated layers, c = 5, F = 9, 15 edge types, DMS head S = 40.
torch.manual_seed(0)
H, C, FS, S, L = 128, 5, 9, 40, 2
ei = fx["edge_index"].to(dev)
src, dst = ei[0], ei[1]
kind = fx["edge_type"].to(dev)
E, N = src.numel(), fx["lpe8"].shape[0]
hist = fx["history"].to(dev)
P = hist.shape[1]
lpe = fx["lpe8"].to(dev)
deg = torch.zeros(N, device=dev).index_add_(0, dst, torch.ones(E, device=dev)).unsqueeze(1)
slot = torch.randint(0, P, (E, FS), device=dev)  # which parameter feeds each edge slot (timing only)


def w(*shape):
    return torch.randn(*shape, device=dev) * 0.05


node_w, node_b = w(8, H), w(H)
layers = [dict(pre=w(H, 2 * H), pre_b=w(2 * H), post=w(2 * H, H), post_b=w(H), st=w(H, 2 * H), st_b=w(2 * H),
               ew=w(FS * C if l == 0 else H, 3 * H), eb=w(15 if l == 0 else 1, 3 * H)) for l in range(L)]
head_w, head_b, out_w, out_b = w(H, H), w(H), w(FS * S, H), w(FS * S)


def nino_step(k=40):
    mean, sd = hist.mean(), hist.std()
    attr = ((hist[:, slot] - mean) / (sd + 1e-6)).permute(1, 2, 0).reshape(E, FS * C)
    x = lpe @ node_w + node_b
    inp = attr
    for l, p in enumerate(layers):
        uv = x @ p["pre"] + p["pre_b"]
        z = inp @ p["ew"][:, :2 * H]
        row = kind if l == 0 else torch.zeros_like(kind)
        b = p["eb"][row]
        msg = (z[:, :H] + b[:, :H]) * (uv[dst, :H] + uv[src, H:]) + b[:, 2 * H:]
        agg = torch.zeros(N, H, device=dev).index_add_(0, dst, msg) / deg
        sx = torch.zeros(N, inp.shape[1], device=dev).index_add_(0, dst, inp) / deg
        agg = agg + sx @ p["ew"][:, 2 * H:]
        x = F.silu(x @ p["post"][:H] + agg @ p["post"][H:] + p["post_b"])
        st = x @ p["st"] + p["st_b"]
        inp = F.silu(z[:, H:] + b[:, H:2 * H] + st[src, :H] + st[dst, H:])
    hid = F.silu(inp @ head_w + head_b)
    rows = torch.arange(FS, device=dev) * S + k - 1
    out = attr[:, C - 1::C] + hid @ out_w[rows].T + out_b[rows]
    pred = torch.empty(P, device=dev)
    pred[slot.reshape(-1)] = (out * sd + mean).reshape(-1)
    return pred.sum().item()  # as nino's step reads its error flag back


t_nino = per_call(10, 200, nino_step)
print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name()}: NiNo step (eager, same math) "
      f"{t_nino * 1e3:.3f} ms, training step {t_train * 1e3:.3f} ms")
