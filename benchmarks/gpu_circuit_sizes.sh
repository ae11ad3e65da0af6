#!/usr/bin/env bash
# Issue "Circuits a researcher would write" at a scale the 2-core CPU cannot train: two 4-layer d_model-512
# models at py-sparse-medium's number of non-zero inner weights (2.5% density, I/O 10%; lr 3e-3 and 1.5e-3,
# benchmarks/configs/bench-large-d0025-io10*.toml), trained side by side on one GPU, then each one's
# held-out accuracy and its closing_quote circuit at task loss 0.15 (`discover --samples 512`, seeds 0-2,
# the command of every size figure in docs/discovery.md), in one device call of about 10 minutes.
#
#   bash benchmarks/gpu_circuit_sizes.sh [cuda|cpu]     # cpu: a few steps and one small search, to try it here
#
# What comes back in $OUT (or ./gpu-sizes-out), at most 4 files (the device tool brings back 8): summary.txt;
# results.tar.gz (training logs, eval_*.json, discover_*_seedS.json, .circ and .log); and each checkpoint
# as NAME.tar.gz when it is under 16 MiB (the tool's limit per file; a checkpoint stores dense tensors,
# which compress well at 2.5%: about 2 MB). Unpack one into benchmarks/checkpoints/ to measure more on a
# CPU (`circuitspec discover --model benchmarks/checkpoints/NAME ...`). STEPS=N overrides the configs'
# 6,000 steps (a training cut by its time limit leaves no checkpoint).
#
# The device machine lacks lark, z3-solver and shtab: carry them as wheels, as benchmarks/gpu_check.sh's
# header says, then one call (carry [".whl"], timeout_s 600):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
#   python3 -m pip install -q --no-deps --no-build-isolation --target /tmp/cs . &&
#   export PYTHONPATH=/tmp/cs:/tmp/site PATH=/tmp/cs/bin:$PATH && bash benchmarks/gpu_circuit_sizes.sh cuda
# The GPU budget of a session (15 minutes, start-up included) holds this or gpu_check.sh, not both.
set -u
DEVICE="${1:-cuda}"
OUT="${OUT:-$PWD/gpu-sizes-out}"
WORK="${WORK:-/tmp/gpu-sizes}"
RESULTS="$WORK/results"
mkdir -p "$OUT" "$RESULTS"
export PYTHONUNBUFFERED=1
HERE="$(cd "$(dirname "$0")" && pwd)"
CS="${CIRCUITSPEC:-circuitspec}"
started=$(date +%s)
CONFIGS=(bench-large-d0025-io10 bench-large-d0025-io10-lr15e4)

TRAIN=() SEARCH=(--samples 512) SEEDS=(0 1 2) EVAL=(-n 1000) LIMIT=330 SEARCH_LIMIT=180
if [ "$DEVICE" = cpu ]; then
    TRAIN=(--steps 4) SEARCH=(--samples 16 --steps 8) SEEDS=(0) EVAL=(-n 20) LIMIT=900 SEARCH_LIMIT=900
fi
[ -n "${STEPS:-}" ] && TRAIN=(--steps "$STEPS")

echo "== training ${CONFIGS[*]} side by side on $DEVICE (limit ${LIMIT}s each)"
for name in "${CONFIGS[@]}"; do
    timeout "$LIMIT" "$CS" train -q --config "$HERE/configs/$name.toml" --out "$WORK/$name" --device "$DEVICE" \
        "${TRAIN[@]}" >"$RESULTS/train_$name.log" 2>&1 &
done
wait
echo "   trained in $(( $(date +%s) - started )) s"

echo "== eval, then closing_quote searches (seeds ${SEEDS[*]}) of both models side by side (limit ${SEARCH_LIMIT}s each)"
for name in "${CONFIGS[@]}"; do
    model="$WORK/$name"
    if [ ! -f "$model/model.safetensors" ]; then
        echo "   $name: no checkpoint (train_$name.log):"; tail -n 3 "$RESULTS/train_$name.log"; continue
    fi
    "$CS" eval "$model" "${EVAL[@]}" --device "$DEVICE" -q --json "$RESULTS/eval_$name.json" >/dev/null 2>&1
    for seed in "${SEEDS[@]}"; do
        timeout "$SEARCH_LIMIT" "$CS" discover --model "$model" --task closing_quote --target-loss 0.15 "${SEARCH[@]}" \
            --seed "$seed" --no-compare --no-verify --device "$DEVICE" -q \
            -o "$RESULTS/discover_${name}_seed$seed.circ" --json "$RESULTS/discover_${name}_seed$seed.json" \
            >"$RESULTS/discover_${name}_seed$seed.log" 2>&1 &
    done
done
wait
for name in "${CONFIGS[@]}"; do
    [ -f "$WORK/$name/model.safetensors" ] || continue
    packed="$OUT/$name.tar.gz"
    tar -czf "$packed" -C "$WORK" --exclude train_state "$name"
    if [ "$(stat -c %s "$packed")" -gt $((16 * 1024 * 1024)) ]; then
        echo "   $name.tar.gz is over 16 MiB: not brought back"; rm -f "$packed"
    fi
done

python3 - "$RESULTS" "${CONFIGS[@]}" <<'PY'
import json, sys
from pathlib import Path
results, names = Path(sys.argv[1]), sys.argv[2:]
def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
lines = []
for name in names:
    scores = read(results / f"eval_{name}.json")
    if scores:
        mean = sum(s["accuracy"] for s in scores.values()) / len(scores)
        lines.append(f"{name}: mean accuracy {mean:.1%}; closing_quote {scores['closing_quote']['accuracy']:.1%}, "
                     f"loss {scores['closing_quote']['bce']:.3f}")
    for found in sorted(results.glob(f"discover_{name}_seed*.json")):
        d = read(found)
        if d:
            r = d["discovery"]
            lines.append(f"  {found.stem}: {r.get('node_count')} nodes, {r.get('edge_count')} edges, held-out loss "
                         f"{r.get('loss')}, reached {r.get('reached')}, {r.get('seconds')} s")
print("\n== circuit sizes (closing_quote at task loss 0.15)")
print("\n".join(lines) if lines else "nothing measured: see the logs")
(results / "summary.txt").write_text("\n".join(lines) + "\n")
PY
cp "$RESULTS/summary.txt" "$OUT/summary.txt" 2>/dev/null
tar -czf "$OUT/results.tar.gz" -C "$WORK" results
echo "gpu_circuit_sizes: $(( $(date +%s) - started )) s in all"
