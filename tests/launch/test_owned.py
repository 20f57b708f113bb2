"""comfyrig-owned flags among the user's ComfyUI flags: taken over or refused, whatever the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyrig.comfy.checkout import flag_table
from comfyrig.errors import ConfigError
from comfyrig.launch.compose import LaunchRequest, compose
from comfyrig.launch.plan import is_loopback

from ..launching import FAKE_DIR
from .test_compose import Ports, facts, settings

TABLE = flag_table(FAKE_DIR)  # the fake's cli_args.py: ComfyUI 0.3.76's flags, abbreviations resolved


def composed(tmp_path: Path, *, workers: bool = False, environ: dict[str, str] | None = None, extra: tuple[str, ...] = (),
             **cli: object):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    s = settings(tmp_path, environ, extra_args=extra, **cli)
    host = replace(facts(2), flags=TABLE)
    return compose(s, host, LaunchRequest(workers=workers), ports=Ports())


def argv_flags(argv: tuple[str, ...], flag: str) -> list[str]:
    return [argv[i + 1] if i + 1 < len(argv) else "" for i, t in enumerate(argv) if t == flag]


@pytest.mark.parametrize(
    ("source", "extra", "environ"),
    [
        ("after --", ("--port", "8421"), {}),
        ("after -- with =", ("--port=8421",), {}),
        ("after -- abbreviated", ("--po", "8421"), {}),
        ("COMFYUI_ARGS", (), {"COMFYUI_ARGS": "--lowvram --port 8421"}),
    ],
)
def test_a_port_in_comfyuis_flags_becomes_comfyrigs(tmp_path: Path, source: str, extra: tuple[str, ...], environ: dict[str, str]) -> None:
    plan = composed(tmp_path, extra=extra, environ=environ, single=0)
    (inst,) = plan.instances
    assert inst.port == 8421 and inst.url.endswith(":8421")
    assert argv_flags(inst.argv, "--port") == ["8421"], source  # once, not twice
    assert not any(t.startswith("--po") and t != "--port" for t in inst.argv)
    assert any("taken as comfyrig's --port" in w for w in plan.warnings)


def test_a_port_given_to_both_with_different_values_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--port is given twice with different values: comfyrig's --port 8420 \(command line\); --port 8421"):
        composed(tmp_path, extra=("--port", "8421"), port="8420", single=0)
    with pytest.raises(ConfigError, match="COMFYUI_ARGS; --port 8422 in ComfyUI's flags after --"):
        composed(tmp_path, extra=("--port", "8422"), environ={"COMFYUI_ARGS": "--port 8421"}, single=0)
    # The same value twice is no conflict.
    assert composed(tmp_path, extra=("--port", "8420"), port="8420", single=0).instances[0].port == 8420


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1"])
def test_a_port_that_is_no_port_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="is not a port"):
        composed(tmp_path, extra=(f"--port={value}",), single=0)


def test_workers_take_it_as_the_first_port(tmp_path: Path) -> None:
    plan = composed(tmp_path, workers=True, extra=("--port", "9000"))
    assert [i.port for i in plan.instances] == [9000, 9001]
    assert all(argv_flags(i.argv, "--port") == [str(i.port)] for i in plan.instances)


@pytest.mark.parametrize(
    ("extra", "environ", "bound"),
    [
        (("--listen",), {}, "0.0.0.0,::"),
        ((), {"COMFYUI_ARGS": "--listen"}, "0.0.0.0,::"),
        (("--listen", "192.168.1.5"), {}, "192.168.1.5"),
        (("--lis=0.0.0.0",), {}, "0.0.0.0"),
        ((), {"COMFYUI_LISTEN": "0.0.0.0"}, "0.0.0.0"),  # comfyrig's own setting: the same warning
    ],
)
def test_any_exposed_listen_warns_the_same_and_is_shown(tmp_path: Path, extra: tuple[str, ...], environ: dict[str, str], bound: str) -> None:
    plan = composed(tmp_path, extra=extra, environ=environ, single=0)
    (inst,) = plan.instances
    assert inst.listen == bound and not is_loopback(inst.listen)
    assert argv_flags(inst.argv, "--listen") == [bound]
    assert sum(f"ComfyUI will listen on {bound}: it has no authentication" in w for w in plan.warnings) == 1
    assert inst.to_json()["listen"] == bound


def test_listen_given_to_both_differently_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--listen is given twice"):
        composed(tmp_path, extra=("--listen",), listen="127.0.0.1", single=0)


@pytest.mark.parametrize(("extra", "environ"), [(("--cuda-device", "1"), {}), ((), {"COMFYUI_ARGS": "--cuda-dev=0"})])
def test_cuda_device_is_refused(tmp_path: Path, extra: tuple[str, ...], environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"--cuda-device .* undo comfyrig's GPU selection") as info:
        composed(tmp_path, extra=extra, environ=environ, single=0)
    assert "comfyrig --single N" in (info.value.hint or "")


def test_a_fleets_shared_database_is_refused_a_single_ones_kept(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--database-url .* shared by every worker"):
        composed(tmp_path, workers=True, extra=("--database-url", "sqlite:////data/x.db"))
    (inst,) = composed(tmp_path, extra=("--database-url", "sqlite:////data/x.db"), single=0).instances
    assert argv_flags(inst.argv, "--database-url") == ["sqlite:////data/x.db"]


@pytest.mark.parametrize("flag", ["--output-directory", "--temp-directory"])
def test_a_fleets_shared_folder_becomes_the_parent_of_each_workers(tmp_path: Path, flag: str) -> None:
    plan = composed(tmp_path, workers=True, extra=(flag, "/data/shared"))
    assert [argv_flags(i.argv, flag) for i in plan.instances] == [["/data/shared/gpu0"], ["/data/shared/gpu1"]]
    assert any(f"{flag} /data/shared would be shared by every worker" in w for w in plan.warnings)
    # One ComfyUI: the folder is the user's, untouched.
    (inst,) = composed(tmp_path, extra=(flag, "/data/shared"), single=0).instances
    assert argv_flags(inst.argv, flag) == ["/data/shared"]


def test_worker_folders_follow_base_directory_and_stay_out_of_temp(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (comfy / "comfy" / "cli_args.py").write_text((FAKE_DIR / "comfy" / "cli_args.py").read_text())
    plain = composed(tmp_path, workers=True, comfyui_dir=comfy, python="/usr/bin/python3")
    assert [argv_flags(i.argv, "--temp-directory") for i in plain.instances] == [["comfyrig-temp/gpu0"], ["comfyrig-temp/gpu1"]]
    based = composed(tmp_path, workers=True, comfyui_dir=comfy, python="/usr/bin/python3", extra=("--base-directory", "/srv/comfy"))
    first = based.instances[0].argv
    assert argv_flags(first, "--output-directory") == ["/srv/comfy/output/gpu0"]
    assert argv_flags(first, "--temp-directory") == ["/srv/comfy/comfyrig-temp/gpu0"]
    assert argv_flags(first, "--database-url") == ["sqlite:////srv/comfy/user/comfyui-gpu0.db"]
    users = composed(tmp_path, workers=True, comfyui_dir=comfy, python="/usr/bin/python3", extra=("--user-directory", "/srv/users"))
    assert argv_flags(users.instances[1].argv, "--database-url") == ["sqlite:////srv/users/comfyui-gpu1.db"]


def test_a_ray_actors_tag_names_its_folders_and_database(tmp_path: Path) -> None:
    """Every Ray actor sees its GPU as index 0: named by node and GPU instead, actors of nodes
    sharing one checkout (NFS) never share an output or temp folder or a database."""
    from dataclasses import replace

    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (comfy / "comfy" / "cli_args.py").write_text((FAKE_DIR / "comfy" / "cli_args.py").read_text())

    def actor(tag: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
        s = settings(tmp_path, {"CUDA_VISIBLE_DEVICES": "0"}, extra_args=extra, comfyui_dir=comfy, python="/usr/bin/python3")
        (inst,) = compose(s, replace(facts(2), flags=TABLE), LaunchRequest(workers=True, worker_tag=tag), ports=Ports()).instances
        return inst.argv

    a, b = actor("ray-aaaaaaaaaaaa-gpu0"), actor("ray-bbbbbbbbbbbb-gpu0")
    assert argv_flags(a, "--output-directory") == ["output/ray-aaaaaaaaaaaa-gpu0"]
    assert argv_flags(a, "--temp-directory") == ["comfyrig-temp/ray-aaaaaaaaaaaa-gpu0"]
    assert argv_flags(a, "--database-url") == [f"sqlite:///{comfy.absolute()}/user/comfyui-ray-aaaaaaaaaaaa-gpu0.db"]
    for flag in ("--output-directory", "--temp-directory", "--database-url"):
        assert argv_flags(a, flag) != argv_flags(b, flag)
    # A folder the user gave becomes the parent of each actor's own.
    given = actor("ray-n-gpu1", ("--output-directory", "/data/out", "--temp-directory=/scratch"))
    assert argv_flags(given, "--output-directory") == ["/data/out/ray-n-gpu1"]
    assert argv_flags(given, "--temp-directory") == ["/scratch/ray-n-gpu1"]
    # A tag names one worker's folders: a plan of several workers refuses it.
    with pytest.raises(ValueError, match="worker_tag"):
        compose(settings(tmp_path, comfyui_dir=comfy, python="/usr/bin/python3"), replace(facts(2), flags=TABLE),
                LaunchRequest(workers=True, worker_tag="x"), ports=Ports())


def test_folders_comfyrig_never_passes_are_kept(tmp_path: Path) -> None:
    extra = ("--input-directory", "/in", "--user-directory", "/u", "--base-directory", "/b")
    (inst,) = composed(tmp_path, extra=extra, single=0).instances
    assert inst.argv[-6:] == extra and not any("taken as" in w for w in composed(tmp_path, extra=extra, single=0).warnings)


def test_with_the_gateway_a_listen_exposes_the_gateway_not_the_workers(tmp_path: Path) -> None:
    from dataclasses import replace

    s = settings(tmp_path, None, extra_args=("--listen", "--port", "9100"))
    with pytest.raises(ConfigError, match="--auth"):  # beyond loopback: a token, or an explicit no
        compose(s, replace(facts(2), flags=TABLE), LaunchRequest(workers=True, gateway=True), ports=Ports())
    plan = compose(s, replace(facts(2), flags=TABLE), LaunchRequest(workers=True, gateway=True, auth=True), ports=Ports())
    assert plan.gateway is not None and plan.gateway.listen == "0.0.0.0,::" and plan.gateway.port == 9100
    assert plan.gateway.auth
    for inst in plan.instances:
        assert inst.listen == "127.0.0.1" and argv_flags(inst.argv, "--listen") == ["127.0.0.1"]
        assert argv_flags(inst.argv, "--port") == [str(inst.port)] and inst.port > 9100


@pytest.mark.parametrize(
    ("extra", "workers"),
    [(("--port",), False), (("--port=",), False), (("--listen=",), False), (("--output-directory",), True),
     (("--temp-directory=",), True)],
)
def test_an_owned_flag_without_a_value_is_refused(tmp_path: Path, extra: tuple[str, ...], workers: bool) -> None:
    with pytest.raises(ConfigError, match="has no value: ComfyUI would exit with code 2"):
        composed(tmp_path, workers=workers, extra=extra, **({} if workers else {"single": 0}))
    with pytest.raises(ConfigError, match=r"^--cuda-device in ComfyUI's flags after --: ComfyUI would rewrite"):
        composed(tmp_path, extra=("--cuda-device",), single=0)
