"""Start the fake ComfyUI as a real process and talk to it; for tests. Standard library only.

    with running_fake(env={"FAKE_COMFYUI_JOB_SECONDS": "0.5"}, args=["--cpu"]) as fake:
        fake.get_json("/system_stats")
        fake.wait_for_log("Prompt executed in")

The process runs `python main.py --listen 127.0.0.1 --port N ...` with cwd = this folder, in its
own session (process group), the way comfyrig launches ComfyUI. Leaving the block stops the
whole group: SIGINT, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

FAKE_DIR = os.path.dirname(os.path.abspath(__file__))
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float, what: str = "condition", interval: float = 0.02) -> T:
    """Poll condition() until it returns something truthy and return that; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class HTTPStatusError(Exception):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {body[:500]!r}")
        self.status, self.body = status, body

    def json(self):
        return json.loads(self.body)


@dataclass
class FakeServer:
    url: str                      # http://127.0.0.1:PORT
    port: int
    proc: subprocess.Popen
    log_lines: List[str] = field(default_factory=list, repr=False)  # stdout and stderr lines, in arrival order
    stdout_lines: List[str] = field(default_factory=list, repr=False)
    stderr_lines: List[str] = field(default_factory=list, repr=False)
    _readers: List[threading.Thread] = field(default_factory=list, repr=False)

    # --- HTTP ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Optional[object] = None, timeout: float = 10.0) -> Tuple[int, bytes]:
        """(status, body). Does not raise for 4xx/5xx; raises OSError when nothing answers."""
        data = None if body is None else json.dumps(body).encode()
        return self.send(method, path, data, {"Content-Type": "application/json"} if data is not None else {}, timeout)

    def send(self, method: str, path: str, data: Optional[bytes] = None, headers: Optional[Mapping[str, str]] = None,
             timeout: float = 10.0) -> Tuple[int, bytes]:
        """(status, body) of a request with a raw body (userdata files). Does not raise for 4xx/5xx."""
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()

    def post_multipart(self, path: str, fields: Mapping[str, str],
                       files: Mapping[str, Tuple[str, bytes, str]] = ()) -> Tuple[int, bytes]:
        """(status, body) of a multipart/form-data POST, as browsers send /upload/image:
        fields are text parts, files map a part name to (filename, content, content type)."""
        boundary = "----fakecomfyui" + os.urandom(8).hex()
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, (filename, content, content_type) in dict(files).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                         f"Content-Type: {content_type}\r\n\r\n".encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.send("POST", path, b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def get_json(self, path: str):
        status, body = self.request("GET", path)
        if status != 200:
            raise HTTPStatusError(status, body)
        return json.loads(body)

    def post_json(self, path: str, body: object):
        """The decoded JSON answer (None for an empty 200); HTTPStatusError for any other status."""
        status, raw = self.request("POST", path, body)
        if status != 200:
            raise HTTPStatusError(status, raw)
        return json.loads(raw) if raw else None

    def is_ready(self) -> bool:
        try:
            return self.request("GET", "/prompt", timeout=2.0)[0] == 200
        except OSError:
            return False

    # --- logs and process ----------------------------------------------------------------------

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The first log line containing `text`, waiting for it to appear."""
        return wait_until(lambda: next((line for line in list(self.log_lines) if text in line), None),
                          timeout, what=f"log line containing {text!r}")

    def wait_exit(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._join_readers()
        return code

    def stop(self, grace: float = 5.0) -> Optional[int]:
        """SIGINT to the process group, then SIGKILL after `grace` s; returns the exit code."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        _signal_group(self.proc.pid, signal.SIGKILL)  # also whatever the fake left in its group
        code = self.proc.wait()
        self._join_readers()
        return code

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _read_lines(stream, *sinks: List[str]) -> None:
    for line in stream:
        line = line.rstrip("\n")
        for sink in sinks:
            sink.append(line)


def start_fake(port: Optional[int] = None, env: Optional[Mapping[str, Optional[str]]] = None,
               args: Sequence[str] = (), python: str = sys.executable) -> FakeServer:
    """Start the fake without waiting for it.

    The child gets os.environ minus any FAKE_COMFYUI_* knob and __COMFY_CLI_SESSION__ (so a test
    states every knob it uses), updated with `env`; a None value there removes a variable.
    """
    port = free_port() if port is None else port
    child_env: Dict[str, str] = {key: value for key, value in os.environ.items()
                                 if not key.startswith("FAKE_COMFYUI_") and key != "__COMFY_CLI_SESSION__"}
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    proc = subprocess.Popen([python, "main.py", "--listen", "127.0.0.1", "--port", str(port), *args],
                            cwd=FAKE_DIR, env=child_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            start_new_session=True)
    fake = FakeServer(url=f"http://127.0.0.1:{port}", port=port, proc=proc)
    for stream, own in ((proc.stdout, fake.stdout_lines), (proc.stderr, fake.stderr_lines)):
        reader = threading.Thread(target=_read_lines, args=(stream, own, fake.log_lines), daemon=True)
        reader.start()
        fake._readers.append(reader)
    return fake


@contextlib.contextmanager
def running_fake(port: Optional[int] = None, env: Optional[Mapping[str, Optional[str]]] = None,
                 args: Sequence[str] = (), ready_timeout: float = 15.0, stop_grace: float = 5.0) -> Iterator[FakeServer]:
    """A started, ready fake (GET /prompt answered 200); stopped with its process group on exit.

    Raises RuntimeError, with the fake's output, if it exits or is not ready within ready_timeout s.
    """
    fake = start_fake(port, env, args)
    try:
        ready = False
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: fake.proc.poll() is not None or fake.is_ready(), ready_timeout, "the fake to answer")
            ready = fake.is_ready()
        if not ready:
            fake.stop(grace=0)
            raise RuntimeError(f"fake ComfyUI not ready (exit code {fake.proc.returncode}):\n" + "\n".join(fake.log_lines))
        yield fake
    finally:
        fake.stop(grace=stop_grace)


@dataclass(frozen=True)
class BinaryFrame:
    """One binary websocket message of ComfyUI: a 4-byte big-endian event type, then its payload."""
    event: int                     # 1 PREVIEW_IMAGE, 3 TEXT, 4 PREVIEW_IMAGE_WITH_METADATA
    image_format: Optional[int]    # type 1: 1 JPEG, 2 PNG
    metadata: Optional[dict]       # type 4: node_id, prompt_id, display_node_id, parent_node_id, real_node_id, image_type
    image: bytes                   # the encoded picture (type 1 and 4), else the payload


def parse_binary_frame(message: bytes) -> BinaryFrame:
    (event,) = struct.unpack(">I", message[:4])
    if event == 1:
        return BinaryFrame(event, struct.unpack(">I", message[4:8])[0], None, message[8:])
    if event == 4:
        (length,) = struct.unpack(">I", message[4:8])
        return BinaryFrame(event, None, json.loads(message[8:8 + length]), message[8 + length:])
    return BinaryFrame(event, None, None, message[4:])


def decode_png(data: bytes) -> Tuple[int, int, bytes, Dict[str, str]]:
    """(width, height, rgb, tEXt chunks) of an 8-bit RGB PNG with filter 0 rows, as the fake writes.

    Raises ValueError for anything else; checks every chunk's CRC.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, text, width, height = 8, b"", {}, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad CRC in {kind!r}")
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if (depth, colour) != (8, 2):
                raise ValueError("only 8-bit RGB is supported")
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    row = width * 3
    lines = [raw[y * (row + 1):(y + 1) * (row + 1)] for y in range(height)]
    if any(line[0] != 0 for line in lines):
        raise ValueError("only filter type 0 is supported")
    return width, height, b"".join(line[1:] for line in lines), text
