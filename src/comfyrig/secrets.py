"""One rule for what is a secret, used by every output comfyrig writes (a foundation module,
like errors.py: every layer may use it).

The launch plan (text and JSON), ``config``, ``doctor``, ``monitor``'s command lines, a
port holder's command line in an error: whatever shows a variable or a command line
passes it through here. A value is hidden when its name says it is a credential (words
like TOKEN, SECRET, PASSWORD, PASSWD, API_KEY, AUTH, PAT, COOKIE, CREDENTIALS), when it
looks like a well-known token (``hf_...``, ``sk-...``, ``ghp_...``), and a password inside
a URL (``postgres://user:pw@host``) is hidden whatever the name. Hidden means "****": a
person still sees that the variable is set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MASK", "is_secret_name", "mask_argv", "mask_command", "mask_env", "mask_value"]

MASK = "****"
# Anywhere in the name (also glued to other words: HFTOKEN, DB_PASSWORD_FILE is a path though).
_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY", "CREDENTIAL", "PRIVATEKEY", "COOKIE")
# Only as a whole word of the name (KEYBOARD, PASSTHROUGH, PATH and PATCH are not secrets).
_WORDS = frozenset({"KEY", "PASS", "PW", "PWD", "AUTH", "PAT", "DSN", "SIGNATURE", "SIG"})
# Not secrets although they match: the working directories.
_NOT_SECRETS = frozenset({"PWD", "OLDPWD"})
# Well-known token shapes: Hugging Face, OpenAI/Anthropic-style, GitHub, Slack, AWS key ids.
_TOKEN_VALUE = re.compile(r"\b(hf_|sk-|sk_|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|xox[abpr]-|AKIA)[A-Za-z0-9_\-]{12,}")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?P<at>@)")
# --api-key=VALUE / --token VALUE on a command line.
_FLAG_VALUE = re.compile(r"(?P<flag>--?[A-Za-z0-9][A-Za-z0-9_\-]*)(?P<sep>=|\s+)(?P<value>\S+)")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    if upper in _NOT_SECRETS:
        return False
    if any(marker in upper.replace("_", "").replace("-", "") for marker in _MARKERS):
        return True
    return any(word in _WORDS for word in re.split(r"[^A-Z0-9]+", upper) if word)


def _mask_inside(text: str) -> str:
    """URL passwords and well-known token shapes hidden, the rest kept."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    return _TOKEN_VALUE.sub(MASK, text)


def mask_value(name: str, value: object) -> object:
    """``value`` as it may be shown under the name ``name``."""
    if not isinstance(value, str) or not value:
        return value
    if is_secret_name(name):
        return MASK
    return _mask_inside(value)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """Every variable of ``env``, shown safely."""
    return {key: str(mask_value(key, value)) for key, value in env.items()}


def mask_command(text: str) -> str:
    """A command line shown safely: the value of a secret-named flag (``--api-key X``,
    ``--hf-token=X``), URL passwords and well-known tokens hidden."""

    def flag(match: re.Match[str]) -> str:
        if is_secret_name(match["flag"].lstrip("-")):
            return f"{match['flag']}{match['sep']}{MASK}"
        return match[0]

    return _mask_inside(_FLAG_VALUE.sub(flag, text))


def mask_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """An argv shown safely: as ``mask_command``, where a secret flag's value may also be the
    next argument (``--api-key``, ``X``)."""
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _ = token.partition("=")
        if token.startswith("-") and is_secret_name(name.lstrip("-")):
            out.append(f"{name}={MASK}" if eq else token)
            hide_next = not eq
            continue
        out.append(_mask_inside(token))
    return out
