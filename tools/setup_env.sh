#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install the whole stack.
#
#   bash tools/setup_env.sh          # idempotent; a second run only checks what is there
#
# What it installs and why (see README "Installation"):
#   * torch + torchvision: a pair that work together. PyPI's own pair (CUDA build) runs on CPU too.
#     A local CPU-only torch wheel cannot be paired with PyPI's torchvision (its C++ ops fail to load),
#     hence `torch==2.13.0,!=2.13.0+cpu`. A venv that already has a working pair keeps it.
#   * mmcv 2.1.0 *with compiled ops*, built from the sdist against the torch in this venv
#     (`--no-build-isolation`, otherwise it silently builds without ops). The built wheel is cached
#     under ~/.cache/mmvit_backbones keyed by the exact torch build, never reused across torch builds.
#   * mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2 (+ its undeclared ftfy, regex), timm, pycocotools,
#     onnx + onnxruntime (tools/export_onnx.py and its tests), and this project in editable mode.
# Environment knobs: VENV (default .venv), PYTHON (default python3), TORCH_SPEC, TORCHVISION_SPEC,
# FORCE_CUDA=1 / TORCH_CUDA_ARCH_LIST for a CUDA build of mmcv, MAX_JOBS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0,!=2.13.0+cpu}"
TORCHVISION_SPEC="${TORCHVISION_SPEC:-torchvision==0.28.0}"
CACHE_DIR="${MMVIT_CACHE_DIR:-$HOME/.cache/mmvit_backbones}"
STAMP="$VENV/.mmvit_setup_done"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }
trap 'die "step failed (line $LINENO): $BASH_COMMAND. Fix the cause above and re-run bash tools/setup_env.sh; it resumes where it stopped."' ERR

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create a venv with $PYTHON (need Python >= 3.9 with the venv module)"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# Fast path: everything verified by an earlier run and the project sources unchanged.
if [ -f "$STAMP" ] && "$PY" - <<'PY' 2>/dev/null
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmdet, mmseg, timm, pycocotools, onnx, onnxruntime
import mkdocs, ruff, mmdeploy, aenum, segmentation_models_pytorch, transformers
import mmvit_backbones
from mmcv.ops import nms  # compiled ops present and loadable against this torch
PY
then
    say "environment at $VENV is ready (torch $("$PY" -c 'import torch;print(torch.__version__)'))"
    exit 0
fi

say "build tools (setuptools < 82 keeps pkg_resources, needed by mmcv's setup.py and mmengine's mmdet::/mmseg:: configs)"
"${PIP[@]}" install -q --upgrade "pip>=23" "setuptools>=77.0.3,<82" wheel ninja

if "$PY" -c 'import torch, torchvision; from torchvision.ops import nms' 2>/dev/null; then
    say "keeping torch $("$PY" -c 'import torch;print(torch.__version__)') + torchvision already in $VENV"
else
    say "installing $TORCH_SPEC and $TORCHVISION_SPEC (a large download the first time)"
    "${PIP[@]}" install -q "$TORCH_SPEC" "$TORCHVISION_SPEC"
    "$PY" -c 'import torch, torchvision; from torchvision.ops import nms' \
        || die "torch/torchvision do not work together; set TORCH_SPEC/TORCHVISION_SPEC to a matching pair"
fi

TORCH_TAG="$("$PY" -c 'import os, sys, torch; print("torch%s-cuda%s-py%d%d-forcecuda%s" % (torch.__version__.replace("+", "_"), torch.version.cuda, *sys.version_info[:2], os.environ.get("FORCE_CUDA", "0")))')"
mmcv_ok() { "$PY" - <<'PY' 2>/dev/null
import mmcv, torch
from mmcv.ops import nms, RoIAlign
assert mmcv.__version__ == '2.1.0'
nms(torch.rand(4, 4) * 10, torch.rand(4), 0.5)
PY
}
if mmcv_ok; then
    say "mmcv 2.1.0 with ops already works against this torch"
else
    WHEEL_DIR="$CACHE_DIR/mmcv-2.1.0-$TORCH_TAG"
    if ! ls "$WHEEL_DIR"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
        say "building mmcv 2.1.0 with ops against $TORCH_TAG (about 8 minutes on 2 cores; cached afterwards in $WHEEL_DIR)"
        mkdir -p "$WHEEL_DIR"
        MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${PIP[@]}" wheel -q --no-build-isolation --no-deps --no-cache-dir --no-binary mmcv \
            -w "$WHEEL_DIR" mmcv==2.1.0
    fi
    "${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-2.1.0-*.whl
    "${PIP[@]}" install -q "mmengine==0.10.7" addict packaging Pillow pyyaml yapf opencv-python numpy
    mmcv_ok || die "mmcv 2.1.0 imports but its compiled ops do not work (delete $WHEEL_DIR and re-run)"
fi

say "installing mmvit_backbones (editable) with mmdet, mmsegmentation, timm and the extras: tests, docs, deploy, interop"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[det,seg,tests,docs,deploy,interop]"
say "installing mmdeploy 1.3.1 without its dependencies (its protobuf<=3.20.2 pin would break onnx)"
"${PIP[@]}" install -q --no-deps "mmdeploy==1.3.1"

"$PY" - <<'PY' || die "final import check failed"
import torch, mmcv, mmengine, mmdet, mmseg, timm, onnx, onnxruntime
import mmdet.models, mmseg.models, mmvit_backbones
from mmcv.ops import nms
print(f'torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, timm {timm.__version__}')
PY
touch "$STAMP"
say "environment ready: $VENV"
