import re
from pathlib import Path

import pytest

from comfyrig.config.modes import GpuRequest
from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.errors import ComfyUINotFoundError, ConfigError
from comfyrig.secrets import mask_value


def resolve(tmp_path: Path, cli: CliOverrides | None = None, environ: dict[str, str] | None = None, dotenv: str | None = None):  # type: ignore[no-untyped-def]
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return resolve_settings(cli or CliOverrides(), environ or {}, tmp_path)


def test_defaults(tmp_path: Path) -> None:
    s = resolve(tmp_path)
    assert (s.port.value, s.port.source) == (8188, "default")
    assert (s.listen.value, s.listen.source) == ("127.0.0.1", "default")
    assert s.gpu_request.value == GpuRequest("auto")
    assert s.comfyui_dir.value is None and s.env_file is None


def test_precedence_cli_env_dotenv_default(tmp_path: Path) -> None:
    dotenv = "COMFYUI_PORT=8001\nCOMFYUI_LISTEN=127.0.0.2\nCOMFYUI_ARGS=--lowvram\n"
    s = resolve(tmp_path, CliOverrides(port="8003"), {"COMFYUI_PORT": "8002", "COMFYUI_LISTEN": "127.0.0.3"}, dotenv)
    assert (s.port.value, s.port.source) == (8003, "cli")
    assert (s.listen.value, s.listen.source) == ("127.0.0.3", "env")
    assert (s.comfyui_args.value, s.comfyui_args.source) == (("--lowvram",), ".env:3")
    s = resolve(tmp_path, environ={"COMFYUI_PORT": "8002"})
    assert (s.port.value, s.port.source) == (8002, "env")


def test_cuda_visible_devices_selects_gpus(tmp_path: Path) -> None:
    s = resolve(tmp_path, dotenv="CUDA_VISIBLE_DEVICES=1,0\n")
    assert s.gpu_request.value == GpuRequest("visible", ("1", "0")) and s.gpu_request.source == ".env:1"
    s = resolve(tmp_path, environ={"CUDA_VISIBLE_DEVICES": ""}, dotenv="CUDA_VISIBLE_DEVICES=0,1\n")
    assert s.gpu_request.value == GpuRequest("visible", ()) and s.gpu_request.source == "env"
    s = resolve(tmp_path, CliOverrides(dual=True), dotenv="CUDA_VISIBLE_DEVICES=0\n")
    assert s.gpu_request.value == GpuRequest("dual") and s.gpu_request.source == "cli"


def test_two_modes_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--dual and --single"):
        resolve(tmp_path, CliOverrides(dual=True, single=1))


@pytest.mark.parametrize("port", ["0", "65536", "-5", "http", "80.5"])
def test_bad_port(tmp_path: Path, port: str) -> None:
    with pytest.raises(ConfigError, match="1 to 65535"):
        resolve(tmp_path, CliOverrides(port=port))


def test_bad_port_in_dotenv_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"COMFYUI_PORT in .env \(line 2\)"):
        resolve(tmp_path, dotenv="A=1\nCOMFYUI_PORT=eighty\n")


def test_port_auto(tmp_path: Path) -> None:
    assert resolve(tmp_path, CliOverrides(port="auto")).port.value == "auto"


def test_comfyui_args_shlex_no_shell(tmp_path: Path) -> None:
    s = resolve(tmp_path, dotenv="COMFYUI_ARGS=\"--preview-method auto --output-directory '/data/my out'\"\n")
    assert s.comfyui_args.value == ("--preview-method", "auto", "--output-directory", "/data/my out")


def test_unbalanced_quotes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--comfyui-args cannot be split"):
        resolve(tmp_path, CliOverrides(comfyui_args="--output-directory 'oops"))


def test_passthrough_and_masking(tmp_path: Path) -> None:
    s = resolve(tmp_path, dotenv="HF_TOKEN=hf_secret\nMY_VAR=1\nPYTORCH_CUDA_ALLOC_CONF=expandable_segments:True\n")
    assert set(s.passthrough) == {"HF_TOKEN", "MY_VAR"}
    table = s.table()
    assert table["HF_TOKEN"].value == "****" and table["HF_TOKEN"].source == ".env:1"
    assert table["MY_VAR"].value == "1"
    assert s.pytorch_cuda_alloc_conf.value == "expandable_segments:True"
    assert mask_value("API_KEY", "x") == "****" and mask_value("PORT", "x") == "x"


def test_comfyui_dir_and_its_dotenv(tmp_path: Path, comfy_tree: Path) -> None:
    (comfy_tree / ".env").write_text("COMFYUI_PORT=9000\n")
    (tmp_path / ".env").write_text("COMFYUI_PORT=9999\n")
    s = resolve_settings(CliOverrides(comfyui_dir=comfy_tree), {}, tmp_path)
    assert s.env_file == comfy_tree / ".env" and s.port.value == 9000
    assert s.comfyui_dir.value == comfy_tree.resolve()


def test_cwd_with_main_py_is_comfyui(comfy_tree: Path) -> None:
    s = resolve_settings(CliOverrides(), {}, comfy_tree)
    assert s.comfyui_dir.value == comfy_tree and s.comfyui_dir.source == "derived"


def test_comfyui_dir_without_main_py(tmp_path: Path) -> None:
    with pytest.raises(ComfyUINotFoundError, match=re.escape("has no main.py")):
        resolve(tmp_path, CliOverrides(comfyui_dir=tmp_path))
    with pytest.raises(ComfyUINotFoundError, match="does not exist"):
        resolve(tmp_path, environ={"COMFYUI_DIR": str(tmp_path / "nope")})


def test_python_lookup(tmp_path: Path, comfy_tree: Path) -> None:
    venv_python = comfy_tree / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    venv_python.chmod(0o755)  # a non-executable file is no interpreter
    s = resolve_settings(CliOverrides(comfyui_dir=comfy_tree), {}, tmp_path)
    assert s.python.value == str(venv_python) and s.python.source == "derived"
    with pytest.raises(ComfyUINotFoundError, match="does not exist"):
        resolve(tmp_path, CliOverrides(python=str(tmp_path / "python9")))


def test_env_file_flag(tmp_path: Path) -> None:
    other = tmp_path / "prod.env"
    other.write_text("COMFYUI_PORT=7000\n")
    assert resolve(tmp_path, CliOverrides(env_file=other)).port.value == 7000
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(tmp_path, CliOverrides(env_file=tmp_path / "missing.env"))


def test_enable_manager_parsing(tmp_path: Path) -> None:
    assert resolve(tmp_path, dotenv="ENABLE_COMFYUI_MANAGER=true\n").enable_manager.value is True
    with pytest.raises(ConfigError, match="true or false"):
        resolve(tmp_path, dotenv="ENABLE_COMFYUI_MANAGER=maybe\n")
