from __future__ import annotations

from pathlib import Path

from comfyrig.config.settings import CliOverrides
from comfyrig.doctor.checks_comfyui import check_settings
from comfyrig.doctor.checks_env import check_env_file, check_env_keys, check_env_pytorch
from comfyrig.doctor.envscan import scan_env_file
from tests.doctor.conftest import comfy_tree, fake_python, make_ctx

SEED_STYLE = """\
# ComfyUI Environment Configuration
CUDA_VISIBLE_DEVICES=0,1
COMFY_PORT=8188
export HF_HOME=/data/hf
PYTORCH_CUDA_ALLOCATOR=accumulating
"""


def test_no_env_file_is_fine(tmp_path: Path) -> None:
    result = check_env_file(make_ctx(tmp_path))
    assert result.status == "pass" and result.message == f"No .env (looked for {tmp_path / '.env'}); it is optional."


def test_env_file_in_comfyui_dir_comes_first(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    (comfy / ".env").write_text("COMFYUI_PORT=8190\n")
    (tmp_path / ".env").write_text("COMFYUI_PORT=9999\n")
    result = check_env_file(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy)))
    assert result.message == f"{comfy / '.env'}: 1 variables, every line parsed."


def test_every_bad_line_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GOOD=1\nthis is not an assignment\nCOMFYUI_ARGS=\"--lowvram\nOK=2\n")
    scan = scan_env_file(tmp_path / ".env")
    assert [line for line, _ in scan.errors] == [2, 3]
    ctx = make_ctx(tmp_path)
    result = check_env_file(ctx)
    assert result.status == "fail"
    assert f"{tmp_path / '.env'} has lines that cannot be parsed (line 2: 'this is not an assignment'; line 3:" in result.message
    # comfyrig itself refuses such a file, and the doctor says so once more under config.settings.
    assert check_settings(ctx).status == "fail"


def test_a_bare_name_is_a_bad_line_and_a_utf16_file_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GOOD=1\nCOMFYUI_PORT\n")
    assert [line for line, _ in scan_env_file(tmp_path / ".env").errors] == [2]
    (tmp_path / ".env").write_bytes("GOOD=1\n".encode("utf-16"))
    result = check_env_file(make_ctx(tmp_path))
    assert result.status == "fail" and "is UTF-16 text; save it as UTF-8" in result.message


def test_explicit_env_file_missing(tmp_path: Path) -> None:
    result = check_env_file(make_ctx(tmp_path, CliOverrides(env_file=Path("prod.env"))))
    assert result.status == "fail" and result.message == f"--env-file {tmp_path / 'prod.env'}: no such file."


def test_typo_keys_suggest_the_known_one(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(SEED_STYLE)
    result = check_env_keys(make_ctx(tmp_path, environ={"COMFYUI_PROT": "1", "COMFYUI_PORT": "8188"}))
    assert result.status == "warn"
    assert f"COMFY_PORT ({tmp_path / '.env'}, line 3): did you mean COMFYUI_PORT?" in result.message
    assert "COMFYUI_PROT (your environment): did you mean COMFYUI_PORT?" in result.message
    assert "HF_HOME" not in result.message  # an ordinary variable for ComfyUI, not a typo


def test_passthrough_keys_are_listed(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HF_HOME=/data/hf\nCOMFYUI_PORT=8188\n")
    result = check_env_keys(make_ctx(tmp_path))
    assert result.status == "pass" and result.message.endswith("Passed on to ComfyUI unchanged: HF_HOME.")


def test_pytorch_variable_that_torch_does_not_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(SEED_STYLE)
    result = check_env_pytorch(make_ctx(tmp_path))
    assert result.status == "warn"
    assert result.message == (
        f"PyTorch does not read PYTORCH_CUDA_ALLOCATOR ({tmp_path / '.env'}, line 5); did you mean PYTORCH_CUDA_ALLOC_CONF?."
    )


def test_alloc_conf_overrides_comfyuis_cuda_malloc(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PYTORCH_ALLOC_CONF=expandable_segments:True\n")
    result = check_env_pytorch(make_ctx(tmp_path))
    assert result.status == "warn"
    assert "torch ignores PYTORCH_CUDA_ALLOC_CONF whenever PYTORCH_ALLOC_CONF is set" in result.message
    assert "--disable-cuda-malloc" in (result.fix or "")
    # Said explicitly, the choice is the user's.
    explicit = make_ctx(tmp_path, CliOverrides(comfyui_args="--disable-cuda-malloc"))
    assert check_env_pytorch(explicit).status == "pass"
    with_backend = make_ctx(tmp_path, environ={"PYTORCH_ALLOC_CONF": "backend:native,expandable_segments:True"})
    assert check_env_pytorch(with_backend).status == "pass"


def test_alloc_conf_on_an_older_torch_has_no_effect(tmp_path: Path) -> None:
    python = fake_python(tmp_path, {"python": "3.11", "torch_version": "2.8.0+cu128", "cuda_version": "12.8"})
    ctx = make_ctx(tmp_path, CliOverrides(python=str(python)), {"PYTORCH_ALLOC_CONF": "expandable_segments:True"}, torch=True)
    result = check_env_pytorch(ctx)
    assert result.status == "warn" and "has no effect: torch 2.8.0+cu128 reads only PYTORCH_CUDA_ALLOC_CONF" in result.message


def test_known_pytorch_variables_pass(tmp_path: Path) -> None:
    environ = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "PYTORCH_TUNABLEOP_ENABLED": "1"}
    assert check_env_pytorch(make_ctx(tmp_path, environ=environ)).status == "pass"
