from __future__ import annotations

import getpass
import os
from pathlib import Path

from comfyrig.host.ports import listening_inodes
from comfyrig.monitor.procinfo import ProcessInfo

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp_line(port: int, state: str, inode: int) -> str:
    return f"   0: 0100007F:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1\n"


def fake_proc(root: Path, listening: dict[int, int]) -> None:
    (root / "net").mkdir(parents=True)
    lines = [tcp_line(port, "0A", inode) for inode, port in listening.items()]
    lines.append(tcp_line(40000, "01", 999))  # an established connection, not a listener
    (root / "net" / "tcp").write_text(TCP_HEADER + "".join(lines))


def fake_pid(root: Path, pid: int, cmdline: bytes, sockets: list[int]) -> None:
    base = root / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "cmdline").write_bytes(cmdline)
    (base / "comm").write_text("python\n")
    os.symlink("/dev/null", base / "fd" / "0")
    for n, inode in enumerate(sockets, start=3):
        os.symlink(f"socket:[{inode}]", base / "fd" / str(n))


def test_listening_inodes_only_listeners(tmp_path: Path) -> None:
    fake_proc(tmp_path, {111: 8188, 222: 8189})
    assert listening_inodes(tmp_path) == {"111": 8188, "222": 8189}


def test_describe_user_command_ports(tmp_path: Path) -> None:
    fake_proc(tmp_path, {111: 8188})
    fake_pid(tmp_path, 42, b"python\0main.py\0--port\x008188\0", [111, 999])
    details = ProcessInfo(tmp_path).describe([42])[42]
    assert details.command == "python main.py --port 8188"
    assert details.ports == (8188,)
    assert details.user == getpass.getuser()


def test_missing_process_is_unknown_not_an_error(tmp_path: Path) -> None:
    fake_proc(tmp_path, {})
    details = ProcessInfo(tmp_path).describe([7])[7]
    assert (details.user, details.command, details.ports) == (None, None, ())


def test_not_yet_listening_is_rechecked_after_a_while(tmp_path: Path) -> None:
    now = [0.0]
    fake_proc(tmp_path, {})
    fake_pid(tmp_path, 42, b"python\0main.py\0", [111])
    info = ProcessInfo(tmp_path, recheck_s=5.0, clock=lambda: now[0])
    assert info.describe([42])[42].ports == ()
    (tmp_path / "net" / "tcp").write_text(TCP_HEADER + tcp_line(8188, "0A", 111))  # ComfyUI bound its port
    now[0] = 4.0
    assert info.describe([42])[42].ports == ()  # cached: no /proc walk every tick
    now[0] = 5.0
    assert info.describe([42])[42].ports == (8188,)


def test_empty_cmdline_falls_back_to_comm(tmp_path: Path) -> None:
    fake_proc(tmp_path, {})
    fake_pid(tmp_path, 9, b"", [])
    assert ProcessInfo(tmp_path).describe([9])[9].command == "python"
