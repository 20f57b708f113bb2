"""HTTP and websocket API of the fake, with the routes and response shapes of ComfyUI's server.py.

Every route is served twice, as /path and /api/path. Events for websocket clients go through one
asyncio queue (send_sync() may be called from the worker thread), as in the real server.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import mimetypes
import os
import struct
import sys
import time
import urllib.parse
import uuid

import aiohttp
import execution
import folder_paths
import jobs
import knobs as knobs_module
import nodes
from aiohttp import web
from app.user_manager import UserManager
from comfy import image as img
from comfy import model_management
from comfyui_version import __version__
from protocol import BinaryEventTypes

FRONTEND_VERSION = "1.33.13"          # comfyui-frontend-package pinned by ComfyUI 0.3.76's requirements.txt
TEMPLATES_VERSION = "0.7.54"          # comfyui-workflow-templates, same file
SERVER_FEATURE_FLAGS_BASE = {"supports_preview_metadata": True, "extension": {"manager": {"supports_v4": True}}}
MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
                 "latent_upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
                 "model_patches", "audio_encoders"]


async def _send_catching(send, message) -> None:
    try:
        await send(message)
    except (aiohttp.ClientError, ConnectionResetError, BrokenPipeError, ConnectionError) as err:
        logging.warning(f"send error: {err}")


def _is_loopback(host) -> bool:
    """Loopback address literal or 'localhost' (the real check also resolves other names)."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_only_middleware():
    """Refuse a browser request whose Origin differs from a loopback Host (ComfyUI's only CSRF guard)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        host_header, origin_header = request.headers.get("Host"), request.headers.get("Origin")
        if host_header and origin_header:
            host = host_header.lower()
            origin = urllib.parse.urlparse(origin_header)
            host_parsed = urllib.parse.urlsplit("//" + host)
            origin_domain = origin.netloc.lower()
            if origin.port is None:  # compare without ports when one side has none
                host = host_parsed.hostname
            if host_parsed.port is None:
                origin_domain = origin.hostname
            if _is_loopback(host_parsed.hostname) and host and origin_domain and host != origin_domain:
                logging.warning(f"WARNING: request with non matching host and origin {host} != {origin_domain}, returning 403")
                return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)

    return middleware


def cors_middleware(allowed_origin: str):
    @web.middleware
    async def middleware(request: web.Request, handler):
        response = web.Response() if request.method == "OPTIONS" else await handler(request)
        response.headers["Access-Control-Allow-Origin"] = allowed_origin
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS, PATCH"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    return middleware


def _json_route(produce):
    """A GET handler answering produce() as JSON."""
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(produce())
    return handler


class PromptServer:
    def __init__(self, loop: asyncio.AbstractEventLoop, args, received_cuda_visible_devices):
        self.loop = loop
        self.args = args
        self.received_cuda_visible_devices = received_cuda_visible_devices
        self.messages: asyncio.Queue = asyncio.Queue()
        self.prompt_queue = execution.PromptQueue(self)
        self.number = 0
        self.sockets: dict = {}
        self.sockets_metadata: dict = {}
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.user_manager = UserManager(args)
        self.feature_flags = {**SERVER_FEATURE_FLAGS_BASE, "max_upload_size": args.max_upload_size * 1024 * 1024}

        middleware = cors_middleware(args.enable_cors_header) if args.enable_cors_header else origin_only_middleware()
        self.app = web.Application(client_max_size=round(args.max_upload_size * 1024 * 1024), middlewares=[middleware])
        if args.front_end_root is None:
            self.web_root = os.path.join(os.path.dirname(os.path.realpath(__file__)), "web")
            logging.info(f"ComfyUI frontend version: {FRONTEND_VERSION}")
        else:
            self.web_root = args.front_end_root
        logging.info(f"[Prompt Server] web root: {self.web_root}")
        self.routes = web.RouteTableDef()
        self._define_routes(self.routes)

    # --- routes --------------------------------------------------------------------------------

    def _define_routes(self, routes: web.RouteTableDef) -> None:
        routes.get("/ws")(self.websocket_handler)
        routes.get("/")(self.get_root)
        routes.get("/embeddings")(_json_route(list))
        routes.get("/extensions")(_json_route(list))
        routes.get("/models")(_json_route(lambda: MODEL_FOLDERS))
        routes.get("/models/{folder}")(self.get_models)
        routes.get("/view")(self.view_image)
        routes.get("/system_stats")(self.system_stats)
        routes.get("/features")(_json_route(lambda: self.feature_flags))
        routes.get("/prompt")(_json_route(self.get_queue_info))
        routes.get("/object_info")(self.get_object_info)
        routes.get("/object_info/{node_class}")(self.get_object_info_node)
        routes.get("/history")(self.get_history)
        routes.get("/history/{prompt_id}")(self.get_history_prompt_id)
        routes.get("/queue")(self.get_queue)
        routes.post("/prompt")(self.post_prompt)
        routes.post("/queue")(self.post_queue)
        routes.post("/interrupt")(self.post_interrupt)
        routes.post("/free")(self.post_free)
        routes.post("/history")(self.post_history)
        routes.post("/upload/image")(self.upload_image)
        routes.post("/upload/mask")(self.upload_mask)
        self.user_manager.add_routes(routes)
        if knobs_module.from_env().jobs_api:  # ComfyUI 0.24's jobs API (registered as /api/jobs there, too)
            routes.get("/api/jobs")(self.get_jobs)
            routes.get("/api/jobs/{job_id}")(self.get_job)
        # ComfyUI-Manager's restart (GET in the Manager; POST accepted too)
        routes.get("/manager/reboot")(self.manager_reboot)
        routes.post("/manager/reboot")(self.manager_reboot)

    async def websocket_handler(self, request: web.Request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)  # a reconnecting client replaces its old socket
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.sockets_metadata[sid] = {"feature_flags": {}}
        try:
            await self.send("status", {"status": self.get_queue_info(), "sid": sid}, sid)
            if self.client_id == sid and self.last_node_id is not None:
                await self.send("executing", {"node": self.last_node_id}, sid)
            first_message = True
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.ERROR:
                    logging.warning(f"ws connection closed with exception {ws.exception()}")
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                        if first_message and data.get("type") == "feature_flags":
                            self.sockets_metadata[sid]["feature_flags"] = data.get("data", {})
                            await self.send("feature_flags", self.feature_flags, sid)
                        first_message = False
                    except json.JSONDecodeError:
                        logging.warning(f"Invalid JSON received from client {sid}: {msg.data}")
                    except Exception as e:
                        logging.error(f"Error processing WebSocket message: {e}")
        finally:
            if self.sockets.get(sid) is ws:
                self.sockets.pop(sid, None)
                self.sockets_metadata.pop(sid, None)
        return ws

    async def get_root(self, request):
        return web.FileResponse(os.path.join(self.web_root, "index.html"), headers={"Cache-Control": "no-cache"})

    async def get_models(self, request):
        if request.match_info["folder"] not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(folder_paths.get_filename_list(request.match_info["folder"]))

    async def view_image(self, request):
        """A file from output/input/temp. Unlike the real route it does not convert (preview=, channel=)."""
        query = request.rel_url.query
        if "filename" in query:
            filename, directory = folder_paths.annotated_filepath(query["filename"])
            if not filename or filename[0] == "/" or ".." in filename:
                return web.Response(status=400)
            if directory is None:
                directory = folder_paths.get_directory_by_type(query.get("type", "output"))
            if directory is None:
                return web.Response(status=400)
            if "subfolder" in query:
                full = os.path.join(directory, query["subfolder"])
                if os.path.commonpath((os.path.abspath(full), directory)) != directory:
                    return web.Response(status=403)
                directory = full
            filename = os.path.basename(filename)
            path = os.path.join(directory, filename)
            if os.path.isfile(path):
                content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
                if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript",
                                    "text/css"}:
                    content_type = "application/octet-stream"
                return web.FileResponse(path, headers={"Content-Disposition": f'filename="{filename}"',
                                                       "Content-Type": content_type})
        return web.Response(status=404)

    # --- uploads (server.py's image_upload, get_dir_by_type, compare_image_hash) -------------------

    @staticmethod
    def _upload_dir(dir_type):
        """(directory, type); no type means input. An unknown type fails as ComfyUI's does: a 500
        (its get_dir_by_type leaves the directory unbound)."""
        dir_type = dir_type or "input"
        directory = folder_paths.get_directory_by_type(dir_type)
        if directory is None:
            raise RuntimeError(f"cannot access local variable 'type_dir' (upload type {dir_type!r})")
        return directory, dir_type

    def _same_content(self, filepath: str, field) -> bool:
        """An upload equal to the file already there is not stored again (ComfyUI's fix for #3465)."""
        if not os.path.exists(filepath):
            return False
        hasher = getattr(hashlib, self.args.default_hashing_function)
        with open(filepath, "rb") as f:
            existing = hasher(f.read()).hexdigest()
        new = hasher(field.file.read()).hexdigest()
        field.file.seek(0)
        return existing == new

    def _image_upload(self, post, save=None):
        image = post.get("image")
        upload_dir, upload_type = self._upload_dir(post.get("type"))
        if not (image and image.file):  # a text part has no .file: a 500, as in ComfyUI
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return web.Response(status=400)
        os.makedirs(folder, exist_ok=True)
        duplicate = False
        if post.get("overwrite") not in ("true", "1"):
            stem, ext = os.path.splitext(filename)
            i = 1
            while os.path.exists(filepath):
                if self._same_content(filepath, image):
                    duplicate = True
                    break
                filename = f"{stem} ({i}){ext}"
                filepath = os.path.join(folder, filename)
                i += 1
        if not duplicate:
            if save is not None:
                save(image, post, filepath)
            else:
                with open(filepath, "wb") as f:
                    f.write(image.file.read())
        return web.json_response({"name": filename, "subfolder": subfolder, "type": upload_type})

    async def upload_image(self, request):
        return self._image_upload(await request.post())

    async def upload_mask(self, request):
        """Copies the original image (original_ref) with the uploaded mask's alpha channel. As in
        ComfyUI, a bad or missing original only skips the write: the answer is still 200."""
        def save(image, post, filepath):
            ref = json.loads(post.get("original_ref"))
            filename, directory = folder_paths.annotated_filepath(ref["filename"])
            if not filename or filename[0] == "/" or ".." in filename:
                return
            if directory is None:
                directory = folder_paths.get_directory_by_type(ref.get("type", "output"))
            if directory is None:
                return
            if ref.get("subfolder", "") != "":
                full = os.path.join(directory, ref["subfolder"])
                if os.path.commonpath((os.path.abspath(full), directory)) != directory:
                    return
                directory = full
            original_path = os.path.join(directory, filename)
            if os.path.isfile(original_path):
                with open(original_path, "rb") as f:
                    original = img.decode_png(f.read())
                mask = img.decode_png(image.file.read())
                alpha = mask.alpha if mask.alpha is not None else b"\xff" * (mask.frame.width * mask.frame.height)
                if (mask.frame.width, mask.frame.height) != (original.frame.width, original.frame.height):
                    raise ValueError("images do not match")  # what Pillow's putalpha raises: a 500
                with open(filepath, "wb") as f:
                    f.write(img.png_bytes_rgba(original.frame, alpha, original.text))

        return self._image_upload(await request.post(), save)

    async def system_stats(self, request):
        device = model_management.get_torch_device()
        ram_total, ram_free = model_management.ram_total(), model_management.ram_free()
        entries = []
        # 0.23+ lists every torch device, the default one first; 0.3.76 only the default one
        # (model_management.get_all_torch_devices says which the fake imitates).
        for each in model_management.get_all_torch_devices():
            if each.type == "cpu":
                vram_total, vram_free, torch_total, torch_free = ram_total, ram_free, ram_total, ram_free
            else:
                vram_total, vram_free = each.vram_total, model_management.get_free_memory(each)
                torch_total = torch_free = 0  # nothing loaded: torch has reserved nothing
            entries.append({
                "name": each.name,
                "type": each.type,
                "index": each.index,
                "vram_total": vram_total,
                "vram_free": vram_free,
                "torch_vram_total": torch_total,
                "torch_vram_free": torch_free,
            })
        return web.json_response({
            "system": {
                "os": sys.platform,
                "ram_total": ram_total,
                "ram_free": ram_free,
                "comfyui_version": __version__,
                "required_frontend_version": FRONTEND_VERSION,
                "installed_templates_version": TEMPLATES_VERSION,
                "required_templates_version": TEMPLATES_VERSION,
                "python_version": sys.version,
                "pytorch_version": model_management.torch_version,
                "embedded_python": os.path.split(os.path.split(sys.executable)[0])[1] == "python_embeded",
                "argv": sys.argv,
                # Not in ComfyUI: what this process was given, for tests of launchers.
                "fake_cuda_visible_devices": self.received_cuda_visible_devices,
                "fake_effective_cuda_visible_devices": device.cuda_visible_devices,
                "fake_visible_gpu_count": device.visible_gpus,
                "fake_pid": os.getpid(),
            },
            "devices": entries,
        })

    async def get_object_info(self, request):
        return web.json_response({name: nodes.node_info(name) for name in nodes.NODE_CLASS_MAPPINGS})

    async def get_object_info_node(self, request):
        name = request.match_info["node_class"]
        return web.json_response({name: nodes.node_info(name)} if name in nodes.NODE_CLASS_MAPPINGS else {})

    async def get_history(self, request):
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        return web.json_response(self.prompt_queue.get_history(max_items=max_items, offset=offset))

    async def get_history_prompt_id(self, request):
        return web.json_response(self.prompt_queue.get_history(prompt_id=request.match_info["prompt_id"]))

    async def get_jobs(self, request):
        """0.24's GET /api/jobs: status (comma list), workflow_id, sort_by, sort_order, limit, offset."""
        query = request.rel_url.query
        statuses = None
        if query.get("status"):
            statuses = [s.strip().lower() for s in query["status"].split(",") if s.strip()]
            bad = [s for s in statuses if s not in jobs.STATUSES]
            if bad:
                return web.json_response({"error": f"Invalid status value(s): {', '.join(bad)}. "
                                                   f"Valid values: {', '.join(jobs.STATUSES)}"}, status=400)
        sort_by = query.get("sort_by", "created_at").lower()
        sort_order = query.get("sort_order", "desc").lower()
        if sort_by not in jobs.SORT_FIELDS:
            return web.json_response({"error": "sort_by must be 'created_at' or 'execution_duration'"}, status=400)
        if sort_order not in ("asc", "desc"):
            return web.json_response({"error": "sort_order must be 'asc' or 'desc'"}, status=400)
        limit = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return web.json_response({"error": "limit must be an integer"}, status=400)
            if limit <= 0:
                return web.json_response({"error": "limit must be a positive integer"}, status=400)
        offset = 0
        if "offset" in query:
            try:
                offset = max(int(query["offset"]), 0)
            except ValueError:
                return web.json_response({"error": "offset must be an integer"}, status=400)
        running, pending = self.prompt_queue.get_current_queue()
        page, total = jobs.all_jobs([i[:5] for i in running], [i[:5] for i in pending], self.prompt_queue.get_history(),
                                    statuses, query.get("workflow_id"), sort_by, sort_order, limit, offset)
        return web.json_response({"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": total,
                                                               "has_more": offset + len(page) < total}})

    async def get_job(self, request):
        job_id = request.match_info["job_id"]
        running, pending = self.prompt_queue.get_current_queue()
        job = jobs.get_job(job_id, running, pending, self.prompt_queue.get_history(prompt_id=job_id))
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(job)

    async def get_queue(self, request):
        running, pending = self.prompt_queue.get_current_queue()
        return web.json_response({"queue_running": [item[:5] for item in running],
                                  "queue_pending": [item[:5] for item in pending]})

    async def post_prompt(self, request):
        logging.info("got prompt")
        json_data = await request.json()
        if "number" in json_data:
            number = float(json_data["number"])
        else:
            number = self.number
            if json_data.get("front"):
                number = -number
            self.number += 1

        if "prompt" not in json_data:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                     "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)

        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        valid, error, outputs_to_execute, node_errors = execution.validate_prompt(
            prompt_id, prompt, json_data.get("partial_execution_targets"))
        extra_data = json_data.get("extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid:
            logging.warning(f"invalid prompt: {error}")
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        sensitive = {key: extra_data.pop(key) for key in execution.SENSITIVE_EXTRA_DATA_KEYS if key in extra_data}
        extra_data["create_time"] = int(time.time() * 1000)
        self.prompt_queue.put((number, prompt_id, prompt, extra_data, outputs_to_execute, sensitive))
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def post_queue(self, request):
        json_data = await request.json()
        if json_data.get("clear"):
            self.prompt_queue.wipe_queue()
        for prompt_id in json_data.get("delete", []):
            self.prompt_queue.delete_queue_item(lambda item, prompt_id=prompt_id: item[1] == prompt_id)
        return web.Response(status=200)

    async def post_interrupt(self, request):
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id")
        if prompt_id:
            running, _ = self.prompt_queue.get_current_queue()
            if any(item[1] == prompt_id for item in running):
                logging.info(f"Interrupting prompt {prompt_id}")
                nodes.interrupt_processing()
            else:
                logging.info(f"Prompt {prompt_id} is not currently running, skipping interrupt")
        else:
            logging.info("Global interrupt (no prompt_id specified)")
            nodes.interrupt_processing()
        return web.Response(status=200)

    async def post_free(self, request):
        json_data = await request.json()
        for flag in ("unload_models", "free_memory"):
            if json_data.get(flag, False):
                self.prompt_queue.set_flag(flag, json_data[flag])
        return web.Response(status=200)

    async def post_history(self, request):
        json_data = await request.json()
        if json_data.get("clear"):
            self.prompt_queue.wipe_history()
        for prompt_id in json_data.get("delete", []):
            self.prompt_queue.delete_history_item(prompt_id)
        return web.Response(status=200)

    async def manager_reboot(self, request):
        """comfy-cli's protocol: with __COMFY_CLI_SESSION__ set, write '<session>.reboot' and exit 0;
        without it, re-exec this process in place (the Manager's legacy mode)."""
        session = os.environ.get("__COMFY_CLI_SESSION__")
        if session:
            with open(session + ".reboot", "w"):
                pass
            print("\nRestarting...\n\n", flush=True)
            raise SystemExit(0)
        print("\nRestarting... [Legacy Mode]\n\n", flush=True)
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.argv])

    # --- plumbing ------------------------------------------------------------------------------

    def add_routes(self) -> None:
        api_routes = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        self.app.add_routes(api_routes)
        self.app.add_routes(self.routes)
        self.app.add_routes([web.static("/", self.web_root)])

    def get_queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self.prompt_queue.get_tasks_remaining()}}

    async def send(self, event, data, sid=None) -> None:
        if event == BinaryEventTypes.UNENCODED_PREVIEW_IMAGE:
            await self.send_image(data, sid)
        elif event == BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA:
            await self.send_image_with_metadata(*data, sid=sid)
        elif isinstance(data, (bytes, bytearray)):
            await self.send_bytes(event, data, sid)
        else:
            message = {"type": event, "data": data}
            if sid is None:
                for ws in list(self.sockets.values()):
                    await _send_catching(ws.send_json, message)
            elif sid in self.sockets:
                await _send_catching(self.sockets[sid].send_json, message)

    async def send_image(self, image_data, sid=None) -> None:
        """A type 1 frame: event 1, image type (1 JPEG, 2 PNG), the encoded image. image_data is
        (format, encoded bytes, max_size); the fake's images are already small, max_size is not applied."""
        image_type, encoded, _max_size = image_data
        type_num = 2 if image_type == "PNG" else 1
        await self.send_bytes(BinaryEventTypes.PREVIEW_IMAGE, struct.pack(">I", type_num) + encoded, sid)

    async def send_image_with_metadata(self, image_data, metadata=None, sid=None) -> None:
        """A type 4 frame: event 4, metadata length, JSON metadata (with image_type as a MIME type), image."""
        image_type, encoded, _max_size = image_data
        metadata = {**(metadata or {}), "image_type": "image/png" if image_type == "PNG" else "image/jpeg"}
        metadata_json = json.dumps(metadata).encode("utf-8")
        await self.send_bytes(BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA,
                              struct.pack(">I", len(metadata_json)) + metadata_json + encoded, sid)

    async def send_bytes(self, event: int, data, sid=None) -> None:
        message = struct.pack(">I", event) + bytes(data)
        if sid is None:
            for ws in list(self.sockets.values()):
                await _send_catching(ws.send_bytes, message)
        elif sid in self.sockets:
            await _send_catching(self.sockets[sid].send_bytes, message)

    def supports_feature(self, sid, feature: str) -> bool:
        """comfy_api/feature_flags.supports_feature: what that client announced in its first message."""
        metadata = self.sockets_metadata.get(sid) if sid is not None else None
        return metadata is not None and metadata.get("feature_flags", {}).get(feature, False) is True

    def send_sync(self, event, data, sid=None) -> None:
        """Thread-safe: queue an event for the publish loop."""
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": self.get_queue_info()})

    async def publish_loop(self) -> None:
        while True:
            event, data, sid = await self.messages.get()
            await self.send(event, data, sid)

    async def start_multi_address(self, addresses, verbose: bool = True) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        if verbose:
            logging.info("Starting server\n")
        for address, port in addresses:
            await web.TCPSite(runner, address, port).start()
            if verbose:
                shown = f"[{address}]" if ":" in address else address
                logging.info(f"To see the GUI go to: http://{shown}:{port}")
