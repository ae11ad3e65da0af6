#!/usr/bin/env bash
# Everything issue "Fast on the GPU the mission names" needs measured on a GPU, in one call of at most
# 8 minutes, ending in one table of ratios (each measured within one run of its benchmark).
#
#   bash benchmarks/gpu_check.sh [cuda|cpu]      # cpu: the same steps, small, to try the script here
#
# Steps (each under its own time limit, so one slow step cannot eat the others' time):
#   1. ablation_throughput.py: K conditions / K plain forwards, hook loop and TransformerLens loop (when
#      transformer-lens is importable) / circuitspec, full masked / subgraph at 1% and 10% of the nodes;
#   2. path_chooser.py: both ablation paths timed at 9 keep fractions, chosen / faster;
#   3. train_throughput.py on the small and the medium config: sparse / dense training tokens/s, and the
#      top-k projection timed alone;
#   4. `circuitspec verify specs/` wall time on the device.
# Raw outputs and JSON go to $OUT (the device tool brings that folder back) or ./gpu-check-out.
#
# On the device machine its Python lacks lark, z3-solver and shtab: carry them as wheels
# (/work/.library/device/README.md). Here, once (`.whl/` is in .git/info/exclude):
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     -d .whl lark==1.3.1 z3-solver==5.4.1.0 shtab==1.13.0
# then one device call, carry [".whl"], timeout_s 540:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
#   python3 -m pip install -q --no-deps --no-build-isolation --target /tmp/cs . &&
#   export PYTHONPATH=/tmp/cs:/tmp/site PATH=/tmp/cs/bin:$PATH && bash benchmarks/gpu_check.sh cuda
set -u
DEVICE="${1:-cuda}"
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
HERE="$(cd "$(dirname "$0")" && pwd)"
started=$(date +%s)

step() {  # step NAME SECONDS COMMAND...: run with a limit, keep its log, never stop the script
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "   exit $rc after $(( $(date +%s) - t0 )) s; last lines:"
    tail -n 4 "$OUT/$name.log" | sed 's/^/   | /'
}

# on a CPU the same steps run small (they check the script, not the speed)
ABL=(--rounds 3) PATHS=() TRAIN=()
if [ "$DEVICE" = cpu ]; then
    ABL=(--rounds 1 --examples 40 --knockouts 4 --baselines 8 --peer none)
    PATHS=(--conditions 2 --rounds 1 --fractions 0.05 0.5 0.9)
    TRAIN=(--steps 2 --rounds 1)
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
step ablation 150 "$PY" "$HERE/ablation_throughput.py" --device "$DEVICE" "${ABL[@]}" --json "$OUT/ablation.json"
step path_chooser 100 "$PY" "$HERE/path_chooser.py" --device "$DEVICE" "${PATHS[@]}" --json "$OUT/path_chooser.json"
step train_small 60 "$PY" "$HERE/train_throughput.py" --device "$DEVICE" --config configs/py-sparse-small.toml "${TRAIN[@]}" --json "$OUT/train_small.json"
step train_medium 60 "$PY" "$HERE/train_throughput.py" --device "$DEVICE" --config configs/py-sparse-medium.toml "${TRAIN[@]}" --json "$OUT/train_medium.json"
step verify 90 "$PY" -c "
import json, subprocess, sys, time
t = time.perf_counter()
done = subprocess.run(['circuitspec', 'verify', '-q', 'specs/', '--device', '$DEVICE'])
json.dump({'wall_s': time.perf_counter() - t, 'exit': done.returncode}, open('$OUT/verify.json', 'w'))
print(f'verify specs/ --device $DEVICE: exit {done.returncode}, {time.perf_counter() - t:.1f} s wall')
"
"$PY" - "$OUT" "$DEVICE" <<'EOF'
import json, sys
from pathlib import Path
out, device = Path(sys.argv[1]), sys.argv[2]
def read(name):
    try:
        return json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
rows = []
a = read("ablation")
if a:
    for what, value in a["ratios"].items():
        rows.append((f"ablation: {what}", f"{value:.2f}x"))
p = read("path_chooser")
if p:
    rows.append(("path chooser: worst pick / faster path", f"{p['worst_pick_over_faster']:.2f} (target <= 1.10)"))
    rows.append(("path chooser: worst chosen / faster, timed again", f"{p['worst_chosen_over_faster']:.2f}"))
    for r in p["rows"]:
        rows.append((f"  keep {r['fraction']:.0%}: subgraph / full (chooser took {r['chooser_took']})", f"{r['subgraph_over_full']:.2f}"))
for name in ("train_small", "train_medium"):
    t = read(name)
    if t:
        rows.append((f"{name}: sparse / dense training tokens/s", f"{t['sparse_over_dense']:.2f} (target >= 0.8)"))
        rows.append((f"{name}: top-k projection alone, share of a sparse step", f"{t['projection_share_of_sparse_step']:.0%}"))
v = read("verify")
if v:
    rows.append(("verify specs/ wall time", f"{v['wall_s']:.1f} s (exit {v['exit']})"))
width = max((len(k) for k, _ in rows), default=10)
print(f"\n== gpu_check on {device}: {len(rows)} figures (missing steps: see their logs in {out})")
for k, v in rows:
    print(f"{k:<{width}}  {v}")
(out / "summary.txt").write_text("\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n")
EOF
echo "gpu_check: $(( $(date +%s) - started )) s in all"
