"""Directories of the fake, resolved like ComfyUI's folder_paths.py.

Defaults live beside this file (the "checkout"); --base-directory moves all of them,
--output-directory / --input-directory / --user-directory / --temp-directory move one.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Optional, Tuple

base_path = output_directory = input_directory = temp_directory = user_directory = custom_nodes_directory = ""
models_dir = ""
# ComfyUI's supported_pt_extensions: the files a model folder lists.
supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


def _set_base(path: str) -> None:
    global base_path, output_directory, input_directory, temp_directory, user_directory, custom_nodes_directory
    global models_dir
    base_path = path
    models_dir = os.path.join(path, "models")
    output_directory = os.path.join(path, "output")
    input_directory = os.path.join(path, "input")
    temp_directory = os.path.join(path, "temp")
    user_directory = os.path.join(path, "user")
    custom_nodes_directory = os.path.join(path, "custom_nodes")


_set_base(os.path.dirname(os.path.realpath(__file__)))


def apply_base_directory(args) -> None:
    """At import time in ComfyUI: --base-directory resets every default."""
    if args.base_directory:
        _set_base(os.path.abspath(args.base_directory))


def apply_custom_paths(args) -> None:
    """main.py's apply_custom_paths(): the per-directory overrides, with their log lines."""
    global output_directory, input_directory, user_directory
    if args.output_directory:
        output_directory = os.path.abspath(args.output_directory)
        logging.info(f"Setting output directory to: {output_directory}")
    if args.input_directory:
        input_directory = os.path.abspath(args.input_directory)
        logging.info(f"Setting input directory to: {input_directory}")
    if args.user_directory:
        user_directory = os.path.abspath(args.user_directory)
        logging.info(f"Setting user directory to: {user_directory}")


def get_filename_list(folder_name: str) -> list:
    """The model files of one folder under models/ (sub-folders included, '/'-separated), sorted,
    as ComfyUI lists them in a loader's options; no folder, no files."""
    root = os.path.join(models_dir, folder_name)
    found = []
    for dirpath, _, files in os.walk(root, followlinks=True):
        for name in files:
            if os.path.splitext(name)[1].lower() in supported_pt_extensions:
                found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found)


def set_temp_directory(path: str) -> None:
    global temp_directory
    temp_directory = path


def get_directory_by_type(type_name: str) -> Optional[str]:
    return {"output": output_directory, "temp": temp_directory, "input": input_directory}.get(type_name)


def annotated_filepath(name: str) -> Tuple[str, Optional[str]]:
    """'x.png [output]' -> ('x.png', output dir); a name without a suffix -> (name, None)."""
    for suffix, directory in ((" [output]", output_directory), (" [input]", input_directory), (" [temp]", temp_directory)):
        if name.endswith(suffix.strip()):
            return name[: -len(suffix)], directory
    return name, None


def get_annotated_filepath(name: str, default_dir: Optional[str] = None) -> str:
    """'x.png [output]' -> the output dir's x.png; no suffix -> default_dir or the input dir."""
    name, directory = annotated_filepath(name)
    return os.path.join(directory or default_dir or input_directory, name)


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0):
    """ComfyUI's naming: PREFIX_00001_.png, the counter one past the highest already in the folder.

    Returns (full_output_folder, filename, counter, subfolder, filename_prefix). Raises when the
    prefix points outside output_dir, as the real function does.
    """
    if "%" in filename_prefix:
        now = time.localtime()
        for key, value in (("%width%", image_width), ("%height%", image_height), ("%year%", now.tm_year),
                           ("%month%", f"{now.tm_mon:02}"), ("%day%", f"{now.tm_mday:02}"),
                           ("%hour%", f"{now.tm_hour:02}"), ("%minute%", f"{now.tm_min:02}"),
                           ("%second%", f"{now.tm_sec:02}")):
            filename_prefix = filename_prefix.replace(key, str(value))

    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        err = ("**** ERROR: Saving image outside the output folder is not allowed."
               f"\n full_output_folder: {os.path.abspath(full_output_folder)}\n         output_dir: {output_dir}")
        logging.error(err)
        raise Exception(err)

    prefix = filename + "_"

    def counter_of(existing: str) -> int:
        """'PREFIX_00012_.png' -> 12; a file of another prefix -> 0."""
        if not existing.startswith(prefix):
            return 0
        number = existing[len(prefix):].split("_")[0]
        return int(number) if number.isdigit() else 0

    try:
        counter = max([counter_of(f) for f in os.listdir(full_output_folder)] or [0]) + 1
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        counter = 1
    return full_output_folder, filename, counter, subfolder, filename_prefix
