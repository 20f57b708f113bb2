#!/usr/bin/env bash
# Set up real ComfyUI + comfyrig on the lent GPU machine from the carried bundle.
#
#   source gpulab/remote_setup.sh     # exports COMFYUI_DIR, COMFYUI_PYTHON, PYTHONPATH, PATH
#   bash gpulab/remote_setup.sh       # same work; exports land in $COMFYRIG_GPU_ENV only
#
# No network is needed: wheels come from bundle/wheels (built here by
# make_bundle.py), installed with --target into $SITE and put on PYTHONPATH,
# because the machine's venv may be read-only.  Idempotent within one machine
# session: each step leaves a stamp and is skipped when its input is unchanged,
# so a second run takes a few seconds (the torch import of the report).
#
# Knobs (environment): PYTHON (python3), BUNDLE (<repo>/bundle), SITE (/tmp/site),
# COMFYUI_DIR (/tmp/comfyui), COMFYRIG_GPU_ENV (/tmp/comfyrig-gpu-env.sh),
# SETUP_REPORT=0 to skip the environment report.

_rs_sourced=0
[[ "${BASH_SOURCE[0]}" != "$0" ]] && _rs_sourced=1
[[ $_rs_sourced == 1 ]] && _rs_saved_opts="$(set +o)"
set -euo pipefail

_rs_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
BUNDLE="${BUNDLE:-$_rs_repo/bundle}"
SITE="${SITE:-/tmp/site}"
COMFYUI_DIR="${COMFYUI_DIR:-/tmp/comfyui}"
COMFYRIG_GPU_ENV="${COMFYRIG_GPU_ENV:-/tmp/comfyrig-gpu-env.sh}"
_rs_t0=$SECONDS

_rs_log() { printf '[setup %3ss] %s\n' "$((SECONDS - _rs_t0))" "$*"; }
# Content + names relative to the bundle, so a copy of the same bundle elsewhere still matches.
# shellcheck disable=SC2086  # $1 is a glob relative to $BUNDLE, expanded after the cd
_rs_sha() { (cd "$BUNDLE" && sha256sum $1) | sha256sum | cut -c1-16; }

if [[ ! -d "$BUNDLE/wheels" || ! -f "$BUNDLE/comfyui.tar.xz" ]]; then
    echo "remote_setup: no bundle at $BUNDLE (build it with: python -m gpulab.make_bundle --comfyui-src DIR; carry [\"bundle\"])" >&2
    false
fi
COMFYUI_PYTHON="$(command -v "$PYTHON")"

# 1. Wheels -> $SITE (one version of each package; --upgrade replaces an older install).
_rs_stamp="$(_rs_sha 'wheels/*.whl')"
if [[ "$(cat "$SITE/.comfyrig-wheels" 2>/dev/null)" == "$_rs_stamp" ]]; then
    _rs_log "wheels: already installed in $SITE"
else
    "$COMFYUI_PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --disable-pip-version-check --target "$SITE" "$BUNDLE"/wheels/*.whl
    # Byte-compile now, in parallel, so the first ComfyUI start measured is not
    # slower than the others for compiling (pip's --no-compile does it serially).
    "$COMFYUI_PYTHON" -m compileall -q -j 0 "$SITE" > /dev/null || true
    echo "$_rs_stamp" > "$SITE/.comfyrig-wheels"
    _rs_log "wheels: installed $(find "$BUNDLE/wheels" -name '*.whl' | wc -l) into $SITE"
fi
case ":${PYTHONPATH:-}:" in *":$SITE:"*) ;; *) export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" ;; esac
case ":$PATH:" in *":$SITE/bin:"*) ;; *) export PATH="$SITE/bin:$PATH" ;; esac

# 2. ComfyUI source -> $COMFYUI_DIR (unpacked over an older copy: models/ and outputs stay).
_rs_stamp="$(_rs_sha comfyui.tar.xz)"
if [[ "$(cat "$COMFYUI_DIR/.comfyrig-bundle" 2>/dev/null)" == "$_rs_stamp" ]]; then
    _rs_log "comfyui: already unpacked in $COMFYUI_DIR"
else
    mkdir -p "$COMFYUI_DIR"
    tar -xJf "$BUNDLE/comfyui.tar.xz" -C "$COMFYUI_DIR" --strip-components=1
    "$COMFYUI_PYTHON" -m compileall -q -j 0 "$COMFYUI_DIR" > /dev/null || true
    echo "$_rs_stamp" > "$COMFYUI_DIR/.comfyrig-bundle"
    _rs_log "comfyui: unpacked $(cd "$COMFYUI_DIR" && "$COMFYUI_PYTHON" -c 'import comfyui_version as v; print(v.__version__)' 2>/dev/null || echo '?') into $COMFYUI_DIR"
fi

# 2b. Further ComfyUI trees (make_bundle --extra-comfyui-src): comfyui-VERSION.tar.xz -> /tmp/comfyui-VERSION,
# listed in COMFYUI_EXTRA_DIRS (colon-separated); each gets the same checkpoint (a link) after step 4.
COMFYUI_EXTRA_DIRS=""
for _rs_tar in "$BUNDLE"/comfyui-*.tar.xz; do
    [[ -f "$_rs_tar" ]] || continue
    _rs_dir="$(dirname "$COMFYUI_DIR")/$(basename "$_rs_tar" .tar.xz)"
    _rs_stamp="$(_rs_sha "$(basename "$_rs_tar")")"
    if [[ "$(cat "$_rs_dir/.comfyrig-bundle" 2>/dev/null)" != "$_rs_stamp" ]]; then
        mkdir -p "$_rs_dir"
        tar -xJf "$_rs_tar" -C "$_rs_dir" --strip-components=1
        "$COMFYUI_PYTHON" -m compileall -q -j 0 "$_rs_dir" > /dev/null || true
        echo "$_rs_stamp" > "$_rs_dir/.comfyrig-bundle"
        _rs_log "comfyui: unpacked $(basename "$_rs_tar") into $_rs_dir"
    fi
    COMFYUI_EXTRA_DIRS="${COMFYUI_EXTRA_DIRS:+$COMFYUI_EXTRA_DIRS:}$_rs_dir"
done

# 3. The imports ComfyUI needs at start, from the machine's Python + $SITE.
COMFYUI_EXTRA_DIRS="$COMFYUI_EXTRA_DIRS" "$COMFYUI_PYTHON" - <<'EOF'
import importlib, importlib.metadata as md, os, sys
mods = ["alembic", "sqlalchemy", "mako", "av", "pydantic", "pydantic_settings", "dotenv", "websockets",
        "typing_extensions", "comfyui_frontend_package", "aiohttp", "yarl", "requests", "safetensors",
        "PIL", "scipy", "psutil", "yaml", "einops", "tokenizers", "sentencepiece", "transformers", "tqdm"]
if os.environ.get("COMFYUI_EXTRA_DIRS"):  # a current ComfyUI (0.16+) and the script_examples clients
    mods += ["comfy_kitchen", "comfy_aimdo", "blake3", "simpleeval", "torchaudio", "websocket"]
bad = []
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as e:  # report every missing one at once
        bad.append(f"{m}: {type(e).__name__}: {e}")
if bad:
    sys.exit("remote_setup: imports failed:\n  " + "\n  ".join(bad))
names = ["alembic", "sqlalchemy", "av", "pydantic", "typing_extensions", "comfyui-frontend-package", "aiohttp"]
if os.environ.get("COMFYUI_EXTRA_DIRS"):
    names += ["comfy-kitchen", "comfy-aimdo", "torchaudio", "websocket-client"]
print("[setup] imports ok: " + ", ".join(f"{n} {md.version(n)}" for n in names))
EOF

# 4. Random-weight SD1.5 checkpoint (kept when its header already matches).
(cd "$_rs_repo" && "$COMFYUI_PYTHON" -m gpulab.make_sd15_checkpoint \
    --comfyui-dir "$COMFYUI_DIR" --layout "$BUNDLE/sd15_checkpoint_layout.json") | sed 's/^/[setup] /'
IFS=: read -ra _rs_extra <<< "$COMFYUI_EXTRA_DIRS"
for _rs_dir in "${_rs_extra[@]}"; do
    mkdir -p "$_rs_dir/models/checkpoints"
    ln -sf "$COMFYUI_DIR"/models/checkpoints/sd15_random.safetensors "$_rs_dir/models/checkpoints/"
done

# 5. comfyrig itself.  pip needs no network with --no-index --no-build-isolation
# (setuptools is on the machine); if that fails, fall back to PYTHONPATH=src plus
# a console-script shim, which tests importing comfyrig cannot tell apart.
if [[ -f "$_rs_repo/pyproject.toml" && -d "$_rs_repo/src" ]]; then
    _rs_stamp="$(cd "$_rs_repo" && find pyproject.toml src -type f -name '*.py' -o -name pyproject.toml | sort | xargs cat | sha256sum | cut -c1-16)"
    if [[ "$(cat "$SITE/.comfyrig-self" 2>/dev/null)" == "$_rs_stamp" ]]; then
        _rs_log "comfyrig: already installed"
    elif _rs_out="$("$COMFYUI_PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
            --no-cache-dir --upgrade --disable-pip-version-check --target "$SITE" "$_rs_repo" 2>&1)"; then
        echo "$_rs_stamp" > "$SITE/.comfyrig-self"
        _rs_log "comfyrig: pip-installed into $SITE"
    else
        printf '%s\n' "$_rs_out" | tail -5 | sed 's/^/[setup]   pip: /'
        case ":$PYTHONPATH:" in *":$_rs_repo/src:"*) ;; *) export PYTHONPATH="$_rs_repo/src:$PYTHONPATH" ;; esac
        mkdir -p "$SITE/bin"
        printf '#!/bin/sh\nexec "%s" -c "import sys; from comfyrig.cli import main; sys.exit(main())" "$@"\n' \
            "$COMFYUI_PYTHON" > "$SITE/bin/comfyrig"
        chmod +x "$SITE/bin/comfyrig"
        _rs_log "comfyrig: pip install failed; using PYTHONPATH=$_rs_repo/src and a shim $SITE/bin/comfyrig"
    fi
else
    _rs_log "comfyrig: no src/ in $_rs_repo, nothing to install"
fi

export COMFYUI_DIR COMFYUI_PYTHON COMFYUI_EXTRA_DIRS
{
    echo "export COMFYUI_DIR='$COMFYUI_DIR'"
    echo "export COMFYUI_EXTRA_DIRS='$COMFYUI_EXTRA_DIRS'"
    echo "export COMFYUI_PYTHON='$COMFYUI_PYTHON'"
    echo "export PYTHONPATH='$PYTHONPATH'"
    echo "export PATH='$PATH'"
} > "$COMFYRIG_GPU_ENV"

# 6. Environment report.
if [[ "${SETUP_REPORT:-1}" != 0 ]]; then
    echo "[setup] --- environment ---"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi -L | sed 's/^/[setup] /'
        nvidia-smi --query-gpu=index,pci.bus_id,memory.total,driver_version --format=csv,noheader | sed 's/^/[setup] /'
    else
        echo "[setup] nvidia-smi: not found"
    fi
    "$COMFYUI_PYTHON" -c 'import sys, torch
n = torch.cuda.device_count()
print(f"[setup] python {sys.version.split()[0]} at {sys.executable}; torch {torch.__version__} (CUDA {torch.version.cuda}); cuda devices: {n}")
for i in range(n):
    print(f"[setup]   cuda:{i} {torch.cuda.get_device_name(i)}")'
    echo "[setup] COMFYUI_DIR=$COMFYUI_DIR COMFYUI_EXTRA_DIRS=$COMFYUI_EXTRA_DIRS COMFYUI_PYTHON=$COMFYUI_PYTHON"
    echo "[setup] nproc $(nproc), $(free -g | awk '/^Mem:/ {print $2 " GiB RAM"}')"
fi
_rs_log "done (env in $COMFYRIG_GPU_ENV)"

if [[ $_rs_sourced == 1 ]]; then
    eval "$_rs_saved_opts"
    unset _rs_saved_opts
fi
unset _rs_sourced _rs_stamp _rs_out _rs_t0 _rs_repo _rs_tar _rs_dir _rs_extra
unset -f _rs_log _rs_sha
