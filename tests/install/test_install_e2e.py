"""``comfyrig install`` run as a user would, with no network: ComfyUI and the
node packs come from local git repositories, torch is a fake wheel in a
local folder, and the GPUs are simulated.

One install (one venv) is shared by the module; every test leaves it
complete again, so each can also run alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfyrig.config.envfile import read_env_file

from ..conftest import Cli
from .builders import build_fake_torch, build_wheel, fake_comfyui_repo, fake_node_pack, git

# One shared module fixture (an install, a server): keep the module on one xdist worker.
pytestmark = [pytest.mark.xdist_group("install"), pytest.mark.e2e]

TWO_GPUS_CUDA_124 = json.dumps({
    "driver_version": "550.54.14", "cuda_driver_version": "12.4",
    "gpus": [{"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576}] * 2,
})


@dataclass
class Site:
    root: Path
    comfy_repo: Path
    multigpu_repo: Path
    multigpu_pin: str
    manager_repo: Path
    torch_cu124: Path
    torch_cpu: Path
    wheels: Path
    target: Path

    def cli(self) -> Cli:
        cli = Cli(self.root)
        # pip must see only the test's folders: no user/global config, no PIP_* from the machine
        cli.env = {k: v for k, v in cli.env.items() if not k.startswith("PIP_")}
        cli.env["PIP_CONFIG_FILE"] = os.devnull
        cli.env["COMFYRIG_FAKE_GPUS"] = TWO_GPUS_CUDA_124
        cli.env["COLUMNS"] = "200"
        return cli

    def install_args(self, *extra: str) -> list[str]:
        return ["install", str(self.target), "--repo", f"file://{self.comfy_repo}", "--torch-index", str(self.torch_cu124),
                "--wheels", str(self.wheels), *extra]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    build_wheel(wheels, "tinypkg", "1.0", {"tinypkg/__init__.py": "VALUE = 1\n"})
    # ComfyUI imports requests without declaring it; the install adds it (offline here: a stand-in).
    build_wheel(wheels, "requests", "2.32.0", {"requests/__init__.py": ""})
    build_wheel(wheels, "managerdep", "0.1", {"managerdep/__init__.py": ""})
    build_fake_torch(root / "torch" / "cu124", "2.5.1+cu124", "12.4")
    build_fake_torch(root / "torch" / "cpu", "2.5.1+cpu", None)
    multigpu, pin = fake_node_pack(root, "ComfyUI-MultiGPU")
    manager, _ = fake_node_pack(root, "ComfyUI-Manager", requirements="managerdep\n")
    return Site(root, fake_comfyui_repo(root), multigpu, pin, manager, root / "torch" / "cu124", root / "torch" / "cpu",
                wheels, root / "ComfyUI")


@pytest.fixture(scope="module")
def installed(site: Site) -> subprocess.CompletedProcess[str]:
    cli = site.cli()
    result = cli(*site.install_args(
        "--with-multigpu", "--multigpu-repo", f"file://{site.multigpu_repo}", "--multigpu-ref", site.multigpu_pin,
        "--with-manager", "--manager-repo", f"file://{site.manager_repo}",
    ), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def venv_python(site: Site) -> str:
    return str(site.target / ".venv" / "bin" / "python")


def pip_list(site: Site, target: Path | None = None) -> dict[str, str]:
    python = target / ".venv" / "bin" / "python" if target is not None else venv_python(site)
    out = subprocess.run([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    return {d["name"].lower(): d["version"] for d in json.loads(out)}


def test_fresh_install_from_local_sources(site: Site, installed: subprocess.CompletedProcess[str]) -> None:
    out = installed.stdout
    assert git("describe", "--tags", cwd=site.target) == "v0.3.76"  # the newest release tag, not 'nightly'
    assert not (site.target / "nightly.txt").exists()
    packages = pip_list(site)
    assert packages["torch"] == "2.5.1+cu124" and packages["tinypkg"] == "1.0" and packages["managerdep"] == "0.1"
    assert git("rev-parse", "HEAD", cwd=site.target / "custom_nodes" / "ComfyUI-MultiGPU") == site.multigpu_pin
    assert (site.target / "custom_nodes" / "ComfyUI-Manager" / "__init__.py").is_file()
    # every command is printed as it runs, as an argv (no shell)
    assert f"$ git clone --no-checkout file://{site.comfy_repo} {site.target}" in out
    assert f"$ {venv_python(site)} -m pip install torch --no-index --find-links {site.torch_cu124}" in out
    # the cross-check in the new venv and the panel
    assert "🎮 Multi GPU Mode" in out and "CUDA_VISIBLE_DEVICES: 0,1" in out
    assert "torch sees exactly the selected GPUs" in out and "Start it: comfyrig launch --comfyui-dir" in out
    env = read_env_file(site.target / ".env", {})
    assert env.values == {}  # everything commented: defaults apply
    text = (site.target / ".env").read_text()
    assert "#   GPU 1: NVIDIA GeForce RTX 3090, 24.00 GB VRAM" in text and "# CUDA_VISIBLE_DEVICES=0,1" in text


def test_rerun_verifies_and_does_nothing(site: Site, installed: subprocess.CompletedProcess[str]) -> None:
    result = site.cli()(*site.install_args("--with-multigpu", "--multigpu-ref", site.multigpu_pin, "--with-manager"))
    assert result.returncode == 0, result.stderr
    assert "0 steps to run" in result.stdout and "Nothing to do" in result.stdout and "→ [" not in result.stdout


def test_wrong_torch_is_replaced(site: Site, installed: subprocess.CompletedProcess[str]) -> None:
    subprocess.run([venv_python(site), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(site.torch_cpu),
                    "--force-reinstall", "torch==2.5.1+cpu"], check=True, env={**site.cli().env})
    result = site.cli()(*site.install_args())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Remove the mismatched torch" in result.stdout and "cpu build, but this machine needs cu124" in result.stdout
    assert pip_list(site)["torch"] == "2.5.1+cu124"


def test_half_written_packages_are_repaired(site: Site, installed: subprocess.CompletedProcess[str]) -> None:
    # What a full disk or Ctrl-C in the middle of pip leaves: files half there, RECORD (written last) missing.
    site_packages = next((site.target / ".venv" / "lib").glob("python*/site-packages"))
    for name, version in (("tinypkg", "1.0"), ("torch", "2.5.1+cu124")):
        (site_packages / f"{name}-{version}.dist-info" / "RECORD").unlink()
    shutil.rmtree(site_packages / "torch" / "cuda")
    (site_packages / "tinypkg" / "__init__.py").unlink()
    result = site.cli()(*site.install_args())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Reinstall half-installed packages" in result.stdout and "--ignore-installed" in result.stdout
    assert "torch sees exactly the selected GPUs" in result.stdout
    check = subprocess.run([venv_python(site), "-c", "import tinypkg; print(tinypkg.VALUE)"], capture_output=True, text=True, check=False)
    assert check.stdout.strip() == "1"


def test_nodes_add_multigpu(site: Site, installed: subprocess.CompletedProcess[str]) -> None:
    cli = site.cli()
    pack = site.target / "custom_nodes" / "ComfyUI-MultiGPU"
    shutil.rmtree(pack)
    args = ["nodes", "add", "multigpu", "--comfyui-dir", str(site.target), "--repo", f"file://{site.multigpu_repo}"]
    # the table's commit is upstream's, absent from the local repository: the plan names it, and why
    plan = json.loads(cli(*args, "--dry-run", "--json").stdout)["plan"]
    (node,) = plan["node_packs"]
    assert node["label"] == "v2.5.11" and "0.3.76" in node["reason"]
    assert [s["key"] for s in plan["steps"]] == ["multigpu:clone", "multigpu:checkout", "multigpu:undeclared", "multigpu:requirements"]
    result = cli(*args, "--ref", site.multigpu_pin)
    assert result.returncode == 0, result.stdout + result.stderr
    assert git("rev-parse", "HEAD", cwd=pack) == site.multigpu_pin and "restart ComfyUI" in result.stdout
    again = cli(*args, "--ref", site.multigpu_pin)
    assert again.returncode == 0 and "0 steps to run" in again.stdout


@pytest.mark.parametrize(
    ("gpus", "tag"),
    [
        (TWO_GPUS_CUDA_124, "cu124"),
        (json.dumps({"driver_version": "580.82", "cuda_driver_version": "13.0",
                     "gpus": [{"name": "H100", "memory_total_mib": 81559, "compute_capability": "9.0"}]}), "cu130"),
        (json.dumps({"driver_version": "580.82", "cuda_driver_version": "13.0",
                     "gpus": [{"name": "Tesla P40", "memory_total_mib": 24576, "compute_capability": "6.1"}]}), "cu126"),
        ("[]", "cpu"),
    ],
)
def test_dry_run_json_chooses_the_wheels(site: Site, gpus: str, tag: str) -> None:
    cli = site.cli()
    result = cli("install", str(site.root / "new"), "--repo", f"file://{site.comfy_repo}", "--dry-run", "--json",
                 env={"COMFYRIG_FAKE_GPUS": gpus})
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)["plan"]
    assert plan["ref"] == "v0.3.76" and plan["torch"]["tag"] == tag
    assert plan["torch"]["index"] == f"https://download.pytorch.org/whl/{tag}"
    assert not (site.root / "new").exists()  # a dry run changes nothing


def test_dry_run_text(site: Site) -> None:
    result = site.cli()("install", str(site.root / "new"), "--repo", f"file://{site.comfy_repo}", "--dry-run")
    assert result.returncode == 0
    assert "comfyrig install plan" in result.stdout and "driver 550.54.14 supports CUDA 12.4" in result.stdout
    assert "6 steps to run, 0 already done." in result.stdout


@pytest.mark.parametrize(
    ("make", "args", "code", "needles"),
    [
        ("none", ["--repo", "https://127.0.0.1:9/ComfyUI.git"], 1, ["Cannot reach https://127.0.0.1:9/ComfyUI.git", "127.0.0.1 port 9"]),
        ("junk", [], 2, ["is not a ComfyUI checkout", "notes.txt", "--force"]),
        ("file", [], 2, ["is a file, not a folder"]),
        ("none", ["--cuda", "12.3"], 2, ["--cuda 12.3", "choose one of"]),
        ("none", ["--cuda", "12.8", "--torch-index", "/x"], 2, ["not both"]),
        ("old-driver", [], 1, ["driver 470.57", "520.61.05"]),
    ],
)
def test_bad_input_and_faults_are_one_paragraph(site: Site, tmp_path: Path, make: str, args: list[str], code: int,
                                                needles: list[str]) -> None:
    cli = site.cli()
    target = tmp_path / "target"
    if make == "junk":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    elif make == "file":
        target.write_text("a file")
    env = {}
    if make == "old-driver":
        env["COMFYRIG_FAKE_GPUS"] = json.dumps({"driver_version": "470.57", "cuda_driver_version": "11.4",
                                                "gpus": [{"name": "Tesla K80", "memory_total_mib": 11441}]})
    if "--repo" not in args:
        args = [*args, "--repo", f"file://{site.comfy_repo}"]
    result = cli("install", str(target), *args, env=env)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.startswith("comfyrig: error:") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr
    if make == "junk":
        assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # refused, nothing touched


def test_no_git_is_a_clear_message(site: Site, tmp_path: Path) -> None:
    cli = site.cli()
    result = cli("install", str(tmp_path / "c"), "--repo", f"file://{site.comfy_repo}", env={"PATH": str(tmp_path)})
    assert result.returncode == 1 and "git is not installed" in result.stderr and "apt-get install git" in result.stderr


def test_failed_clone_shows_gits_output_and_how_to_retry(site: Site, tmp_path: Path) -> None:
    cli = site.cli()
    result = cli("install", str(tmp_path / "c"), "--repo", f"file://{tmp_path}/missing.git", "--ref", "v0.3.76")
    assert result.returncode == 1
    assert "✗ [1/" in result.stdout and "does not appear to be a git repository" in result.stdout  # the output panel
    assert "failed (exit code 128)" in result.stderr and "run the same command again" in result.stderr


def test_force_into_a_folder_with_files_keeps_them(site: Site, tmp_path: Path) -> None:
    target = tmp_path / "mixed"
    (target / "models").mkdir(parents=True)
    (target / "models" / "mine.safetensors").write_bytes(b"w")
    result = site.cli()("install", str(target), "--repo", f"file://{site.comfy_repo}", "--force", "--dry-run", "--json")
    steps = [s["key"] for s in json.loads(result.stdout)["plan"]["steps"]]
    assert steps[:4] == ["git-init", "remote", "fetch", "checkout"]
    assert (target / "models" / "mine.safetensors").read_bytes() == b"w" and not (target / ".git").exists()


def test_rerun_json(site: Site, installed: subprocess.CompletedProcess[str]) -> None:
    result = site.cli()(*site.install_args("--json"))
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] and report["ran"] == [] and report["torch"]["device_count"] == 2


def test_ctrl_c_mid_step_then_the_next_run_repairs_and_keeps_user_files(site: Site, tmp_path: Path) -> None:
    import signal
    import sys
    import time

    slow = tmp_path / "slowpython"  # creates venvs very slowly, so Ctrl-C lands mid-step
    slow.write_text(f"#!{sys.executable}\nimport time\nprint('creating venv...', flush=True)\ntime.sleep(60)\n")
    slow.chmod(0o755)
    target = tmp_path / "ComfyUI"
    cli = site.cli()
    args = ["install", str(target), "--repo", f"file://{site.comfy_repo}", "--torch-index", str(site.torch_cu124),
            "--wheels", str(site.wheels), "--no-env-file"]
    from ..conftest import comfyrig_exe

    proc = subprocess.Popen([*comfyrig_exe(), *args, "--python", str(slow)], cwd=cli.cwd, env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if "-m venv" in line or time.monotonic() > deadline:
            break
    # Interrupt while the slow step's own process really runs, not at a guessed moment.
    wait_for_process((str(slow), "-m\0venv"), deadline)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "Interrupted during 'Create the virtual environment'" in err and "run the same command again" in err.lower()
    assert (target / "main.py").is_file()  # the checkout before it stays
    # What a person keeps in the folder survives the repair (the venv is missing here, as after
    # deleting it by hand: it is created again, nothing else of theirs is touched).
    mine = {
        "models/checkpoints/x.safetensors": "weights", "custom_nodes/foo/__init__.py": "# mine\n",
        "user/default/settings.json": "{}", "output/img.png": "png", ".env": "COMFYUI_PORT=8200\n",
    }
    for name, text in mine.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
    result = cli(*[a for a in args if a != "--no-env-file"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Create the virtual environment" in result.stdout and "$ git clone" not in result.stdout
    assert pip_list(site, target)["tinypkg"] == "1.0"
    assert {name: (target / name).read_text() for name in mine} == mine  # .env is never overwritten either


def wait_for_process(needles: tuple[str, ...], deadline: float) -> None:
    """Until a process whose command line (NUL-separated) holds every needle exists (or the deadline)."""
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
                if cmdline and all(n.encode() in cmdline for n in needles):
                    return
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no process with {needles} before the deadline")
