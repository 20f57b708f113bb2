"""The curated public API: every name in comfyrig.__all__ exists, and nothing private leaks in."""

import pytest

import comfyrig


def test_all_names_exist_and_are_public() -> None:
    assert len(set(comfyrig.__all__)) == len(comfyrig.__all__)
    for name in comfyrig.__all__:
        assert hasattr(comfyrig, name), name
        assert not name.startswith("_") or name == "__version__"


@pytest.mark.e2e
def test_importing_comfyrig_does_not_import_torch_or_httpx() -> None:
    import subprocess
    import sys

    code = "import sys, comfyrig; print([m for m in ('torch', 'httpx', 'websockets') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.e2e
def test_every_public_name_has_a_home_and_loads_on_first_use() -> None:
    assert set(comfyrig.__all__) == {*comfyrig._EXPORTS, "__version__"}
    import subprocess
    import sys

    code = (
        "import sys, comfyrig\n"
        "before = sorted(m for m in sys.modules if m.startswith(('comfyrig.', 'dotenv', 'typer', 'rich')))\n"
        "comfyrig.Settings\n"
        "print(before, 'comfyrig.config.settings' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True"
