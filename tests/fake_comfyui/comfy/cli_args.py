"""Command-line flags of ComfyUI 0.3.76 (comfy/cli_args.py there), for the fake server.

Names, types, nargs/const, defaults and mutually exclusive groups follow the real parser so that
a launcher passing a flag gets the same answer as from real ComfyUI: accepted, or argparse's
usage error with exit code 2. Help texts are short paraphrases. The fake ignores most flags;
README.md says which ones change its behaviour.
"""

import argparse
import enum
import os

import comfy.options


class EnumAction(argparse.Action):
    """Store the enum member for a value given on the command line (choices come from the enum)."""

    def __init__(self, **kwargs):
        enum_type = kwargs.pop("type", None)
        if enum_type is None or not issubclass(enum_type, enum.Enum):
            raise TypeError("EnumAction needs type= an Enum subclass")
        choices = tuple(member.value for member in enum_type)
        kwargs.setdefault("choices", choices)
        kwargs.setdefault("metavar", "[{}]".format(",".join(choices)))
        super().__init__(**kwargs)
        self._enum = enum_type

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self._enum(values))


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


class PerformanceFeature(enum.Enum):
    Fp16Accumulation = "fp16_accumulation"
    Fp8MatrixMultiplication = "fp8_matrix_mult"
    CublasOps = "cublas_ops"
    AutoTune = "autotune"


def is_valid_directory(path: str) -> str:
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"The path '{path}' does not exist.")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"'{path}' is not a directory.")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"You do not have read permissions for '{path}'.")
    return path


def _switches(group, *names: str) -> None:
    """Add store_true flags, one per name, to a parser or a mutually exclusive group."""
    for name in names:
        group.add_argument(name, action="store_true")


parser = argparse.ArgumentParser()

# Network
parser.add_argument("--listen", type=str, default="127.0.0.1", metavar="IP", nargs="?", const="0.0.0.0,::",
                    help="Address(es) to listen on, comma separated (default 127.0.0.1; bare --listen: 0.0.0.0,::).")
parser.add_argument("--port", type=int, default=8188, help="Listen port.")
parser.add_argument("--tls-keyfile", type=str, help="TLS key file (needs --tls-certfile).")
parser.add_argument("--tls-certfile", type=str, help="TLS certificate file (needs --tls-keyfile).")
parser.add_argument("--enable-cors-header", type=str, default=None, metavar="ORIGIN", nargs="?", const="*",
                    help="Send CORS headers for ORIGIN (default '*') instead of checking Origin against Host.")
parser.add_argument("--max-upload-size", type=float, default=100, help="Largest request body, in MB.")

# Directories
parser.add_argument("--base-directory", type=str, default=None,
                    help="Base for models, custom_nodes, input, output, temp and user directories.")
parser.add_argument("--extra-model-paths-config", type=str, default=None, metavar="PATH", nargs="+", action="append",
                    help="extra_model_paths.yaml files to load.")
parser.add_argument("--output-directory", type=str, default=None, help="Output directory (overrides --base-directory).")
parser.add_argument("--temp-directory", type=str, default=None, help="Parent of the temp directory.")
parser.add_argument("--input-directory", type=str, default=None, help="Input directory (overrides --base-directory).")
parser.add_argument("--auto-launch", action="store_true", help="Open a browser on start.")
parser.add_argument("--disable-auto-launch", action="store_true", help="Do not open a browser on start.")

# Devices
parser.add_argument("--cuda-device", type=int, default=None, metavar="DEVICE_ID",
                    help="The only CUDA device this instance may see (sets CUDA_VISIBLE_DEVICES).")
parser.add_argument("--default-device", type=int, default=None, metavar="DEFAULT_DEVICE_ID",
                    help="Put this device first, keeping the others visible.")
cm_group = parser.add_mutually_exclusive_group()
_switches(cm_group, "--cuda-malloc", "--disable-cuda-malloc")

fp_group = parser.add_mutually_exclusive_group()
_switches(fp_group, "--force-fp32", "--force-fp16")

fpunet_group = parser.add_mutually_exclusive_group()
_switches(fpunet_group, "--fp32-unet", "--fp64-unet", "--bf16-unet", "--fp16-unet",
          "--fp8_e4m3fn-unet", "--fp8_e5m2-unet", "--fp8_e8m0fnu-unet")

fpvae_group = parser.add_mutually_exclusive_group()
_switches(fpvae_group, "--fp16-vae", "--fp32-vae", "--bf16-vae")

parser.add_argument("--cpu-vae", action="store_true", help="Run the VAE on the CPU.")

fpte_group = parser.add_mutually_exclusive_group()
_switches(fpte_group, "--fp8_e4m3fn-text-enc", "--fp8_e5m2-text-enc", "--fp16-text-enc",
          "--fp32-text-enc", "--bf16-text-enc")

parser.add_argument("--force-channels-last", action="store_true")
parser.add_argument("--directml", type=int, nargs="?", metavar="DIRECTML_DEVICE", const=-1)
parser.add_argument("--oneapi-device-selector", type=str, default=None, metavar="SELECTOR_STRING")
parser.add_argument("--disable-ipex-optimize", action="store_true")
parser.add_argument("--supports-fp8-compute", action="store_true")

parser.add_argument("--preview-method", type=LatentPreviewMethod, default=LatentPreviewMethod.NoPreviews,
                    action=EnumAction, help="Preview method for sampler nodes.")
parser.add_argument("--preview-size", type=int, default=512)

cache_group = parser.add_mutually_exclusive_group()
cache_group.add_argument("--cache-classic", action="store_true", help="Classic (aggressive) caching.")
cache_group.add_argument("--cache-lru", type=int, default=0, help="LRU cache of N node results.")
cache_group.add_argument("--cache-none", action="store_true", help="Execute every node on every run.")
cache_group.add_argument("--cache-ram", nargs="?", const=4.0, type=float, default=0,
                         help="RAM-pressure caching with this headroom in GB.")

attn_group = parser.add_mutually_exclusive_group()
_switches(attn_group, "--use-split-cross-attention", "--use-quad-cross-attention",
          "--use-pytorch-cross-attention", "--use-sage-attention", "--use-flash-attention")

parser.add_argument("--disable-xformers", action="store_true")

upcast = parser.add_mutually_exclusive_group()
_switches(upcast, "--force-upcast-attention", "--dont-upcast-attention")

# ComfyUI-Manager (new in 0.3.76; absent from 0.3.64)
parser.add_argument("--enable-manager", action="store_true", help="Enable the ComfyUI-Manager feature.")
manager_group = parser.add_mutually_exclusive_group()
_switches(manager_group, "--disable-manager-ui", "--enable-manager-legacy-ui")

# Memory
vram_group = parser.add_mutually_exclusive_group()
_switches(vram_group, "--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu")

parser.add_argument("--reserve-vram", type=float, default=None, help="VRAM in GB to leave to other software.")
parser.add_argument("--async-offload", nargs="?", const=2, type=int, default=None, metavar="NUM_STREAMS")
parser.add_argument("--disable-async-offload", action="store_true")
parser.add_argument("--force-non-blocking", action="store_true")
parser.add_argument("--default-hashing-function", type=str, choices=["md5", "sha1", "sha256", "sha512"], default="sha256")
parser.add_argument("--disable-smart-memory", action="store_true", help="Offload models to RAM after use.")
parser.add_argument("--deterministic", action="store_true")
parser.add_argument("--fast", nargs="*", type=PerformanceFeature,
                    help="Untested optimizations: {}".format(" ".join(f.value for f in PerformanceFeature)))
parser.add_argument("--disable-pinned-memory", action="store_true")
parser.add_argument("--mmap-torch-files", action="store_true")
parser.add_argument("--disable-mmap", action="store_true")

# Behaviour
parser.add_argument("--dont-print-server", action="store_true", help="Do not print the server start lines.")
parser.add_argument("--quick-test-for-ci", action="store_true", help="Initialise, then exit 0 without serving.")
parser.add_argument("--windows-standalone-build", action="store_true")
parser.add_argument("--disable-metadata", action="store_true", help="Do not write the prompt into saved PNGs.")
parser.add_argument("--disable-all-custom-nodes", action="store_true")
parser.add_argument("--whitelist-custom-nodes", type=str, nargs="+", default=[])
parser.add_argument("--disable-api-nodes", action="store_true")
parser.add_argument("--multi-user", action="store_true", help="Per-user storage.")
parser.add_argument("--verbose", default="INFO", const="DEBUG", nargs="?",
                    choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="Logging level.")
parser.add_argument("--log-stdout", action="store_true",
                    help="Log to stdout (errors still to stderr) instead of stderr.")

DEFAULT_VERSION_STRING = "comfyanonymous/ComfyUI@latest"
parser.add_argument("--front-end-version", type=str, default=DEFAULT_VERSION_STRING)
parser.add_argument("--front-end-root", type=is_valid_directory, default=None)
parser.add_argument("--user-directory", type=is_valid_directory, default=None)
parser.add_argument("--enable-compress-response-body", action="store_true")
parser.add_argument("--comfy-api-base", type=str, default="https://api.comfy.org")
parser.add_argument("--database-url", type=str,
                    default="sqlite:///" + os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "user", "comfyui.db")))


def _finish(parsed: argparse.Namespace) -> argparse.Namespace:
    """The adjustments ComfyUI makes right after parsing."""
    if parsed.windows_standalone_build:
        parsed.auto_launch = True
    if parsed.disable_auto_launch:
        parsed.auto_launch = False
    if parsed.force_fp16:
        parsed.fp16_unet = True
    if parsed.fast is None:
        parsed.fast = set()
    elif parsed.fast == []:
        parsed.fast = set(PerformanceFeature)
    else:
        parsed.fast = set(parsed.fast)
    return parsed


args = _finish(parser.parse_args() if comfy.options.args_parsing else parser.parse_args([]))
