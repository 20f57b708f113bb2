"""``comfyrig plan`` end to end: simulated GPUs, sparse models, real exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyrig.cli import main
from tests.comfy.cli_args_versions import cli_args_text
from tests.fit.layouts import (
    blocks_layout,
    flux_layout,
    sdxl_checkpoint_layout,
    t5xxl_layout,
    vae_layout,
    write_sparse_safetensors,
)
from tests.native_checkout import write_native_module

RTX3090 = {"name": "RTX 3090", "memory_total_mib": 24576, "memory_used_mib": 500}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CUDA_VISIBLE_DEVICES", "COMFYUI_DIR", "COMFYUI_ARGS", "COMFYUI_PYTHON"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", json.dumps([RTX3090, RTX3090]))
    return tmp_path


@pytest.fixture
def flux_files(env: Path) -> list[str]:
    files = {"flux1-dev.safetensors": flux_layout(), "t5xxl_fp16.safetensors": t5xxl_layout(), "ae.safetensors": vae_layout()}
    for name, layout in files.items():
        write_sparse_safetensors(env / name, layout)
    return list(files)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_flux_on_two_3090s(flux_files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *flux_files, "--ram", "64")
    assert code == 0, err
    assert "Fits across 2 GPUs with DisTorch2: dual mode" in out
    assert "expert_mode_allocations: cuda:0," in out and ";cuda:1,0.80gb;cpu,*" in out
    assert "virtual_vram_gb 0.8, donor_device cuda:1" in out
    assert "UNETLoaderDisTorch2MultiGPU" in out and "VAELoaderMultiGPU (device cuda:1)" in out
    assert "Launch: comfyrig launch --gpus 0,1" in out
    assert "19 × double_blocks" in out and "38 × single_blocks" in out


def test_json_report(flux_files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *flux_files, "--ram", "64", "--json")
    data: dict[str, Any] = json.loads(out)
    assert code == 0 and data["verdict"] == "multi" and data["mode"] == "dual"
    assert data["launch"] == ["comfyrig", "launch", "--gpus", "0,1"]
    assert data["distorch"][0]["expert_mode_allocations"].endswith(";cpu,*")
    assert [m["layout"] for m in data["models"]] == ["diffusion_model", "text_encoder", "vae"]
    assert data["models"][0]["components"][0]["blocks"][0]["count"] in (19, 38)
    gpu0 = data["devices"][0]
    assert gpu0["device"] == "cuda:0" and gpu0["headroom_bytes"] >= 0
    assert data["reserve"]["family"] == "flux" and data["reserve"]["source"] == "default"
    nodes = {entry["files"]: (entry["node"], entry["inputs"].get("device")) for entry in data["loaders"]}
    assert nodes == {
        "flux1-dev.safetensors": ("UNETLoaderDisTorch2MultiGPU", None),
        "t5xxl_fp16.safetensors": ("CLIPLoaderMultiGPU", "cuda:1"),
        "ae.safetensors": ("VAELoaderMultiGPU", "cuda:1"),
    }


def test_sdxl_on_one_12gb_gpu(env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", json.dumps([{"name": "RTX 3060", "memory_total_mib": 12288, "memory_used_mib": 300}]))
    write_sparse_safetensors(env / "sd_xl_base_1.0.safetensors", sdxl_checkpoint_layout())
    code, out, _ = run(capsys, "sd_xl_base_1.0.safetensors")
    assert code == 0
    assert "Fits on one GPU: single mode on cuda:0 = GPU 0 (RTX 3060)." in out
    assert "Launch: comfyrig launch --single 0" in out


def test_60gb_on_two_3090s_needs_ram(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_sparse_safetensors(env / "big.safetensors", blocks_layout(60 * 10**9))
    code, out, _ = run(capsys, "big.safetensors", "--reserve", "3", "--ram", "64")
    assert code == 0 and "Fits only with system RAM" in out and "slow" in out
    assert "--reserve-vram 1.7" in out
    code, out, _ = run(capsys, "big.safetensors", "--reserve", "3", "--ram", "4")
    assert code == 1 and "Does not fit: short by" in out


def test_workflow_rewrite_writes_a_loadable_file(flux_files: list[str], capsys: pytest.CaptureFixture[str], env: Path) -> None:
    wf = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "t5xxl_fp16.safetensors", "type": "flux"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "fox", "clip": ["2", 0]}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["4", 0]}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["3", 0]}},
    }
    (env / "in.json").write_text(json.dumps(wf))
    code, out, err = run(capsys, *flux_files, "--ram", "64", "--workflow", "in.json", "--write", "out.json")
    assert code == 0, err
    new = json.loads((env / "out.json").read_text())
    assert [new[k]["class_type"] for k in "123"] == ["UNETLoaderDisTorch2MultiGPU", "CLIPLoaderMultiGPU", "VAELoaderMultiGPU"]
    assert {k: new[k] for k in "456"} == {k: wf[k] for k in "456"}
    assert "node 1: UNETLoader -> UNETLoaderDisTorch2MultiGPU" in out and "Wrote out.json" in out


def test_workflow_models_found_in_comfyui_folder(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    comfy = env / "ComfyUI"
    (comfy / "main.py").parent.mkdir()
    (comfy / "main.py").write_text("")
    write_sparse_safetensors(comfy / "models" / "checkpoints" / "sdxl.safetensors", sdxl_checkpoint_layout())
    (env / "wf.json").write_text(json.dumps({"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}}}))
    code, out, err = run(capsys, "--workflow", "wf.json", "--comfyui-dir", str(comfy))
    assert code == 0, err
    assert "Fits on one GPU" in out and "Nothing to rewrite" in out


def test_cpu_mode(flux_files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *flux_files, "--cpu", "--ram", "256")
    assert code == 0 and "Runs on the CPU" in out and "comfyrig launch --cpu" in out


def _assert_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("comfyrig: error: ") and "Traceback" not in err + out
    flat = " ".join(err.split())
    for needle in needles:
        assert needle in flat, flat


def test_bad_inputs_give_one_paragraph_errors(env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "notes.txt").write_text("hello")
    _assert_error(*run(capsys, "notes.txt"), "notes.txt is not a safetensors or GGUF file")
    (env / "trunc.safetensors").write_bytes((500).to_bytes(8, "little") + b'{"a": ')
    _assert_error(*run(capsys, "trunc.safetensors"), "trunc.safetensors is truncated", "file ends at byte 14")
    size = write_sparse_safetensors(env / "short.safetensors", vae_layout())
    with (env / "short.safetensors").open("r+b") as f:
        f.truncate(size - 4096)
    _assert_error(*run(capsys, "short.safetensors"), "short.safetensors", "4,096 missing")
    (env / "empty").mkdir()
    _assert_error(*run(capsys, "empty"), "holds no .safetensors or .gguf file")
    write_sparse_safetensors(env / "ae.safetensors", vae_layout())
    (env / "noloader.json").write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))
    _assert_error(*run(capsys, "ae.safetensors", "--workflow", "noloader.json", "--write", "o.json"), "no loader node")
    _assert_error(*run(capsys, "ae.safetensors", "--write", "o.json"), "--write needs --workflow")
    _assert_error(*run(capsys, "ae.safetensors", "--resolution", "big"), "--resolution 'big'")
    _assert_error(*run(capsys), "Give at least one MODEL")
    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", "[]")
    _assert_error(*run(capsys, "ae.safetensors"), "No GPU to plan for", "--cpu")


def _checkout(root: Path, native: bool, cli_version: str | None = None) -> Path:
    """A ComfyUI folder with (0.24.0 and newer) or without ComfyUI's native multi-GPU nodes,
    and with ``cli_version``'s comfy/cli_args.py when given."""
    root.mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "nodes.py").write_text('EXTRAS = ["nodes_images.py", "nodes_multigpu.py"]\n' if native else "EXTRAS = []\n")
    if native:
        write_native_module(root)
    if cli_version is not None:
        (root / "comfy").mkdir()
        (root / "comfy" / "cli_args.py").write_text(cli_args_text(cli_version))
        (root / "comfyui_version.py").write_text(f'__version__ = "{cli_version}"\n')
    return root


@pytest.mark.parametrize(
    ("version", "comfyui_args", "flag", "says"),
    [
        ("0.3.76", "", "--lowvram", "plain ComfyUI with --lowvram"),
        ("0.24.0", "", None, "ComfyUI 0.24.0 loads models with dynamic VRAM by default"),
        ("0.24.0", "--disable-dynamic-vram", None, "loads partially what does not fit"),
        (None, "", "--lowvram", "only on ComfyUI before 0.16"),
    ],
)
def test_offload_advice_follows_the_checkout(env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              flux_files: list[str], version: str | None, comfyui_args: str,
                                              flag: str | None, says: str) -> None:
    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", json.dumps([RTX3090]))
    monkeypatch.setenv("COMFYUI_ARGS", comfyui_args)
    where = ("--comfyui-dir", str(_checkout(env / "ComfyUI", native=False, cli_version=version))) if version else ()
    code, out, err = run(capsys, *flux_files, "--ram", "64", *where, "--json")
    data: dict[str, Any] = json.loads(out)
    assert code == 0 and data["verdict"] == "offload", err
    assert data["comfyui_flags"] == ([flag] if flag else [])
    assert any(says in r for r in data["reasons"]), data["reasons"]


SDXL_CFG7 = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "fox", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0], "cfg": 7.0}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
}


def test_native_nodes_of_a_0_24_checkout(env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", json.dumps([{**RTX3090, "compute_capability": "8.6"}] * 2))
    comfy = _checkout(env / "ComfyUI", native=True)
    write_sparse_safetensors(env / "sdxl.safetensors", sdxl_checkpoint_layout())
    (env / "in.json").write_text(json.dumps(SDXL_CFG7))
    code, out, err = run(capsys, "sdxl.safetensors", "--workflow", "in.json", "--write", "out.json", "--comfyui-dir", str(comfy))
    assert code == 0, err
    assert "sampling split over 2 identical GPUs (CFG split): dual mode" in out
    assert "sdxl.safetensors: MultiGPU_WorkUnits (max_gpus 2) on the model input of node 3" in out
    assert "node 9: new MultiGPU_WorkUnits (max_gpus=2) between node 4 output 0 and node 3 (KSampler); feeds 3.model" in out
    assert "Launch: comfyrig launch --gpus 0,1" in out and "Loader nodes:" not in out
    new = json.loads((env / "out.json").read_text())
    assert new["9"]["inputs"] == {"model": ["4", 0], "max_gpus": 2} and new["3"]["inputs"]["model"] == ["9", 0]
    code, out, _ = run(capsys, "sdxl.safetensors", "--workflow", "in.json", "--comfyui-dir", str(comfy), "--json")
    data: dict[str, Any] = json.loads(out)
    assert code == 0 and data["native"]["cfg_split"]["max_gpus"] == 2 and data["launch"] == ["comfyrig", "launch", "--gpus", "0,1"]
    assert data["native_nodes"] == [
        {"files": "sdxl.safetensors", "node": "MultiGPU_WorkUnits", "inputs": {"max_gpus": 2}, "where": "on the model input of node 3"}
    ]
    assert data["workflow"]["changes"][0]["action"] == "insert" and data["workflow"]["changes"][0]["links"] == ["3.model"]


def test_checkout_without_native_nodes_keeps_multigpu_loaders(flux_files: list[str], capsys: pytest.CaptureFixture[str], env: Path) -> None:
    comfy = _checkout(env / "ComfyUI", native=False)
    code, out, _ = run(capsys, *flux_files, "--ram", "64", "--comfyui-dir", str(comfy))
    assert code == 0 and "UNETLoaderDisTorch2MultiGPU" in out and "VAELoaderMultiGPU (device cuda:1)" in out
    assert "This ComfyUI has no native multi-GPU nodes" in " ".join(out.split())
    code, out, _ = run(capsys, *flux_files, "--ram", "64", "--json", "--comfyui-dir", str(comfy))
    data = json.loads(out)
    assert data["native"]["nodes"] == [] and not data["native"]["placement"] and data["native_nodes"] == []
