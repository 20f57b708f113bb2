from __future__ import annotations

from pathlib import Path

import httpx

from comfyrig.config.settings import CliOverrides
from comfyrig.doctor.checks_comfyui import (
    check_args,
    check_comfyui_dir,
    check_multigpu,
    check_python,
    check_running,
    check_settings,
    check_version,
    missing_comfy_modules,
)
from tests.comfy.cli_args_versions import cli_args_text
from tests.doctor.conftest import MULTIGPU_263, comfy_tree, fake_python, make_ctx, stats_answer


def test_settings_pass_and_failure(tmp_path: Path) -> None:
    ok = check_settings(make_ctx(tmp_path, CliOverrides(dual=True), {"COMFYUI_PORT": "8190"}))
    assert ok.status == "pass" and ok.message.startswith("Resolved: 1 from the command line, 1 from the environment")
    bad = make_ctx(tmp_path, environ={"COMFYUI_PORT": "eighty"})
    result = check_settings(bad)
    assert result.status == "fail" and "'eighty'" in result.message
    # Everything that needs settings says why it did not run.
    assert check_comfyui_dir(bad).status == "skip" and check_args(bad).status == "skip"


def test_comfyui_dir_missing_and_found(tmp_path: Path) -> None:
    missing = check_comfyui_dir(make_ctx(tmp_path))
    assert missing.status == "fail" and "--comfyui-dir" in (missing.fix or "")
    comfy = comfy_tree(tmp_path / "ComfyUI")
    found = check_comfyui_dir(make_ctx(tmp_path, environ={"COMFYUI_DIR": str(comfy)}))
    assert found.status == "pass" and found.message == f"{comfy} (from env)."


def test_interpreter_found_next_to_comfyui(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    missing = check_python(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy)))
    assert missing.status == "fail" and "refuses" in missing.message and "--python" in (missing.fix or "")
    python = fake_python(comfy, name="python")  # ComfyUI/venv/bin/python
    result = check_python(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy)))
    assert result.status == "pass" and result.message == f"{python} (from derived)."


def test_interpreter_not_executable(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    result = check_python(make_ctx(tmp_path, CliOverrides(python=str(python))))
    assert result.status == "fail" and "not executable" in result.message


def test_version(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    result = check_version(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy)))
    assert (result.status, result.message) == ("pass", "ComfyUI 0.3.76; 18 flags in comfy/cli_args.py.")
    old = comfy_tree(tmp_path / "Old", version=None)
    assert check_version(make_ctx(tmp_path, CliOverrides(comfyui_dir=old))).status == "warn"


def test_args_medvram_is_an_a1111_flag(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    (comfy / ".env").write_text('COMFYUI_ARGS="--lowvram --medvram"\n')
    result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy)))
    assert result.status == "fail"
    assert result.message == (
        "In COMFYUI_ARGS (.env:1): --medvram is an AUTOMATIC1111 flag; ComfyUI has none such and exits with code 2."
    )
    assert result.fix == "Remove --medvram: use --lowvram, or --reserve-vram GB."


def test_args_checked_against_this_comfyui(tmp_path: Path) -> None:
    newer = comfy_tree(tmp_path / "ComfyUI", version="0.4.0", flags=("--lowvram", "--listen", "--port"))
    result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=newer, extra_args=("--normalvram",))))
    assert result.status == "fail"
    assert "ComfyUI 0.4.0 has no --normalvram flag" in result.message and "the flags after --" in result.message


def test_args_without_a_checkout_still_catch_a1111_flags(tmp_path: Path) -> None:
    assert check_args(make_ctx(tmp_path, CliOverrides(comfyui_args="--xformers"))).status == "fail"
    assert check_args(make_ctx(tmp_path, CliOverrides(comfyui_args="--whatever"))).status == "pass"


def test_args_abbreviation_warns(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, comfyui_args="--novr")))
    assert result.status == "warn" and "--novr is taken as --novram" in result.message


def test_cuda_device(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")

    def args(cli: CliOverrides) -> tuple[str, str]:
        result = check_args(make_ctx(tmp_path, cli))
        return result.status, result.message

    status, message = args(CliOverrides(comfyui_dir=comfy, dual=True, comfyui_args="--cuda-device 0"))
    assert status == "fail" and "hiding the other GPUs of dual mode (0,1)" in message
    status, message = args(CliOverrides(comfyui_dir=comfy, single=1, comfyui_args="--cuda-device 0"))
    assert status == "fail" and "use GPU 0, not the selected GPU 1" in message
    # Even one that repeats the selection fails: 'comfyrig launch' refuses every --cuda-device.
    status, message = args(CliOverrides(comfyui_dir=comfy, single=1, comfyui_args="--cuda-device 1"))
    assert status == "fail" and "repeats what the selection already does" in message
    assert args(CliOverrides(comfyui_dir=comfy, single=1, comfyui_args="--cuda-device 0,1"))[0] == "fail"


def test_port_and_listen_in_args_override_settings(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, comfyui_args="--port=8190 --listen")))
    assert result.status == "warn"
    assert "--port 8190 among ComfyUI's flags: 'comfyrig launch' takes it as its own --port" in result.message
    assert "--listen 0.0.0.0,:: among ComfyUI's flags: 'comfyrig launch' takes it as its own --listen" in result.message
    both = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, port="8420", comfyui_args="--port=8190")))
    assert both.status == "fail" and "--port 8190 among ComfyUI's flags and COMFYUI_PORT (8420) disagree" in both.message


def test_multigpu_needs_a_pack_in_dual_mode(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    assert check_multigpu(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, single=0))).status == "skip"
    result = check_multigpu(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, dual=True)))
    assert result.status == "warn"
    assert "only one GPU showing' is expected" in result.message
    assert result.fix is not None and "git clone https://github.com/pollockjj/ComfyUI-MultiGPU" in result.fix


def test_multigpu_too_new_for_this_comfyui(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI", version="0.3.64", packs={"ComfyUI-MultiGPU": MULTIGPU_263})
    assert missing_comfy_modules(comfy / "custom_nodes" / "ComfyUI-MultiGPU", comfy) == ["comfy.memory_management"]
    result = check_multigpu(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, dual=True)))
    assert result.status == "fail"
    assert result.message.startswith(
        "ComfyUI-MultiGPU 2.6.3 imports comfy.memory_management, which ComfyUI 0.3.64 does not have"
    )
    assert "v2.5.11 is known to load in ComfyUI 0.3.76" in (result.fix or "")


def test_multigpu_that_fits(tmp_path: Path) -> None:
    comfy = comfy_tree(
        tmp_path / "ComfyUI", comfy_modules=("model_management", "utils", "memory_management"),
        packs={"comfyui_multigpu": MULTIGPU_263},
    )
    result = check_multigpu(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, gpus="1,0")))
    assert result.status == "pass"
    assert result.message.startswith("comfyui_multigpu 2.6.3 in custom_nodes; every comfy module it imports exists here.")
    assert "numbered after CUDA_VISIBLE_DEVICES=1,0" in result.message


def test_multigpu_disabled(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI", packs={"ComfyUI-MultiGPU.disabled": MULTIGPU_263})
    result = check_multigpu(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, dual=True)))
    assert result.status == "warn" and "ComfyUI-MultiGPU.disabled is disabled" in result.message


def test_running_instance(tmp_path: Path) -> None:
    up = check_running(make_ctx(tmp_path, http=stats_answer))
    assert up.status == "pass"
    assert up.message == (
        "ComfyUI 0.3.76 answers at http://127.0.0.1:8188 (torch 2.9.1+cu128, device cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync)."
    )
    down = check_running(make_ctx(tmp_path))
    assert (down.status, down.message) == ("pass", "No ComfyUI answers at http://127.0.0.1:8188 (none running there).")
    other = check_running(make_ctx(tmp_path, http=lambda r: httpx.Response(200, text="<html>jupyter</html>")))
    assert other.status == "warn" and "not as ComfyUI" in other.message


def test_running_probe_uses_the_configured_address(tmp_path: Path) -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return stats_answer(request)

    make_ctx(tmp_path, CliOverrides(port="8190", listen="0.0.0.0", single=0), http=record)
    assert seen == ["http://127.0.0.1:8190/system_stats"]
    # In dual/multi mode doctor also reads which multi-GPU nodes it registered.
    seen.clear()
    make_ctx(tmp_path, CliOverrides(port="8190", dual=True), http=record)
    assert seen == ["http://127.0.0.1:8190/system_stats", "http://127.0.0.1:8190/object_info"]


def test_manager_flag_missing_in_an_older_comfyui(tmp_path: Path) -> None:
    old = comfy_tree(tmp_path / "ComfyUI", version="0.3.64", flags=("--listen", "--port", "--lowvram"))
    result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=old, enable_manager=True)))
    assert result.status == "warn"
    assert result.message == (
        "ENABLE_COMFYUI_MANAGER is on, but ComfyUI 0.3.64 has no --enable-manager (it came with 0.3.76), "
        "so comfyrig leaves it out."
    )
    new = comfy_tree(tmp_path / "New")
    assert check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=new, enable_manager=True))).status == "pass"


def test_cuda_device_in_every_form(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    for given in ("--cuda-device=1", "--cuda-dev 1", "--cuda-device 0 --cuda-device 1"):
        result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, single=0, comfyui_args=given)))
        assert result.status == "fail" and "--cuda-device 1 makes ComfyUI use GPU 1, not the selected GPU 0" in result.message, given


def test_cuda_device_takes_a_list_since_0_24(tmp_path: Path) -> None:
    new = tmp_path / "ComfyUI"
    comfy_tree(new, version="0.24.0")
    (new / "comfy" / "cli_args.py").write_text(cli_args_text("0.24.0"))

    def args(cli: CliOverrides) -> tuple[str, str]:
        result = check_args(make_ctx(tmp_path, cli))
        return result.status, result.message

    status, message = args(CliOverrides(comfyui_dir=new, dual=True, comfyui_args="--cuda-device 0,1"))
    assert status == "fail" and "--cuda-device 0,1 repeats what the selection already does" in message
    status, message = args(CliOverrides(comfyui_dir=new, dual=True, comfyui_args="--cuda-device 1,0"))
    assert status == "fail" and "makes ComfyUI use GPUs 1,0, not the selected 0,1" in message
    status, message = args(CliOverrides(comfyui_dir=new, dual=True, comfyui_args="--cuda-device 0"))
    assert status == "fail" and "hiding the other GPUs of dual mode (0,1)" in message
    status, message = args(CliOverrides(comfyui_dir=new, single=0, comfyui_args="--cuda-device gpu0"))
    assert status == "fail" and "takes GPU numbers separated by commas there" in message


def test_args_that_make_comfyui_exit_2(tmp_path: Path) -> None:
    new = tmp_path / "ComfyUI"
    comfy_tree(new, version="0.24.0")
    (new / "comfy" / "cli_args.py").write_text(cli_args_text("0.24.0"))

    def args(given: str, **cli: object) -> tuple[str, str, str | None]:
        result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=new, comfyui_args=given, **cli)))  # type: ignore[arg-type]
        return result.status, result.message, result.fix

    status, message, fix = args("--fas")
    assert status == "fail" and message == (
        "In --comfyui-args: --fas could mean --fast, --fast-disk; argparse refuses an ambiguous abbreviation, "
        "so it would exit with code 2."
    ) and fix == "Write the flag in full."
    status, message, fix = args("--lowvram", cpu=True)
    assert status == "fail" and "--cpu and --lowvram exclude each other (ComfyUI takes only one of them): it would exit" in message
    assert fix == "comfyrig adds --cpu in CPU mode: remove --lowvram, or choose GPUs."
    status, message, _ = args("--reserve-vram")
    assert status == "fail" and "--reserve-vram needs a value and is the last argument: it would exit with code 2" in message
    status, message, _ = args("--highvram=yes extra")
    assert status == "fail" and "--highvram takes no value" in message and "'extra' is not a flag" in message
    assert args("--low --reserve-vram=-1 --listen")[0] == "warn"  # an abbreviation, and --listen overrides COMFYUI_LISTEN


def test_args_vram_flags_follow_the_version(tmp_path: Path) -> None:
    new = comfy_tree(tmp_path / "ComfyUI", version="0.24.0", flags=None, cli_version="0.24.0")
    (new / ".env").write_text('COMFYUI_ARGS="--lowvram --normalvram --medvram"\n')
    result = check_args(make_ctx(tmp_path, CliOverrides(comfyui_dir=new, single=0)))
    assert result.status == "fail"
    assert "--normalvram flag (ComfyUI removed it in 0.22; normal VRAM use is the default)" in result.message
    assert "--lowvram does nothing in ComfyUI 0.24.0: it loads models with dynamic VRAM by default" in result.message
    assert result.fix is not None
    assert "Remove --medvram: use --reserve-vram GB, if anything: ComfyUI 0.24.0 manages VRAM dynamically" in result.fix
    assert "use --lowvram" not in result.fix
