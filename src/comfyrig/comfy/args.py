"""Reading ComfyUI's command line the way its argparse parser will.

comfyrig starts ComfyUI as ``main.py --listen L --port P <user flags>``, and
argparse keeps the last value given, so a ``--listen`` or ``--port`` in
COMFYUI_ARGS silently wins over COMFYUI_LISTEN / COMFYUI_PORT. argparse also
accepts any unambiguous prefix of a long flag (``--low`` for ``--lowvram``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config.settings import Settings

__all__ = ["effective_listen", "effective_port", "flag_name", "last_value", "resolve_flag", "user_args"]

# ComfyUI's "--listen" with no address (cli_args.py: const="0.0.0.0,::").
LISTEN_ALL = "0.0.0.0,::"


def user_args(settings: Settings) -> tuple[str, ...]:
    """The ComfyUI flags the user added: COMFYUI_ARGS, then those after ``--``."""
    return (*settings.comfyui_args.value, *settings.extra_args)


def flag_name(token: str) -> str:
    """"--port=8190" -> "--port"."""
    return token.split("=", 1)[0]


def resolve_flag(token: str, known: frozenset[str] | None) -> str | None:
    """The flag argparse would take ``token`` for: exact, or a unique prefix; None if unknown."""
    name = flag_name(token)
    if known is None or name in known:
        return name
    matches = [flag for flag in known if flag.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def last_value(args: Sequence[str], flag: str, const: str | None = None) -> str | None:
    """The value of the last ``flag`` in ``args`` (``--f v`` or ``--f=v``); ``const`` when it has none."""
    value = None
    for i, token in enumerate(args):
        if token == flag:
            following = args[i + 1] if i + 1 < len(args) else None
            value = following if following is not None and not following.startswith("-") else const
        elif token.startswith(flag + "="):
            value = token.split("=", 1)[1]
    return value


def effective_listen(settings: Settings) -> str:
    given = last_value(user_args(settings), "--listen", const=LISTEN_ALL)
    return given if given is not None else str(settings.listen.value)


def effective_port(settings: Settings) -> int | None:
    """The port ComfyUI will bind; None for "auto" (chosen at launch)."""
    given = last_value(user_args(settings), "--port")
    if given is not None:
        try:
            return int(given)
        except ValueError:
            return None  # ComfyUI itself rejects it; the args check says so
    value = settings.port.value
    return value if isinstance(value, int) else None
