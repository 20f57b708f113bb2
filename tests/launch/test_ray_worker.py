"""The reusable Ray piece without a cluster: the token, the join errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfyrig.errors import LaunchError
from comfyrig.launch.ray_worker import cluster_gpus, connect, connect_error, token_available


def test_token_sources(tmp_path: Path) -> None:
    assert token_available({}, home=tmp_path) is None
    assert token_available({"RAY_AUTH_TOKEN": "x"}, home=tmp_path) == "RAY_AUTH_TOKEN"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t")
    assert token_available({}, home=tmp_path) == str(tmp_path / ".ray" / "auth_token")


@pytest.mark.parametrize(("target", "mode", "token", "answers", "says", "never"), [
    ("10.0.0.1:6379", "token", "/home/u/.ray/auth_token", True, "refused this machine's token", "Start it first"),
    ("10.0.0.1:6379", None, None, True, "RAY_AUTH_MODE=token", "Start it first"),
    ("10.0.0.1:6379", None, None, False, "Nothing answers at 10.0.0.1:6379", "token"),
    ("auto", None, None, False, "Start one first", "token"),
])
def test_join_errors_say_what_is_wrong(target: str, mode: str | None, token: str | None, answers: bool,
                                       says: str, never: str) -> None:
    text = connect_error(target, ConnectionError("Failed to connect to Ray cluster"), mode, token, answers=answers)
    assert says in text and never not in text
    assert "\n" not in text


class RefusingRay:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def init(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:1.")


def test_connect_turns_token_mode_on_and_raises_one_paragraph(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from comfyrig.launch import ray_worker

    token = tmp_path / "tok"
    token.write_text("t")
    # This process's Ray config and environment stay as they were: the switch is recorded only.
    switched: list[bool] = []
    monkeypatch.setattr(ray_worker, "_token_mode", lambda: switched.append(True))
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "error")
    ray = RefusingRay()
    with pytest.raises(LaunchError) as info:
        connect(ray, "127.0.0.1:1", {"RAY_AUTH_TOKEN_PATH": str(token)})
    assert switched == [True]  # Ray itself would not, for an explicit address
    with pytest.raises(LaunchError):
        connect(ray, "127.0.0.1:1", {"RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_MODE": "disabled"})
    assert switched == [True]  # an explicit mode is the user's
    assert ray.calls[0]["log_to_driver"] is False
    assert "Nothing answers at 127.0.0.1:1" in info.value.message


def test_cluster_gpus_lists_live_nodes_with_gpus() -> None:
    class Nodes:
        @staticmethod
        def nodes() -> list[dict[str, Any]]:
            return [
                {"NodeID": "a" * 56, "Alive": True, "NodeManagerAddress": "10.0.0.1", "NodeManagerHostname": "h1", "Resources": {"GPU": 2.0}},
                {"NodeID": "b" * 56, "Alive": False, "NodeManagerAddress": "10.0.0.2", "NodeManagerHostname": "h2", "Resources": {"GPU": 2.0}},
                {"NodeID": "c" * 56, "Alive": True, "NodeManagerAddress": "10.0.0.3", "NodeManagerHostname": "h3", "Resources": {"CPU": 8.0}},
            ]

    [node] = cluster_gpus(Nodes())
    assert (node.host, node.hostname, node.gpus) == ("10.0.0.1", "h1", 2)


class AuthenticationError(Exception):
    """Named as Ray's own (ray.exceptions.AuthenticationError): the class name is what counts."""


class TokenRefusingRay(RefusingRay):
    """A head that refuses this machine's token on the first GCS call."""

    class _raylet:
        class GcsClient:
            def __init__(self, address: str) -> None:
                raise AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect")


def test_a_refused_token_is_said_at_once_without_ray_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfyrig.launch import ray_worker

    monkeypatch.setattr(ray_worker, "TOKEN_FILE", tmp_path / "no-such-token")
    monkeypatch.setattr(ray_worker, "_answers", lambda target: True)  # the head's port answers
    token = tmp_path / "tok"
    token.write_text("not the head's")
    ray = TokenRefusingRay()
    with pytest.raises(LaunchError) as info:
        connect(ray, "127.0.0.1:1", {"RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_MODE": "token"})
    assert ray.calls == []  # ray.init would retry the refusal for ~20 s
    assert f"refused this machine's token ({token}" in info.value.message
    with pytest.raises(LaunchError) as info:
        connect(ray, "127.0.0.1:1", {"RAY_AUTH_MODE": "disabled"})
    assert "asks for a token and this machine has none" in info.value.message
    assert ray.calls == []


def test_the_interpreter_is_made_absolute_for_the_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative --python named another file (or none) in an actor's working folder, which is
    Ray's: the workers then sat in 'starting' without a word."""
    from comfyrig.launch.ray_worker import node_python

    monkeypatch.chdir(tmp_path)
    assert node_python(".venv/bin/python") == str(tmp_path / ".venv" / "bin" / "python")
    assert node_python("/opt/py/bin/python") == "/opt/py/bin/python"
    assert node_python("python3") == "python3"  # found on each node's PATH
