"""The fake's /users, /userdata, /v2/userdata and /settings routes behave as ComfyUI 0.3.76's
(app/user_manager.py, app/app_settings.py): files under the user directory, one folder per user,
the "default" user unless --multi-user."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.xdist_group("fake-userdata"), pytest.mark.e2e]

_HARNESS_PATH = Path(__file__).resolve().parents[1] / "fake_comfyui" / "harness.py"


def _load_harness():
    spec = importlib.util.spec_from_file_location("fake_comfyui_harness", _HARNESS_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


harness = sys.modules.get("fake_comfyui_harness") or _load_harness()


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("user")


@pytest.fixture(scope="module")
def fake(user_dir):
    with harness.running_fake(args=["--user-directory", str(user_dir)]) as server:
        yield server


def put(fake, name: str, body: bytes, query: str = ""):
    status, raw = fake.send("POST", f"/userdata/{name}{query}", body)
    return status, (json.loads(raw) if status == 200 else raw)


def test_settings_are_one_json_file_of_the_default_user(fake, user_dir):
    assert fake.get_json("/settings/Comfy.Nothing") is None
    assert fake.post_json("/settings", {"Comfy.A": 1, "Comfy.B": "x"}) is None
    assert fake.post_json("/api/settings/Comfy.C", [1, 2]) is None
    assert fake.get_json("/settings") == {"Comfy.A": 1, "Comfy.B": "x", "Comfy.C": [1, 2]}
    assert fake.get_json("/settings/Comfy.C") == [1, 2]
    stored = user_dir / "default" / "comfy.settings.json"
    assert json.loads(stored.read_text()) == {"Comfy.A": 1, "Comfy.B": "x", "Comfy.C": [1, 2]}
    assert stored.read_text().startswith('{\n    "Comfy.A"')  # indent=4, as ComfyUI writes it
    assert fake.get_json("/users") == {"storage": "server", "migrated": True}


def test_userdata_files_write_read_move_delete(fake, user_dir):
    assert put(fake, "workflows%2Fone.json", b'{"a": 1}') == (200, "workflows/one.json")
    assert (user_dir / "default" / "workflows" / "one.json").read_bytes() == b'{"a": 1}'
    assert fake.send("GET", "/userdata/workflows%2Fone.json") == (200, b'{"a": 1}')
    assert put(fake, "workflows%2Fone.json", b"other", "?overwrite=false")[0] == 409
    status, info = put(fake, "workflows%2Fone.json", b'{"a": 2}', "?full_info=true")
    assert status == 200 and info["path"] == "workflows/one.json" and info["size"] == 8
    assert isinstance(info["modified"], float) and isinstance(info["created"], float)  # seconds in 0.3.76

    assert put(fake, "workflows%2Ftwo.json", b"2")[0] == 200
    assert fake.send("POST", "/userdata/workflows%2Fone.json/move/workflows%2Ftwo.json?overwrite=false")[0] == 409
    status, raw = fake.send("POST", "/api/userdata/workflows%2Fone.json/move/workflows%2Farchive%2Fthree.json")
    assert (status, json.loads(raw)) == (200, "workflows/archive/three.json")
    assert fake.send("GET", "/userdata/workflows%2Fone.json")[0] == 404
    assert fake.send("POST", "/userdata/workflows%2Fone.json/move/workflows%2Ffour.json")[0] == 404

    assert fake.send("DELETE", "/userdata/workflows%2Ftwo.json")[0] == 204
    assert fake.send("DELETE", "/userdata/workflows%2Ftwo.json")[0] == 404
    assert fake.send("GET", "/userdata/..%2F..%2Fescape.json")[0] == 403
    assert put(fake, "..%2Fother-user%2Fx.json", b"x")[0] == 403


def test_userdata_listing_options(fake):
    for name in ("lists%2Fa.json", "lists%2Fsub%2Fb.json"):
        assert put(fake, name, b"{}")[0] == 200
    assert fake.get_json("/userdata?dir=lists") == ["a.json"]
    assert sorted(fake.get_json("/userdata?dir=lists&recurse=true")) == ["a.json", "sub/b.json"]
    split = fake.get_json("/userdata?dir=lists&recurse=true&split=true")
    assert sorted(split) == [["a.json", "a.json"], ["sub/b.json", "sub", "b.json"]]
    [info] = fake.get_json("/userdata?dir=lists&full_info=true")
    assert set(info) == {"path", "size", "modified", "created"} and info["path"] == "a.json"
    assert fake.send("GET", "/userdata")[0] == 400
    assert fake.send("GET", "/userdata?dir=nothing-here") == (404, b"Directory not found")
    assert fake.send("GET", "/userdata?dir=..%2F..")[0] == 403


def test_v2_userdata_lists_directories_first(fake):
    for name in ("v2%2Fz.json", "v2%2Fa%2Finner.json"):
        assert put(fake, name, b"{}")[0] == 200
    listed = fake.get_json("/v2/userdata?path=v2")
    assert [(e["type"], e["path"]) for e in listed] == [("directory", "v2/a"), ("file", "v2/a/inner.json"),
                                                          ("file", "v2/z.json")]
    assert {"name", "path", "type", "size", "modified"} == set(listed[1])
    assert any(e["path"] == "v2" for e in fake.get_json("/v2/userdata"))
    assert fake.send("GET", "/v2/userdata?path=missing")[0] == 404
    assert fake.send("GET", "/v2/userdata?path=v2%2Fz.json")[0] == 400
    assert fake.send("GET", "/v2/userdata?path=..%2F..")[0] == 400


def test_multi_user_mode_keys_files_by_the_comfy_user_header(tmp_path):
    with harness.running_fake(args=["--multi-user", "--user-directory", str(tmp_path)]) as fake:
        assert fake.get_json("/users") == {"storage": "server", "users": {}}
        user_id = fake.post_json("/users", {"username": "Ann Lee"})
        assert user_id.startswith("Ann-Lee_")
        assert fake.request("POST", "/users", {"username": "Ann Lee"}) == (400, b'{"error": "Duplicate username."}')
        assert fake.request("POST", "/users", {"username": "__system"})[0] == 400
        assert json.loads((tmp_path / "users.json").read_text()) == {user_id: "Ann Lee"}
        header = {"comfy-user": user_id, "Content-Type": "application/json"}
        assert fake.send("POST", "/settings/Comfy.X", b"5", header)[0] == 200
        assert json.loads((tmp_path / user_id / "comfy.settings.json").read_text()) == {"Comfy.X": 5}
        # Without a header the user is "default", unknown here: settings answer 401, userdata fails (500).
        assert fake.send("GET", "/settings")[0] == 401
        assert fake.send("GET", "/userdata?dir=x", headers={"comfy-user": "__system"})[0] == 500
