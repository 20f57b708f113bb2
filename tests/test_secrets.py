"""One masking rule for every output: names that say credential, credentials inside URLs,
well-known token shapes, secret flags on command lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyrig.secrets import MASK, is_secret_name, mask_argv, mask_command, mask_env, mask_value

from .conftest import InProcessCli


@pytest.mark.parametrize("name", [
    "HF_TOKEN", "OPENAI_API_KEY", "MY_PASSWORD", "DB_PASSWD", "GITHUB_PAT", "HF_AUTH", "AWS_SECRET_ACCESS_KEY",
    "HFTOKEN", "CIVITAI_API_KEY", "api-key", "SENTRY_DSN", "SESSION_COOKIE", "GOOGLE_APPLICATION_CREDENTIALS",
    "SSH_PRIVATE_KEY", "REDIS_PASS", "KEY",
])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "PWD", "OLDPWD", "HOME", "KEYBOARD_LAYOUT", "PASSTHROUGH", "COMFYUI_ARGS",
                                  "CUDA_VISIBLE_DEVICES", "PATCH_LEVEL", "HF_HOME"])
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("HF_TOKEN", "hf_abcdef", MASK),
    ("DATABASE_URL", "postgres://u:pw@db.example:5432/x", f"postgres://u:{MASK}@db.example:5432/x"),
    ("PROXY", "http://me:s3cret@proxy:3128", f"http://me:{MASK}@proxy:3128"),
    ("NOTES", "key is hf_AbCdEfGhIjKlMnOpQr here", f"key is {MASK} here"),
    ("HF_HOME", "/models/hf", "/models/hf"),
    ("URL", "http://example.com/a:b@c", "http://example.com/a:b@c"),  # no password before a host
    ("HF_TOKEN", "", ""),
])
def test_values(name: str, value: str, shown: str) -> None:
    assert mask_value(name, value) == shown


def test_env_and_command_lines() -> None:
    assert mask_env({"HF_TOKEN": "x", "HF_HOME": "/h"}) == {"HF_TOKEN": MASK, "HF_HOME": "/h"}
    assert mask_command("python app.py --api-key abc --port 1 --hf-token=xyz") == f"python app.py --api-key {MASK} --port 1 --hf-token={MASK}"
    assert mask_argv(["main.py", "--api-key", "abc", "--port", "1", "--token=t"]) == ["main.py", "--api-key", MASK, "--port", "1", f"--token={MASK}"]


SECRETS = {"HF_TOKEN": "hf_plainsecret1", "OPENAI_API_KEY": "sk-plainsecret2", "MY_PASSWORD": "plainsecret3",
           "DB_PASSWD": "plainsecret4", "GITHUB_PAT": "plainsecret5", "HF_AUTH": "plainsecret6",
           "DATABASE_URL": "postgres://u:plainsecret7@db/x"}


@pytest.mark.parametrize("args", [[], ["--dry-run"], ["--dry-run", "--json"], ["config"], ["config", "--json"],
                                  ["--workers", "--dry-run", "--json"], ["doctor", "--no-torch"], ["doctor", "--no-torch", "--json"]])
def test_no_output_shows_a_secret_from_dotenv(run: InProcessCli, tmp_path: Path, args: list[str]) -> None:
    # The README's first command (bare 'comfyrig') printed HF_TOKEN=... in its launch plan.
    run.gpus(2)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    result = run(*args)
    assert result.returncode in (0, 1), result.stderr
    shown = result.stdout + result.stderr
    assert "plainsecret" not in shown
    if args[-1:] == ["--json"] and args[0] != "doctor":
        json.loads(result.stdout)
