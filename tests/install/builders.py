"""Build what the install tests install from, with no network: wheels written
by hand (a wheel is a zip), a fake torch, and local git repositories."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def build_wheel(dest: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel of ``files`` (path in site-packages -> text)."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    meta = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: comfyrig-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    everything = {**files, **meta}
    record = []
    for path, text in everything.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in everything.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


_TORCH_CUDA = '''import os
from .. import version as _version


def device_count():
    if _version.cuda is None:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return int(os.environ.get("FAKE_TORCH_GPUS", "0"))
    return len([item for item in visible.split(",") if item.strip()])


def is_available():
    return device_count() > 0


def get_device_name(index):
    return "Fake GPU %d" % index


class _Properties:
    total_memory = 24 * 2**30
    uuid = ""


def get_device_properties(index):
    return _Properties()
'''


def build_fake_torch(dest: Path, version: str, cuda: str | None) -> Path:
    """A package named torch that answers run_torch_check's questions: it sees
    as many GPUs as CUDA_VISIBLE_DEVICES lists when it is a CUDA build."""
    return build_wheel(dest, "torch", version, {
        "torch/__init__.py": "from . import version, cuda\n__version__ = version.__version__\n",
        "torch/version.py": f"__version__ = {version!r}\ncuda = {cuda!r}\n",
        "torch/cuda/__init__.py": _TORCH_CUDA,
    })


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env={**GIT_ENV, "PATH": "/usr/bin:/bin"},
                          check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path, message: str, tag: str | None = None) -> str:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    if tag:
        git("tag", tag, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def fake_comfyui_repo(root: Path, requirements: str = "torch\ntinypkg==1.0  # a comment\n") -> Path:
    """A git repository shaped like ComfyUI: v0.3.9 and v0.3.76 tags (numeric,
    not string, order decides), plus a non-release tag."""
    repo = root / "ComfyUI.git"
    repo.mkdir(parents=True)
    git("init", "-q", cwd=repo)
    (repo / "main.py").write_text("print('fake ComfyUI')\n")
    (repo / "comfyui_version.py").write_text('__version__ = "0.3.9"\n')
    (repo / "requirements.txt").write_text(requirements)
    commit_all(repo, "old", "v0.3.9")
    (repo / "comfyui_version.py").write_text('__version__ = "0.3.76"\n')
    (repo / "comfy").mkdir()
    (repo / "comfy" / "cli_args.py").write_text('parser.add_argument("--enable-manager")\n')
    commit_all(repo, "0.3.76", "v0.3.76")
    (repo / "nightly.txt").write_text("unreleased\n")
    commit_all(repo, "unreleased", "nightly")
    return repo


def fake_node_pack(root: Path, name: str, requirements: str | None = None) -> tuple[Path, str]:
    """A node-pack repository; returns (path, the commit to pin) with a later commit on top."""
    repo = root / f"{name}.git"
    repo.mkdir(parents=True)
    git("init", "-q", cwd=repo)
    (repo / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    if requirements is not None:
        (repo / "requirements.txt").write_text(requirements)
    pinned = commit_all(repo, "known good")
    (repo / "newer.py").write_text("# newer\n")
    commit_all(repo, "newer")
    return repo, pinned
