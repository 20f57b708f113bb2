"""The node-pack compatibility table."""

from __future__ import annotations

import re

import pytest

from comfyrig.errors import ConfigError
from comfyrig.install.nodes import MULTIGPU_REFS, MULTIGPU_UNDECLARED, choose_pack_ref, undeclared_files, version_tuple

NEEDS = "comfy/memory_management.py"


def test_every_entry_is_a_full_commit_with_a_reason() -> None:
    for entry in MULTIGPU_REFS:
        assert len(entry.commit) == 40 and int(entry.commit, 16) >= 0
        assert len(entry.reason) > 40 and entry.label.startswith("v")


@pytest.mark.parametrize(
    ("version", "files", "label"),
    [
        ("0.3.76", frozenset(), "v2.5.11"),  # measured: loads and registers 25 nodes
        ("0.3.80", frozenset(), "v2.5.11"),
        ("0.3.64", frozenset(), "v2.5.9"),  # 2.6.x imports comfy.memory_management, absent in 0.3.64
        ("0.3.70", frozenset(), "v2.5.9"),
        ("0.18.2", frozenset({NEEDS}), "v2.6.3"),  # the module is there: the current release
        ("0.24.0", frozenset({NEEDS}), "v2.6.3"),  # checked: loads in 0.24.0 and registers 26 nodes
        ("0.24.0", frozenset(), "v2.5.11"),  # a 0.24 without the module (a fork): 2.6.x would not import
    ],
)
def test_multigpu_ref_by_comfyui(version: str, files: frozenset[str], label: str) -> None:
    choice = choose_pack_ref("multigpu", version, files)
    assert choice.label == label and not choice.pending and choice.ref and len(choice.ref) == 40


def test_before_checkout_the_tag_decides_or_it_waits() -> None:
    assert choose_pack_ref("multigpu", "v0.3.76", None).label == "v2.5.11"
    later = choose_pack_ref("multigpu", "v0.4.0", None)
    assert later.pending and later.ref is None
    assert choose_pack_ref("multigpu", None, None).pending
    # 0.24.0 is known to have comfy/memory_management.py: no need to wait for the checkout.
    for tag in ("v0.24.0", "v0.25.1"):
        now = choose_pack_ref("multigpu", tag, None)
        assert now.label == "v2.6.3" and not now.pending and now.ref == MULTIGPU_REFS[0].commit


def test_v2_5_refs_carry_their_undeclared_requirement() -> None:
    assert choose_pack_ref("multigpu", "0.3.76", frozenset()).undeclared == MULTIGPU_UNDECLARED
    assert choose_pack_ref("multigpu", "0.3.64", frozenset()).undeclared == MULTIGPU_UNDECLARED
    assert choose_pack_ref("multigpu", "0.24.0", frozenset({NEEDS})).undeclared is None
    assert undeclared_files("multigpu") == (MULTIGPU_UNDECLARED,) and undeclared_files("manager") == ()


def test_too_old_or_unknown_comfyui_refuses_without_an_override() -> None:
    with pytest.raises(ConfigError, match=re.escape("0.3.64 or newer")):
        choose_pack_ref("multigpu", "0.3.10", frozenset())
    with pytest.raises(ConfigError, match="--multigpu-ref"):
        choose_pack_ref("multigpu", None, frozenset())
    assert choose_pack_ref("multigpu", "0.3.10", frozenset(), override="abc1234").ref == "abc1234"


def test_manager_tracks_its_default_branch() -> None:
    choice = choose_pack_ref("manager", "0.3.76", frozenset())
    assert choice.ref is None and not choice.pending


def test_version_tuple() -> None:
    assert version_tuple("v0.3.76") == (0, 3, 76) and version_tuple("0.3.9") < version_tuple("0.3.76")  # type: ignore[operator]
    assert version_tuple("nightly") is None and version_tuple(None) is None
