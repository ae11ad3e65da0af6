"""Circuit size at matched task loss, sparse vs dense, and the capability / interpretability trade-off.

Reproduces, at our small scale, the two headline measurements of Gao et al. 2025:

1. For each task, the size (nodes and edges) of the circuit `circuitspec discover` finds at the *same*
   target task loss in the weight-sparse model and in the dense model of the same shape (the paper reports
   sparse circuits roughly 10-16x smaller), and at more than one sparsity level.
2. Capability (validation loss on held-out Python code) against interpretability (mean discovered circuit
   size across tasks; smaller is more interpretable), for two model sizes at three densities each: one
   line per size.

Models: the shipped `py-dense-small`, `py-sparse-small`, `py-sparse3-small`, `py-dense-medium` and
`py-sparse-medium`, plus four models trained from `benchmarks/configs/` into `benchmarks/checkpoints/` (10-20
minutes each on 2 CPU cores; reused when present, resumed when interrupted). Every model saw the same data for
5,000 steps; `py-sparse3-small` is the 3% small model at twice the learning rate (the paper's recipe for
sparser models).
A task counts for a model only when the model itself and its circuit both reach the target.
Discoveries are cached in `benchmarks/results/circuit_sizes.json` (keyed by model weights, task and
settings), so a rerun only computes what is missing.

Writes `docs/images/tradeoff.png` and `.svg` and `docs/circuit_sizes.md` (the tables the figure is drawn
from), and prints the tables; with `--models` or `--tasks` (a subset) it only prints them.

    python benchmarks/circuit_sizes.py [--target-loss 0.15] [--tasks T ...] [--steps N] [--samples N]
                                       [--no-train] [--no-plot]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from circuitspec.engine.checkpoint import read_manifest  # noqa: E402
from circuitspec.engine.discover import DEFAULT_STEPS, discover  # noqa: E402
from circuitspec.engine.evaluate import score_task  # noqa: E402
from circuitspec.engine.tasks import get_task, task_names  # noqa: E402
from circuitspec.engine.zoo import load_model, resolve_model_path  # noqa: E402

BENCH = ROOT / "benchmarks"
CACHE = BENCH / "results" / "circuit_sizes.json"
ENGINE = hashlib.sha256((ROOT / "engine" / "discover.py").read_bytes()).hexdigest()[:12]  # the search's version


@dataclass(frozen=True)
class ModelEntry:
    label: str
    size: str  # one line of the trade-off plot per size
    density: float
    ref: str  # shipped name or checkpoint directory
    config: Path | None = None  # how to train it when the checkpoint is missing


MODELS = [
    ModelEntry("small, dense", "small (d_model 128)", 1.0, "py-dense-small"),
    ModelEntry("small, 10%", "small (d_model 128)", 0.1, "py-sparse-small"),
    ModelEntry("small, 3%", "small (d_model 128)", 0.03, str(BENCH / "checkpoints" / "bench-small-d003"), BENCH / "configs" / "bench-small-d003.toml"),
    ModelEntry("small, 3%, lr 1e-2", "small, lr 1e-2", 0.03, "py-sparse3-small"),
    ModelEntry("small, 2%, lr 1e-2, I/O 10%", "small, lr 1e-2, I/O 10%", 0.02,
               str(BENCH / "checkpoints" / "bench-small-d002-io10-lr1e2"), BENCH / "configs" / "bench-small-d002-io10-lr1e2.toml"),
    ModelEntry("small, 1%, lr 1e-2, I/O 10%", "small, lr 1e-2, I/O 10%", 0.01,
               str(BENCH / "checkpoints" / "bench-small-d001-io10-lr1e2"), BENCH / "configs" / "bench-small-d001-io10-lr1e2.toml"),
    ModelEntry("wide, 0.75%, lr 5e-3, I/O 10%", "wide (d_model 256)", 0.0075,
               str(BENCH / "checkpoints" / "bench-wide-d00075-io10-lr5e3"), BENCH / "configs" / "bench-wide-d00075-io10-lr5e3.toml"),
    ModelEntry("medium, dense", "medium (4 layers, d_model 256)", 1.0, "py-dense-medium"),
    ModelEntry("medium, 10%", "medium (4 layers, d_model 256)", 0.1, "py-sparse-medium"),
    ModelEntry("tiny, dense", "tiny (d_model 64)", 1.0, str(BENCH / "checkpoints" / "bench-tiny-d100"), BENCH / "configs" / "bench-tiny-d100.toml"),
    ModelEntry("tiny, 10%", "tiny (d_model 64)", 0.1, str(BENCH / "checkpoints" / "bench-tiny-d010"), BENCH / "configs" / "bench-tiny-d010.toml"),
    ModelEntry("tiny, 3%", "tiny (d_model 64)", 0.03, str(BENCH / "checkpoints" / "bench-tiny-d003"), BENCH / "configs" / "bench-tiny-d003.toml"),
]
PAIRS = (("small, dense", "small, 10%"), ("medium, dense", "medium, 10%"))  # same shape: the paper's comparison


def ensure_trained(entry: ModelEntry, allow_training: bool) -> bool:
    path = Path(entry.ref)
    if entry.config is None or (path / "model.safetensors").is_file():
        return True
    if not allow_training:
        print(f"  {entry.label}: no checkpoint at {path} (run without --no-train to train it)")
        return False
    resume = ["--resume"] if (path / "train_state").exists() else []
    print(f"  training {entry.label} from {entry.config.relative_to(ROOT)} (a few minutes on CPU)")
    subprocess.run([sys.executable, "-m", "circuitspec", "train", "--config", str(entry.config), "--out", str(path), *resume],
                   check=True)
    return True


def cache_key(entry: ModelEntry, task: str, args) -> str:
    sha = read_manifest(resolve_model_path(entry.ref)).get("weights_sha256", "?")[:16]
    return f"{sha}|{task}|loss<={args.target_loss}|steps={args.steps}|samples={args.samples}|seed={args.seed}|engine={ENGINE}"


def measure(entry: ModelEntry, tasks: list[str], args, cache: dict) -> dict:
    model = load_model(entry.ref)
    manifest = read_manifest(resolve_model_path(entry.ref))
    row = {"label": entry.label, "size": entry.size, "density": entry.density,
           "val_loss": manifest.get("metrics", {}).get("val_loss"), "tasks": {}}
    accuracies = []
    for name in tasks:
        task = get_task(name)
        accuracies.append(score_task(model, task, n=500).accuracy)
        key = cache_key(entry, name, args)
        if key not in cache:
            found = discover(model, task, target_loss=args.target_loss, steps=args.steps, samples=args.samples, seed=args.seed)
            cache[key] = {"nodes": found.node_count, "edges": found.edge_count, "loss": found.loss, "full_loss": found.full_loss,
                          "reached": found.reached, "seconds": round(found.seconds, 1)}
            CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
            print(f"  {entry.label:13s} {name:16s} nodes {found.node_count:5d}  edges {found.edge_count:6d}  "
                  f"loss {found.loss:.3f} (target {args.target_loss}, full {found.full_loss:.3f})  "
                  f"{'reached' if found.reached else 'NOT reached'}  {found.seconds:.0f} s")
        row["tasks"][name] = cache[key]
    row["accuracy"] = sum(accuracies) / len(accuracies)
    return row


def counts(result: dict, target: float) -> bool:
    """Whether a discovery counts at the matched loss: its circuit meets the target *and* so does the model.
    A circuit that meets a target its model misses does better than the model (faithfulness above 1): it
    gets there by ablating the model's own errors, so it explains no behaviour the model has (the paper
    compares circuits at a loss its models reach)."""
    return result["reached"] and result["full_loss"] <= target


def beats_model(result: dict, target: float) -> bool:
    """A circuit that meets the target while its model does not (shown in parentheses, never counted)."""
    return result["reached"] and not counts(result, target)


def reached(row: dict, tasks: list[str], target: float) -> list[str]:
    """The tasks this model is explained on at the target (a weak model reaches few: it cannot be
    explained at a loss it does not attain itself)."""
    return [t for t in tasks if counts(row["tasks"][t], target)]


def _cell(result: dict, target: float) -> str:
    if counts(result, target):
        return f"{result['nodes']} / {result['edges']}"
    if beats_model(result, target):  # shown, not counted
        return f"({result['nodes']} / {result['edges']})"
    return "-"


def tables(rows: list[dict], tasks: list[str], target: float) -> str:
    by = {r["label"]: r for r in rows}
    out = [f"Discovered circuit size at matched task loss (mean binary cross-entropy over the two answers <= {target}, "
           "mean ablation; nodes / edges; `-` = target not reached; in parentheses: the circuit meets the target but "
           "the model itself does not, so the circuit does better than the model by ablating its errors "
           "(faithfulness above 1) and explains nothing the model does: shown, never counted):", ""]
    pairs = [p for p in PAIRS if all(label in by for label in p)]
    ratio_heads = "".join(f" | {d.split(',')[0]}: dense / sparse, nodes | edges" for d, _ in pairs)
    out.append("| task | " + " | ".join(r["label"] for r in rows) + ratio_heads + " |")
    out.append("|---" * (len(rows) + 1 + 2 * len(pairs)) + "|")
    ratios: dict[tuple[str, str], list[float]] = {}
    for t in tasks:
        cells = [_cell(r["tasks"][t], target) for r in rows]
        for d, s in pairs:
            dense, sparse = by[d]["tasks"][t], by[s]["tasks"][t]
            ok = counts(dense, target) and counts(sparse, target) and sparse["nodes"] and sparse["edges"]
            for unit in ("nodes", "edges"):
                if ok:
                    ratios.setdefault((d, unit), []).append(dense[unit] / sparse[unit])
                cells.append(f"{dense[unit] / sparse[unit]:.1f}x" if ok else "-")
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    for d, _ in pairs:
        n, e = ratios.get((d, "nodes"), []), ratios.get((d, "edges"), [])
        out += ["", f"{d.split(',')[0]} pair, geometric mean over the {len(e)} tasks both reach: dense / sparse "
                f"{_geomean(n):.1f}x in nodes, {_geomean(e):.1f}x in edges."]
    out += ["", "Trade-off (circuit sizes averaged over the tasks each model is explained on: the model and its circuit "
            "both reach the target):", "",
            "| model | density | validation loss (Python) | mean task accuracy | tasks reached | mean circuit nodes | mean circuit edges |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        done = reached(r, tasks, target)
        nodes = _mean([r["tasks"][t]["nodes"] for t in done])
        edges = _mean([r["tasks"][t]["edges"] for t in done])
        out.append(f"| {r['label']} | {r['density']:g} | {r['val_loss']:.3f} | {r['accuracy']:.3f} | {len(done)}/{len(tasks)} "
                   f"| {nodes:.1f} | {edges:.1f} |")
    return "\n".join(out) + "\n"


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def plot(rows: list[dict], tasks: list[str], target: float, stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = {r["label"]: reached(r, tasks, target) for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=150, sharey=True)
    for ax, unit in zip(axes, ("nodes", "edges")):  # the paper counts edges; nodes are what a picture shows
        for size in dict.fromkeys(r["size"] for r in rows):
            line = sorted((r for r in rows if r["size"] == size and done[r["label"]]), key=lambda r: r["density"])
            xs = [_mean([r["tasks"][t][unit] for t in done[r["label"]]]) for r in line]
            ys = [r["val_loss"] for r in line]
            ax.plot(xs, ys, marker="o", label=size)
            for x, y, r in zip(xs, ys, line):
                density = r["label"].split(", ", 1)[1]  # "dense", "10%", "3%, lr 1e-2"
                ax.annotate(f"{density} ({len(done[r['label']])}/{len(tasks)} tasks)", (x, y), textcoords="offset points",
                            xytext=(6, 4), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on a short range
        ax.set_xlabel(f"mean discovered circuit size in {unit} (log)  <- more interpretable")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("validation loss on Python code  <- more capable")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="model size", loc="lower center", ncol=len(labels), fontsize=8, title_fontsize=8)
    fig.suptitle("Capability vs interpretability (circuitspec models; means over the tasks each model is explained on)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    for suffix in (".png", ".svg"):
        fig.savefig(stem.with_suffix(suffix), metadata={"Date": None} if suffix == ".svg" else None)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-loss", type=float, default=0.15)
    parser.add_argument("--tasks", nargs="+", help="default: every task the shipped sparse model solves at >= 90%%")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", help="labels to include (default: all)")
    parser.add_argument("--no-train", action="store_true", help="skip models without a checkpoint instead of training them")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.tasks:
        tasks = args.tasks
    else:
        sparse = load_model("py-sparse-small")
        tasks = [t for t in task_names() if score_task(sparse, get_task(t), n=500).accuracy >= 0.9]
    print(f"tasks: {', '.join(tasks)}")
    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    entries = [m for m in MODELS if not args.models or m.label in args.models]
    rows = [measure(m, tasks, args, cache) for m in entries if ensure_trained(m, not args.no_train)]
    text = tables(rows, tasks, args.target_loss)
    print()
    print(text)
    if args.models or args.tasks:  # a subset: the documented tables and figure cover every model and task
        print("(--models or --tasks: a subset, so docs/circuit_sizes.md and the figure are left as they are)")
    else:
        (ROOT / "docs" / "circuit_sizes.md").write_text(
            "# Circuit sizes and the capability / interpretability trade-off\n\n"
            "Generated by `python benchmarks/circuit_sizes.py` (see its docstring); do not edit by hand.\n\n" + text)
        if not args.no_plot and len(rows) > 1:
            plot(rows, tasks, args.target_loss, ROOT / "docs" / "images" / "tradeoff")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
