"""A stand-in ComfyUI for benchmarks: answers GET /prompt, /queue and /system_stats on loopback.

Run as its own process, so its CPU time is not counted as the monitor's:
    python benchmarks/stub_comfyui.py --count 4
It prints "PORTS p1,p2,..." once listening, then serves until killed.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BODIES = {
    "/prompt": {"exec_info": {"queue_remaining": 3}},
    "/queue": {"queue_running": [[0, "a"]], "queue_pending": [[1, "b"], [2, "c"]]},
    "/system_stats": {"system": {"comfyui_version": "0.3.76"}, "devices": []},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as aiohttp (ComfyUI's server) does

    def do_GET(self) -> None:
        body = json.dumps(BODIES.get(self.path, {})).encode()
        self.send_response(200 if self.path in BODIES else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--port", type=int, default=0, help="first port (then port+1, ...); 0: any free ones")
    args = parser.parse_args()
    ports = [args.port + i if args.port else 0 for i in range(args.count)]
    servers = [ThreadingHTTPServer(("127.0.0.1", port), Handler) for port in ports]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("PORTS " + ",".join(str(s.server_address[1]) for s in servers), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
