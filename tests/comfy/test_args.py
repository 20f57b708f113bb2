"""ComfyUI's command line as its argparse parser reads it (comfy/args.py, comfy/checkout.py).

The argv cases run twice: against the model, and against the real stdlib
argparse parser built from the same cli_args.py text, so the model cannot
drift from argparse's rules.
"""

from __future__ import annotations

import contextlib
import enum
import io
from pathlib import Path
from typing import Any

import pytest

from comfyrig.comfy.args import (
    BUILTIN,
    LISTEN_ALL,
    FlagTable,
    comfy_args,
    effective_listen,
    effective_port,
    parse_comfy_args,
)
from comfyrig.comfy.checkout import flag_table, flag_table_from_source, supported_flags
from comfyrig.config.settings import CliOverrides, resolve_settings
from tests.comfy.cli_args_versions import cli_args_text, real_parser


def table(version: str) -> FlagTable:
    found = flag_table_from_source(cli_args_text(version))
    assert found is not None
    return found


# -- the table, read from cli_args.py's text ------------------------------------------------------


def test_each_version_reads_into_its_table() -> None:
    old, mid, new = table("0.3.64"), table("0.3.76"), table("0.24.0")
    assert (len(old), len(mid), len(new)) == (84, 90, 97)
    listen = mid.spec("--listen")
    assert listen is not None and (listen.nargs, listen.const) == ("?", LISTEN_ALL)
    assert mid.spec("--port") is not None and mid.spec("--port").type == "int"  # type: ignore[union-attr]
    assert [t.spec("--cuda-device").type for t in (old, mid, new)] == ["int", "int", "str"]  # type: ignore[union-attr]
    assert ("--enable-manager" in old, "--enable-manager" in mid, "--normalvram" in new) == (False, True, False)
    fast = new.spec("--fast")
    assert fast is not None and fast.nargs == "*" and fast.choices == ("fp16_accumulation", "fp8_matrix_mult", "cublas_ops", "autotune")
    assert mid.spec("--cpu").group == mid.spec("--lowvram").group == "vram_group"  # type: ignore[union-attr]
    assert "--help" in mid and "-h" in mid and mid.spec("--cpu").nargs == 0  # type: ignore[union-attr]


def test_reading_covers_argparse_forms() -> None:
    text = (
        "import argparse\n"
        "p = argparse.ArgumentParser(allow_abbrev=False, add_help=False)\n"
        "p.add_argument(\n    '--multi-line',\n    type=float,\n)\n"
        "p.add_argument('-v', '--verbose', action='count')\n"
        "p.add_argument('--color', action=argparse.BooleanOptionalAction)\n"
        "p.add_argument('--pair', nargs=2)\n"
        "p.add_argument('--rest', nargs=argparse.REMAINDER)\n"
        "p.add_argument('--tag', action='append')\n"
        "p.add_argument('positional')\n"
    )
    t = flag_table_from_source(text)
    assert t is not None and not t.allow_abbrev and "--help" not in t
    assert [(s.names, s.nargs, s.type) for s in t] == [
        (("--multi-line",), 1, "float"), (("-v", "--verbose"), 0, None), (("--color", "--no-color"), 0, None),
        (("--pair",), 2, None), (("--rest",), "*", None), (("--tag",), 1, None),
    ]
    assert flag_table_from_source("def broken(:\n") is None
    assert flag_table_from_source("import argparse\nparser = argparse.ArgumentParser()\n") is None


def test_checkout_table_is_read_from_disk_never_imported(tmp_path: Path) -> None:
    assert flag_table(tmp_path) is None and supported_flags(tmp_path) is None
    (tmp_path / "comfy").mkdir()
    (tmp_path / "comfy" / "cli_args.py").write_text("raise SystemExit('imported!')\n" + cli_args_text("0.3.64"))
    found = flag_table(tmp_path)
    assert found is not None and len(found) == 84 and found.source.endswith("cli_args.py")
    assert supported_flags(tmp_path) == found.option_strings
    (tmp_path / "comfy" / "cli_args.py").write_bytes(b"\xff\xfe not utf-8")
    assert flag_table(tmp_path) is None


# -- reading argv ---------------------------------------------------------------------------------

# (version, argv, {flag: value it gets, True: given without a value, None: not given}, problem kinds)
CASES: list[tuple[str, list[str], dict[str, Any], tuple[str, ...]]] = [
    ("0.3.76", ["--lowvram"], {"--lowvram": True}, ()),
    ("0.3.76", ["--low"], {"--lowvram": True}, ()),  # the only flag starting so
    ("0.3.76", ["--cuda-device=1"], {"--cuda-device": "1"}, ()),
    ("0.3.76", ["--cuda-dev", "1"], {"--cuda-device": "1"}, ()),
    ("0.3.76", ["--cuda-dev=1"], {"--cuda-device": "1"}, ()),
    ("0.3.76", ["--output-dir=x"], {"--output-directory": "x"}, ()),
    ("0.3.76", ["--output-directory=-dashed"], {"--output-directory": "-dashed"}, ()),
    ("0.3.76", ["--port", "8190", "--port=8191"], {"--port": "8191"}, ()),  # the last one wins
    ("0.3.76", ["--listen"], {"--listen": LISTEN_ALL}, ()),
    ("0.3.76", ["--listen", "--port", "8190"], {"--listen": LISTEN_ALL, "--port": "8190"}, ()),
    ("0.3.76", ["--listen", "10.0.0.2"], {"--listen": "10.0.0.2"}, ()),
    ("0.3.76", ["--listen=10.0.0.2", "--listen"], {"--listen": LISTEN_ALL}, ()),
    ("0.3.76", ["--lis"], {"--listen": LISTEN_ALL}, ()),
    ("0.3.76", ["--listen="], {"--listen": ""}, ()),
    ("0.3.76", ["--enable-cors-header"], {"--enable-cors-header": "*"}, ()),
    ("0.3.76", ["--reserve-vram", "-1"], {"--reserve-vram": "-1"}, ()),  # a negative number is a value
    ("0.3.76", ["--whitelist-custom-nodes", "a", "b", "--cpu"], {"--whitelist-custom-nodes": "b", "--cpu": True}, ()),
    ("0.3.76", ["--verbose"], {"--verbose": "DEBUG"}, ()),
    ("0.3.76", ["--fast", "autotune"], {"--fast": "autotune"}, ()),
    ("0.3.76", ["--lowvram", "--lowvram"], {"--lowvram": True}, ()),  # a repeated flag is no conflict
    ("0.3.76", [], {"--port": None, "--cpu": None}, ()),
    # unknown, ambiguous, and what changed between versions
    ("0.3.76", ["--medvram"], {}, ("unknown",)),
    ("0.3.76", ["-x"], {}, ("unknown",)),
    ("0.3.76", ["--h"], {}, ("ambiguous",)),  # --help, --highvram
    ("0.3.64", ["--enable-manager"], {"--enable-manager": None}, ("unknown",)),
    ("0.3.76", ["--enable-manager"], {"--enable-manager": True}, ()),
    ("0.3.76", ["--enable-man"], {"--enable-manager": None}, ("ambiguous",)),  # and --enable-manager-legacy-ui
    ("0.3.64", ["--enable-man"], {}, ("unknown",)),
    ("0.3.76", ["--fas"], {"--fast": True}, ()),
    ("0.24.0", ["--fas"], {"--fast": None}, ("ambiguous",)),  # --fast, --fast-disk
    ("0.24.0", ["--fast"], {"--fast": True}, ()),  # exact wins over the longer --fast-disk
    ("0.3.76", ["--fast-d"], {}, ("unknown",)),
    ("0.24.0", ["--fast-d"], {"--fast-disk": True}, ()),
    ("0.3.64", ["--normal"], {"--normalvram": True}, ()),
    ("0.24.0", ["--normalvram"], {}, ("unknown",)),
    ("0.3.76", ["--cuda-device", "0,1"], {"--cuda-device": "0,1"}, ("bad_value",)),  # an int there
    ("0.24.0", ["--cuda-device", "0,1"], {"--cuda-device": "0,1"}, ()),  # a list since 0.24
    # values missing, unwanted or wrong
    ("0.3.76", ["--port"], {}, ("missing_value",)),
    ("0.3.76", ["--port", "--lowvram"], {"--lowvram": True}, ("missing_value",)),
    ("0.3.76", ["--output-directory", "-dashed"], {}, ("missing_value", "unknown")),  # a value that looks like a flag
    ("0.3.76", ["--whitelist-custom-nodes"], {}, ("missing_value",)),
    ("0.3.76", ["--cpu=1"], {}, ("unexpected_value",)),
    ("0.3.76", ["--port=abc"], {"--port": "abc"}, ("bad_value",)),
    ("0.3.76", ["--verbose", "LOUD"], {}, ("bad_value",)),
    ("0.3.76", ["--fast", "turbo"], {}, ("bad_value",)),
    ("0.3.76", ["--preview-method", "fancy"], {}, ("bad_value",)),
    ("0.3.76", ["--cpu", "extra"], {"--cpu": True}, ("stray",)),
    ("0.3.76", ["--port", "1", "2"], {"--port": "1"}, ("stray",)),
    ("0.3.76", ["8190"], {}, ("stray",)),
    ("0.3.76", ["--", "--cpu"], {"--cpu": None}, ("stray",)),
    ("0.3.76", ["--cpu", "--lowvram"], {"--cpu": True, "--lowvram": True}, ("conflict",)),
    ("0.3.76", ["--disable-cuda-malloc", "--cuda-mal"], {}, ("conflict",)),
]


def _expect_id(case: tuple[str, list[str], dict[str, Any], tuple[str, ...]]) -> str:
    return f"{case[0]}:{' '.join(case[1]) or '(none)'}"


@pytest.mark.parametrize("version, argv, expect, problems", CASES, ids=[_expect_id(c) for c in CASES])
def test_argv_as_comfyui_reads_it(version: str, argv: list[str], expect: dict[str, Any], problems: tuple[str, ...]) -> None:
    args = parse_comfy_args(argv, table(version))
    assert tuple(p.kind for p in args.problems) == problems
    assert args.ok == (not problems) and args.checked
    for flag, value in expect.items():
        assert args.given(flag) == (value is not None), flag
        if isinstance(value, str):
            assert args.value(flag) == value, flag


@pytest.mark.parametrize("version, argv, expect, problems", CASES, ids=[_expect_id(c) for c in CASES])
def test_argv_agrees_with_real_argparse(version: str, argv: list[str], expect: dict[str, Any], problems: tuple[str, ...]) -> None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            namespace = real_parser(version).parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2 and problems, f"argparse refused what the model accepts: {err.getvalue()}"
        return
    assert not problems, "argparse accepted what the model refuses"
    for flag, value in expect.items():
        got = getattr(namespace, flag[2:].replace("-", "_"))
        if isinstance(value, str):
            assert _same(got, value), (flag, got)
        elif value is None:
            assert got in (None, False, [])


def _same(got: Any, value: str) -> bool:
    """argparse's typed value (an int, an Enum member, the last of a list) against the model's text."""
    if isinstance(got, list):
        got = got[-1]
    if isinstance(got, enum.Enum):
        got = got.value
    if isinstance(got, (int, float)):
        return got == float(value)
    return bool(got == value)


def test_abbreviations_and_problems_say_what_and_where() -> None:
    args = parse_comfy_args(["--low", "--cuda-dev=1", "--medvram", "--port", "--fas"], table("0.24.0"))
    assert [(o.written, o.flag, o.status) for o in args.abbreviations] == [("--low", "--lowvram", "abbrev"), ("--cuda-dev", "--cuda-device", "abbrev")]
    assert args.last("--cuda-device") is not None and args.last("--cuda-device").inline  # type: ignore[union-attr]
    details = [p.detail for p in args.problems]
    assert details == [
        "ComfyUI has no --medvram flag",
        "--port needs a value, but '--fas' after it reads as a flag (write --port=--fas to pass it as the value)",
        "--fas is an abbreviation of --fast, --fast-disk, and argparse refuses an ambiguous one",
    ]
    assert parse_comfy_args(["--cpu", "--low"], table("0.3.76")).problems[0].detail == (
        "--cpu and --lowvram exclude each other (ComfyUI takes only one of them)"
    )


def test_without_a_checkout_values_are_still_read_and_nothing_is_unknown() -> None:
    args = parse_comfy_args(["--whatever", "x", "--listen", "--port=8190", "--low", "--medvram"], None)
    assert args.table is BUILTIN and not args.checked and args.ok
    assert args.value("--listen") == LISTEN_ALL and args.value("--port") == "8190"
    assert not args.given("--lowvram")  # a prefix cannot be resolved without the real table
    assert [o.status for o in args.occurrences] == ["unchecked", "exact", "exact", "unchecked", "unchecked"]
    assert parse_comfy_args(["--port"], None).problems[0].kind == "missing_value"
    # The VRAM modes exclude each other in every version: CPU mode's --cpu clashes even without a checkout.
    assert [p.kind for p in parse_comfy_args(["--cpu", "--lowvram"], None).problems] == ["conflict"]


def test_own_flags_are_told_apart_from_the_users(tmp_path: Path) -> None:
    settings = resolve_settings(CliOverrides(comfyui_args="--lowvram --port 8190", extra_args=("--listen",)), {}, tmp_path)
    args = comfy_args(settings, table("0.3.76"), own=["--cpu"])
    assert args.user_tokens == ("--lowvram", "--port", "8190", "--listen") and args.own == 1
    assert args.given("--cpu") and not args.user_given("--cpu") and args.user_given("--lowvram")
    assert [p.kind for p in args.problems] == ["conflict"]
    assert effective_port(settings, args) == 8190 and effective_listen(settings, args) == LISTEN_ALL
    plain = resolve_settings(CliOverrides(comfyui_args="--port=abc"), {"COMFYUI_LISTEN": "127.0.0.2"}, tmp_path)
    parsed = comfy_args(plain, None)
    assert effective_port(plain, parsed) is None and effective_listen(plain, parsed) == "127.0.0.2"
    default = resolve_settings(CliOverrides(), {}, tmp_path)
    assert effective_port(default, comfy_args(default, None)) == 8188
