"""Fake ComfyUI trees, fake interpreters and a gather() with every probe replaced."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from comfyrig.config.settings import CliOverrides
from comfyrig.doctor.context import DoctorContext, Probes, gather
from comfyrig.doctor.result import CheckResult
from comfyrig.host.gpus.inventory import Inventory
from comfyrig.host.gpus.simulated import parse_simulated
from comfyrig.host.ports import PortHolder
from tests.comfy.cli_args_versions import cli_args_text
from tests.conftest import TWO_3090
from tests.native_checkout import write_native_module

FLAGS_0376 = (
    "--listen", "--port", "--enable-cors-header", "--cuda-device", "--cuda-malloc", "--disable-cuda-malloc",
    "--normalvram", "--lowvram", "--novram", "--highvram", "--gpu-only", "--cpu", "--reserve-vram",
    "--disable-smart-memory", "--preview-method", "--enable-manager", "--force-fp32", "--fp32-vae",
)


def comfy_tree(
    root: Path,
    *,
    version: str | None = "0.3.76",
    flags: Sequence[str] | None = FLAGS_0376,
    comfy_modules: Sequence[str] = ("model_management", "utils", "sd"),
    packs: Mapping[str, Mapping[str, str]] | None = None,
    native: bool = False,
    cli_version: str = "0.3.76",
) -> Path:
    """A ComfyUI checkout as far as comfyrig reads one; ``packs`` maps custom_nodes folder -> files.

    Its cli_args.py has ``flags`` (all of that version's with ``flags=None``), shaped as in ComfyUI
    ``cli_version`` (``--port`` takes a value, ...). ``native``: it has ComfyUI's own multi-GPU
    nodes (comfy_extras/nodes_multigpu.py, loaded by nodes.py), as 0.23+ does.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# ComfyUI\n")
    extras = ['"nodes_images.py",', *(['"nodes_multigpu.py",'] if native else [])]
    (root / "nodes.py").write_text("def init_builtin_extra_nodes():\n    extras_files = [\n        " + "\n        ".join(extras) + "\n    ]\n")
    if native:
        write_native_module(root)
    if version is not None:
        (root / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
    (root / "comfy").mkdir(exist_ok=True)
    (root / "comfy" / "cli_args.py").write_text(cli_args_text(cli_version, only=flags))
    for module in comfy_modules:
        (root / "comfy" / f"{module}.py").write_text("")
    (root / "custom_nodes").mkdir(exist_ok=True)
    for folder, files in (packs or {}).items():
        pack = root / "custom_nodes" / folder
        pack.mkdir(parents=True)
        for name, text in files.items():
            (pack / name).write_text(text)
    return root


MULTIGPU_263 = {
    "pyproject.toml": '[project]\nname = "comfyui-multigpu"\nversion = "2.6.3"\n',
    "__init__.py": "import torch\nimport comfy.model_management\nimport comfy.memory_management\n"
    "from comfy.utils import load_torch_file\n\ndef later():\n    import comfy.not_at_import_time\n",
}


def fake_python(tmp_path: Path, answer: Mapping[str, Any] | None = None, *, name: str = "python") -> Path:
    """An executable that answers the torch check like a real interpreter would, in milliseconds.

    Without ``answer`` it plays a CUDA torch that sees exactly the GPUs in
    CUDA_VISIBLE_DEVICES, and echoes the variables it got.
    """
    path = tmp_path / "venv" / "bin" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fixed = json.dumps(answer) if answer is not None else "null"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os\n"
        f"answer = json.loads({fixed!r})\n"
        "if answer is None:\n"
        "    cvd = os.environ.get('CUDA_VISIBLE_DEVICES', '')\n"
        "    names = [n for n in cvd.split(',') if n]\n"
        "    answer = {'python': '3.12.3', 'torch_version': '2.9.1+cu128', 'cuda_version': '12.8',\n"
        "              'cuda_available': bool(names), 'device_count': len(names),\n"
        "              'devices': [{'name': 'NVIDIA GeForce RTX 3090', 'memory_total_mib': 24576, 'uuid': ''} for _ in names]}\n"
        "answer['seen_env'] = {k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER', 'PYTORCH_ALLOC_CONF')}\n"
        "print('some log line')\n"
        "print('COMFYRIG_TORCH ' + json.dumps(answer))\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def inventory(data: Any = None) -> Inventory:
    return parse_simulated(json.loads(json.dumps(TWO_3090 if data is None else data)))


def stats_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"system": {"comfyui_version": "0.3.76", "pytorch_version": "2.9.1+cu128"},
                                     "devices": [{"name": "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync"}]})


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("Connection refused", request=request)


def make_ctx(
    cwd: Path,
    cli: CliOverrides | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    inv: Inventory | Callable[[str | None], Inventory] | None = None,
    torch: bool | None = False,
    port_free: bool = True,
    holder: PortHolder | None = None,
    http: Callable[[httpx.Request], httpx.Response] = refused,
) -> DoctorContext:
    """gather() on a simulated machine; nothing real is probed except running the fake interpreter."""
    cwd.mkdir(parents=True, exist_ok=True)
    fixed = inv if isinstance(inv, Inventory) else inventory()
    probe = inv if callable(inv) else (lambda _fake: fixed)
    probes = Probes(
        inventory=probe,
        port_is_free=lambda port, host: port_free,
        who_holds=lambda port: holder,
        http_client=lambda url: httpx.Client(transport=httpx.MockTransport(http)),
    )
    return gather(cli or CliOverrides(), dict(environ or {}), cwd, torch=torch, probes=probes)


def by_id(results: Sequence[CheckResult], check_id: str) -> CheckResult:
    return next(r for r in results if r.id == check_id)
