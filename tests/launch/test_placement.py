import os
import sys

import pytest

from comfyrig.launch.placement import format_cpus, plan_placement, thread_env


def test_one_numa_node_32_cpus_2_gpus() -> None:
    cpus = tuple(range(32))
    placements, notes = plan_placement([cpus, cpus], frozenset(cpus))
    assert [format_cpus(p.cpus) for p in placements] == ["0-15", "16-31"]
    assert [p.threads for p in placements] == [4, 4] and notes == []


def test_two_numa_nodes_four_gpus_each() -> None:
    node0, node1 = tuple(range(32)), tuple(range(32, 64))
    placements, _ = plan_placement([node0] * 4 + [node1] * 4, frozenset(range(64)))
    assert [format_cpus(p.cpus) for p in placements] == [
        "0-7", "8-15", "16-23", "24-31", "32-39", "40-47", "48-55", "56-63"
    ]
    assert all(not set(a.cpus) & set(b.cpus) for i, a in enumerate(placements) for b in placements[i + 1 :])


def test_eight_gpus_on_sixteen_cpus() -> None:
    placements, _ = plan_placement([None] * 8, frozenset(range(16)))
    assert [len(p.cpus) for p in placements] == [2] * 8
    assert [p.threads for p in placements] == [2] * 8
    assert len({c for p in placements for c in p.cpus}) == 16


def test_affinity_mask_smaller_than_machine() -> None:
    # comfyrig itself may only use CPUs 4-11 (taskset, a cgroup cpuset).
    host = tuple(range(32))
    placements, _ = plan_placement([host, host], frozenset(range(4, 12)))
    assert [format_cpus(p.cpus) for p in placements] == ["4-7", "8-11"]


def test_more_workers_than_cpus_share_and_say_so() -> None:
    placements, notes = plan_placement([None] * 4, frozenset({0, 1}))
    assert all(len(p.cpus) == 1 for p in placements)
    assert any(p.shared for p in placements) and any("share" in n for n in notes)


def test_overrides_and_quota() -> None:
    cpus = frozenset(range(32))
    placements, _ = plan_placement([None, None], cpus, cpus_per_worker=6, threads_per_worker=3)
    assert [format_cpus(p.cpus) for p in placements] == ["0-5", "6-11"] and [p.threads for p in placements] == [3, 3]
    placements, notes = plan_placement([None, None], cpus, cpu_quota=2.0)
    assert [p.threads for p in placements] == [1, 1] and "quota" in notes[0]


def test_format_and_env() -> None:
    assert format_cpus([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert thread_env(4) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4"}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
@pytest.mark.e2e
def test_affinity_applied_to_a_real_child() -> None:
    from comfyrig.launch.process import spawn

    lines: list[str] = []
    mine = sorted(os.sched_getaffinity(0))
    child = spawn(
        (sys.executable, "-c", "import os; print(open('/proc/self/status').read()); print('OMP', os.environ['OMP_NUM_THREADS'])"),
        {**os.environ, **thread_env(1)},
        None,
        lines.append,
        cpus=(mine[-1],),
    )
    assert child.popen.wait(timeout=30) == 0
    child.reader.join(timeout=5)
    allowed = next(line for line in lines if line.startswith("Cpus_allowed_list"))
    assert allowed.split()[-1] == str(mine[-1])
    assert "OMP 1" in lines


def test_hyperthread_siblings_stay_with_one_worker() -> None:
    # 32 vCPUs = 16 cores x 2 threads, siblings (k, k+16), as many cloud VMs number them.
    cores = [(k, k + 16) for k in range(16)]
    placements, _ = plan_placement([tuple(range(32))] * 2, frozenset(range(32)), cores=cores)
    assert [format_cpus(p.cpus) for p in placements] == ["0-7,16-23", "8-15,24-31"]
    for p in placements:
        assert all(((c + 16) % 32 in p.cpus) for c in p.cpus)  # whole cores only
    assert [p.threads for p in placements] == [4, 4]


def test_thread_budget_counts_physical_cores() -> None:
    cores = [(0, 2), (1, 3)]
    placements, _ = plan_placement([None, None], frozenset(range(4)), cores=cores)
    assert [format_cpus(p.cpus) for p in placements] == ["0,2", "1,3"]
    assert [p.threads for p in placements] == [1, 1]


def test_cpu_cores_from_sysfs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from comfyrig.host.cpus import cpu_cores

    for cpu, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}.items():
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_cpus_list").write_text(siblings + "\n")
    assert cpu_cores(frozenset({0, 1, 2, 3}), tmp_path) == [(0, 2), (1, 3)]
    assert cpu_cores(frozenset({0, 1, 9}), tmp_path) is None


def test_independent_workers_on_one_node_take_disjoint_shares() -> None:
    # What two Ray actors on one 2-GPU node compute, each on its own.
    from comfyrig.launch.placement import placement_for_gpu

    node = [tuple(range(32)), tuple(range(32))]
    names = [("0", "GPU-aaaa"), ("1", "GPU-bbbb")]
    first, _ = placement_for_gpu("0", node, names, frozenset(range(32)))
    second, _ = placement_for_gpu("GPU-bbbb", node, names, frozenset(range(32)))
    assert first is not None and second is not None
    assert format_cpus(first.cpus) == "0-15" and format_cpus(second.cpus) == "16-31"
    missing, notes = placement_for_gpu("7", node, names, frozenset(range(32)))
    assert missing is None and "not among" in notes[0]
