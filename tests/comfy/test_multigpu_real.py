"""Live: the multi-GPU facts of every real ComfyUI checkout configured (tests/real_comfyui.py).

Read from the checkout without starting it (native nodes, the VRAM mode its flags give), then
started through ``comfyrig launch --plain --dual`` on two simulated GPUs with ComfyUI's ``--cpu``
(this machine has no GPU): what it registered and lists is read back, and the verdict comfyrig
prints says which nodes there are and that torch sees the CPU, not the selected GPUs.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from comfyrig.comfy.args import parse_comfy_args
from comfyrig.comfy.checkout import flag_table
from comfyrig.comfy.client import ComfyClient
from comfyrig.comfy.multigpu import NATIVE_NODES, read_checkout
from comfyrig.comfy.vram import vram_facts

from ..conftest import Cli
from ..launching import Launched
from ..real_comfyui import Checkout, real_params, usable

pytestmark = pytest.mark.e2e  # starts real processes

H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559, "compute_capability": "9.0"}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("checkout", real_params())
def test_real_checkout_multigpu_and_vram_facts(checkout: Checkout | None) -> None:
    real = usable(checkout)
    native = version_key(real.version) >= (0, 23)
    found = read_checkout(Path(real.dir), real.version)
    assert found is not None and found.native == native
    table = flag_table(Path(real.dir))
    assert table is not None
    facts = vram_facts(parse_comfy_args([], table), real.version)
    assert facts.mode == ("dynamic" if version_key(real.version) >= (0, 16) else "legacy")
    assert facts.lowvram == ("nothing" if version_key(real.version) >= (0, 22) else "splits")


@pytest.mark.parametrize("checkout", real_params())
def test_real_dual_launch_says_what_uses_the_other_gpu(cli: Cli, tmp_path: Path, checkout: Checkout | None) -> None:
    real = usable(checkout)
    port = free_port()
    env = {**cli.env, "COMFYRIG_FAKE_GPUS": json.dumps([H100, H100]), "COMFYRIG_STATE_DIR": str(tmp_path / "state")}
    argv = ["launch", "--plain", "--dual", "--comfyui-dir", real.dir, "--python", real.python, "--port", str(port),
            "--log-dir", str(tmp_path / "logs"), "--", "--cpu"]
    launched = Launched(argv, env, cli.cwd)
    launched.default_timeout = 180.0
    try:
        launched.wait_for("READY")
        with ComfyClient(f"http://127.0.0.1:{port}", timeout_s=30.0) as client:
            finding = client.multigpu_finding()
        launched.wait_for("/system_stats lists cpu: ComfyUI runs on the CPU although comfyrig selected")
        launched.interrupt()
        assert launched.wait() == 0
    finally:
        launched.kill()
    native = version_key(real.version) >= (0, 23)
    assert finding.version == real.version and [d.type for d in finding.devices or ()] == ["cpu"]
    assert finding.native == (tuple(n.name for n in NATIVE_NODES) if native else ())
    assert finding.device_options == (("default", "cpu") if native else None)  # one torch device: no gpu:N
    if native:
        assert f"ComfyUI {real.version} has native multi-GPU nodes (MultiGPU CFG Split" in launched.text
        assert "CFG split's conditions hold: the GPUs are identical (NVIDIA H100 80GB HBM3" in launched.text
    else:
        assert f"No multi-GPU nodes: ComfyUI {real.version} has no native multi-GPU nodes" in launched.text
