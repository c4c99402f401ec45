"""Training throughput (images/s, forward + backward + AdamW step) of ResNet-34 widths on this CPU.

Usage: .venv/bin/python benchmarks/bench_training.py [--widths 0.25 0.5] [--batch-size 32] [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from app.training.model import build_resnet
from app.training.trainer import configure_threads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    images = torch.randn(args.batch_size, 3, 224, 224)
    targets = torch.randint(0, 5, (args.batch_size,))
    for width in args.widths:
        model = build_resnet("resnet34", width=width).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        for step in range(args.steps + 1):
            if step == 1:  # the first step includes one-off allocation costs
                started = time.perf_counter()
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        train_rate = args.steps * args.batch_size / (time.perf_counter() - started)
        model.eval()
        with torch.no_grad():
            started = time.perf_counter()
            model(images)
            eval_rate = args.batch_size / (time.perf_counter() - started)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"resnet34 width {width:g}: {params / 1e6:.2f} M parameters, train {train_rate:.1f} img/s, "
            f"eval {eval_rate:.1f} img/s ({threads} threads, batch {args.batch_size})"
        )


if __name__ == "__main__":
    main()
