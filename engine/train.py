"""Training loop for weight-sparse (and dense) transformers on Python code.

Every batch is a pure function of (seed, step): corpus windows from a numpy generator seeded with both,
task snippets from a sampler seeded with both. Resuming therefore replays exactly the data an
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import save_checkpoint
from .config import TrainConfig
from .corpus import Corpus, load_corpus
from .corpus_means import write_corpus_means
from .errors import UsageError
from .evaluate import score_tasks
from .model import Transformer
from .sparsity import density_report, project_model_
from .tasks import RandomSampler, Task, all_tasks, get_task
from .tokenizer import encode
from .train_state import STATE_DIR, TrainState, load_train_state, save_train_state


def select_tasks(names: tuple[str, ...]) -> list[Task]:
    return [get_task(n) for n in names] if names else all_tasks()


def task_rows(tasks: list[Task], rows: int, width: int, seed: int, step: int) -> np.ndarray:
    """``rows`` windows of packed task snippets (each starts at a snippet boundary)."""
    sampler = RandomSampler(f"train:{seed}:{step}")
    out = np.zeros((rows, width), dtype=np.int64)
    for r in range(rows):
        buf: list[int] = []
        while len(buf) < width:
            buf += encode(sampler.choice(tasks).example(sampler).full_text)
        out[r] = buf[:width]
    return out


def corpus_rows(data: np.ndarray, rows: int, width: int, rng: np.random.Generator) -> np.ndarray:
    if rows == 0:
        return np.zeros((0, width), dtype=np.int64)
    starts = rng.integers(0, data.size - width, size=rows)
    return np.stack([data[s : s + width] for s in starts]).astype(np.int64)


def make_batch(cfg: TrainConfig, corpus: Corpus, tasks: list[Task], step: int) -> torch.Tensor:
    """[batch, seq_len + 1] tokens for optimizer step ``step``."""
    opt = cfg.train
    width = opt.seq_len + 1
    n_task = round(cfg.data.task_mix * opt.batch_size) if tasks else 0
    rng = np.random.default_rng([opt.seed, step])
    parts = [corpus_rows(corpus.train, opt.batch_size - n_task, width, rng)]
    if n_task:
        parts.append(task_rows(tasks, n_task, width, opt.seed, step))
    return torch.from_numpy(np.concatenate(parts))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    opt = cfg.train
    if step < opt.warmup_steps:
        return opt.lr * (step + 1) / opt.warmup_steps
    progress = (step - opt.warmup_steps) / max(1, opt.steps - opt.warmup_steps)
    floor = opt.lr * opt.min_lr_fraction
    return floor + (opt.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: Transformer, cfg: TrainConfig) -> torch.optim.AdamW:
    matrices = set(model.weight_matrices())
    decay = [p for n, p in model.named_parameters() if n in matrices]
    rest = [p for n, p in model.named_parameters() if n not in matrices]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))


def clip_grad_rms_(model: Transformer, max_rms: float) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    total = float(torch.stack([g.pow(2).sum() for g in grads]).sum())
    rms = math.sqrt(total / max(1, sum(g.numel() for g in grads)))
    if rms > max_rms:
        for g in grads:
            g.mul_(max_rms / rms)
    return rms


@torch.no_grad()
def validation_loss(model: Transformer, corpus: Corpus, cfg: TrainConfig, batches: int = 8) -> float:
    rng = np.random.default_rng([cfg.train.seed, 2**31 - 1])  # the same windows at every evaluation
    data = corpus.validation if corpus.validation.size > cfg.train.seq_len + 1 else corpus.train
    losses = []
    for _ in range(batches):
        x = torch.from_numpy(corpus_rows(data, cfg.train.batch_size, cfg.train.seq_len + 1, rng)).to(model.device)
        losses.append(float(F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())))
    return sum(losses) / len(losses)


def train_step(model: Transformer, optimizer: torch.optim.Optimizer, matrices: dict[str, torch.Tensor],
               cfg: TrainConfig, x: torch.Tensor, step: int) -> dict[str, float]:
    """One optimizer step on tokens ``x`` [batch, seq+1], then the top-k projection for step + 1."""
    lr = learning_rate(cfg, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_rms = clip_grad_rms_(model, cfg.train.grad_clip_rms) if cfg.train.grad_clip_rms else float("nan")
    optimizer.step()
    density = cfg.sparsity.density(step + 1, cfg.train.steps)
    per_matrix = cfg.sparsity.densities(matrices, step + 1, cfg.train.steps)
    if min(per_matrix.values()) < 1.0:
        project_model_(matrices, per_matrix)
    return {"loss": loss.item(), "lr": lr, "density": density, "grad_rms": grad_rms}


def train(cfg: TrainConfig, out: Path | str, *, device: str = "cpu", resume: bool = False,
          manifest_extra: dict[str, Any] | None = None,
          on_progress: Callable[[TrainState, dict[str, float]], None] | None = None,
          on_eval: Callable[[dict[str, Any]], None] | None = None,
          on_message: Callable[[str], None] | None = None) -> tuple[Transformer, dict[str, Any]]:
    """Train to ``cfg.train.steps``; writes periodic checkpoints to ``out/train_state`` (:mod:`.train_state`:
    each one a unit, ``resume`` continues from the newest intact one and says which through ``on_message``)
    and the final checkpoint to ``out``, with its pretraining means (``corpus_means.safetensors``,
    :mod:`.corpus_means`). A location that cannot be written stops the run with a UsageError that says
    what is kept."""
    out = Path(out)
    torch.manual_seed(cfg.train.seed)
    tasks = select_tasks(cfg.data.tasks)
    corpus = load_corpus(cfg.corpus)
    if corpus.train.size <= cfg.train.seq_len + 1:
        raise UsageError(f"corpus has only {corpus.train.size} training bytes, fewer than seq_len + 1")
    if cfg.train.seq_len > cfg.model.n_ctx:
        raise UsageError(f"[train] seq_len={cfg.train.seq_len} exceeds [model] n_ctx={cfg.model.n_ctx}")
    model = Transformer(cfg.model).to(device)
    optimizer = make_optimizer(model, cfg)
    state = TrainState()
    if resume:
        state, message = load_train_state(out, model, optimizer)
        if on_message:
            on_message(message)
    matrices = {n: p.data for n, p in model.weight_matrices().items()}
    model.train()
    tokens_per_step = cfg.train.batch_size * cfg.train.seq_len
    while state.step < cfg.train.steps:
        t0 = time.perf_counter()
        x = make_batch(cfg, corpus, tasks, state.step).to(device)
        stats = train_step(model, optimizer, matrices, cfg, x, state.step)
        state.step += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        state.elapsed_s += time.perf_counter() - t0
        state.tokens += tokens_per_step
        if on_progress:
            on_progress(state, stats)
        loss, density = stats["loss"], stats["density"]
        last = state.step == cfg.train.steps
        if state.step % cfg.train.eval_every == 0 or last:
            record = evaluate_during_training(model, corpus, cfg, tasks, state, loss, density)
            state.history.append(record)
            if on_eval:
                on_eval(record)
        if state.step % cfg.train.checkpoint_every == 0 or last:
            try:
                save_train_state(out, model, optimizer, state)
            except OSError as e:
                raise UsageError(f"cannot save the training checkpoint of step {state.step} in {out / STATE_DIR} "
                                 f"({e.strerror or e}); the last complete one is kept",
                                 hint="free space or fix the folder, then continue with --resume") from None
    final = state.history[-1] if state.history else {}
    manifest = {
        "name": cfg.name,
        "description": cfg.description,
        "config": cfg.to_dict(),
        "corpus": {**corpus.describe(), "task_mix": cfg.data.task_mix, "tasks": [t.name for t in tasks]},
        "seed": cfg.train.seed,
        "steps": state.step,
        "train_tokens": state.tokens,
        "train_seconds": round(state.elapsed_s, 1),
        "train_tokens_per_second": round(state.tokens / max(state.elapsed_s, 1e-9)),
        "device": device,
        "metrics": final,
        "density": {n: round(d, 5) for n, d in density_report(matrices).items()},
        "torch": torch.__version__,
        **(manifest_extra or {}),
    }
    try:
        save_checkpoint(model, out, manifest)
        # the pretraining means `ablate mean over corpus` uses, from this very corpus (corpus_means.py)
        write_corpus_means(out, model, corpus=corpus)
    except OSError as e:
        raise UsageError(f"cannot write the checkpoint to {out} ({e.strerror or e}); the trained state of step "
                         f"{state.step} is kept in {out / STATE_DIR}",
                         hint="free space or fix the folder, then rerun with --resume: it writes the checkpoint") from None
    return model, manifest


def evaluate_during_training(model: Transformer, corpus: Corpus, cfg: TrainConfig, tasks: list[Task],
                             state: TrainState, loss: float, density: float) -> dict[str, Any]:
    scores = score_tasks(model, tasks, n=cfg.train.eval_examples, seed="train-eval")
    model.train()
    return {
        "step": state.step,
        "train_loss": round(loss, 4),
        "val_loss": round(validation_loss(model, corpus, cfg), 4),
        "density": round(density, 5),
        "task_accuracy": {name: round(s.accuracy, 4) for name, s in scores.items()},
    }
