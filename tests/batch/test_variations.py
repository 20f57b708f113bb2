"""Variation expansion: --set, --sweep, --zip, --repeat, --seed (batch/variations.py)."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from comfyrig.batch.variations import build_spec, job_id, parse_sweep_values, prompt_id_for
from comfyrig.comfy.workflow import workflow_from_json
from comfyrig.errors import WorkflowError

WF = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}, "_meta": {"title": "Canvas"}},
    "2": {"class_type": "KSampler", "inputs": {"seed": 100, "steps": 20, "cfg": 7.5, "image": ["1", 0]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
}


def wf():  # type: ignore[no-untyped-def]
    return workflow_from_json(json.loads(json.dumps(WF)), "wf.json")


@pytest.mark.parametrize("spec, values", [
    ("1..4", [1, 2, 3, 4]),
    ("4..1", [4, 3, 2, 1]),
    ("0..10..5", [0, 5, 10]),
    ("0.5..1..0.25", [0.5, 0.75, 1.0]),
    ("-2..0", [-2, -1, 0]),
    ("a|b|c", ["a", "b", "c"]),
    ("a cat|a dog\\|wolf", ["a cat", "a dog|wolf"]),
    ("single", ["single"]),
    ("x..y", ["x..y"]),  # not numbers: one text value
])
def test_sweep_specs(spec: str, values: list[object], tmp_path: Path) -> None:
    assert parse_sweep_values(spec, tmp_path, "--sweep") == values


def test_sweep_files(tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("a cat\n\n  a dog on a skateboard \nan owl\n")
    assert parse_sweep_values("@prompts.txt", tmp_path, "w") == ["a cat", "  a dog on a skateboard ", "an owl"]
    (tmp_path / "p.csv").write_text("id,prompt\n1,\"a cat, sitting\"\n2,a dog\n")
    assert parse_sweep_values("@p.csv:prompt", tmp_path, "w") == ["a cat, sitting", "a dog"]
    assert parse_sweep_values("@p.csv:0", tmp_path, "w") == ["id", "1", "2"]
    with pytest.raises(WorkflowError, match="no column 'text'; its columns: id, prompt"):
        parse_sweep_values("@p.csv:text", tmp_path, "w")
    with pytest.raises(WorkflowError, match="does not exist"):
        parse_sweep_values("@nope.txt", tmp_path, "w")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "utf-16"])
def test_sweep_file_that_is_not_a_text_file(tmp_path: Path, kind: str) -> None:
    """Read without blocking or filling memory: a FIFO, /dev/zero, a folder, UTF-16 text."""
    path = tmp_path / "values"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes("a\nb\n".encode("utf-16"))
    with pytest.raises(WorkflowError, match=r"^w: the file .*(FIFO|character device|folder|UTF-16)"):
        parse_sweep_values("@values", tmp_path, "w")


@pytest.mark.parametrize("spec", ["1..0..1", "1..5..0"])
def test_empty_ranges(spec: str, tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="empty"):
        parse_sweep_values(spec, tmp_path, "w")


def test_product_in_order_with_sets() -> None:
    spec = build_spec(wf(), sets=["Canvas.width=32", "3.text=a cat"], sweeps=["2.steps=10|20", "1.color=1..3"])
    jobs = list(spec.jobs())
    assert spec.count == 6 == len(jobs)
    assert [(j.values["2.steps"], j.values["1.color"]) for j in jobs] == [(10, 1), (10, 2), (10, 3), (20, 1), (20, 2), (20, 3)]
    assert all(j.values["1.width"] == 32 and j.values["3.text"] == "a cat" for j in jobs)
    assert [j.index for j in jobs] == list(range(6))
    assert len({j.id for j in jobs}) == 6


def test_zip_pairs_and_needs_equal_lengths() -> None:
    spec = build_spec(wf(), sweeps=["2.steps=10|20|30", "3.text=a|b|c"], zipped=True)
    assert [(j.values["2.steps"], j.values["3.text"]) for j in spec.jobs()] == [(10, "a"), (20, "b"), (30, "c")]
    with pytest.raises(WorkflowError, match=r"same length; got 2.steps=10\|20: 2, 3.text=a\|b\|c: 3"):
        build_spec(wf(), sweeps=["2.steps=10|20", "3.text=a|b|c"], zipped=True)


def test_repeat_and_seeds() -> None:
    inc = list(build_spec(wf(), sweeps=["3.text=a|b"], repeat=2, seed="increment").jobs())
    assert [j.values["2.seed"] for j in inc] == [100, 101, 102, 103]
    assert [j.values["#repeat"] for j in inc] == [0, 1, 0, 1]
    rnd = [j.values["2.seed"] for j in build_spec(wf(), repeat=3, seed="random", seed_salt=5).jobs()]
    assert rnd == [j.values["2.seed"] for j in build_spec(wf(), repeat=3, seed="random", seed_salt=5).jobs()]
    assert len(set(rnd)) == 3 and all(0 <= s < 2**53 for s in rnd)
    other = [j.values["2.seed"] for j in build_spec(wf(), repeat=3, seed="random", seed_salt=6).jobs()]
    assert other != rnd
    with pytest.raises(WorkflowError, match="already given by --sweep"):
        build_spec(wf(), sweeps=["2.seed=1..3"], seed="random")
    no_seed = {"1": WF["1"], "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    with pytest.raises(WorkflowError, match="has no sampler seed"):
        build_spec(workflow_from_json(no_seed, "w"), seed="increment")


def test_values_are_typed_before_anything_runs() -> None:
    with pytest.raises(WorkflowError, match=r"--sweep 2.steps .*'ten' is not a number"):
        build_spec(wf(), sweeps=["2.steps=10|ten"])
    with pytest.raises(WorkflowError, match="no node 'Sampler'"):
        build_spec(wf(), sets=["Sampler.seed=1"])
    with pytest.raises(WorkflowError, match=re.escape("write NODE.FIELD=VALUE")):
        build_spec(wf(), sets=["2.seed"])
    with pytest.raises(WorkflowError, match="already given"):
        build_spec(wf(), sets=["2.steps=3"], sweeps=["2.steps=1|2"])
    info = {"KSampler": {"input": {"required": {"steps": ["INT", {"min": 1, "max": 100}]}}}}
    with pytest.raises(WorkflowError, match="is not a whole number from 1 to 100"):
        build_spec(wf(), sweeps=["2.steps=50..150..50"], object_info=info)


def test_ids_are_stable_and_prompt_ids_are_uuids() -> None:
    a = [j.id for j in build_spec(wf(), sweeps=["1.color=1..5"]).jobs()]
    b = [j.id for j in build_spec(wf(), sweeps=["1.color=1..5"]).jobs()]
    assert a == b
    assert job_id("d", {"x": 1, "y": 2}) == job_id("d", {"y": 2, "x": 1}) != job_id("e", {"x": 1, "y": 2})
    assert prompt_id_for("abc", 1) == prompt_id_for("abc", 1) != prompt_id_for("abc", 2)
    assert uuid.UUID(prompt_id_for("abc", 1)).version == 5


def test_large_expansion_is_lazy() -> None:
    spec = build_spec(wf(), sweeps=["1.color=1..1000", "2.steps=1..1000"])
    assert spec.count == 1_000_000
    first = next(iter(spec.jobs()))
    assert first.values == {"1.color": 1, "2.steps": 1}


@pytest.mark.parametrize(
    ("sweeps", "zipped", "needle"),
    [
        (["1.color=1|1|1"], False, "the value 1 is given twice (values 1 and 2)"),
        (["1.color=1|2|1"], False, "(values 1 and 3)"),
        (["1.color=5|05"], False, "the value 5 is given twice"),  # equal once typed
        (["1.color=1|1", "1.width=3|3"], True, "--zip: the value [1,3]"),
    ],
)
def test_repeated_sweep_values_are_refused(sweeps: list[str], zipped: bool, needle: str) -> None:
    """Issue 16 item 16: they silently collapsed into one job while the dry run counted each."""
    with pytest.raises(WorkflowError) as caught:
        build_spec(wf(), sweeps=sweeps, zipped=zipped)
    assert needle in caught.value.message and caught.value.hint is not None and "--repeat" in caught.value.hint


def test_a_value_repeated_in_one_zipped_sweep_is_a_distinct_pair() -> None:
    spec = build_spec(wf(), sweeps=["1.color=1|1", "1.width=3|4"], zipped=True)
    assert spec.count == 2 and len({job.id for job in spec.jobs()}) == 2


def test_repeated_lines_of_a_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a cat\nan owl\na cat\n")
    with pytest.raises(WorkflowError, match=r"the value \"a cat\" is given twice \(values 1 and 3\)"):
        build_spec(wf(), sweeps=["3.text=@p.txt"], base_dir=tmp_path)


@pytest.mark.parametrize("spec", ["1...3", "1..2..3..4", "1..x", "1e400..2", "0..1..1e-300"])
def test_ranges_are_strict(spec: str) -> None:
    with pytest.raises(WorkflowError):
        parse_sweep_values(spec, Path("."), "w")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "NaN"])
def test_non_finite_numbers_are_refused(value: str) -> None:
    with pytest.raises(WorkflowError, match="not a finite number"):
        build_spec(wf(), sets=[f"2.cfg={value}"])


def test_absurd_products_are_capped() -> None:
    with pytest.raises(WorkflowError, match=r"make 100,000,000 jobs \(10000 x 10000\); one batch takes at most 10,000,000"):
        build_spec(wf(), sweeps=["1.color=1..10000", "1.width=1..10000"])
    with pytest.raises(WorkflowError, match="--repeat 1000"):
        build_spec(wf(), sweeps=["1.color=1..100000"], repeat=1000)
