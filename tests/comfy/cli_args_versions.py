"""The shape of ComfyUI's command line in 0.3.64, 0.3.76 and 0.24.0, as test data.

Each version's ``comfy/cli_args.py`` is rendered from a table of flag shapes
(name, how many values, const, type, choices, mutually exclusive group),
taken from those releases: every flag and group is there, help texts and
defaults are not. The text is what ``checkout.flag_table`` reads, and tests
also run it through the real ``argparse`` to compare it with the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["VERSIONS", "cli_args_text", "real_parser"]


@dataclass(frozen=True)
class Shape:
    name: str
    nargs: int | str = 1  # 0: store_true
    const: str | None = None
    type: str | None = None
    choices: tuple[str, ...] | None = None
    group: str | None = None


def _switches(names: str, group: str | None = None) -> list[Shape]:
    return [Shape(n, 0, group=group) for n in names.split()]


PREVIEW = ("none", "auto", "latent2rgb", "taesd")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HASHES = ("md5", "sha1", "sha256", "sha512")

V0_3_64: list[Shape] = [
    Shape("--listen", "?", "0.0.0.0,::", "str"),
    Shape("--port", type="int"),
    Shape("--tls-keyfile", type="str"),
    Shape("--tls-certfile", type="str"),
    Shape("--enable-cors-header", "?", "*", "str"),
    Shape("--max-upload-size", type="float"),
    Shape("--base-directory", type="str"),
    Shape("--extra-model-paths-config", "+", type="str"),
    Shape("--output-directory", type="str"),
    Shape("--temp-directory", type="str"),
    Shape("--input-directory", type="str"),
    *_switches("--auto-launch --disable-auto-launch"),
    Shape("--cuda-device", type="int"),
    Shape("--default-device", type="int"),
    *_switches("--cuda-malloc --disable-cuda-malloc", "cm_group"),
    *_switches("--force-fp32 --force-fp16", "fp_group"),
    *_switches("--fp32-unet --fp64-unet --bf16-unet --fp16-unet --fp8_e4m3fn-unet --fp8_e5m2-unet --fp8_e8m0fnu-unet",
               "fpunet_group"),
    *_switches("--fp16-vae --fp32-vae --bf16-vae", "fpvae_group"),
    *_switches("--cpu-vae"),
    *_switches("--fp8_e4m3fn-text-enc --fp8_e5m2-text-enc --fp16-text-enc --fp32-text-enc --bf16-text-enc", "fpte_group"),
    *_switches("--force-channels-last"),
    Shape("--directml", "?", "-1", "int"),
    Shape("--oneapi-device-selector", type="str"),
    *_switches("--disable-ipex-optimize --supports-fp8-compute"),
    Shape("--preview-method", choices=PREVIEW),
    Shape("--preview-size", type="int"),
    *_switches("--cache-classic", "cache_group"),
    Shape("--cache-lru", type="int", group="cache_group"),
    *_switches("--cache-none", "cache_group"),
    *_switches("--use-split-cross-attention --use-quad-cross-attention --use-pytorch-cross-attention "
               "--use-sage-attention --use-flash-attention", "attn_group"),
    *_switches("--disable-xformers"),
    *_switches("--force-upcast-attention --dont-upcast-attention", "upcast"),
    *_switches("--gpu-only --highvram --normalvram --lowvram --novram --cpu", "vram_group"),
    Shape("--reserve-vram", type="float"),
    *_switches("--async-offload --force-non-blocking"),
    Shape("--default-hashing-function", type="str", choices=HASHES),
    *_switches("--disable-smart-memory --deterministic"),
    Shape("--fast", "*", type="PerformanceFeature"),
    *_switches("--mmap-torch-files --disable-mmap --dont-print-server --quick-test-for-ci --windows-standalone-build "
               "--disable-metadata --disable-all-custom-nodes"),
    Shape("--whitelist-custom-nodes", "+", type="str"),
    *_switches("--disable-api-nodes --multi-user"),
    Shape("--verbose", "?", "DEBUG", choices=LEVELS),
    *_switches("--log-stdout"),
    Shape("--front-end-version", type="str"),
    Shape("--front-end-root", type="str"),
    Shape("--user-directory", type="str"),
    *_switches("--enable-compress-response-body"),
    Shape("--comfy-api-base", type="str"),
    Shape("--database-url", type="str"),
]


def _changed(base: Sequence[Shape], *, remove: Iterable[str] = (), change: Iterable[Shape] = (),
             add: Iterable[tuple[str, Shape]] = ()) -> list[Shape]:
    """``base`` with flags removed, changed in place, and added after the named flag."""
    gone, new = set(remove), {s.name: s for s in change}
    after: dict[str, list[Shape]] = {}
    for anchor, shape in add:
        after.setdefault(anchor, []).append(shape)
    out: list[Shape] = []

    def put(shape: Shape) -> None:
        if shape.name not in gone:
            out.append(new.get(shape.name, shape))
        for added in after.get(shape.name, []):
            put(added)

    for shape in base:
        put(shape)
    return out


V0_3_76 = _changed(
    V0_3_64,
    change=[Shape("--async-offload", "?", "2", "int")],
    add=[
        ("--cache-lru", Shape("--cache-ram", "?", "4.0", "float", group="cache_group")),
        ("--dont-upcast-attention", Shape("--enable-manager", 0)),
        ("--enable-manager", Shape("--disable-manager-ui", 0, group="manager_group")),
        ("--disable-manager-ui", Shape("--enable-manager-legacy-ui", 0, group="manager_group")),
        ("--async-offload", Shape("--disable-async-offload", 0)),
        ("--fast", Shape("--disable-pinned-memory", 0)),
    ],
)
V0_24_0 = _changed(
    V0_3_76,
    remove=["--disable-ipex-optimize", "--normalvram"],
    change=[replace(next(s for s in V0_3_76 if s.name == "--cuda-device"), type="str"),
            Shape("--cache-ram", "*", type="float", group="cache_group")],
    add=[
        ("--bf16-text-enc", Shape("--fp16-intermediates", 0)),
        ("--supports-fp8-compute", Shape("--enable-triton-backend", 0)),
        ("--disable-async-offload", Shape("--disable-dynamic-vram", 0)),
        ("--disable-dynamic-vram", Shape("--enable-dynamic-vram", 0)),
        ("--enable-dynamic-vram", Shape("--fast-disk", 0)),
        ("--fast", Shape("--debug-hang", 0)),
        ("--database-url", Shape("--enable-assets", 0)),
        ("--enable-assets", Shape("--feature-flag", type="str")),
        ("--feature-flag", Shape("--list-feature-flags", 0)),
    ],
)
VERSIONS: dict[str, list[Shape]] = {"0.3.64": V0_3_64, "0.3.76": V0_3_76, "0.24.0": V0_24_0}


def _line(shape: Shape) -> str:
    owner = shape.group or "parser"
    if shape.nargs == 0:
        return f'{owner}.add_argument("{shape.name}", action="store_true")'
    parts = [f'"{shape.name}"']
    if shape.type is not None:
        parts.append(f"type={shape.type}")
    if shape.nargs != 1:
        parts.append(f'nargs="{shape.nargs}"')
    if shape.const is not None:
        parts.append(f"const={shape.const}" if shape.type in ("int", "float") else f'const="{shape.const}"')
    if shape.choices is not None:
        parts.append(f"choices={list(shape.choices)!r}")
    return f"{owner}.add_argument({', '.join(parts)})"


def cli_args_text(version: str = "0.3.76", only: Iterable[str] | None = None) -> str:
    """A ``comfy/cli_args.py`` of that version; ``only`` keeps just those flags (unknown ones become switches)."""
    shapes = VERSIONS[version]
    if only is not None:
        known = {s.name: s for s in shapes}
        shapes = [known.get(name, Shape(name, 0)) for name in only]
    lines = [
        "import argparse",
        "import enum",
        "",
        "class PerformanceFeature(enum.Enum):",
        '    Fp16Accumulation = "fp16_accumulation"',
        '    Fp8MatrixMultiplication = "fp8_matrix_mult"',
        '    CublasOps = "cublas_ops"',
        '    AutoTune = "autotune"',
        "",
        "parser = argparse.ArgumentParser()",
    ]
    groups = dict.fromkeys(s.group for s in shapes if s.group)
    lines += [f"{group} = parser.add_mutually_exclusive_group()" for group in groups]
    lines += [_line(s) for s in shapes]
    return "\n".join(lines) + "\n"


def real_parser(version: str) -> Any:
    """The stdlib argparse parser that text builds: what ComfyUI itself would use."""
    namespace: dict[str, Any] = {"__name__": f"cli_args_{version}"}
    exec(compile(cli_args_text(version), f"cli_args_{version}.py", "exec"), namespace)  # noqa: S102 (our own text)
    return namespace["parser"]
