#!/usr/bin/env python3
"""Build the carried bundle for the real-GPU harness (runs on the dev machine).

The lent GPU machine has no network and lacks some of ComfyUI's dependencies,
so everything it needs beyond its own Python travels in ``bundle/`` (git-ignored,
carried with the device call):

* ``comfyui.tar.xz``  -- the ComfyUI source tree, unpacking to ``comfyui/``,
  without .git, CI files, tests and caches (a few MB);
* ``wheels/``         -- one cp312 manylinux x86_64 (or pure-Python) wheel per
  missing package, pinned below, plus a locally built stand-in
  ``comfyui_frontend_package`` (only ``static/index.html``: the real 19 MB web
  UI is not needed for API use);
* ``sd15_checkpoint_layout.json`` -- tensor names and shapes for
  ``make_sd15_checkpoint.py``;
* ``MANIFEST.txt``   -- every file with its size and sha256.

Idempotent: wheels already in ``wheels/`` are reused, the tarball is rebuilt
only when the source tree changed.  Exits 1 if the bundle is over ``--max-mib``
or a pinned wheel does not satisfy ComfyUI's ``requirements.txt``.

    python -m gpulab.make_bundle --comfyui-src DIR [--out bundle/] [--layout FILE]

DIR is a ComfyUI source tree (or set COMFYUI_SRC); the layout file defaults to
``shared/data/sd15_checkpoint_layout.json`` in or beside the checkout.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

from gpulab.paths import BUNDLE, shared_data

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # pip always vendors a copy
    from pip._vendor.packaging.markers import default_environment  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

LAYOUT_NAME = "sd15_checkpoint_layout.json"

# Packages missing on the GPU machine's Python 3.12 (see COMFYUI-FACTS.md), one
# pinned version each: a second version of a wheel stops the whole offline install.
# ComfyUI needs the first block at start-up; comfyrig itself needs the last two.
PINS: dict[str, str] = {
    "alembic": "1.20.1",
    "sqlalchemy": "2.1.9",
    "greenlet": "3.5.6",
    "mako": "1.4.3",
    "av": "19.0.2",
    "torchsde": "0.2.6",
    "trampoline": "0.1.2",
    "pydantic": "2.14.4",
    "pydantic-core": "2.50.5",
    "pydantic-settings": "2.16.3",
    "annotated-types": "0.8.0",
    "typing-inspection": "0.4.5",
    # The machine has typing-extensions, of unknown version; pydantic 2.14 needs
    # >= 4.16.  Carrying it (45 kB) shadows the old one via PYTHONPATH; newer
    # typing-extensions is backward compatible, so torch & co. are unaffected.
    "typing-extensions": "4.16.0",
    "python-dotenv": "1.2.4",
    "websockets": "17.4",
    # comfyrig pins typer < 0.29 (0.29 imports pydantic on every command); the
    # machine's own typer is of unknown version, so the pinned one travels.
    "typer": "0.28.0",
    # websocket-client: the `websocket` module of ComfyUI's script_examples/websockets_api_example.py,
    # whose unmodified functions bench_gateway_clients.py runs as its clients (95 kB).
    "websocket-client": "1.9.2",
}

# What a current ComfyUI (0.16+; 0.24.0 pins the first two exactly) needs beyond PINS: the
# dynamic-VRAM allocator, the quantised-kernel package, the asset hasher and the math node's
# evaluator. Added when a packed tree lists comfy-aimdo in its requirements.txt (~4.5 MiB).
PINS_CURRENT: dict[str, str] = {
    "comfy-kitchen": "0.2.10",
    "comfy-aimdo": "0.4.9",
    "blake3": "1.0.11",
    "simpleeval": "1.0.8",
}

# Present in the machine's Python (KINDS.md's package list): a Requires-Dist on
# one of these is satisfied there, though its version is checked only at run time.
ON_DEVICE = {
    canonicalize_name(n)
    for n in ["torch", "torchvision", "torchaudio", "transformers", "safetensors", "numpy", "aiohttp", "yarl", "requests", "psutil", "scipy", "pillow", "tqdm", "pyyaml", "einops", "tokenizers", "sentencepiece", "rich", "typer", "httpx", "nvidia-ml-py", "markupsafe", "jinja2", "packaging", "pygments", "pytest", "pluggy", "iniconfig", "setuptools", "filelock", "shellingham", "annotated-doc"]
}

# ComfyUI requirements that may stay missing: they only disable some nodes or the
# bundled workflow templates/docs (COMFYUI-FACTS.md, "Optional").
OPTIONAL_MISSING = {
    canonicalize_name(n)
    for n in ("comfyui-workflow-templates", "comfyui-embedded-docs", "kornia", "spandrel", "pyopengl", "glfw")
}

FRONTEND = "comfyui-frontend-package"

PLATFORM_ARGS = [
    "--only-binary=:all:",
    "--python-version", "3.12",
    "--implementation", "cp",
    "--platform", "manylinux_2_28_x86_64",
    "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux2014_x86_64",
]

# Left out of comfyui.tar.xz: VCS and CI files, ComfyUI's own test suites, caches,
# and the fork's stray custom-node stub (one file, no __init__.py: ComfyUI would
# log IMPORT FAILED for it at every start, which upstream ComfyUI does not).
EXCLUDE_DIRS = {".git", "__pycache__", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "venv"}
# Also what a tree that has run (here, on the CPU) left behind: its databases and users (user/),
# images, temp folders; a fresh ComfyUI makes them again.
EXCLUDE_PATHS = {".github", ".ci", "tests", "tests-unit", "custom_nodes/ComfyUI-WanVideoWrapper",
                 "user", "temp", "comfyrig-temp"}
EXCLUDE_SUFFIXES = (".pyc", ".pyo")
ARCROOT = "comfyui"

# Stand-in index.html: ComfyUI serves its web root at "/"; API clients never read it.
INDEX_HTML = (
    "<!doctype html><title>ComfyUI (API only)</title>"
    "<p>Stand-in for comfyui-frontend-package: this ComfyUI was started for API use only.</p>\n"
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename[: -len(".whl")].split("-")
    return canonicalize_name(parts[0]), parts[1]


def wheel_metadata(path: Path):  # -> email.message.Message
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode())


# ---------------------------------------------------------------- ComfyUI tree


def source_files(src: Path) -> list[Path]:
    """Relative paths of the files that go into the tarball, sorted."""
    out: list[Path] = []
    for root, dirs, files in os.walk(src):
        rel_root = Path(root).relative_to(src)
        dirs[:] = sorted(
            d for d in dirs if d not in EXCLUDE_DIRS and (rel_root / d).as_posix() not in EXCLUDE_PATHS
            and rel_root.as_posix() != "output"  # images of earlier runs (output/gpu0, ...)
        )
        for f in sorted(files):
            if not f.endswith(EXCLUDE_SUFFIXES):
                out.append(rel_root / f)
    return out


def build_tarball(src: Path, dest: Path) -> str:
    files = source_files(src)
    fp = hashlib.sha256()
    for rel in files:
        st = (src / rel).stat()
        fp.update(f"{rel.as_posix()}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    fingerprint = fp.hexdigest()
    stamp = dest.with_name(dest.name + ".fingerprint")
    if dest.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return f"reused {dest.name} ({len(files)} files, source unchanged)"

    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    tmp = dest.with_suffix(".partial")
    with tarfile.open(tmp, "w:xz", preset=9) as tar:
        for rel in files:
            tar.add(src / rel, arcname=f"{ARCROOT}/{rel.as_posix()}", recursive=False, filter=clean)
        # Empty model folders (with their placeholder files) are already in `files`.
    os.replace(tmp, dest)
    stamp.write_text(fingerprint + "\n")
    return f"built {dest.name} from {len(files)} files"


# ---------------------------------------------------------------------- wheels


def download_wheels(wheels: Path, pins: dict[str, str] | None = None) -> list[str]:
    notes = []
    pins = PINS if pins is None else pins
    wheels.mkdir(parents=True, exist_ok=True)
    frontend = canonicalize_name(FRONTEND)
    wanted = {canonicalize_name(k): v for k, v in pins.items()}
    for w in sorted(wheels.glob("*.whl")):
        name, version = wheel_name_version(w.name)
        if name != frontend and wanted.get(name) != version:
            w.unlink()  # another version, or no longer pinned: exactly one wheel per package
            notes.append(f"removed {w.name}")

    for name, version in pins.items():
        cname = canonicalize_name(name)
        present = [w for w in wheels.glob("*.whl") if wheel_name_version(w.name) == (cname, version)]
        if present:
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *PLATFORM_ARGS,
               "-d", str(wheels), f"{name}=={version}"]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
            raise SystemExit(f"pip download {name}=={version} failed")
        notes.append(f"downloaded {name}=={version}")
    return notes


def comfyui_version(src: Path) -> str:
    """The tree's ``comfyui_version.__version__`` (read, not imported)."""
    for line in (src / "comfyui_version.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise SystemExit(f"{src}/comfyui_version.py has no __version__")


def needs_current_pins(src: Path) -> bool:
    """True for a ComfyUI that imports comfy-aimdo at start (0.16+): it needs PINS_CURRENT."""
    names = set()
    for line in (src / "requirements.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            names.add(canonicalize_name(Requirement(text).name))
    return canonicalize_name("comfy-aimdo") in names


def frontend_version(src: Path) -> str:
    for line in (src / "requirements.txt").read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if req and canonicalize_name(Requirement(req).name) == canonicalize_name(FRONTEND):
            spec = [s for s in Requirement(req).specifier if s.operator == "=="]
            if spec:
                return spec[0].version
    raise SystemExit(f"{src}/requirements.txt pins no {FRONTEND}==X.Y.Z")


def build_frontend_wheel(wheels: Path, version: str) -> str:
    """A minimal, reproducible py3-none-any wheel named like the real frontend."""
    dist = f"comfyui_frontend_package-{version}"
    dest = wheels / f"{dist}-py3-none-any.whl"
    for old in wheels.glob("comfyui_frontend_package-*.whl"):
        if old != dest:
            old.unlink()
    files = {
        "comfyui_frontend_package/__init__.py": "# Stand-in built by comfyrig's make_bundle.py (API use only).\n",
        "comfyui_frontend_package/static/index.html": INDEX_HTML,
        f"{dist}.dist-info/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: comfyui_frontend_package\nVersion: {version}\n"
            "Summary: Stand-in for the ComfyUI web frontend (index.html only), for API-only use\n"
        ),
        f"{dist}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: comfyrig-make-bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist}.dist-info/top_level.txt": "comfyui_frontend_package\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = hashlib.sha256(data).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, text in files.items():
            zi = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, text)
    data = buf.getvalue()
    if dest.is_file() and dest.read_bytes() == data:
        return f"reused {dest.name}"
    dest.write_bytes(data)
    return f"built {dest.name}"


# ---------------------------------------------------------------------- checks


def device_environment() -> dict[str, str]:
    env = dict(default_environment())
    env.update(python_version="3.12", python_full_version="3.12.3", implementation_name="cpython",
               platform_python_implementation="CPython", sys_platform="linux", platform_system="Linux",
               platform_machine="x86_64", os_name="posix")
    return env


def check_requirements(src: Path, wheels: Path) -> list[str]:
    """Errors: ComfyUI requirements or wheel dependencies the bundle + machine don't meet."""
    errors: list[str] = []
    warnings: list[str] = []
    versions: dict[str, str] = {}
    for w in wheels.glob("*.whl"):
        name, version = wheel_name_version(w.name)
        if name in versions:
            errors.append(f"two wheels for {name}")
        versions[name] = version
    env = device_environment()

    for line in (src / "requirements.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name in versions:
            if name == canonicalize_name(FRONTEND) and all(
                    s.operator == "==" and Version(versions[name]) >= Version(s.version) for s in req.specifier):
                if not req.specifier.contains(Version(versions[name]), prereleases=True):
                    warnings.append(f"{src.name}: ComfyUI pins {req}; the stand-in is {versions[name]} (newer: "
                                    "ComfyUI only warns about an older frontend)")
                continue
            if not req.specifier.contains(Version(versions[name]), prereleases=True):
                errors.append(f"ComfyUI requires {req}, bundle has {name} {versions[name]}")
        elif name not in ON_DEVICE:
            (warnings if name in OPTIONAL_MISSING else errors).append(
                f"ComfyUI lists {req}: neither bundled nor known on the machine"
            )

    for w in sorted(wheels.glob("*.whl")):
        meta = wheel_metadata(w)
        rp = meta.get("Requires-Python")
        if rp and not SpecifierSet(rp).contains("3.12.3"):
            errors.append(f"{w.name}: Requires-Python {rp} excludes 3.12")
        for raw in meta.get_all("Requires-Dist") or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            name = canonicalize_name(req.name)
            if name in versions:
                if not req.specifier.contains(Version(versions[name]), prereleases=True):
                    errors.append(f"{w.name} needs {req}, bundle has {versions[name]}")
            elif name not in ON_DEVICE:
                errors.append(f"{w.name} needs {req}: neither bundled nor known on the machine")
    for msg in warnings:
        print(f"  note: {msg}" + ("" if "stand-in" in msg else " (optional: some nodes or templates missing)"))
    return errors


# -------------------------------------------------------------------- manifest


def write_manifest(out: Path) -> int:
    rows = []
    total = 0
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.txt"):
        size = path.stat().st_size
        total += size
        rows.append(f"{size:>12}  {sha256(path)}  {path.relative_to(out).as_posix()}")
    body = "\n".join(rows)
    (out / "MANIFEST.txt").write_text(
        "# comfyrig real-GPU harness bundle: size (bytes), sha256, path\n"
        f"{body}\n{total:>12}  total ({total / 2**20:.1f} MiB)\n"
    )
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src_env = os.environ.get("COMFYUI_SRC")
    p.add_argument("--comfyui-src", type=Path, default=Path(src_env) if src_env else None, required=not src_env,
                   help="the ComfyUI source tree to pack (default: $COMFYUI_SRC)")
    p.add_argument("--out", type=Path, default=BUNDLE)
    p.add_argument("--layout", type=Path, default=shared_data(LAYOUT_NAME),
                   help=f"the SD1.5 tensor layout (default: shared/data/{LAYOUT_NAME} in or beside the checkout)")
    p.add_argument("--max-mib", type=float, default=60.0)
    p.add_argument("--multigpu-src", type=Path, default=None,
                   help="an exported ComfyUI-MultiGPU tree (e.g. commit c5e3e6a, v2.5.11, known to load in 0.3.76); "
                   "packed as multigpu.tar.xz for bench_distorch.py")
    p.add_argument("--extra-comfyui-src", type=Path, action="append", default=[], metavar="DIR",
                   help="another ComfyUI tree (e.g. 0.24.0 beside 0.3.76), packed as comfyui-VERSION.tar.xz and "
                   "unpacked by remote_setup.sh to /tmp/comfyui-VERSION; its extra wheels (PINS_CURRENT) are added")
    args = p.parse_args(argv)

    if args.layout is None:
        p.error(f"no {LAYOUT_NAME} in shared/data/ in or beside the checkout: give --layout FILE")
    src, out = args.comfyui_src.resolve(), args.out.resolve()
    extras = [e.resolve() for e in args.extra_comfyui_src]
    for tree in (src, *extras):
        if not (tree / "main.py").is_file() or not (tree / "requirements.txt").is_file():
            raise SystemExit(f"{tree} does not look like a ComfyUI tree (no main.py / requirements.txt)")
    out.mkdir(parents=True, exist_ok=True)
    wheels = out / "wheels"

    print(f"bundle: {out}")
    print("  " + build_tarball(src, out / "comfyui.tar.xz"))
    extra_names = {f"comfyui-{comfyui_version(e)}.tar.xz": e for e in extras}
    for old in out.glob("comfyui-*.tar.xz"):
        if old.name not in extra_names:
            old.unlink()
            old.with_name(old.name + ".fingerprint").unlink(missing_ok=True)
    for name, tree in extra_names.items():
        print("  " + build_tarball(tree, out / name))
    pins = dict(PINS)
    if any(needs_current_pins(t) for t in (src, *extras)):
        pins.update(PINS_CURRENT)
    for note in download_wheels(wheels, pins):
        print("  " + note)
    print("  " + build_frontend_wheel(wheels, max((frontend_version(t) for t in (src, *extras)), key=Version)))
    if args.multigpu_src is not None:
        with tarfile.open(out / "multigpu.tar.xz", "w:xz") as tar:
            tar.add(args.multigpu_src, arcname="ComfyUI-MultiGPU",
                    filter=lambda ti: None if "/.git" in ti.name or ti.name.endswith((".gif", ".png", ".jpg")) else ti)
        print(f"  multigpu.tar.xz {(out / 'multigpu.tar.xz').stat().st_size / 2**20:.2f} MiB from {args.multigpu_src}")
    shutil.copyfile(args.layout, out / "sd15_checkpoint_layout.json")
    json.loads((out / "sd15_checkpoint_layout.json").read_text())  # fail early on a broken copy

    errors: list[str] = []
    for tree in (src, *extras):
        errors += [e for e in check_requirements(tree, wheels) if e not in errors]
    total = write_manifest(out)
    trees = sum(t.stat().st_size for t in out.glob("comfyui*.tar.xz"))
    by_part = {
        "comfyui*.tar.xz": trees,
        "wheels/": sum(w.stat().st_size for w in wheels.glob("*.whl")),
        "other": total - trees - sum(w.stat().st_size for w in wheels.glob("*.whl")),
    }
    for part, size in by_part.items():
        print(f"  {part:<16} {size / 2**20:7.2f} MiB")
    print(f"  total            {total / 2**20:7.2f} MiB ({len(list(wheels.glob('*.whl')))} wheels)")
    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    if total > args.max_mib * 2**20:
        print(f"ERROR: bundle is {total / 2**20:.1f} MiB, over --max-mib {args.max_mib}", file=sys.stderr)
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
