"""Checks of the .env file: every line parsed, no typo'd keys, PyTorch variables that work."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from ..config.settings import KNOWN_KEYS
from ..secrets import mask_command
from .checks_torch import parse_version
from .context import DoctorContext
from .result import CheckResult

__all__ = ["PYTORCH_VARS", "check_env_file", "check_env_keys", "check_env_pytorch"]

# Variables PyTorch reads (found in torch 2.14's Python sources and libraries),
# the ones a ComfyUI user could plausibly mean; PYTORCH_TUNABLEOP_*, PYTORCH_JIT*,
# PYTORCH_TENSOREXPR* and PYTORCH_MIOPEN_* families are accepted by prefix.
PYTORCH_VARS = frozenset((
    "PYTORCH_ALLOC_CONF",
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_HIP_ALLOC_CONF",
    "PYTORCH_NO_CUDA_MEMORY_CACHING",
    "PYTORCH_NO_HIP_MEMORY_CACHING",
    "PYTORCH_NVML_BASED_CUDA_CHECK",
    "PYTORCH_CUDA_DSA_STACKTRACING",
    "PYTORCH_USE_CUDA_DSA",
    "PYTORCH_KERNEL_CACHE_PATH",
    "PYTORCH_ROCM_ARCH",
    "PYTORCH_NVCC",
    "PYTORCH_SKIP_CUDNN_COMPATIBILITY_CHECK",
    "PYTORCH_API_USAGE_STDERR",
    "PYTORCH_ENABLE_MPS_FALLBACK",
    "PYTORCH_MPS_HIGH_WATERMARK_RATIO",
    "PYTORCH_MPS_LOW_WATERMARK_RATIO",
    "PYTORCH_DEBUG_XPU_FALLBACK",
))
_PYTORCH_FAMILIES = ("PYTORCH_TUNABLEOP_", "PYTORCH_JIT", "PYTORCH_TENSOREXPR", "PYTORCH_MIOPEN_")
_COMFY_LIKE = re.compile(r"^COMFY(UI)?_")


def check_env_file(ctx: DoctorContext) -> CheckResult:
    title = ".env file"
    scan, path = ctx.env_scan, ctx.env_file
    if path is None:
        looked = ", ".join(str(p) for p in ctx.env_candidates)
        if len(ctx.env_candidates) == 1 and ctx.settings_error is not None:
            return CheckResult("env.file", title, "fail", f"--env-file {looked}: no such file.", "Give an existing file.")
        return CheckResult("env.file", title, "pass", f"No .env (looked for {looked}); it is optional.")
    if scan is None:
        return CheckResult("env.file", title, "fail", ctx.env_error or f"{path} cannot be read.", "Make it a readable UTF-8 text file.")
    if scan.errors:
        bad = "; ".join(f"line {line}: {mask_command(text)!r}" for line, text in scan.errors)
        return CheckResult(
            "env.file", title, "fail", f"{path} has lines that cannot be parsed ({bad}); comfyrig will not start until they are fixed.",
            "Each line must be NAME=value (quoted if it has spaces, optionally after 'export'), a '#' comment, or blank.",
        )
    return CheckResult("env.file", title, "pass", f"{path}: {len(scan.keys)} variables, every line parsed.")


def _suggest(name: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return close[0] if close else None


def check_env_keys(ctx: DoctorContext) -> CheckResult:
    title = ".env keys"
    scan = ctx.env_scan
    typos: list[str] = []
    passed: list[str] = []
    for key, line in (scan.keys.items() if scan else ()):
        if key in KNOWN_KEYS or key.startswith("PYTORCH_"):
            continue
        guess = _suggest(key, KNOWN_KEYS)
        if guess:
            typos.append(f"{key} ({ctx.env_file}, line {line}): did you mean {guess}?")
        else:
            passed.append(key)
    for key in sorted(ctx.environ):
        if _COMFY_LIKE.match(key) and key not in KNOWN_KEYS and (scan is None or key not in scan.keys):
            guess = _suggest(key, KNOWN_KEYS)
            typos.append(f"{key} (your environment){f': did you mean {guess}?' if guess else ' is not a comfyrig setting'}")
    if typos:
        return CheckResult(
            "env.keys", title, "warn",
            "Not comfyrig settings, so they have no effect (.env ones are only passed on to ComfyUI): " + "; ".join(typos),
            "Rename them to the setting meant; 'comfyrig config' shows what is in effect. Known: " + ", ".join(KNOWN_KEYS) + ".",
        )
    extra = f" Passed on to ComfyUI unchanged: {', '.join(passed)}." if passed else ""
    return CheckResult("env.keys", title, "pass", f"Every comfyrig-like name is a known setting.{extra}")


def _where(ctx: DoctorContext, key: str) -> str:
    if key in ctx.environ:
        return "your environment"
    scan = ctx.env_scan
    line = scan.keys.get(key) if scan else None
    return f"{scan.path}, line {line}" if scan and line else ".env"


def check_env_pytorch(ctx: DoctorContext) -> CheckResult:
    title = "PyTorch vars"
    scan = ctx.env_scan
    names = {k for k in ctx.environ if k.startswith("PYTORCH_")} | {k for k in (scan.keys if scan else ()) if k.startswith("PYTORCH_")}
    findings: list[str] = []
    fixes: list[str] = []
    for name in sorted(names):
        if name in PYTORCH_VARS or name.startswith(_PYTORCH_FAMILIES):
            continue
        guess = _suggest(name, PYTORCH_VARS)
        findings.append(f"PyTorch does not read {name} ({_where(ctx, name)})" + (f"; did you mean {guess}?" if guess else ""))
        fixes.append(f"Remove or rename {name}.")
    alloc = ctx.settings.pytorch_alloc_conf.value if ctx.settings is not None else ctx.environ.get("PYTORCH_ALLOC_CONF")
    if alloc is not None:
        where = _where(ctx, "PYTORCH_ALLOC_CONF")
        torch_version = (ctx.torch or {}).get("torch_version")
        version = parse_version(torch_version)
        if version is not None and version < (2, 9):
            findings.append(
                f"PYTORCH_ALLOC_CONF={alloc} ({where}) has no effect: torch {torch_version} "
                "reads only PYTORCH_CUDA_ALLOC_CONF (the new name came with torch 2.9)"
            )
            fixes.append("Use PYTORCH_CUDA_ALLOC_CONF with this torch.")
        elif "backend:" not in alloc and not _malloc_disabled(ctx):
            findings.append(
                f"PYTORCH_ALLOC_CONF={alloc} ({where}) overrides ComfyUI's allocator choice: ComfyUI adds "
                "backend:cudaMallocAsync to PYTORCH_CUDA_ALLOC_CONF, and torch ignores PYTORCH_CUDA_ALLOC_CONF "
                "whenever PYTORCH_ALLOC_CONF is set, so ComfyUI silently runs on the native allocator"
            )
            fixes.append(
                "Put the value in PYTORCH_CUDA_ALLOC_CONF instead (ComfyUI appends its backend there), or keep it "
                "and add --disable-cuda-malloc to COMFYUI_ARGS to make the choice explicit."
            )
    if findings:
        return CheckResult("env.pytorch", title, "warn", "; ".join(findings) + ".", " ".join(fixes))
    return CheckResult(
        "env.pytorch", title, "pass",
        "No PyTorch variable is misspelt or overrides ComfyUI's cudaMallocAsync allocator choice.",
    )


def _malloc_disabled(ctx: DoctorContext) -> bool:
    return ctx.comfy_args.given("--disable-cuda-malloc")
