"""VRAM advice per ComfyUI version: which mode each checkout and command line gives, and what is advised."""

from __future__ import annotations

import pytest

from comfyrig.comfy.args import FlagTable, parse_comfy_args
from comfyrig.comfy.checkout import flag_table_from_source
from comfyrig.comfy.vram import VramFacts, lowvram_given, medvram_instead, oom_advice, speed_advice, vram_facts

from .cli_args_versions import cli_args_text


def table(version: str) -> FlagTable:
    found = flag_table_from_source(cli_args_text(version))
    assert found is not None
    return found


def mid_2026(normalvram: bool) -> FlagTable:
    """0.16-0.21 (dynamic VRAM the default, --normalvram still there) or 0.22+ without the rest of 0.24."""
    text = cli_args_text("0.24.0") + ("vram_group.add_argument('--normalvram', action='store_true')\n" if normalvram else "")
    found = flag_table_from_source(text)
    assert found is not None
    return found


OPT_IN = flag_table_from_source(
    "import argparse, enum\n"
    "class PerformanceFeature(enum.Enum):\n    AutoTune = 'autotune'\n    DynamicVRAM = 'dynamic_vram'\n"
    "parser = argparse.ArgumentParser()\nvram_group = parser.add_mutually_exclusive_group()\n"
    "vram_group.add_argument('--lowvram', action='store_true')\nvram_group.add_argument('--highvram', action='store_true')\n"
    "parser.add_argument('--reserve-vram', type=float)\n"
    "parser.add_argument('--fast', nargs='*', type=PerformanceFeature)\n"
)  # 0.12-0.15: dynamic VRAM only with --fast dynamic_vram


def facts(flags: FlagTable | None, args: str = "") -> VramFacts:
    return vram_facts(parse_comfy_args(args.split(), flags), "X")


@pytest.mark.parametrize(("flags", "args", "mode", "lowvram", "off_by"), [
    (table("0.3.64"), "", "legacy", "splits", None),
    (table("0.3.76"), "--lowvram", "legacy", "splits", None),
    (OPT_IN, "", "legacy", "splits", None),
    (OPT_IN, "--fast dynamic_vram", "dynamic", "text-encoders", None),
    (OPT_IN, "--fast", "dynamic", "text-encoders", None),  # a bare --fast turns on every optimisation
    (OPT_IN, "--fast dynamic_vram --highvram", "legacy", "splits", None),
    (mid_2026(normalvram=True), "", "dynamic", "text-encoders", None),  # 0.16-0.21
    (table("0.24.0"), "", "dynamic", "nothing", None),
    (table("0.24.0"), "--lowvram", "dynamic", "nothing", None),  # --lowvram does not turn it off
    (table("0.24.0"), "--disable-dynamic-vram", "dynamic-off", "text-encoders", "--disable-dynamic-vram"),
    (table("0.24.0"), "--highvram", "dynamic-off", "text-encoders", "--highvram"),
    (table("0.24.0"), "--novram", "dynamic-off", "text-encoders", "--novram"),
    (table("0.24.0"), "--cpu", "dynamic-off", "text-encoders", "--cpu"),
    (table("0.24.0"), "--gpu-only --enable-dynamic-vram", "dynamic", "nothing", None),  # forced on
    (mid_2026(normalvram=True), "--disable-dynamic-vram", "dynamic-off", "splits", "--disable-dynamic-vram"),
    (None, "--lowvram", "unknown", "unknown", None),  # no checkout: comfyrig's partial table
])
def test_vram_mode_per_version_and_flags(flags: FlagTable | None, args: str, mode: str, lowvram: str, off_by: str | None) -> None:
    found = facts(flags, args)
    assert (found.mode, found.lowvram, found.off_by) == (mode, lowvram, off_by)


def test_oom_advice_0_24_never_names_lowvram() -> None:
    text = oom_advice(parse_comfy_args([], table("0.24.0")), version="0.24.0")
    assert text == (
        "If ComfyUI reports 'CUDA out of memory': --reserve-vram GB, --disable-smart-memory in COMFYUI_ARGS; --novram as "
        "a last resort (it turns dynamic VRAM off and keeps the weights in system RAM); a smaller batch or resolution. "
        "Not --lowvram: ComfyUI 0.24.0 loads models with dynamic VRAM by default on NVIDIA GPUs, and --lowvram does "
        "nothing then (--disable-dynamic-vram turns dynamic VRAM off). Not --medvram (an AUTOMATIC1111 flag; ComfyUI "
        "exits on it)."
    )


def test_oom_advice_0_3_76_and_with_dynamic_vram_off() -> None:
    legacy = oom_advice(parse_comfy_args([], table("0.3.76")), several_gpus=True, native_multigpu=False)
    assert legacy == (
        "If ComfyUI reports 'CUDA out of memory': --reserve-vram GB, --lowvram, --novram, --disable-smart-memory in "
        "COMFYUI_ARGS (--novram when --lowvram is not enough); a smaller batch or resolution; with several GPUs, "
        "ComfyUI-MultiGPU's loaders (a text encoder or VAE, or DisTorch layers, on the other GPU). Not --medvram (an "
        "AUTOMATIC1111 flag; ComfyUI exits on it)."
    )
    off = oom_advice(parse_comfy_args(["--disable-dynamic-vram"], table("0.24.0")), several_gpus=True, native_multigpu=True)
    assert "--reserve-vram GB, --lowvram, --novram, --disable-smart-memory" in off and "Not --lowvram" not in off
    assert "(Select CLIP Device, Select VAE Device)" in off


def test_oom_advice_without_a_checkout_says_it_depends() -> None:
    text = oom_advice(parse_comfy_args([], None))
    assert "--lowvram helps only without dynamic VRAM, which is the default from ComfyUI 0.16 on" in text


def test_oom_advice_names_only_flags_the_checkout_has() -> None:
    text = oom_advice(parse_comfy_args([], OPT_IN))
    assert "--reserve-vram GB, --lowvram in COMFYUI_ARGS;" in text and "--novram" not in text


def test_medvram_instead_per_version() -> None:
    assert medvram_instead(parse_comfy_args([], table("0.3.76"))) == "use --lowvram, or --reserve-vram GB"
    assert medvram_instead(parse_comfy_args([], table("0.24.0")), version="0.24.0") == (
        "use --reserve-vram GB, if anything: ComfyUI 0.24.0 manages VRAM dynamically by default, and --lowvram does "
        "nothing there"
    )
    assert medvram_instead(parse_comfy_args([], mid_2026(normalvram=True))) == (
        "use --reserve-vram GB, if anything: this ComfyUI manages VRAM dynamically by default; --lowvram only keeps the "
        "text encoders on the CPU there"
    )
    assert medvram_instead(parse_comfy_args([], None)).startswith("use --reserve-vram GB (or --lowvram, on a ComfyUI without")


def test_lowvram_given() -> None:
    assert lowvram_given(facts(table("0.3.76"), "--lowvram")) is None
    assert lowvram_given(facts(table("0.24.0"), "--lowvram --disable-dynamic-vram")) is None
    assert (lowvram_given(facts(table("0.24.0"), "--lowvram")) or "").startswith("--lowvram does nothing in ComfyUI X")
    assert (lowvram_given(facts(mid_2026(normalvram=True), "--lowvram")) or "").startswith(
        "--lowvram only keeps the text encoders on the CPU in ComfyUI X")


def test_oom_advice_when_the_log_says_dynamic_vram_did_not_run() -> None:
    args = parse_comfy_args([], table("0.24.0"))
    assert "Not --lowvram" in oom_advice(args, dynamic_vram=True)
    off = oom_advice(args, dynamic_vram=False)
    assert "--reserve-vram GB, --lowvram, --novram, --disable-smart-memory" in off and "Not --lowvram" not in off
    # An older ComfyUI has no dynamic VRAM to turn off: the log changes nothing.
    old = parse_comfy_args([], table("0.3.76"))
    assert oom_advice(old, dynamic_vram=False) == oom_advice(old)


@pytest.mark.parametrize(("flags", "args", "advised"), [
    ("0.24.0", "", True),  # dynamic VRAM by default: measured 1.74-1.87 s vs 1.09-1.20 s per SD1.5 image (issue #17)
    ("0.24.0", "--disable-dynamic-vram", False),
    ("0.24.0", "--gpu-only", False),  # also turns dynamic VRAM off
    ("0.24.0", "--highvram", False),
    ("0.3.76", "", False),  # loads by estimate: nothing to advise
])
def test_speed_advice_names_disable_dynamic_vram_only_while_dynamic_vram_is_on(flags: str, args: str, advised: bool) -> None:
    tip = speed_advice(facts(table(flags), args))
    if not advised:
        assert tip is None
        return
    assert tip is not None and "--disable-dynamic-vram" in tip and "larger than the GPU" in tip


def test_speed_advice_says_nothing_without_a_checkout() -> None:
    assert speed_advice(facts(None)) is None
