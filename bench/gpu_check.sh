#!/usr/bin/env bash
# One-command GPU check of the engine, for a machine with one NVIDIA GPU and no network.
#
#   bash bench/gpu_payload.sh             # here, once: data + weights into .gpu_payload/ (43 MiB)
#   bash bench/gpu_check.sh               # there, from the repository root; carry .gpu_payload
#   bash bench/gpu_check.sh --smoke       # here, on the CPU with tiny sizes (also GPU_CHECK_SMOKE=1)
#
# Stages, each under its own `timeout`, inside one budget (GPU_CHECK_BUDGET, default 460 s):
#   a   extraction images/s: MobileNetV2 at 96 px over all 70,000 Fashion-MNIST images, against
#       the bare forward pass on batches already on the GPU (bench/bench_extract.py --device);
#       a2: ResNet-50's bare forward pass at 224 px (random weights: speed only)
#   b   a head-only epoch over 70,000 x 1,280 cached features (bench/bench_head_epoch.py --device)
#   c   one fine-tuning epoch on all 70,000 images (the dataset's MobileNetV2 recipe at 96 px,
#       its last blocks trained with the heads): images/s, and the run's fixed costs
#   d   GPU utilisation and memory (nvidia-smi, every second) and CPU busy % during c and e
#   e   a fine-tuning run on all 70,000 images with as many epochs as the time left allows
#       (at most GPU_CHECK_EPOCHS_MAX, default 60), planned from c's events, predicting without
#       the view average when that buys more than a third more epochs: ACC against the 0.85
#       target; its metrics.json, config.json and events.jsonl are copied to $OUT
# Everything goes to $OUT (default ./gpu_check_out): one log per stage, stage_times.tsv,
# summary.md; the summary table is also printed. Exit status 0 when every stage ran.
# About 8 minutes in all: give the device tool a limit of ~560 s and carry [".gpu_payload"].
#
# Environment: OUT, GPU_CHECK_SMOKE, GPU_CHECK_BUDGET (s), GPU_CHECK_SKIP (stage names, e.g. "a2_resnet50
# b_head_epoch", to leave e more time), GPU_CHECK_EPOCHS_MAX, GPU_CHECK_EPOCHS
# (a fixed epoch count for e instead of the one fitted to the time left), GPU_CHECK_TRAIN_ARGS
# (extra `icbpl train` options for c and e, e.g. "--backbone mobilenet_v2 --lr 3e-4"),
# GPU_PAYLOAD (default ./.gpu_payload), PYTHON (default .venv/bin/python if present, else python3).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SMOKE=${GPU_CHECK_SMOKE:-0}
case "${1:-}" in
    --smoke|--dry-run) SMOKE=1 ;;
    "") ;;
    *) echo "usage: bash bench/gpu_check.sh [--smoke]" >&2; exit 2 ;;
esac
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PAYLOAD=${GPU_PAYLOAD:-$ROOT/.gpu_payload}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=$(command -v python3 || command -v python); fi
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/icbpl_gpu_check.XXXXXX")
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-460}
EPOCHS_MAX=${GPU_CHECK_EPOCHS_MAX:-60}
if [ "$SMOKE" = 1 ]; then
    DEV=cpu
    BUDGET=${GPU_CHECK_BUDGET:-1500}
    EPOCHS_MAX=${GPU_CHECK_EPOCHS_MAX:-2}
    A_ARGS=(--n 512 --repeats 1 --batch-size 256)
    A2_ARGS=(--n 64 --repeats 1 --batch-size 32)
    B_ARGS=(--n 2000 --epochs 1)
    LIMIT=(--limit 2000)
else
    DEV=cuda
    A_ARGS=(--n 70000 --repeats 1 --batch-size 512)
    A2_ARGS=(--n 10240 --repeats 2 --batch-size 256)
    B_ARGS=(--n 70000 --epochs 3)
    LIMIT=()
fi
# shellcheck disable=SC2206
EXTRA=(${GPU_CHECK_TRAIN_ARGS:-})

left() { echo $((BUDGET - ($(date +%s) - START))); }
log() { echo "$*" | tee -a "$OUT/stages.log"; }
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# stage NAME CAP_S CMD...: runs CMD under timeout min(CAP_S, time left - 5 s), its output in
# $OUT/NAME.log; records NAME, exit status, seconds in stage_times.tsv (124: timed out).
stage() {
    local name=$1 cap=$2 limit t0 rc dt
    shift 2
    limit=$(min "$cap" $(($(left) - 5)))
    if [[ " ${GPU_CHECK_SKIP:-} " == *" $name "* ]]; then
        log "== $name: skipped (GPU_CHECK_SKIP)"
        printf '%s\tskipped\t0\n' "$name" >> "$OUT/stage_times.tsv"
        return 0
    fi
    if [ "$limit" -lt 10 ]; then
        log "== $name: skipped, $(left) s of the budget left"
        printf '%s\tskipped\t0\n' "$name" >> "$OUT/stage_times.tsv"
        return 125
    fi
    log "== $name (timeout ${limit}s, $(left) s of the budget left): $*"
    t0=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\t%s\n' "$name" "$rc" "$dt" >> "$OUT/stage_times.tsv"
    log "   $name: exit $rc in ${dt}s"
    if [ "$rc" != 0 ]; then tail -n 5 "$OUT/$name.log" | sed 's/^/   | /' | tee -a "$OUT/stages.log"; fi
    return "$rc"
}

# Samplers for d: GPU utilisation and memory, and the CPUs' busy share, once a second.
SAMPLERS=()
start_samplers() {
    local tag=$1
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
            > "$OUT/gpu_util_$tag.csv" 2> /dev/null &
        SAMPLERS+=($!)
    fi
    (
        read -r _ u n s i w q sq st _ < /proc/stat
        while sleep 1; do
            read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
            total=$(((u2 + n2 + s2 + i2 + w2 + q2 + sq2 + st2) - (u + n + s + i + w + q + sq + st)))
            idle=$(((i2 + w2) - (i + w)))
            [ "$total" -gt 0 ] && echo $((100 * (total - idle) / total))
            u=$u2 n=$n2 s=$s2 i=$i2 w=$w2 q=$q2 sq=$sq2 st=$st2
        done
    ) > "$OUT/cpu_busy_$tag.txt" &
    SAMPLERS+=($!)
}
stop_samplers() {
    local pid
    for pid in "${SAMPLERS[@]}"; do kill "$pid" 2> /dev/null; wait "$pid" 2> /dev/null; done
    SAMPLERS=()
}
cleanup() { stop_samplers; rm -rf "$WORK"; }
trap cleanup EXIT

rm -f "$OUT/stage_times.tsv" "$OUT/stages.log"
log "gpu_check: $([ "$SMOKE" = 1 ] && echo "SMOKE (cpu, tiny sizes)" || echo "GPU") run, budget ${BUDGET}s, out $OUT"

# -- setup: the payload, carried wheels, the tree's icbpl_core, offline weights and data -------
DATA=$PAYLOAD/fashion-mnist
for f in "$DATA/train-images-idx3-ubyte.gz" "$PAYLOAD/torch/hub/checkpoints/mobilenet_v2-b0353104.pth"; do
    [ -f "$f" ] || { log "missing $f: run bash bench/gpu_payload.sh here and carry .gpu_payload"; exit 1; }
done
mkdir -p "$WORK/site" "$WORK/runs" "$WORK/cache"
if compgen -G "$PAYLOAD/wheels/*.whl" > /dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$WORK/site" "$PAYLOAD"/wheels/*.whl \
        > "$OUT/setup_pip.log" 2>&1 || log "pip install of the carried wheels failed (see setup_pip.log)"
fi
export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_HOME=$PAYLOAD/torch       # torch.hub.get_dir() = $TORCH_HOME/hub: the weights are found there
export ICBPL_OFFLINE=1                 # never try a download
export ICBPL_CACHE_DIR=$WORK/cache ICBPL_RUNS_DIR=$WORK/runs
export PYTHONUNBUFFERED=1

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo 'no .git here')"
    echo "icbpl_core sources sha256: $(find icbpl_core -name '*.py' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)"
    echo "python: $PY ($("$PY" --version 2>&1))"
    echo "cores: $(nproc); memory: $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" - <<'EOF'
import importlib
for name in ("torch", "torchvision", "numpy", "scipy", "sklearn", "pandas", "PIL", "timm", "faiss"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name} MISSING ({type(exc).__name__}: {exc})")
import torch
print(f"cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}" if torch.cuda.is_available() else ""))
import icbpl_core
print(f"icbpl_core {icbpl_core.__version__} from {icbpl_core.__file__}")
EOF
} > "$OUT/env.txt" 2>&1
sed 's/^/   /' "$OUT/env.txt"
if [ "$SMOKE" != 1 ] && ! grep -q "cuda available: True" "$OUT/env.txt"; then
    log "no CUDA device that torch can use: stopping here"; exit 1
fi
if ! "$PY" -m icbpl_core train --help 2>&1 | grep -q -- "--device"; then
    log "this tree's icbpl train has no --device option"; exit 1
fi
failed=0

# -- a: extraction against the bare forward pass --------------------------------------------------
stage a_extract 120 "$PY" bench/bench_extract.py --device "$DEV" --data-root "$DATA" --size 96 \
    --backbone mobilenet_v2 --precision auto --rows bare,extract "${A_ARGS[@]}" || failed=1
stage a2_resnet50 60 "$PY" bench/bench_extract.py --device "$DEV" --data-root "$DATA" --size 224 \
    --backbone resnet50 --random-weights --precision auto --rows bare "${A2_ARGS[@]}" || failed=1

# -- b: a head-only epoch ---------------------------------------------------------------------------
stage b_head_epoch 90 "$PY" bench/bench_head_epoch.py --device "$DEV" --dim 1280 "${B_ARGS[@]}" || failed=1

# -- c: one fine-tuning epoch (the fixed costs of a run, and the epoch time that sizes e) ----------
TRAIN=(-m icbpl_core train --dataset fashion-mnist --data-root "$DATA" --mode finetune --device "$DEV"
       --seed 0 --cache-dir "$WORK/cache" "${LIMIT[@]}" "${EXTRA[@]}")
start_samplers c
c_started=$(date +%s)
stage c_finetune_epoch "$([ "$SMOKE" = 1 ] && echo 700 || echo 200)" \
    "$PY" "${TRAIN[@]}" --epochs 1 --runs-dir "$WORK/runs/c"
c_rc=$?
c_wall=$(($(date +%s) - c_started))
stop_samplers
[ "$c_rc" = 0 ] || failed=1

# -- e: a full fine-tuning run in the time left -----------------------------------------------------
# Sized by c's events: its epoch time, what came before the epoch (start-up, the neighbour features'
# extraction, which e finds cached, neighbour mining) and after it (the prediction: latents of the
# images and of their V views). When predicting from the mean over the views would cost e more
# than a quarter of the epochs it leaves, or c ran out of time in it, e predicts from each image's
# own latent (--no-average-views, 1 pass instead of 1 + V). 0.9 of the time left is planned.
plan_e() {   # plan_e SECONDS: prints "EPOCHS views|noviews", or fails when c trained no epoch
    "$PY" - "$WORK/runs/c" "$1" "$EPOCHS_MAX" "$c_wall" <<'EOF'
import json, pathlib, sys
runs, room, cap, wall = pathlib.Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
run = next(runs.glob("*/events.jsonl")).parent
events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
views = int(config.get("n_views", 4)) if config.get("average_views", True) else 0
epoch = [e for e in events if e["type"] == "epoch"][0]
done = [e for e in events if e["type"] == "done"]
before = epoch["time"] - epoch["seconds"] - events[0]["time"]
if done:
    after = done[0]["time"] - epoch["time"]
    outside = max(0.0, wall - (done[0]["time"] - events[0]["time"]))     # interpreter start, imports, exit
    fixed_views, fixed_own = outside + before + after, outside + before + after / (1 + views)
else:                     # stopped while predicting: everything but the epoch counts as fixed
    after, fixed_views = float("nan"), float("inf")
    fixed_own = max(0.0, wall - epoch["seconds"])

def fit(fixed):
    return max(0, min(cap, int(0.9 * (room - fixed) / epoch["seconds"]))) if fixed < room else 0

with_views, own = fit(fixed_views), fit(fixed_own)
mode = "views" if with_views >= 1 and (with_views >= cap or with_views >= 0.75 * own) else "noviews"
print(f"c: {wall:.0f} s in all: {before:.0f} s before its epoch, the epoch {epoch['seconds']:.1f} s, {after:.0f} s "
      f"predicting ({views} views); {room:.0f} s left: {with_views} epochs with the view average, {own} without; "
      f"chose {'with' if mode == 'views' else 'without'}", file=sys.stderr)
print(with_views if mode == "views" else own, mode)
EOF
}
e_rc=125
if grep -q '"type": *"epoch"' "$WORK"/runs/c/*/events.jsonl 2> /dev/null || [ -n "${GPU_CHECK_EPOCHS:-}" ]; then
    room=$(($(left) - 20))                     # 20 s for the summary
    read -r E MODE < <(plan_e "$room" 2> "$OUT/e_plan.log" || echo "0 views")
    [ -n "${GPU_CHECK_EPOCHS:-}" ] && E=$GPU_CHECK_EPOCHS
    E_ARGS=()
    [ "$MODE" = noviews ] && E_ARGS=(--no-average-views)
    cat "$OUT/e_plan.log" >> "$OUT/stages.log" 2> /dev/null
    if [ "${E:-0}" -ge 1 ]; then
        log "   e: $E epoch(s) in ${room}s$([ "$MODE" = noviews ] && echo ", predicting without the view average")"
        start_samplers e
        stage e_finetune_run "$room" "$PY" "${TRAIN[@]}" "${E_ARGS[@]}" --epochs "$E" --runs-dir "$WORK/runs/e"
        e_rc=$?
        stop_samplers
        run_e=$(find "$WORK/runs/e" -mindepth 1 -maxdepth 1 -type d | head -n 1)
        for f in metrics.json config.json events.jsonl status.json; do
            [ -n "$run_e" ] && [ -f "$run_e/$f" ] && cp "$run_e/$f" "$OUT/e_$f"
        done
    else
        log "== e: skipped: not one epoch fits in ${room}s (see e_plan.log)"
    fi
else
    log "== e: skipped: c trained no epoch (set GPU_CHECK_EPOCHS to run e anyway)"
fi
[ "$e_rc" = 0 ] || failed=1
run_c=$(find "$WORK/runs/c" -mindepth 1 -maxdepth 1 -type d 2> /dev/null | head -n 1)
for f in metrics.json config.json events.jsonl status.json; do
    [ -n "$run_c" ] && [ -f "$run_c/$f" ] && cp "$run_c/$f" "$OUT/c_$f"
done

# -- summary -----------------------------------------------------------------------------------------
"$PY" - "$OUT" "$SMOKE" "$(($(date +%s) - START))" <<'EOF' | tee "$OUT/summary.md"
import json, re, statistics, sys
from pathlib import Path

out, smoke, total = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])


def text(name):
    path = out / name
    return path.read_text(errors="replace") if path.is_file() else ""


def table_rate(log, row):
    """images/s (median, best) of a bench_extract.py row."""
    for line in text(log).splitlines():
        if line.startswith(f"| {row}"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            return f"{float(cells[2]):,.0f} (best {float(cells[4]):,.0f})"
    return "-"


def events(prefix):
    lines = text(f"{prefix}_events.jsonl").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def epoch_rate(prefix):
    config = json.loads(text(f"{prefix}_config.json") or "{}")
    batch = (config.get("train") or {}).get("batch_size", 256)
    epochs = [e for e in events(prefix) if e["type"] == "epoch"]
    if not epochs:
        return "-", None
    secs = [e["seconds"] for e in epochs]
    med = statistics.median(secs)
    anchors = epochs[0]["steps"] * batch
    return (f"{anchors / med:,.0f} images/s ({2 * anchors / med:,.0f} forward incl. views); "
            f"{med:.1f} s/epoch (median of {len(secs)}, first {secs[0]:.1f})"), epochs


def samples(name, column):
    values = []
    for line in text(name).splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            values.append(float(parts[column]))
        except (ValueError, IndexError):
            pass
    return values


def util(tag):
    gpu, mem = samples(f"gpu_util_{tag}.csv", 0), samples(f"gpu_util_{tag}.csv", 1)
    cpu = samples(f"cpu_busy_{tag}.txt", 0)
    parts = []
    if gpu:
        parts.append(f"GPU util mean {statistics.mean(gpu):.0f} %, median {statistics.median(gpu):.0f} %, "
                     f"max {max(gpu):.0f} %; memory max {max(mem) / 1024:.1f} GiB")
    else:
        parts.append("GPU util n/a (no nvidia-smi)")
    if cpu:
        parts.append(f"CPUs busy mean {statistics.mean(cpu):.0f} %")
    return "; ".join(parts) + f" ({len(gpu) or len(cpu)} samples)"


stages = {}
for line in text("stage_times.tsv").splitlines():
    name, rc, secs = line.split("\t")
    stages[name] = (rc, float(secs))


def st(name):
    rc, secs = stages.get(name, ("not run", 0.0))
    if rc == "skipped":
        return "skipped"
    return f"{secs:.0f} s" + ("" if rc == "0" else f", exit {rc}" + (" (timed out)" if rc in ("124", "137") else ""))


head = "-"
for line in text("b_head_epoch.log").splitlines():
    m = re.match(r"\| ICBPL head-only epoch.*?\| ([0-9.]+) \|", line)
    if m:
        head = f"{float(m.group(1)):.2f} s/epoch"
    m = re.match(r"\| bare head.*?\| ([0-9.]+) \|", line)
    if m:
        head += f" (bare head {float(m.group(1)):.2f} s)"

c_rate, _ = epoch_rate("c")
e_rate, e_epochs = epoch_rate("e")
metrics = json.loads(text("e_metrics.json") or "{}")
e_config = json.loads(text("e_config.json") or "{}")
views = "" if e_config.get("average_views", True) else ", predicted without the view average"
if metrics.get("acc") is not None:
    acc = (f"**{metrics['acc']:.4f}** (NMI {metrics.get('nmi', 0):.4f}, ARI {metrics.get('ari', 0):.4f}) after "
           f"{len(e_epochs or [])} epochs{views}; target 0.85 {'met' if metrics['acc'] >= 0.85 else 'NOT met'}")
elif e_epochs and e_epochs[-1].get("metrics"):
    acc = (f"run did not finish; last epoch ({e_epochs[-1]['epoch']}) training-bank ACC "
           f"{e_epochs[-1]['metrics']['acc']:.4f}")
else:
    acc = "-"
n = "2,000 (smoke)" if smoke else "70,000"
print(f"\n## gpu_check summary ({'SMOKE: cpu, tiny sizes' if smoke else 'GPU'}), {total} s in all\n")
print("| stage | result | time |\n|---|---|---|")
print(f"| a extraction, MobileNetV2 96 px, bare forward images/s | {table_rate('a_extract.log', 'bare')} | "
      f"{st('a_extract')} |")
print(f"| a extraction, MobileNetV2 96 px, extract() images/s | {table_rate('a_extract.log', 'extract')} | |")
print(f"| a2 ResNet-50 224 px bare forward images/s | {table_rate('a2_resnet50.log', 'bare')} | {st('a2_resnet50')} |")
print(f"| b head-only epoch, {'2,000' if smoke else '70,000'} x 1,280 | {head} | {st('b_head_epoch')} |")
print(f"| c fine-tuning epoch, {n} images | {c_rate} | {st('c_finetune_epoch')} |")
print(f"| d during c | {util('c')} | |")
print(f"| e fine-tuning run, {n} images | {e_rate} | {st('e_finetune_run')} |")
print(f"| e ACC | {acc} | |")
print(f"| d during e | {util('e')} | |")
print("\nstage times (s): " + ", ".join(f"{k} {v[1]:.0f}" for k, v in stages.items()))
plan = text("e_plan.log").strip()
if plan.startswith("c:"):
    print(f"e sized from {plan}")
EOF
log "gpu_check: done in $(($(date +%s) - START)) s; files in $OUT"
exit "$failed"
