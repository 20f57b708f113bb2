"""User data and settings routes, after ComfyUI 0.3.76's app/user_manager.py and app/app_settings.py.

Files live under the user directory (--user-directory, or <base>/user): one folder per user;
without --multi-user every request is the "default" user. With --multi-user the user comes from
the `comfy-user` header and must be in users.json (POST /users adds one). Names starting with
"__" are system users, never reachable over HTTP.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import uuid
from urllib import parse

import folder_paths
from aiohttp import web

SYSTEM_USER_PREFIX = "__"
SETTINGS_FILE = "comfy.settings.json"


def file_info(path: str, relative_to: str) -> dict:
    # 0.3.76 reports float seconds; 0.24 changed modified/created to integer milliseconds.
    return {"path": os.path.relpath(path, relative_to).replace(os.sep, "/"), "size": os.path.getsize(path),
            "modified": os.path.getmtime(path), "created": os.path.getctime(path)}


class UserManager:
    def __init__(self, args):
        self.multi_user = bool(args.multi_user)
        user_directory = folder_paths.user_directory
        if not os.path.exists(user_directory):
            os.makedirs(user_directory, exist_ok=True)
            if not self.multi_user:
                logging.warning("****** User settings have been changed to be stored on the server instead of browser storage. ******")
                logging.warning("****** For multi-user setups add the --multi-user CLI argument to enable multiple user profiles. ******")
        if self.multi_user:
            self.users = {}
            if os.path.isfile(self.users_file()):
                with open(self.users_file()) as f:
                    self.users = json.load(f)
        else:
            self.users = {"default": "default"}

    @staticmethod
    def users_file() -> str:
        return os.path.join(folder_paths.user_directory, "users.json")

    def request_user(self, request) -> str:
        """The user of a request; KeyError for an unknown or system user (a 500 on most routes, as in ComfyUI)."""
        user = "default"
        if self.multi_user and "comfy-user" in request.headers:
            user = request.headers["comfy-user"]
            if user.startswith(SYSTEM_USER_PREFIX):
                raise KeyError("Unknown user: " + user)
        if user not in self.users:
            raise KeyError("Unknown user: " + user)
        return user

    def user_filepath(self, request, file, create_dir: bool = True):
        """Absolute path of `file` in the request's user folder, None when it would leave it."""
        root = folder_paths.user_directory
        user = self.request_user(request)
        if user.startswith(SYSTEM_USER_PREFIX):
            return None
        user_root = os.path.join(root, user)
        if os.path.commonpath((root, user_root)) != root:
            return None
        path = user_root
        if file is not None:
            if "%" in file:
                file = parse.unquote(file)
            path = os.path.abspath(os.path.join(user_root, file))
            if os.path.commonpath((user_root, path)) != user_root:
                return None
        parent = os.path.split(path)[0]
        if create_dir and not os.path.exists(parent):
            os.makedirs(parent, exist_ok=True)
        return path

    def add_user(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise ValueError("username not provided")
        if name.startswith(SYSTEM_USER_PREFIX):
            raise ValueError("System User prefix not allowed")
        user_id = re.sub("[^a-zA-Z0-9-_]+", "-", name)
        if user_id.startswith(SYSTEM_USER_PREFIX):
            raise ValueError("System User prefix not allowed")
        user_id = f"{user_id}_{uuid.uuid4()}"
        self.users[user_id] = name
        with open(self.users_file(), "w") as f:
            json.dump(self.users, f)
        return user_id

    # --- settings (app_settings.py) -------------------------------------------------------------

    def get_settings(self, request) -> dict:
        try:
            file = self.user_filepath(request, SETTINGS_FILE)
        except KeyError as e:
            logging.error("User settings not found.")
            raise web.HTTPUnauthorized() from e
        if not os.path.isfile(file):
            return {}
        try:
            with open(file) as f:
                return json.load(f)
        except Exception:
            logging.error(f"The user settings file is corrupted: {file}")
            return {}

    def save_settings(self, request, settings: dict) -> None:
        with open(self.user_filepath(request, SETTINGS_FILE), "w") as f:
            f.write(json.dumps(settings, indent=4))

    # --- routes ---------------------------------------------------------------------------------

    def add_routes(self, routes: web.RouteTableDef) -> None:
        routes.get("/settings")(self.route_get_settings)
        routes.get("/settings/{id}")(self.route_get_setting)
        routes.post("/settings")(self.route_post_settings)
        routes.post("/settings/{id}")(self.route_post_setting)
        routes.get("/users")(self.route_get_users)
        routes.post("/users")(self.route_post_users)
        routes.get("/userdata")(self.route_list_userdata)
        routes.get("/v2/userdata")(self.route_list_userdata_v2)
        routes.get("/userdata/{file}")(self.route_get_userdata)
        routes.post("/userdata/{file}")(self.route_post_userdata)
        routes.delete("/userdata/{file}")(self.route_delete_userdata)
        routes.post("/userdata/{file}/move/{dest}")(self.route_move_userdata)

    async def route_get_settings(self, request):
        return web.json_response(self.get_settings(request))

    async def route_get_setting(self, request):
        settings = self.get_settings(request)
        setting_id = request.match_info.get("id")
        return web.json_response(settings[setting_id] if setting_id and setting_id in settings else None)

    async def route_post_settings(self, request):
        settings = self.get_settings(request)
        new_settings = await request.json()
        self.save_settings(request, {**settings, **new_settings})
        return web.Response(status=200)

    async def route_post_setting(self, request):
        setting_id = request.match_info.get("id")
        if not setting_id:
            return web.Response(status=400)
        settings = self.get_settings(request)
        settings[setting_id] = await request.json()
        self.save_settings(request, settings)
        return web.Response(status=200)

    async def route_get_users(self, request):
        if self.multi_user:
            return web.json_response({"storage": "server", "users": self.users})
        user_dir = self.user_filepath(request, None, create_dir=False)
        return web.json_response({"storage": "server", "migrated": os.path.exists(user_dir)})

    async def route_post_users(self, request):
        username = (await request.json())["username"]
        if username in self.users.values():
            return web.json_response({"error": "Duplicate username."}, status=400)
        try:
            user_id = self.add_user(username)
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(user_id)

    async def route_list_userdata(self, request):
        query = request.rel_url.query
        directory = query.get("dir", "")
        if not directory:
            return web.Response(status=400, text="Directory not provided")
        path = self.user_filepath(request, directory)
        if not path:
            return web.Response(status=403, text="Invalid directory")
        if not os.path.exists(path):
            return web.Response(status=404, text="Directory not found")
        recurse = query.get("recurse", "").lower() == "true"
        full_info = query.get("full_info", "").lower() == "true"
        split = query.get("split", "").lower() == "true"
        pattern = os.path.join(glob.escape(path), "**", "*") if recurse else os.path.join(glob.escape(path), "*")

        def describe(full_path: str):
            if full_info:
                return file_info(full_path, path)
            relative = os.path.relpath(full_path, path).replace(os.sep, "/")
            return [relative, *relative.split("/")] if split else relative

        return web.json_response([describe(p) for p in glob.glob(pattern, recursive=recurse) if os.path.isfile(p)])

    async def route_list_userdata_v2(self, request):
        relative = parse.unquote(request.rel_url.query.get("path", ""))
        try:
            base = self.user_filepath(request, None, create_dir=False)
            target = self.user_filepath(request, relative, create_dir=False) if relative else base
        except KeyError as e:
            logging.warning(f"Access denied for user: {e}")
            return web.Response(status=403, text="Invalid user specified in request")
        if not target:
            return web.Response(status=400, text="Invalid path requested")
        if not os.path.exists(target):
            if target == base:
                return web.json_response([])
            return web.Response(status=404, text="Requested path not found")
        if not os.path.isdir(target):
            return web.Response(status=400, text="Requested path is not a directory")
        results = []
        for root, dirs, files in os.walk(target, topdown=True):
            for name in dirs:
                results.append({"name": name, "path": os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/"),
                                "type": "directory"})
            for name in files:
                full = os.path.join(root, name)
                entry = {"name": name, "path": os.path.relpath(full, base).replace(os.sep, "/"), "type": "file"}
                try:
                    stats = os.stat(full)
                    entry["size"], entry["modified"] = stats.st_size, stats.st_mtime
                except OSError as err:
                    logging.warning(f"Could not stat file {full}: {err}")
                results.append(entry)
        results.sort(key=lambda x: (x["type"] != "directory", x["name"].lower()))
        return web.json_response(results)

    def _data_path(self, request, check_exists: bool = False, param: str = "file"):
        """A path, or the error response to send."""
        file = request.match_info.get(param)
        if not file:
            return web.Response(status=400)
        path = self.user_filepath(request, file)
        if not path:
            return web.Response(status=403)
        if check_exists and not os.path.exists(path):
            return web.Response(status=404)
        return path

    async def route_get_userdata(self, request):
        path = self._data_path(request, check_exists=True)
        return web.FileResponse(path) if isinstance(path, str) else path

    async def route_post_userdata(self, request):
        path = self._data_path(request)
        if not isinstance(path, str):
            return path
        overwrite = request.query.get("overwrite", "true") != "false"
        full_info = request.query.get("full_info", "false").lower() == "true"
        if not overwrite and os.path.exists(path):
            return web.Response(status=409, text="File already exists")
        try:
            body = await request.read()
            with open(path, "wb") as f:   # 0.24 writes a temporary file and renames it
                f.write(body)
        except OSError as err:
            logging.warning(f"Error saving file '{path}': {err}")
            return web.Response(status=400, reason="Invalid filename. Please avoid special characters like :\\/*?\"<>|")
        user_path = self.user_filepath(request, None)
        return web.json_response(file_info(path, user_path) if full_info else os.path.relpath(path, user_path))

    async def route_delete_userdata(self, request):
        path = self._data_path(request, check_exists=True)
        if not isinstance(path, str):
            return path
        os.remove(path)
        return web.Response(status=204)

    async def route_move_userdata(self, request):
        source = self._data_path(request, check_exists=True)
        if not isinstance(source, str):
            return source
        dest = self._data_path(request, param="dest")
        if not isinstance(dest, str):
            return dest
        overwrite = request.query.get("overwrite", "true") != "false"
        full_info = request.query.get("full_info", "false").lower() == "true"
        if not overwrite and os.path.exists(dest):
            return web.Response(status=409, text="File already exists")
        logging.info(f"moving '{source}' -> '{dest}'")
        shutil.move(source, dest)
        user_path = self.user_filepath(request, None)
        return web.json_response(file_info(dest, user_path) if full_info else os.path.relpath(dest, user_path))
