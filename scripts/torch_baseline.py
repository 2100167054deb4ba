#!/usr/bin/env python3
"""PyTorch timings of the reference `Net` for the same-run baselines of `cargo bench -p nino-host`.

Written from docs/spec.md §1 (not from the reference code): conv 3x3 stride 2 without
padding, then 3x3 stride 1 'same' convs, ReLU after each, global average pooling, linear; AdamW with
weight decay 0 (PyTorch's Adam semantics); batch 128; 2 threads. Synthetic data: the cost of a step
does not depend on the values. Prints one JSON object with median milliseconds.

Usage: torch_baseline.py --task fm16|fm32 [--runs N] [--eval]
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

HID = {"fm16": (16, 32, 32), "fm32": (32, 64, 64)}


def net(hid):
    layers, cin = [], 1
    for i, h in enumerate(hid):
        layers += [nn.Conv2d(cin, h, 3, stride=2 if i == 0 else 1, padding=0 if i == 0 else "same"), nn.ReLU()]
        cin = h
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def median_ms(runs, f):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(HID), required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--eval", action="store_true", help="also time evaluating 10,000 images (batches of 1,000)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(1000)
    model = net(HID[a.task])
    opt = torch.optim.AdamW(model.parameters(), lr=0.006, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(128, 1, 28, 28) * 3.2 - 0.42
    y = torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(5):
        step()
    out = {"task": a.task, "threads": torch.get_num_threads(), "torch": torch.__version__, "step_ms": median_ms(a.runs, step)}
    if a.eval:
        tx = torch.rand(10_000, 1, 28, 28) * 3.2 - 0.42

        @torch.no_grad()
        def evaluate():
            for i in range(0, 10_000, 1000):
                model(tx[i : i + 1000]).argmax(1)

        evaluate()
        out["eval_ms"] = median_ms(max(3, a.runs // 10), evaluate)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
