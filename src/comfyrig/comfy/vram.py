"""VRAM advice that follows the target ComfyUI: only flags it has, never one that does nothing there.

What changed, from ComfyUI's history (its git log and ``comfy/cli_args.py``, ``main.py``,
``comfy/model_management.py`` of each release):

- Before 0.16: models are loaded by estimate; ``--lowvram`` splits the diffusion model and keeps
  the text encoders on the CPU, ``--novram`` when that is not enough (0.12-0.15 had dynamic VRAM
  as an opt-in, ``--fast dynamic_vram``).
- 0.16.0 (PR #12658): **dynamic VRAM is the default**. ``cli_args.enables_dynamic_vram()`` is true
  unless ``--disable-dynamic-vram``, ``--highvram``, ``--gpu-only``, ``--novram`` or ``--cpu`` is
  given, and ``main.py`` then uses it on NVIDIA GPUs outside WSL with torch 2.8+ and a working
  comfy-aimdo (``--enable-dynamic-vram``, 0.18+, forces it). Under it, ``--lowvram`` no longer
  splits anything; it only kept the text encoders on the CPU.
- 0.22.0 (PR #13922): ``--normalvram`` is gone, and ``--lowvram`` "doesn't do anything if dynamic
  vram is enabled" (its help text; ``text_encoder_device`` ignores it under dynamic VRAM).

A checkout's flag table tells these apart without a version string: ``--disable-dynamic-vram``
arrived with the new default, and ``--normalvram`` left with the commit that made ``--lowvram`` a
no-op. Whether comfy-aimdo really works on this machine only ComfyUI's log says ("DynamicVRAM
support detected and enabled"), so the advice says "by default", not "always".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .args import ComfyArgs

__all__ = ["DYNAMIC_VRAM_OFF", "REMOVED_FLAGS", "LowVramEffect", "VramFacts", "VramMode", "lowvram_given", "lowvram_note", "medvram_instead", "oom_advice", "plain_offload", "speed_advice", "vram_facts"]

# "dynamic": dynamic VRAM is this ComfyUI's default and no flag turns it off;
# "dynamic-off": the default, but a flag in the arguments turns it off (``VramFacts.off_by``);
# "legacy": this ComfyUI loads models by estimate (before 0.16, or 0.12-0.15 without --fast dynamic_vram);
# "unknown": no checkout to read (comfyrig's partial built-in flag table).
VramMode = Literal["dynamic", "dynamic-off", "legacy", "unknown"]
# What --lowvram does in this ComfyUI with these arguments.
LowVramEffect = Literal["splits", "text-encoders", "nothing", "absent", "unknown"]

# VRAM flags ComfyUI removed, and what to know instead (for "ComfyUI has no --x flag" messages).
REMOVED_FLAGS = {
    "--normalvram": "ComfyUI removed it in 0.22; normal VRAM use is the default",
}

# The flags that make ComfyUI 0.16+ load by estimate (cli_args.enables_dynamic_vram), in the order named.
DYNAMIC_VRAM_OFF = ("--disable-dynamic-vram", "--highvram", "--gpu-only", "--novram", "--cpu")


@dataclass(frozen=True)
class VramFacts:
    """How one ComfyUI with one command line manages VRAM, as far as its flags tell."""

    mode: VramMode
    lowvram: LowVramEffect
    off_by: str | None = None  # the flag that turns dynamic VRAM off ("dynamic-off")
    version: str | None = None  # ComfyUI's version, for the sentences

    @property
    def dynamic(self) -> bool:
        return self.mode == "dynamic"

    @property
    def who(self) -> str:
        return f"ComfyUI {self.version}" if self.version else "this ComfyUI"


def vram_facts(args: ComfyArgs, version: str | None = None) -> VramFacts:
    """Read ``args`` (parsed against the checkout's flag table) for the VRAM mode ComfyUI will use."""
    table = args.table
    if not args.checked:
        return VramFacts("unknown", "unknown", version=version)
    has_lowvram = table.has("--lowvram")
    if not table.has("--disable-dynamic-vram"):
        opted_in = _fast_dynamic_vram(args) and not (args.given("--highvram") or args.given("--gpu-only"))
        if opted_in:  # 0.12-0.15: the same loader, opt-in; --lowvram still set LOW_VRAM there
            return VramFacts("dynamic", "text-encoders" if has_lowvram else "absent", version=version)
        return VramFacts("legacy", "splits" if has_lowvram else "absent", version=version)
    removed_normalvram = not table.has("--normalvram")
    if not args.given("--enable-dynamic-vram"):
        off_by = next((flag for flag in DYNAMIC_VRAM_OFF if args.given(flag)), None)
        if off_by is not None:
            return VramFacts("dynamic-off", _lowvram_without_dynamic(args), off_by=off_by, version=version)
    effect: LowVramEffect = "absent" if not has_lowvram else "nothing" if removed_normalvram else "text-encoders"
    return VramFacts("dynamic", effect, version=version)


def _lowvram_without_dynamic(args: ComfyArgs) -> LowVramEffect:
    if not args.table.has("--lowvram"):
        return "absent"
    # Without dynamic VRAM, 0.22+ documents --lowvram as "text encoders on the CPU" only.
    return "text-encoders" if not args.table.has("--normalvram") else "splits"


def _seen(facts: VramFacts, args: ComfyArgs, dynamic_vram: bool | None) -> VramFacts:
    """``facts`` corrected by what ComfyUI's log said (None: it said nothing). The flags give the
    default; the log says whether comfy-aimdo really ran (NVIDIA, not WSL, torch 2.8+)."""
    if dynamic_vram is False and facts.mode == "dynamic":
        return VramFacts("dynamic-off", _lowvram_without_dynamic(args), off_by="its log", version=facts.version)
    return facts


def _fast_dynamic_vram(args: ComfyArgs) -> bool:
    spec = args.table.spec("--fast")
    if spec is None or "dynamic_vram" not in (spec.choices or ()):
        return False
    # A bare --fast enables every optimisation.
    return any(not o.values or "dynamic_vram" in o.values for o in args.occurrences_of("--fast"))


def _existing(args: ComfyArgs, *flags: str) -> list[str]:
    """``flags`` (each "--flag" or "--flag VALUE") that this ComfyUI has; all of them when unknown."""
    return [f for f in flags if not args.checked or args.table.has(f.split()[0])]


def lowvram_note(facts: VramFacts) -> str | None:
    """Why --lowvram is not advised here, or None when it is (or cannot be told)."""
    if facts.lowvram == "nothing":
        return (f"not --lowvram: {facts.who} loads models with dynamic VRAM by default on NVIDIA GPUs, and --lowvram "
                "does nothing then (--disable-dynamic-vram turns dynamic VRAM off)")
    if facts.lowvram == "text-encoders" and facts.mode == "dynamic":
        return (f"--lowvram only keeps the text encoders on the CPU: {facts.who} loads models with dynamic VRAM by default "
                "(--disable-dynamic-vram turns it off)")
    return None


def lowvram_given(facts: VramFacts) -> str | None:
    """A sentence for a --lowvram the user gave that does not do what its name says here, else None."""
    if facts.lowvram == "nothing":
        return (f"--lowvram does nothing in {facts.who}: it loads models with dynamic VRAM by default, and --lowvram "
                "acts only without it (add --disable-dynamic-vram for that, or remove --lowvram)")
    if facts.lowvram == "text-encoders" and facts.mode == "dynamic":
        return (f"--lowvram only keeps the text encoders on the CPU in {facts.who}: it loads models with dynamic VRAM "
                "by default, so --lowvram no longer splits the model")
    return None


def oom_advice(args: ComfyArgs, *, version: str | None = None, several_gpus: bool = False,
               native_multigpu: bool | None = None, dynamic_vram: bool | None = None) -> str:
    """What helps against "CUDA out of memory" in this ComfyUI with these flags, in one sentence or two.

    Names only flags the checkout has, and never one that does nothing there (``--lowvram``
    under dynamic VRAM). ``several_gpus``: one ComfyUI sees two or more GPUs (dual/multi mode);
    ``native_multigpu``: the checkout has ComfyUI's own multi-GPU nodes (None: unknown);
    ``dynamic_vram``: what ComfyUI's log said ("DynamicVRAM support detected and enabled", or
    why not), None when it said nothing.
    """
    facts = _seen(vram_facts(args, version), args, dynamic_vram)
    if facts.mode == "dynamic":
        flags = _existing(args, "--reserve-vram GB", "--disable-smart-memory")
        last = _existing(args, "--novram")
        tail = f"; {last[0]} as a last resort (it turns dynamic VRAM off and keeps the weights in system RAM)" if last else ""
        listed = f"{', '.join(flags)} in COMFYUI_ARGS{tail}"
    elif facts.mode == "unknown":
        flags = _existing(args, "--reserve-vram GB", "--lowvram", "--novram", "--disable-smart-memory")
        listed = (f"{', '.join(flags)} in COMFYUI_ARGS (--lowvram helps only without dynamic VRAM, which is the "
                  "default from ComfyUI 0.16 on; from 0.22 it does nothing under it)")
    else:
        flags = _existing(args, "--reserve-vram GB", "--lowvram", "--novram", "--disable-smart-memory")
        when = " (--novram when --lowvram is not enough)" if "--lowvram" in flags and "--novram" in flags else ""
        listed = f"{', '.join(flags)} in COMFYUI_ARGS{when}"
    tip = ""
    if several_gpus:
        if native_multigpu:
            tip = "; with several GPUs, the text encoder or VAE on another GPU (Select CLIP Device, Select VAE Device)"
        else:
            tip = "; with several GPUs, ComfyUI-MultiGPU's loaders (a text encoder or VAE, or DisTorch layers, on the other GPU)"
    sentence = f"If ComfyUI reports 'CUDA out of memory': {listed}; a smaller batch or resolution{tip}."
    note = lowvram_note(facts)
    medvram = "Not --medvram (an AUTOMATIC1111 flag; ComfyUI exits on it)"
    return f"{sentence} {note[0].upper()}{note[1:]}. {medvram}." if note else f"{sentence} {medvram}."


def medvram_instead(args: ComfyArgs, *, version: str | None = None) -> str:
    """What to use instead of AUTOMATIC1111's --medvram here (a clause starting with "use")."""
    facts = vram_facts(args, version)
    reserve = "--reserve-vram GB" if not args.checked or args.table.has("--reserve-vram") else None
    if facts.mode == "dynamic":
        what = f"use {reserve}, if anything" if reserve else "leave it out"
        lowvram = {"nothing": ", and --lowvram does nothing there",
                   "text-encoders": "; --lowvram only keeps the text encoders on the CPU there"}.get(facts.lowvram, "")
        return f"{what}: {facts.who} manages VRAM dynamically by default{lowvram}"
    if facts.mode == "unknown":
        return "use --reserve-vram GB (or --lowvram, on a ComfyUI without dynamic VRAM: before 0.16, or with --disable-dynamic-vram)"
    options = [f for f in ("--lowvram", reserve) if f and (f != "--lowvram" or facts.lowvram != "absent")]
    return f"use {', or '.join(options)}" if options else "leave it out"


def plain_offload(facts: VramFacts, *, little_on_gpu: bool) -> tuple[str | None, str]:
    """How plain ComfyUI (no ComfyUI-MultiGPU) runs a diffusion model too big for its one GPU:
    (the flag to add or None, why, as a clause). ``little_on_gpu``: under 1 GiB of it fits beside
    the working memory, where ComfyUI before dynamic VRAM needs --novram."""
    if facts.mode == "dynamic":
        return None, (f"{facts.who} loads models with dynamic VRAM by default on NVIDIA GPUs and keeps what does not "
                      "fit in system RAM by itself; no flag is needed")
    if facts.lowvram == "splits":
        flag = "--novram" if little_on_gpu else "--lowvram"
        return flag, "it decides the split itself and keeps the text encoder on the CPU"
    if facts.mode == "unknown":
        flag = "--novram" if little_on_gpu else "--lowvram"
        return flag, ("it decides the split itself and keeps the text encoder on the CPU; only on ComfyUI before 0.16 "
                      "or with --disable-dynamic-vram: newer ComfyUI offloads by itself with dynamic VRAM, and from "
                      "0.22 --lowvram does nothing there")
    # Loading by estimate without a splitting --lowvram (0.22+ with dynamic VRAM turned off):
    # ComfyUI still loads partially what does not fit (model_management.load_models_gpu).
    return None, f"{facts.who} loads partially what does not fit in VRAM by itself; no flag is needed"


def speed_advice(facts: VramFacts) -> str | None:
    """The faster setting for a rig whose GPU holds the model, when these flags leave dynamic VRAM on; else None.

    Measured (issue #17; docs/performance.md): on 1 x H100, SD1.5 512x512, 20 steps, ComfyUI 0.24.0 took
    1.74-1.87 s per image with dynamic VRAM (its default) and 1.09-1.20 s with ``--disable-dynamic-vram``,
    as fast as 0.3.76 (1.10-1.16 s); pinned memory, the RAM-pressure cache, async offload, the allocator
    and CPU threads made no difference. Advice, not a flag comfyrig adds: dynamic VRAM is what runs a
    model larger than the GPU, and ComfyUI says the flag will be removed.
    """
    if facts.mode != "dynamic":
        return None
    return (f"{facts.who} uses dynamic VRAM by default; when the models fit in the GPU's memory, "
            "--disable-dynamic-vram in COMFYUI_ARGS is faster (SD1.5 on an H100: 1.09-1.20 s instead of 1.74-1.87 s "
            "per image with ComfyUI 0.24.0, as fast as 0.3.76); keep the default for models larger than the GPU")
