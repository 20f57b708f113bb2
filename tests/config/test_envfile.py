from pathlib import Path

import pytest

from comfyrig.config.envfile import read_env_file
from comfyrig.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_quotes_comments_export_and_lines(tmp_path: Path) -> None:
    env = read_env_file(
        write(
            tmp_path,
            "# settings\n"
            "export COMFYUI_PORT=8189\n"
            'COMFYUI_ARGS="--preview-method auto --highvram"  # trailing comment\n'
            "\n"
            "SINGLE='a b'\n",
        ),
        {},
    )
    assert env.values == {"COMFYUI_PORT": "8189", "COMFYUI_ARGS": "--preview-method auto --highvram", "SINGLE": "a b"}
    assert env.source_of("COMFYUI_PORT") == ".env:2"
    assert env.source_of("SINGLE") == ".env:5"


def test_command_substitution_stays_literal(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    env = read_env_file(write(tmp_path, f"EVIL=$(touch {marker})\nQUOTED=\"`touch {marker}`\"\n"), {})
    assert env.values["EVIL"] == f"$(touch {marker})"
    assert env.values["QUOTED"] == f"`touch {marker}`"
    assert not marker.exists()


def test_variables_expand_like_bash(tmp_path: Path) -> None:
    env = read_env_file(
        write(tmp_path, "BASE=/models\nDOUBLE=\"${BASE}/sd\"\nBARE=${HOME}/x\nSINGLE='${BASE}'\n"), {"HOME": "/home/u"}
    )
    assert env.values["DOUBLE"] == "/models/sd"
    assert env.values["BARE"] == "/home/u/x"
    assert env.values["SINGLE"] == "${BASE}"  # bash leaves single quotes alone


def test_empty_value_is_kept(tmp_path: Path) -> None:
    assert read_env_file(write(tmp_path, "CUDA_VISIBLE_DEVICES=\n"), {}).values == {"CUDA_VISIBLE_DEVICES": ""}


def test_unparseable_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "A=1\nthis is not an assignment\n")
    with pytest.raises(ConfigError) as info:
        read_env_file(path, {})
    assert f"{path}, line 2" in str(info.value)
