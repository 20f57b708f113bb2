from collections.abc import Callable

import pytest

from comfyrig.config.modes import GpuRequest, select_gpus
from comfyrig.errors import SelectionError
from comfyrig.host.gpus.inventory import Inventory
from comfyrig.host.gpus.simulated import parse_simulated

Inv = Callable[[int], Inventory]


@pytest.mark.parametrize(
    ("count", "mode", "cvd"),
    [(0, "cpu", ""), (1, "single", "0"), (2, "multi", "0,1"), (4, "multi", "0,1,2,3")],
)
def test_auto(inventories: Inv, count: int, mode: str, cvd: str) -> None:
    sel = select_gpus(GpuRequest("auto"), inventories(count))
    assert (sel.mode, sel.cuda_visible_devices, len(sel.gpus)) == (mode, cvd, count)


def test_auto_without_gpus_says_why() -> None:
    sel = select_gpus(GpuRequest("auto"), Inventory(gpus=(), source="none", problem="no driver here"))
    assert sel.is_cpu and "no driver here" in sel.notes[0]


@pytest.mark.parametrize("count", [2, 4])
def test_dual_takes_first_two(inventories: Inv, count: int) -> None:
    sel = select_gpus(GpuRequest("dual"), inventories(count))
    assert sel.mode == "dual" and sel.cuda_visible_devices == "0,1"


@pytest.mark.parametrize("count", [0, 1])
def test_dual_needs_two(inventories: Inv, count: int) -> None:
    with pytest.raises(SelectionError):
        select_gpus(GpuRequest("dual"), inventories(count))


def test_multi_all(inventories: Inv) -> None:
    assert select_gpus(GpuRequest("multi"), inventories(4)).cuda_visible_devices == "0,1,2,3"


def test_single(inventories: Inv) -> None:
    sel = select_gpus(GpuRequest("single", ("3",)), inventories(4))
    assert sel.mode == "single" and sel.cuda_visible_devices == "3" and sel.gpus[0].index == 3


def test_single_out_of_range_lists_gpus(inventories: Inv) -> None:
    with pytest.raises(SelectionError, match=r"there is no GPU 2.*2 GPUs \(0: NVIDIA"):
        select_gpus(GpuRequest("single", ("2",)), inventories(2))


def test_ordered_list_reverses(inventories: Inv) -> None:
    sel = select_gpus(GpuRequest("gpus", ("1", "0")), inventories(2))
    assert sel.cuda_visible_devices == "1,0"
    assert [g.index for g in sel.gpus] == [1, 0]
    assert sel.mode == "dual"


def test_uuid_and_prefix(inventories: Inv) -> None:
    inv = inventories(4)
    full = inv.gpus[2].uuid
    sel = select_gpus(GpuRequest("gpus", (full, "GPU-00000003")), inv)
    assert [g.index for g in sel.gpus] == [2, 3]
    assert sel.cuda_visible_devices == f"{full},{inv.gpus[3].uuid}"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (("0", "0"), "same GPU twice"),
        (("0", "", "1"), "empty item at position 2"),
        (("GPU-deadbeef",), "no GPU has the UUID"),
        (("gpu-00000000",), "not a GPU index"),
        (("cuda:0",), "not a GPU index"),
        (("5",), "there is no GPU 5"),
        (("0", "-1"), "there is no GPU -1"),
    ],
)
def test_bad_lists(inventories: Inv, items: tuple[str, ...], message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        select_gpus(GpuRequest("gpus", items), inventories(2))


def test_index_and_its_uuid_are_a_duplicate(inventories: Inv) -> None:
    inv = inventories(2)
    with pytest.raises(SelectionError, match="same GPU twice"):
        select_gpus(GpuRequest("gpus", ("0", inv.gpus[0].uuid)), inv)


def test_visible_empty_means_cpu(inventories: Inv) -> None:
    sel = select_gpus(GpuRequest("visible", ()), inventories(2))
    assert sel.is_cpu and sel.cuda_visible_devices == ""


def test_visible_one_is_single_two_is_dual(inventories: Inv) -> None:
    assert select_gpus(GpuRequest("visible", ("1",)), inventories(2)).mode == "single"
    assert select_gpus(GpuRequest("visible", ("0", "1")), inventories(2)).mode == "dual"


def test_gpu_request_without_gpus_points_to_cpu() -> None:
    with pytest.raises(SelectionError, match="--cpu"):
        select_gpus(GpuRequest("multi"), Inventory(gpus=(), source="none", problem="no driver"))


def test_mig_devices() -> None:
    inv = parse_simulated(
        [{"name": "A100", "memory_total_mib": 81920, "mig_uuids": ["MIG-aaaa", "MIG-bbbb"]}]
    )
    sel = select_gpus(GpuRequest("gpus", ("MIG-aaaa",)), inv)
    assert sel.cuda_visible_devices == "MIG-aaaa" and sel.gpus[0].index == 0
    with pytest.raises(SelectionError, match="several MIG"):
        select_gpus(GpuRequest("gpus", ("MIG-aaaa", "MIG-bbbb")), inv)
    with pytest.raises(SelectionError, match="no MIG device"):
        select_gpus(GpuRequest("gpus", ("MIG-cccc",)), inv)


def test_cpu_hides_everything(inventories: Inv) -> None:
    sel = select_gpus(GpuRequest("cpu"), inventories(2))
    assert sel.is_cpu and sel.cuda_visible_devices == "" and sel.gpus == ()


def test_an_index_names_the_nvml_gpu_even_when_one_before_it_is_missing() -> None:
    inventory = parse_simulated([{"name": f"GPU {n}", "memory_total_mib": 1024} for n in range(3)])
    # GPU 1 fell off the bus: NVML still numbers the others 0 and 2.
    lost = Inventory(gpus=(inventory.gpus[0], inventory.gpus[2]), source="nvml")
    assert select_gpus(GpuRequest("single", ("2",)), lost).gpus[0].uuid == inventory.gpus[2].uuid
    with pytest.raises(SelectionError, match="there is no GPU 1"):
        select_gpus(GpuRequest("single", ("1",)), lost)
