"""The fake's node set, its /object_info schemas, and the custom_nodes scan.

Executable: EmptyImage, ImageInvert, SaveImage (nodes.py in ComfyUI), ImageBlur
(comfy_extras/nodes_post_processing.py) and FakeSleep (the fake's own slow node).
Schema only: the core model loaders; with FAKE_COMFYUI_NODE_PACKS=multigpu or a
custom_nodes/ComfyUI-MultiGPU folder, ComfyUI-MultiGPU's loader wrappers; with
FAKE_COMFYUI_NATIVE_MULTIGPU=1, ComfyUI 0.23+'s own multi-GPU nodes. The fake has no
models, so a loader's model list is empty and a prompt using one fails validation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import time
from typing import Callable, Dict, Optional

import folder_paths
from comfy import image as img
from comfy import model_management
from comfy.cli_args import args

MAX_RESOLUTION = 16384

# Set by the executor around each node: progress_hook(value, max, preview=None) sends "progress"
# for that node, and a binary preview frame when given one (comfy.utils.ProgressBar's hook).
# A preview is (image_type "PNG" or "JPEG", encoded bytes, max_size), as ComfyUI's
# ("JPEG", PIL image, max_size) tuple, encoded already: the fake has no Pillow.
progress_hook: Optional[Callable[..., None]] = None


def interrupt_processing(value: bool = True) -> None:
    model_management.interrupt_current_processing(value)


def before_node_execution() -> None:
    model_management.throw_exception_if_processing_interrupted()


class EmptyImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "image"

    def generate(self, width, height, batch_size=1, color=0):
        frame = img.solid(width, height, color)
        return ((frame,) * batch_size,)


class ImageInvert:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"
    CATEGORY = "image"

    def invert(self, image):
        return (tuple(img.invert(frame) for frame in image),)


class ImageBlur:
    # A V3 node in ComfyUI 0.3.76: its object_info has the V3 field set (see node_info()).
    V3_SCHEMA = True
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_post_processing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {}),
            "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"
    CATEGORY = "image/postprocessing"

    def execute(self, image, blur_radius, sigma):
        return (tuple(img.blur(frame, blur_radius, sigma) for frame in image),)


class SaveImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        first = images[0]
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.output_directory, first.width, first.height)
        text = {}
        if not args.disable_metadata:
            if prompt is not None:
                text["prompt"] = json.dumps(prompt)
            for key, value in (extra_pnginfo or {}).items():
                text[key] = json.dumps(value)
        results = []
        for batch_number, frame in enumerate(images):
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            with open(os.path.join(folder, file), "wb") as f:
                f.write(img.png_bytes(frame, text))
            results.append({"filename": file, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


def filter_image_files(files) -> list:
    """folder_paths.filter_files_content_types(files, ["image"]): by the MIME type of the extension."""
    return [f for f in files if (mimetypes.guess_type(f, strict=False)[0] or "").split("/")[0] == "image"]


class LoadImage:
    """nodes.py's LoadImage: its COMBO lists the image files in the input directory (where
    /upload/image stores them). The fake reads 8-bit grey/RGB/RGBA PNGs; anything else fails the
    node with a clear error. MASK is 255 - alpha (a 64x64 zero mask without alpha), as 8-bit bytes."""

    @classmethod
    def INPUT_TYPES(cls):
        input_dir = folder_paths.input_directory
        try:
            files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
        except FileNotFoundError:
            files = []
        return {"required": {"image": (sorted(filter_image_files(files)), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            decoded = img.decode_png(f.read())
        frame = decoded.frame
        if decoded.alpha is not None:
            mask = img.Mask(frame.width, frame.height, decoded.alpha.translate(img.INVERT_TABLE))
        else:
            mask = img.Mask(64, 64, bytes(64 * 64))
        return ((frame,), (mask,))

    @classmethod
    def IS_CHANGED(cls, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if not os.path.exists(folder_paths.get_annotated_filepath(image)):
            return f"Invalid image file: {image}"
        return True


class SaveImageWebsocket:
    """custom_nodes/websocket_image_save.py, shipped with ComfyUI: sends each image as a PNG in a
    binary websocket frame to the prompt's client, through the progress hook, as preview frames go
    (type 1 + image type 2 = PNG; type 4 with metadata to a client announcing
    supports_preview_metadata). Saves nothing. Registered when custom_nodes holds that file."""

    RELATIVE_PYTHON_MODULE = "custom_nodes.websocket_image_save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "api/image"

    def save_images(self, images):
        for step, frame in enumerate(images):
            if progress_hook is not None:
                progress_hook(step, len(images), ("PNG", img.png_bytes(frame, {}, compress_level=1), None))
        return {}

    @classmethod
    def IS_CHANGED(cls, images):
        return time.time()


WEBSOCKET_IMAGE_SAVE_FILE = "websocket_image_save.py"


class FakeSleep:
    """Stands in for a sampler: takes `seconds`, reports `steps` progress events, passes `any` through."""

    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_fake"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0, "step": 0.01}),
                "steps": ("INT", {"default": 10, "min": 1, "max": 10000}),
            },
            "optional": {
                "any": ("*", {}),
                "fail": ("BOOLEAN", {"default": False, "tooltip": "Raise after sleeping, for execution_error tests."}),
            },
        }

    RETURN_TYPES = ("*",)
    RETURN_NAMES = ("any",)
    FUNCTION = "sleep"
    CATEGORY = "testing/fake"
    DESCRIPTION = "Sleeps like a sampler, sending one progress event per step; passes its input through."

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # never cached, like a sampler with a new seed

    def sleep(self, seconds, steps, any=None, fail=False):
        for step in range(1, steps + 1):
            model_management.wait_interruptible(seconds / steps)
            if progress_hook is not None:
                progress_hook(step, steps, step_preview(step, steps) if previews_enabled() else None)
        if fail:
            raise RuntimeError("FakeSleep was asked to fail")
        return (any,)


def previews_enabled() -> bool:
    """Sampler previews: FAKE_COMFYUI_PREVIEWS=1, or --preview-method other than none (ComfyUI's
    own switch; its default is none)."""
    return PREVIEWS or args.preview_method.value != "none"


PREVIEWS = False  # set from the knob at start (init_extra_nodes)


def step_preview(step: int, steps: int) -> tuple:
    """An 8x8 grey JPEG, lighter at each step (grey = 255 * step / steps), standing in for
    latent_preview's ("JPEG", picture of the latent, --preview-size)."""
    return ("JPEG", img.jpeg_solid_grey(8, 8, round(255 * step / steps)), args.preview_size)


# --- Model loaders: schemas only --------------------------------------------------------------

CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis"]
DUAL_CLIP_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15",
                   "kandinsky5", "kandinsky5_image"]
CHECKPOINT_TOOLTIPS = ("The model used for denoising latents.",
                       "The CLIP model used for encoding text prompts.",
                       "The VAE model used for encoding and decoding images to and from latent space.")


MODEL_FOLDER_OF = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models", "vae_name": "vae",
                   "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
                   "control_net_name": "controlnet"}


def _loader(name: str, category: str, returns: tuple, required: dict, optional: Optional[dict] = None,
            description: str = "", tooltips: Optional[tuple] = None, folders: Optional[dict] = None) -> type:
    folders = folders or {}

    def load(self, **kwargs):
        raise RuntimeError(f"{name}: the fake ComfyUI has no models")

    inputs = {"required": required}
    if optional:
        inputs["optional"] = optional

    def input_types(cls):
        # As ComfyUI's loaders: the options are the files of the input's model folder, listed now.
        found = json.loads(json.dumps(inputs))
        for key, spec in found["required"].items():
            if spec and spec[0] == [] and key in MODEL_FOLDER_OF:
                spec[0] = folder_paths.get_filename_list(folders.get(key, MODEL_FOLDER_OF[key]))
        return found

    attrs = {"INPUT_TYPES": classmethod(input_types), "RETURN_TYPES": returns,
             "FUNCTION": "load", "CATEGORY": category, "DESCRIPTION": description, "load": load}
    if tooltips:
        attrs["OUTPUT_TOOLTIPS"] = tooltips
    return type(name, (), attrs)


LOADERS = {
    "CheckpointLoaderSimple": _loader(
        "CheckpointLoaderSimple", "loaders", ("MODEL", "CLIP", "VAE"),
        {"ckpt_name": ([], {"tooltip": "The name of the checkpoint (model) to load."})},
        description="Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
        tooltips=CHECKPOINT_TOOLTIPS),
    "UNETLoader": _loader("UNETLoader", "advanced/loaders", ("MODEL",), {
        "unet_name": ([],), "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],)}),
    "VAELoader": _loader("VAELoader", "loaders", ("VAE",), {"vae_name": ([],)}),
    "CLIPLoader": _loader("CLIPLoader", "advanced/loaders", ("CLIP",), {"clip_name": ([],), "type": (CLIP_TYPES,)},
                          {"device": (["default", "cpu"], {"advanced": True})}),
    "DualCLIPLoader": _loader("DualCLIPLoader", "advanced/loaders", ("CLIP",), {
        "clip_name1": ([],), "clip_name2": ([],), "type": (DUAL_CLIP_TYPES,)},
        {"device": (["default", "cpu"], {"advanced": True})}),
    "CLIPVisionLoader": _loader("CLIPVisionLoader", "loaders", ("CLIP_VISION",), {"clip_name": ([],)},
                                folders={"clip_name": "clip_vision"}),
    "ControlNetLoader": _loader("ControlNetLoader", "loaders", ("CONTROL_NET",), {"control_net_name": ([],)}),
}

NODE_CLASS_MAPPINGS: Dict[str, type] = {
    "EmptyImage": EmptyImage,
    "LoadImage": LoadImage,
    "ImageInvert": ImageInvert,
    "ImageBlur": ImageBlur,
    "SaveImage": SaveImage,
    "FakeSleep": FakeSleep,
    **LOADERS,
}

NODE_DISPLAY_NAME_MAPPINGS: Dict[str, str] = {
    "SaveImage": "Save Image",
    "LoadImage": "Load Image",
    "ImageInvert": "Invert Image",
    "FakeSleep": "Fake Sleep",
    "CheckpointLoaderSimple": "Load Checkpoint",
    "UNETLoader": "Load Diffusion Model",
    "VAELoader": "Load VAE",
    "CLIPLoader": "Load CLIP",
    "CLIPVisionLoader": "Load CLIP Vision",
    "ControlNetLoader": "Load ControlNet Model",
}


# --- ComfyUI-MultiGPU (custom_nodes/ComfyUI-MultiGPU/__init__.py and wrappers.py) --------------

MULTIGPU_FOLDER = "ComfyUI-MultiGPU"
# Wrapped loaders, each with the name its DisTorch2 variant gives the device input: compute_device
# for model loaders, device for text/vision encoders (whose eject_models defaults to False).
MULTIGPU_WRAPPED = {
    "UNETLoader": "compute_device", "VAELoader": "compute_device", "CheckpointLoaderSimple": "compute_device",
    "ControlNetLoader": "compute_device", "CLIPLoader": "device", "DualCLIPLoader": "device",
    "CLIPVisionLoader": "device",
}


def multigpu_nodes(visible_gpus: int) -> Dict[str, type]:
    """<Loader>MultiGPU and <Loader>DisTorch2MultiGPU for each wrapped loader.

    Devices are 'cpu' then 'cuda:0'.. as torch numbers them after CUDA_VISIBLE_DEVICES; the
    default device is the second entry when there is one (MultiGPU's rule).
    """
    devices = ["cpu"] + [f"cuda:{i}" for i in range(visible_gpus)]
    default = devices[1] if len(devices) > 1 else devices[0]
    module = f"custom_nodes.{MULTIGPU_FOLDER}"
    out: Dict[str, type] = {}
    for base_name, distorch_param in MULTIGPU_WRAPPED.items():
        base = LOADERS[base_name]

        def with_device(cls, base=base):
            inputs = base.INPUT_TYPES()
            inputs.setdefault("optional", {})["device"] = (devices, {"default": default})
            return inputs

        def with_distorch(cls, base=base, param=distorch_param):
            inputs = base.INPUT_TYPES()
            optional = inputs.setdefault("optional", {})
            optional[param] = (devices, {"default": default})
            optional["virtual_vram_gb"] = ("FLOAT", {"default": 4.0, "min": 0.0, "max": 128.0, "step": 0.1})
            optional["donor_device"] = (devices, {"default": "cpu"})
            optional["expert_mode_allocations"] = ("STRING", {"multiline": False, "default": ""})
            optional["eject_models"] = ("BOOLEAN", {"default": param == "compute_device"})
            return inputs

        out[base_name + "MultiGPU"] = type(base_name + "MultiGPU", (base,), {
            "INPUT_TYPES": classmethod(with_device), "CATEGORY": "multigpu", "RELATIVE_PYTHON_MODULE": module})
        out[base_name + "DisTorch2MultiGPU"] = type(base_name + "DisTorch2MultiGPU", (base,), {
            "INPUT_TYPES": classmethod(with_distorch), "CATEGORY": "multigpu/distorch_2",
            "RELATIVE_PYTHON_MODULE": module})
    return out


# --- ComfyUI 0.23+'s own multi-GPU nodes (comfy_extras/nodes_multigpu.py), FAKE_COMFYUI_NATIVE_MULTIGPU=1 ----

NATIVE_MULTIGPU_MODULE = "comfy_extras.nodes_multigpu"


def _gpu_device_options(with_cpu: bool = True) -> list:
    """model_management.get_gpu_device_options(): gpu:N only when torch sees two devices or more."""
    devices = model_management.get_all_torch_devices()
    options = ["default", "cpu"] + ([f"gpu:{i}" for i in range(len(devices))] if len(devices) > 1 else [])
    return options if with_cpu else [o for o in options if o != "cpu"]


def _native_node(node_id: str, display: str, io_type: str, second: str, description: str) -> type:
    """A V3 node of 0.24 with one ``io_type`` input passed through and a second input (max_gpus or device)."""
    def INPUT_TYPES(cls):
        if second == "max_gpus":
            other = ("INT", {"default": 2, "min": 1, "step": 1})
        else:
            other = ("COMBO", {"multiselect": False, "options": _gpu_device_options(with_cpu=io_type != "VAE")})
        return {"required": {io_type.lower(): (io_type, {}), second: other}}

    def execute(self, **kwargs):  # never reached: the fake has no models to hand these nodes
        return (kwargs[io_type.lower()],)

    return type(node_id, (), {
        "INPUT_TYPES": classmethod(INPUT_TYPES), "RETURN_TYPES": (io_type,), "FUNCTION": "execute", "execute": execute,
        "CATEGORY": "advanced/multigpu", "DESCRIPTION": description, "RELATIVE_PYTHON_MODULE": NATIVE_MULTIGPU_MODULE,
        "V3_SCHEMA_0_24": True, "DISPLAY_NAME": display,
    })


def native_multigpu_nodes() -> Dict[str, type]:
    """MultiGPUExtension.get_node_list() of 0.24.0, in its order (MultiGPU_Options is not registered)."""
    specs = (
        ("MultiGPU_WorkUnits", "MultiGPU CFG Split", "MODEL", "max_gpus",
         "Prepares model to have sampling accelerated via splitting work units."),
        ("SelectModelDevice", "Select Model Device", "MODEL", "device",
         "Place the diffusion model on a specific device (default / cpu / gpu:N)."),
        ("SelectCLIPDevice", "Select CLIP Device", "CLIP", "device",
         "Place the CLIP text encoder on a specific device (default / cpu / gpu:N)."),
        ("SelectVAEDevice", "Select VAE Device", "VAE", "device", "Place the VAE on a specific device (default / gpu:N)."),
    )
    return {spec[0]: _native_node(*spec) for spec in specs}


def node_info(node_class: str) -> dict:
    """One /object_info entry, in the shape server.py's node_info() (V1) or GET_NODE_INFO_V1() (V3) gives."""
    cls = NODE_CLASS_MAPPINGS[node_class]
    inputs = cls.INPUT_TYPES()
    info = {
        "input": inputs,
        "input_order": {key: list(value.keys()) for key, value in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": [False] * len(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": node_class,
        "display_name": NODE_DISPLAY_NAME_MAPPINGS.get(node_class, node_class),
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    if getattr(cls, "V3_SCHEMA_0_24", False):
        # 0.24's V3 field set (GET_NODE_INFO_V1), as its /object_info answered on the CPU.
        info.update(display_name=cls.DISPLAY_NAME, is_input_list=False, output_tooltips=[None] * len(cls.RETURN_TYPES),
                    output_matchtypes=None, deprecated=False, experimental=False, dev_only=False, api_node=False,
                    price_badge=None, search_aliases=None, essentials_category=None, has_intermediate_output=False)
    elif getattr(cls, "V3_SCHEMA", False):
        # V3 schemas carry no display name of their own and always list these fields.
        info.update(display_name=None, output_tooltips=[None] * len(cls.RETURN_TYPES), output_matchtypes=None,
                    deprecated=False, experimental=False, api_node=False)
    return info


def _scan_custom_nodes(custom_nodes_dir: str):
    """(path, imported) per entry of custom_nodes, skipping what ComfyUI skips.

    The fake imports nothing: a .py file or a folder with __init__.py counts as imported, a folder
    without one fails the way ComfyUI's import of it would.
    """
    try:
        names = os.listdir(os.path.realpath(custom_nodes_dir))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(custom_nodes_dir, name)
        if name == "__pycache__" or path.endswith(".disabled"):
            continue
        if os.path.isfile(path) and os.path.splitext(path)[1] != ".py":
            continue
        if args.disable_all_custom_nodes and name not in args.whitelist_custom_nodes:
            logging.info(f"Skipping {name} due to disable_all_custom_nodes and whitelist_custom_nodes")
            continue
        imported = os.path.isfile(path) or os.path.isfile(os.path.join(path, "__init__.py"))
        if not imported:
            logging.warning(f"Cannot import {path} module for custom nodes: [Errno 2] No such file or directory: "
                            f"'{os.path.join(path, '__init__.py')}'")
        found.append((path, imported))
    return found


def init_extra_nodes(knobs, device: model_management.Device) -> None:
    """Scan custom_nodes, register node packs, log "Import times for custom nodes:" as ComfyUI does.

    FAKE_COMFYUI_START_DELAY is spent here: real ComfyUI binds only after every import finished.
    """
    global PREVIEWS
    PREVIEWS = knobs.previews
    if knobs.start_delay_s:
        time.sleep(knobs.start_delay_s)
    if knobs.native_multigpu:  # ComfyUI loads comfy_extras before custom_nodes
        NODE_CLASS_MAPPINGS.update(native_multigpu_nodes())
    if knobs.exit_during_import is not None:
        # A harmless failed import first (ComfyUI logs its traceback as a warning and goes on),
        # then a node that raises SystemExit: nodes.py catches Exception only, so Python ends
        # with that code and prints nothing.
        path = os.path.join(folder_paths.custom_nodes_directory, "ComfyUI-Audio")
        logging.warning("Traceback (most recent call last):\n"
                        f'  File "{os.path.abspath("nodes.py")}", line 2131, in load_custom_node\n'
                        "    module_spec.loader.exec_module(module)\n"
                        f'  File "{path}/__init__.py", line 1, in <module>\n'
                        "    import torchaudio\n"
                        "ModuleNotFoundError: No module named 'torchaudio'\n")
        logging.warning(f"Cannot import {path} module for custom nodes: No module named 'torchaudio'")
        raise SystemExit(knobs.exit_during_import)
    found = _scan_custom_nodes(folder_paths.custom_nodes_directory)
    multigpu_path = os.path.join(folder_paths.custom_nodes_directory, MULTIGPU_FOLDER)
    multigpu_dir = [ok for path, ok in found if os.path.basename(path).lower() == MULTIGPU_FOLDER.lower()]
    if "multigpu" in knobs.node_packs and not multigpu_dir:
        found.append((multigpu_path, True))
    if any(ok and os.path.basename(path) == WEBSOCKET_IMAGE_SAVE_FILE for path, ok in found):
        NODE_CLASS_MAPPINGS["SaveImageWebsocket"] = SaveImageWebsocket
    if "multigpu" in knobs.node_packs or any(multigpu_dir):
        NODE_CLASS_MAPPINGS.update(multigpu_nodes(device.visible_gpus))

    if found:
        logging.info("\nImport times for custom nodes:")
        for path, imported in sorted(found):
            logging.info("{:6.1f} seconds{}: {}".format(0.0, "" if imported else " (IMPORT FAILED)", path))
        logging.info("")
