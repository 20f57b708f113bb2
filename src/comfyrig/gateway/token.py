"""The gateway's token: where it comes from (``gateway_token``, which makes one on first use)
and how the commands that talk to a running gateway find it (``client_headers``, which never
makes one). Light (no aiohttp): ``status``, ``monitor`` and ``doctor`` import it."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from ..launch.registry import StateDir

__all__ = ["TOKEN_FILE", "TOKEN_VARIABLE", "client_headers", "gateway_token"]

TOKEN_VARIABLE = "COMFYRIG_AUTH_TOKEN"
TOKEN_FILE = "gateway-token"


def gateway_token(environ: Mapping[str, str], state: StateDir) -> tuple[str, str]:
    """The token and where it comes from: COMFYRIG_AUTH_TOKEN, else a file in comfyrig's private
    state folder (0600, a random token made on first use). The token itself is never shown."""
    given = environ.get(TOKEN_VARIABLE, "").strip()
    if given:
        return given, TOKEN_VARIABLE
    token = (state.read_private(TOKEN_FILE) or "").strip()
    if not token:
        token = secrets.token_urlsafe(32)
        state.write_private(TOKEN_FILE, token + "\n")
    return token, str(state.root / TOKEN_FILE)


def client_headers(environ: Mapping[str, str], state: StateDir, auth: bool) -> dict[str, str]:
    """What a comfyrig command sends to a gateway of this user that asks for a token (``auth``)."""
    return {"Authorization": f"Bearer {_known(environ, state)}"} if auth else {}


def _known(environ: Mapping[str, str], state: StateDir) -> str:
    return environ.get(TOKEN_VARIABLE, "").strip() or (state.read_private(TOKEN_FILE) or "").strip()
