"""``comfyrig --workers --ray``: the errors a user meets before any actor starts, one paragraph each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import Cli

pytestmark = pytest.mark.e2e  # runs the command


def test_ray_needs_workers_and_the_gateway(cli: Cli) -> None:
    for args in (["--ray", "auto"], ["--workers", "--no-gateway", "--ray", "auto"]):
        done = cli("launch", *args)
        assert done.returncode != 0 and "--ray" in done.stderr and "--workers" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_ray_refuses_local_gpu_selection(cli: Cli) -> None:
    done = cli("--workers", "--ray", "auto", "--gpus", "0,1")
    assert done.returncode != 0 and "GPU and CPU selection" in done.stderr and "Traceback" not in done.stderr


def test_without_ray_installed_it_names_the_extra(cli: Cli, tmp_path: Path) -> None:
    probe = ("import sys; sys.modules['ray'] = None; from comfyrig.cli import main; "
             "sys.exit(main(['--workers', '--ray', 'auto', '--dry-run']))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=cli.env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0 and "pip install 'comfyrig[ray]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_address_where_nothing_answers_is_said_at_once(cli: Cli) -> None:
    pytest.importorskip("ray")
    done = cli("--workers", "--ray", "127.0.0.1:1", "--dry-run", timeout=30)
    assert done.returncode != 0 and "Nothing answers at 127.0.0.1:1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_max_workers_needs_ray(cli: Cli) -> None:
    done = cli("--workers", "--max-workers", "2")
    assert done.returncode != 0 and "--max-workers" in done.stderr and "--ray" in done.stderr


def test_status_lists_the_ray_workers_with_their_node() -> None:
    import io

    from rich.console import Console

    from comfyrig.cli.status_cmd import _print_ray

    console = Console(file=io.StringIO(), width=160, color_system=None)
    _print_ray(console, {"url": "http://127.0.0.1:8188", "pid": 1, "ray": "10.0.0.1:6379", "answering": True, "workers": [
        {"name": "ray-0", "node": "head 10.0.0.1 aaaaaaaaaaaa", "url": "http://127.0.0.1:40001", "live": True,
         "in_flight": 1, "completed": 7, "failed": 0},
        {"name": "ray-1.1", "node": "gpu2 10.0.0.3 bbbbbbbbbbbb", "url": "http://10.0.0.3:40002", "live": False,
         "in_flight": 0, "completed": 2, "failed": 1}]})
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Workers on the Ray cluster 10.0.0.1:6379 behind http://127.0.0.1:8188" in text
    assert "gpu2 10.0.0.3 bbbbbbbbbbbb" in text and "ray-1.1" in text


@pytest.mark.parametrize(("flags", "restart"), [((), "on-failure"), (("--restart", "no"), "no"),
                                                (("--restart", "always"), "always")])
def test_launchs_supervision_flags_reach_every_ray_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          flags: tuple[str, ...], restart: str) -> None:
    """--restart, --ready-timeout, --hang-timeout, --stop-timeout, --restart-delay and --log-dir
    apply to the workers on the cluster as to local ones (on-failure by default there: nobody
    watches a cluster's consoles)."""
    from comfyrig.cli import main, ray_launch

    seen: dict[str, object] = {}
    monkeypatch.setattr(ray_launch, "run_ray_workers", lambda settings, address, console, **kw: seen.update(kw) or 0)
    monkeypatch.setenv("COMFYRIG_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "main.py").write_text("")
    code = main(["--workers", "--ray", "auto", "--comfyui-dir", str(tmp_path), "--python", sys.executable, "--ready-timeout", "42",
                 "--hang-timeout", "7", "--stop-timeout", "3", "--restart-delay", "2", "--log-dir", str(tmp_path / "logs"),
                 *flags])
    assert code == 0
    sup = seen["supervisor"]
    assert (sup.restart, sup.ready_timeout_s, sup.hang_timeout_s, sup.stop_timeout_s, sup.restart_delay_s) == (  # type: ignore[attr-defined]
        restart, 42.0, 7.0, 3.0, 2.0)
    assert seen["log_dir"] == tmp_path / "logs"
