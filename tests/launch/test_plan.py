from pathlib import Path

from comfyrig.comfy.args import FlagTable
from comfyrig.comfy.checkout import flag_table, flag_table_from_source
from comfyrig.config.modes import GpuRequest, select_gpus
from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.launch.plan import is_loopback, plan_launch

from ..comfy.cli_args_versions import cli_args_text
from ..conftest import inventory_of


def table(version: str = "0.3.76") -> FlagTable:
    found = flag_table_from_source(cli_args_text(version))
    assert found is not None
    return found


def plan(tmp_path: Path, request: GpuRequest, gpus: int = 2, cli: CliOverrides | None = None, ports=(8188,), **kw):  # type: ignore[no-untyped-def]
    settings = resolve_settings(cli or CliOverrides(), {}, tmp_path)
    return plan_launch(settings, select_gpus(request, inventory_of(gpus)), list(ports), **kw)


def test_dual_argv_and_env(tmp_path: Path) -> None:
    p = plan(tmp_path, GpuRequest("dual"), cli=CliOverrides(comfyui_args="--preview-method auto", extra_args=("--lowvram",)))
    (inst,) = p.instances
    assert inst.argv[1:] == ("main.py", "--listen", "127.0.0.1", "--port", "8188", "--preview-method", "auto", "--lowvram")
    assert inst.env["CUDA_VISIBLE_DEVICES"] == "0,1" and inst.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert p.mode == "dual" and p.warnings == ()


def test_cpu_hides_gpus_and_passes_cpu(tmp_path: Path) -> None:
    (inst,) = plan(tmp_path, GpuRequest("cpu")).instances
    assert "--cpu" in inst.argv and inst.env["CUDA_VISIBLE_DEVICES"] == ""
    assert inst.child_env({"CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/bin"})["CUDA_VISIBLE_DEVICES"] == ""


def test_workers_one_gpu_each(tmp_path: Path) -> None:
    p = plan(tmp_path, GpuRequest("gpus", ("2", "0")), gpus=4, ports=(8188, 8190), workers=True)
    assert [(i.name, i.port, i.cuda_visible_devices) for i in p.instances] == [("worker-0", 8188, "2"), ("worker-1", 8190, "0")]


def test_non_loopback_warns(tmp_path: Path) -> None:
    p = plan(tmp_path, GpuRequest("single", ("0",)), cli=CliOverrides(listen="0.0.0.0"))
    assert any("no authentication" in w for w in p.warnings)
    assert is_loopback("127.0.0.1,::1") and is_loopback("localhost") and not is_loopback("192.168.1.5")


def test_cuda_device_in_multi_warns(tmp_path: Path) -> None:
    p = plan(tmp_path, GpuRequest("multi"), cli=CliOverrides(comfyui_args="--cuda-device 0"))
    assert any("--cuda-device" in w for w in p.warnings)


def test_unknown_flags_checked_against_checkout(tmp_path: Path, comfy_tree: Path) -> None:
    flags = flag_table(comfy_tree)
    assert flags is not None and "--lowvram" in flags
    p = plan(tmp_path, GpuRequest("single", ("0",)), cli=CliOverrides(comfyui_args="--medvram"), flags=flags)
    assert p.warnings == (
        # This checkout has --lowvram but no --reserve-vram: only flags it has are named.
        "ComfyUI has no --medvram flag (it is an AUTOMATIC1111 flag; use --lowvram): it will exit with code 2.",
    )


def test_vram_advice_follows_the_checkout(tmp_path: Path) -> None:
    def warnings(args: str, version: str) -> tuple[str, ...]:
        chosen = GpuRequest("single", ("0",))
        return plan(tmp_path, chosen, cli=CliOverrides(comfyui_args=args), flags=table(version)).warnings

    assert warnings("--medvram", "0.3.76") == (
        ("ComfyUI has no --medvram flag (it is an AUTOMATIC1111 flag; use --lowvram, or --reserve-vram GB): "
        "it will exit with code 2."),
    )
    assert warnings("--medvram", "0.24.0") == (
        ("ComfyUI has no --medvram flag (it is an AUTOMATIC1111 flag; use --reserve-vram GB, if anything: this ComfyUI "
        "manages VRAM dynamically by default, and --lowvram does nothing there): it will exit with code 2."),
    )
    # A --lowvram the user gave does nothing under 0.24's dynamic VRAM; with --disable-dynamic-vram it acts.
    assert warnings("--lowvram", "0.24.0") == (
        ("--lowvram does nothing in this ComfyUI: it loads models with dynamic VRAM by default, and --lowvram acts only "
        "without it (add --disable-dynamic-vram for that, or remove --lowvram)."),
    )
    assert warnings("--lowvram --disable-dynamic-vram", "0.24.0") == ()
    assert warnings("--lowvram", "0.3.76") == ()


def test_oom_advice_in_the_plan_names_only_flags_that_act(tmp_path: Path) -> None:
    from comfyrig.comfy.multigpu import CheckoutMultiGpu

    new = CheckoutMultiGpu(version="0.24.0", native=True)
    dual = plan(tmp_path, GpuRequest("dual"), flags=table("0.24.0"), checkout=new)
    assert dual.checkout == new
    assert "--reserve-vram GB" in dual.oom_advice and "Select CLIP Device" in dual.oom_advice
    assert "--lowvram," not in dual.oom_advice and "Not --lowvram: ComfyUI 0.24.0 loads models with dynamic VRAM" in dual.oom_advice
    old = plan(tmp_path, GpuRequest("dual"), flags=table("0.3.76"), checkout=CheckoutMultiGpu(version="0.3.76", native=False))
    assert "--reserve-vram GB, --lowvram, --novram, --disable-smart-memory" in old.oom_advice
    assert "ComfyUI-MultiGPU's loaders" in old.oom_advice


def test_enable_manager_only_where_supported(tmp_path: Path) -> None:
    cli = CliOverrides(enable_manager=True)
    assert "--enable-manager" in plan(tmp_path, GpuRequest("cpu"), cli=cli).instances[0].argv
    p = plan(tmp_path, GpuRequest("cpu"), cli=cli, flags=table("0.3.64"))
    assert "--enable-manager" not in p.instances[0].argv and any("0.3.76" in w for w in p.warnings)


def test_passthrough_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HF_HOME=/data/hf\nPYTORCH_CUDA_ALLOC_CONF=expandable_segments:True\nCOMFYUI_PORT=8200\n")
    (inst,) = plan(tmp_path, GpuRequest("cpu")).instances
    assert inst.env["HF_HOME"] == "/data/hf"
    assert inst.env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert "COMFYUI_PORT" not in inst.env


def test_placement_sets_thread_budget_unless_user_did(tmp_path: Path) -> None:
    from comfyrig.launch.placement import CpuPlacement

    placed = [CpuPlacement(cpus=(0, 1), threads=2), CpuPlacement(cpus=(2, 3), threads=2)]
    p = plan(tmp_path, GpuRequest("multi"), ports=(8188, 8189), workers=True, placements=placed)
    assert [i.env["OMP_NUM_THREADS"] for i in p.instances] == ["2", "2"]
    assert [i.cpus for i in p.instances] == [(0, 1), (2, 3)]
    assert p.to_json()["instances"][1]["cpus"] == "2-3"
    (tmp_path / ".env").write_text("OMP_NUM_THREADS=8\n")
    p = plan(tmp_path, GpuRequest("multi"), ports=(8188, 8189), workers=True, placements=placed)
    assert [i.env["OMP_NUM_THREADS"] for i in p.instances] == ["8", "8"]


def test_workers_get_their_own_output_and_temp_folders(tmp_path: Path) -> None:
    p = plan(tmp_path, GpuRequest("multi"), ports=(8188, 8189), workers=True)
    assert [i.argv[-4:] for i in p.instances] == [
        ("--output-directory", "output/gpu0", "--temp-directory", "comfyrig-temp/gpu0"),
        ("--output-directory", "output/gpu1", "--temp-directory", "comfyrig-temp/gpu1"),
    ]  # not temp/gpuN: any ComfyUI started from the checkout empties its temp/ at start
    chosen = plan(tmp_path, GpuRequest("multi"), ports=(8188, 8189), workers=True,
                  cli=CliOverrides(comfyui_args="--output-directory /data/out"))
    assert all("output/gpu" not in " ".join(i.argv) and "temp/gpu" in " ".join(i.argv) for i in chosen.instances)
    single = plan(tmp_path, GpuRequest("multi"))
    assert "--output-directory" not in single.instances[0].argv


def test_abbreviations_are_flags_argparse_accepts(tmp_path: Path) -> None:
    # --low is --lowvram for argparse (the only flag starting so): no "unknown flag" warning.
    p = plan(tmp_path, GpuRequest("single", ("0",)), cli=CliOverrides(comfyui_args="--low --preview-m auto"), flags=table())
    assert p.warnings == ()
    assert p.instances[0].argv[-3:] == ("--low", "--preview-m", "auto")  # passed on as written


def test_exit_2_cases_are_warned(tmp_path: Path) -> None:
    def warnings(args: str, version: str = "0.3.76", request: GpuRequest | None = None) -> tuple[str, ...]:
        chosen = request or GpuRequest("single", ("0",))
        return plan(tmp_path, chosen, cli=CliOverrides(comfyui_args=args), flags=table(version)).warnings

    assert warnings("--fas", "0.24.0") == (
        "--fas is an abbreviation of --fast, --fast-disk, and argparse refuses an ambiguous one: ComfyUI will exit with code 2.",
    )
    assert warnings("--port") == ("--port needs a value and is the last argument: ComfyUI will exit with code 2.",)
    assert warnings("--cuda-device 0,1") == ("--cuda-device '0,1' is not a whole number: ComfyUI will exit with code 2.",)
    assert warnings("--cuda-device 0,1", "0.24.0") == ()
    assert warnings("--normalvram", "0.24.0") == (
        "ComfyUI has no --normalvram flag (ComfyUI removed it in 0.22; normal VRAM use is the default): it will exit with code 2.",
    )
    # CPU mode adds --cpu, which is in one mutually exclusive group with the VRAM modes.
    assert warnings("--lowvram", request=GpuRequest("cpu")) == (
        ("--cpu and --lowvram exclude each other (ComfyUI takes only one of them): ComfyUI will exit with code 2. "
         "comfyrig adds --cpu in CPU mode: remove --lowvram, or choose GPUs."),
    )
    unknown = plan(tmp_path, GpuRequest("cpu"), cli=CliOverrides(comfyui_args="--novram --whatever"))
    assert [w.split(" (")[0] for w in unknown.warnings] == ["--cpu and --novram exclude each other"]  # no checkout: --whatever unchecked


def test_cuda_device_in_every_form_is_seen(tmp_path: Path) -> None:
    for args in ("--cuda-device=1", "--cuda-dev 1", "--cuda-device 0 --cuda-device=1"):
        p = plan(tmp_path, GpuRequest("dual"), cli=CliOverrides(comfyui_args=args), flags=table())
        assert p.warnings == (
            ("--cuda-device is in ComfyUI's arguments: ComfyUI then rewrites CUDA_VISIBLE_DEVICES to one GPU and hides "
             "the others comfyrig selected (0,1). Remove it."),
        ), args
    listed = plan(tmp_path, GpuRequest("dual"), cli=CliOverrides(comfyui_args="--cuda-device 1,0"), flags=table("0.24.0"))
    assert listed.warnings[0].startswith("--cuda-device is in ComfyUI's arguments: ComfyUI then rewrites CUDA_VISIBLE_DEVICES to 1,0, in place of")


def test_cpu_and_cors_in_every_form(tmp_path: Path) -> None:
    p = plan(tmp_path, GpuRequest("dual"), cli=CliOverrides(comfyui_args="--enable-cors --cpu"), flags=table())
    assert any(w.startswith("--cpu is in ComfyUI's arguments") for w in p.warnings)
    assert any(w.startswith("--enable-cors-header replaces") for w in p.warnings)
    given = plan(tmp_path, GpuRequest("cpu"), cli=CliOverrides(comfyui_args="--cpu"), flags=table())
    assert given.instances[0].argv.count("--cpu") == 1 and given.warnings == ()


def test_workers_keep_a_folder_the_user_gave_in_any_form(tmp_path: Path) -> None:
    for args in ("--output-dir=/data/out", "--output-directory=/data/out", "--output-dir /data/out"):
        p = plan(tmp_path, GpuRequest("multi"), ports=(8188, 8189), workers=True, cli=CliOverrides(comfyui_args=args),
                 flags=table())
        assert all("output/gpu" not in " ".join(i.argv) and "temp/gpu" in " ".join(i.argv) for i in p.instances), args
    # Without the checkout's table a prefix cannot be resolved, but the full name still counts.
    unknown = plan(tmp_path, GpuRequest("multi"), ports=(8188, 8189), workers=True,
                   cli=CliOverrides(comfyui_args="--temp-directory=/scratch"))
    assert all("temp/gpu" not in " ".join(i.argv) and "output/gpu" in " ".join(i.argv) for i in unknown.instances)


def test_listen_and_port_in_comfyuis_flags_win_and_are_warned(tmp_path: Path) -> None:
    # argparse keeps the last --listen: a bare one in COMFYUI_ARGS exposes ComfyUI, whatever COMFYUI_LISTEN says.
    p = plan(tmp_path, GpuRequest("single", ("0",)), cli=CliOverrides(comfyui_args="--lis"), flags=table())
    assert p.warnings == (
        ("--listen 0.0.0.0,:: in ComfyUI's arguments overrides COMFYUI_LISTEN (127.0.0.1), since ComfyUI keeps the last "
         "value: comfyrig would look for ComfyUI at the wrong address. Set it with comfyrig's --listen or COMFYUI_LISTEN instead."),
        ("ComfyUI will listen on 0.0.0.0,::: it has no authentication, so anyone who can reach that address can run code on "
         "this machine. Keep it behind a firewall or VPN."),
    )
    port = plan(tmp_path, GpuRequest("single", ("0",)), cli=CliOverrides(comfyui_args="--port=9000"), flags=table())
    assert [w.split(",")[0] for w in port.warnings] == ["--port 9000 in ComfyUI's arguments overrides COMFYUI_PORT (8188)"]
    same = plan(tmp_path, GpuRequest("single", ("0",)), cli=CliOverrides(comfyui_args="--port 8188"), flags=table())
    assert same.warnings == ()
    workers = plan(tmp_path, GpuRequest("multi"), ports=(8188, 8189), workers=True, cli=CliOverrides(comfyui_args="--port 8188"))
    assert [w.split(",")[0] for w in workers.warnings] == [
        "--port 8188 in ComfyUI's arguments overrides the port comfyrig gives each instance"]


def test_workers_get_their_own_database(comfy_tree: Path) -> None:
    # 0.24 locks user/comfyui.db: every worker after the first ran without a database.
    cli = CliOverrides(comfyui_dir=comfy_tree)
    new = plan(comfy_tree.parent, GpuRequest("multi"), cli=cli, ports=(8188, 8189), workers=True, flags=table("0.24.0"))
    urls = [a[a.index("--database-url") + 1] for a in (i.argv for i in new.instances)]
    assert urls == [f"sqlite:///{comfy_tree.resolve()}/user/comfyui-gpu0.db", f"sqlite:///{comfy_tree.resolve()}/user/comfyui-gpu1.db"]
    old = plan(comfy_tree.parent, GpuRequest("multi"), cli=cli, ports=(8188, 8189), workers=True, flags=table("0.3.64"))
    assert all(i.argv.count("--database-url") == 1 for i in old.instances)  # 0.3.x had the database, not yet the lock
    own = CliOverrides(comfyui_dir=comfy_tree, comfyui_args="--database-url sqlite:///:memory:")
    mine = plan(comfy_tree.parent, GpuRequest("multi"), cli=own, ports=(8188, 8189), workers=True, flags=table("0.24.0"))
    assert [i.argv.count("--database-url") for i in mine.instances] == [1, 1], mine.instances[0].argv  # the user's choice is kept
