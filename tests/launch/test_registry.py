"""The instance registry: private, never written through a link, never trusting a stranger."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from comfyrig.errors import StateDirError
from comfyrig.host.processes import cmdline, start_time
from comfyrig.launch.registry import InstanceRecord, StateDir, state_dir


def record(port: int = 8188, **changes: object) -> InstanceRecord:
    me = os.getpid()
    fields: dict[str, object] = {
        "name": "comfyui", "port": port, "url": f"http://127.0.0.1:{port}", "pid": me, "pgid": os.getpgid(me), "argv": cmdline(me) or [],
        "cwd": None, "cuda_visible_devices": "0", "mode": "single", "log_file": None, "supervisor_pid": me, "started_at": 0.0,
        "start_ticks": start_time(me),
    }
    fields.update(changes)
    return InstanceRecord(**fields)  # type: ignore[arg-type]


def test_the_folder_is_created_private(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.write(record())
    for path in (state.root, state.instances):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((state.instances / "8188.json").stat().st_mode) == 0o600
    assert [r.port for r in state.records()] == [8188]


def test_a_folder_others_can_write_to_is_refused(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.write(record())
    state.instances.chmod(0o777)
    with pytest.raises(StateDirError, match="can be written by other users"):
        state.records()
    with pytest.raises(StateDirError):
        state.write(record(port=8189))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    with pytest.raises(StateDirError, match="belongs to another user"):
        StateDir(root).write(record())


def test_a_planted_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.write(record(port=9000))  # makes the folder
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = state.instances / "8188.json"
    link.symlink_to(victim)
    assert [r.port for r in state.records()] == [9000]  # a record behind a link is not believed
    state.write(record())
    assert victim.read_text() == "precious" and not link.is_symlink()
    assert json.loads(link.read_text())["port"] == 8188


def test_the_folder_itself_as_a_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    with pytest.raises(StateDirError, match="is not a folder"):
        StateDir(tmp_path / "state").write(record())


@pytest.mark.parametrize(
    ("changes", "believed"),
    [({}, True), ({"start_ticks": 1}, False), ({"pgid": 1}, False), ({"argv": ["python", "main.py"]}, False),
     ({"pid": 2**22 + 11}, False)],
)
def test_a_record_is_believed_only_for_the_very_process(changes: dict[str, object], believed: bool) -> None:
    assert record(**changes).matches_process() is believed


def test_without_home_the_registry_is_in_the_users_real_home_never_in_tmp() -> None:
    assert state_dir({"COMFYRIG_STATE_DIR": "/x/y"}).root == Path("/x/y")
    assert state_dir({"XDG_STATE_HOME": "/s"}).root == Path("/s/comfyrig")
    root = state_dir({}).root  # HOME unset: the password database's home
    assert not str(root).startswith("/tmp") and root.parts[-3:] == (".local", "state", "comfyrig")


def test_stop_markers_name_the_pid(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.request_stop(8188, 4242)
    assert state.stop_requested(8188, 4242) and not state.stop_requested(8188, 4243)
    state.remove(8188)
    assert not state.stop_requested(8188, 4242)


def test_a_record_that_is_not_a_record_is_skipped(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.write(record())
    (state.instances / "9001.json").write_text('{"pid": "1; rm -rf /"}')
    (state.instances / "9002.json").write_text("[]")
    assert [r.port for r in state.records()] == [8188]
