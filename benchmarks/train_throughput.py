"""Weight-sparse vs dense training throughput, and forward throughput, measured in one run.

Both arms use the real training step (forward, backward, AdamW, RMS clipping; the sparse arm adds the
top-k projection of every weight matrix) on the same model shape and the same batches; arms are
interleaved in rounds so machine noise hits both alike. Prints tokens/s per arm and the ratio
(target: sparse / dense >= 0.8), and the top-k projection of every matrix timed alone (the step's
sparse-only part) as a share of a sparse step.

    python benchmarks/train_throughput.py [--config configs/py-sparse-small.toml] [--device cpu|cuda] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from circuitspec.engine.config import load_config
from circuitspec.engine.model import Transformer
from circuitspec.engine.sparsity import SparsitySchedule, project_model_
from circuitspec.engine.train import make_optimizer, train_step


def make_arm(cfg, density: float, device: str):
    cfg = replace(cfg, sparsity=SparsitySchedule(target_density=density, anneal_fraction=0.0))
    torch.manual_seed(0)
    model = Transformer(cfg.model).to(device)
    return cfg, model, make_optimizer(model, cfg), {n: p.data for n, p in model.weight_matrices().items()}


def time_steps(arm, batches, device: str) -> float:
    cfg, model, optimizer, matrices = arm
    start = time.perf_counter()
    for step, x in enumerate(batches):
        train_step(model, optimizer, matrices, cfg, x, step)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_projection(arm, steps: int, density: float, device: str) -> float:
    """Seconds for ``steps`` top-k projections of every weight matrix, nothing else (on a copy)."""
    matrices = {n: w.clone() for n, w in arm[3].items()}
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        project_model_(matrices, density)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def time_forward(model: Transformer, batches, device: str) -> float:
    model.eval()
    start = time.perf_counter()
    for x in batches:
        model(x[:, :-1])
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/py-sparse-small.toml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="write the measurements here")
    args = parser.parse_args()
    cfg = load_config(args.config)
    target = cfg.sparsity.target_density if cfg.sparsity.target_density < 1 else 0.1
    opt = cfg.train
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, cfg.model.d_vocab, (opt.batch_size, opt.seq_len + 1), generator=gen).to(args.device)
               for _ in range(args.steps)]
    tokens = args.steps * opt.batch_size * opt.seq_len
    dense, sparse = make_arm(cfg, 1.0, args.device), make_arm(cfg, target, args.device)
    time_steps(dense, batches[:2], args.device), time_steps(sparse, batches[:2], args.device)  # warm-up
    dense_rates, sparse_rates, forward_rates, projection_s = [], [], [], []
    for _ in range(args.rounds):
        dense_rates.append(tokens / time_steps(dense, batches, args.device))
        sparse_rates.append(tokens / time_steps(sparse, batches, args.device))
        forward_rates.append(tokens / time_forward(sparse[1], batches, args.device))
        projection_s.append(time_projection(sparse, args.steps, target, args.device) / args.steps)
    d, s, f = (statistics.median(r) for r in (dense_rates, sparse_rates, forward_rates))
    projection = statistics.median(projection_s)
    sparse_step = opt.batch_size * opt.seq_len / s
    m = cfg.model
    print(f"workload: {m.n_layers}L d_model={m.d_model} heads={m.n_heads} d_mlp={m.d_mlp}, batch {opt.batch_size} x seq {opt.seq_len}, "
          f"{args.rounds} rounds x {args.steps} steps per arm, device={args.device}, torch threads={torch.get_num_threads()}")
    print(f"dense training:          {d:12,.0f} tokens/s")
    print(f"sparse training (d={target:g}): {s:12,.0f} tokens/s")
    print(f"forward (inference):     {f:12,.0f} tokens/s")
    print(f"top-k projection alone:  {projection * 1e3:12.2f} ms per step ({projection / sparse_step:.0%} of a sparse step)")
    print(f"sparse / dense training throughput ratio: {s / d:.3f} (target >= 0.8)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": args.config, "device": args.device, "dense_tokens_per_s": d, "sparse_tokens_per_s": s,
            "forward_tokens_per_s": f, "projection_ms_per_step": projection * 1e3,
            "projection_share_of_sparse_step": projection / sparse_step, "sparse_over_dense": s / d}, indent=1))


if __name__ == "__main__":
    main()
