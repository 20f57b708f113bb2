#!/usr/bin/env python3
"""Collate a run_all.sh results folder into summary.md, and pack it to fit the return limits.

    python3 -m gpulab.summarize --out DIR [--extra-logs /tmp/comfyrig-bench-logs] [--pack]

Reads what the steps left in DIR: ``steps.tsv`` (name, exit code, seconds,
limit), ``setup.log``, ``junit.xml``/``pytest.log`` and every other ``*.md`` (one
per benchmark), and writes ``summary.md``.  With ``--pack`` it then puts
everything (plus the ComfyUI server logs from --extra-logs) into
``results.tar.gz`` and removes loose files, least useful first, until at most 8
files remain -- the device tool returns no more than that.  Stdlib only.
"""

from __future__ import annotations

import argparse
import socket
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

MAX_FILES = 8
# Loose files kept in this order of preference when there are too many.
KEEP_ORDER = ("summary.md", "results.tar.gz", "*.md", "*.json", "junit.xml", "pytest.log", "setup.log", "*")


def status(rc: int) -> str:
    if rc == 0:
        return "ok"
    if rc in (124, 137):
        return "TIMEOUT"
    if rc == -1:
        return "skipped"
    return f"FAILED (rc {rc})"


def steps_table(out: Path) -> list[str]:
    path = out / "steps.tsv"
    if not path.is_file():
        return ["(no steps.tsv)"]
    lines = ["| step | result | seconds | limit s | note |", "|---|---|---|---|---|"]
    for row in path.read_text().splitlines():
        parts = row.split("\t")
        if len(parts) < 4:
            continue
        name, rc, secs, limit = parts[:4]
        note = parts[4] if len(parts) > 4 else ""
        lines.append(f"| {name} | {status(int(rc))} | {secs} | {limit} | {note} |")
    return lines


def pytest_section(out: Path) -> list[str]:
    junit = out / "junit.xml"
    if not junit.is_file():
        log = out / "pytest.log"
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.is_file() else []
        return ["No junit.xml."] + (["", "```", *tail, "```"] if tail else [])
    try:
        root = ET.parse(junit).getroot()
    except ET.ParseError as e:
        return [f"junit.xml unreadable: {e}"]
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tot = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    secs = sum(float(s.get("time", 0)) for s in suites)
    passed = tot["tests"] - tot["failures"] - tot["errors"] - tot["skipped"]
    lines = [(f"{tot['tests']} tests: {passed} passed, {tot['failures']} failed, {tot['errors']} errors, "
              f"{tot['skipped']} skipped in {secs:.1f} s.")]
    bad, skipped = [], {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                bad.append(f"- **{tag}** `{name}`: {(el.get('message') or '').splitlines()[0][:200] if el.get('message') else ''}")
        el = case.find("skipped")
        if el is not None:
            reason = (el.get("message") or "")[:150]
            skipped[reason] = skipped.get(reason, 0) + 1
    if bad:
        lines += ["", *bad[:30]]
    if skipped:
        lines += ["", "Skip reasons:", *[f"- {n} x {r}" for r, n in sorted(skipped.items(), key=lambda x: -x[1])[:10]]]
    return lines


def env_lines(out: Path) -> list[str]:
    log = out / "setup.log"
    if not log.is_file():
        return ["(no setup.log)"]
    text = log.read_text(errors="replace").splitlines()
    # "[setup] ..." lines are the report (GPUs, torch, imports, checkpoint); "[setup  12s]" ones are progress.
    keep = [ln for ln in text if ln.startswith("[setup] ") and "---" not in ln]
    return ["```", *keep[:20], "```"] if keep else ["```", *text[-15:], "```"]


def write_summary(out: Path) -> Path:
    parts = ["# comfyrig real-GPU harness: summary", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} on {socket.gethostname()}.", "",
             "## Steps", "", *steps_table(out), "", "## Environment", "", *env_lines(out), "",
             "## Tests (`pytest -m \"gpu or comfyui\"`)", "", *pytest_section(out)]
    for md in sorted(out.glob("*.md")):
        if md.name == "summary.md":
            continue
        body = md.read_text(errors="replace").strip().splitlines()
        # Demote the benchmark's headings one level under this summary.
        parts += ["", *[("#" + ln if ln.startswith("#") else ln) for ln in body]]
    path = out / "summary.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def pack(out: Path, extra_logs: Path | None) -> list[str]:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "results.tar.gz")
    tar_path = out / "results.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f"results/{f.relative_to(out).as_posix()}")
        if extra_logs and extra_logs.is_dir():
            for f in sorted(extra_logs.glob("*")):
                if f.is_file():
                    tar.add(f, arcname=f"results/comfyui-logs/{f.name}")
    loose = [p for p in out.rglob("*") if p.is_file()]

    def rank(p: Path) -> int:
        for i, pattern in enumerate(KEEP_ORDER):
            if p.match(pattern) and p.parent == out:
                return i
        return len(KEEP_ORDER)

    removed = []
    for p in sorted(loose, key=lambda p: (rank(p), p.name), reverse=True):
        if len([q for q in out.rglob("*") if q.is_file()]) <= MAX_FILES:
            break
        p.unlink()
        removed.append(p.name)
    return removed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--extra-logs", type=Path, default=Path("/tmp/comfyrig-bench-logs"))
    p.add_argument("--pack", action="store_true")
    args = p.parse_args(argv)
    path = write_summary(args.out)
    print(path.read_text())
    if args.pack:
        removed = pack(args.out, args.extra_logs)
        kept = sorted(q.name for q in args.out.rglob("*") if q.is_file())
        print(f"[summarize] results.tar.gz holds everything; loose files kept: {', '.join(kept)}"
              + (f"; only in the tarball: {', '.join(removed)}" if removed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
