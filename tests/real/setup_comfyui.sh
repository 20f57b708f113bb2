#!/usr/bin/env bash
# Install real ComfyUI 0.24.0, 0.3.76 and 0.3.64 for the contract tests (marker comfyui) and the
# client tests (marker clients), on the CPU, outside the repository. Nothing fetched is committed.
#
# usage: tests/real/setup_comfyui.sh [ROOT]        (ROOT defaults to /work/comfy)
#
# It assumes the three snapshots were fetched with the search tool's `fetch` (git dirs without
# work trees, blobs of 4 MiB and more missing), at these paths (override with the variables):
#   SNAP_0_24_0 = /work/.mirror/sscai666-spec+ComfyUI/repo     (upstream master of 2026-06-10, 0.24.0)
#   SNAP_0_3_76 = /work/.mirror/Zudva+ComfyUI-Zudva/repo       (a 0.3.76 fork)
#   SNAP_0_3_64 = /work/.mirror/Comfy-Org+ComfyUI/repo         (0.3.64)
# and uses EXPORT (default /work/shared/tools/export-snapshot) to write each tree.
#
# Layout written:
#   ROOT/base/                       one venv with torch 2.11.0 + torchaudio 2.11.0 + torchvision 0.26.0
#                                    (PyPI's builds, +cu130; they run on the CPU) and the common deps
#   ROOT/<version>/ComfyUI/          the checkout
#   ROOT/<version>/ComfyUI/.venv/    its own venv: the base's site-packages through a .pth file, plus
#                                    what that version pins (frontend, templates, docs, comfy-kitchen...)
#   ROOT/cli-venv/                   comfy-cli, for the client tests (COMFY_CLI)
#   ROOT/ENV                         the variables the tests need
# Why torch 2.11: 0.24.0 imports torchaudio at start, and PyPI's torchaudio 2.11 is the newest
# (there is none for 2.14); it needs the CUDA build of torch (libc10_cuda), so the CPU-only
# torch 2.13.0+cpu wheel on this machine cannot serve. One base for all three saves ~4.5 GB each.
# Each server is checked to answer /system_stats after `main.py --cpu`.
set -euo pipefail
ROOT=${1:-/work/comfy}
EXPORT=${EXPORT:-/work/shared/tools/export-snapshot}
PY=${PYTHON:-python3}
declare -A SNAP=(
  [0.24.0]=${SNAP_0_24_0:-/work/.mirror/sscai666-spec+ComfyUI/repo}
  [0.3.76]=${SNAP_0_3_76:-/work/.mirror/Zudva+ComfyUI-Zudva/repo}
  [0.3.64]=${SNAP_0_3_64:-/work/.mirror/Comfy-Org+ComfyUI/repo}
)
VERSIONS=(0.24.0 0.3.76 0.3.64)
mkdir -p "$ROOT"

if [ ! -x "$ROOT/base/bin/python" ]; then
  "$PY" -m venv "$ROOT/base"
fi
"$ROOT/base/bin/pip" install -q torch==2.11.0 torchaudio==2.11.0 torchvision==0.26.0
"$ROOT/base/bin/pip" install -q numpy einops 'transformers>=4.50.3' 'tokenizers>=0.13.3' sentencepiece \
  'safetensors>=0.4.2' 'aiohttp>=3.11.8' 'yarl>=1.18.0' pyyaml Pillow scipy tqdm psutil alembic 'SQLAlchemy>=2.0.0' \
  'av>=16.0.0' torchsde requests 'kornia>=0.7.1' spandrel 'pydantic~=2.0' 'pydantic-settings~=2.0' filelock \
  'simpleeval>=1.0.0' blake3
BASE_SITE=$("$ROOT/base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

for v in "${VERSIONS[@]}"; do
  dir="$ROOT/$v/ComfyUI"
  if [ ! -f "$dir/main.py" ]; then
    "$EXPORT" "${SNAP[$v]}" "$dir"  # lists the files missing from the snapshot on stderr
  fi
  got=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$dir/comfyui_version.py")
  [ "$got" = "$v" ] || { echo "$dir is ComfyUI $got, not $v" >&2; exit 1; }
  [ -x "$dir/.venv/bin/python" ] || "$PY" -m venv "$dir/.venv"
  site=$("$dir/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$BASE_SITE" > "$site/_comfy_base.pth"
  extra=()
  [ "$v" = 0.24.0 ] && extra=(comfyui-workflow-templates-core==0.3.252)
  "$dir/.venv/bin/pip" install -q -r "$dir/requirements.txt" "${extra[@]}"
done

if [ ! -x "$ROOT/cli-venv/bin/comfy" ]; then
  "$PY" -m venv "$ROOT/cli-venv"
  "$ROOT/cli-venv/bin/pip" install -q comfy-cli
fi

# Each one starts and answers /system_stats (one at a time: real ComfyUI is heavy on 2 cores).
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for v in "${VERSIONS[@]}"; do
  dir="$ROOT/$v/ComfyUI"; work=$(mktemp -d); mkdir -p "$work/output" "$work/user" "$work/temp" "$work/input"
  ( cd "$dir" && exec setsid .venv/bin/python main.py --cpu --listen 127.0.0.1 --port "$port" \
      --output-directory "$work/output" --user-directory "$work/user" --temp-directory "$work/temp" \
      --input-directory "$work/input" > "$work/log" 2>&1 ) &
  pid=$!
  ok=""
  for _ in $(seq 1 240); do
    if stats=$(curl -sf "http://127.0.0.1:$port/system_stats"); then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -TERM -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -z "$ok" ]; then echo "ComfyUI $v did not answer; its log: $work/log" >&2; tail -20 "$work/log" >&2; exit 1; fi
  echo "ComfyUI $v answers /system_stats: $(echo "$stats" | "$PY" -c 'import json,sys; s=json.load(sys.stdin)["system"]; print(s["comfyui_version"], "torch", s["pytorch_version"])')"
  rm -rf "$work"
done

cat > "$ROOT/ENV" <<ENV
# Real ComfyUI for comfyrig's tests: contract tests (-m comfyui) and client tests (-m clients).
export COMFYUI_DIRS=$ROOT/0.24.0/ComfyUI:$ROOT/0.3.76/ComfyUI:$ROOT/0.3.64/ComfyUI
export COMFY_CLI=$ROOT/cli-venv/bin/comfy
# the browser test also needs: pip install -e '.[clients]' and apt-get install -y chromium (or CHROMIUM=...)
ENV
echo "wrote $ROOT/ENV"
