#!/usr/bin/env python3
"""Validate and run harness workflows against a running ComfyUI.

    python run_workflow.py --url http://127.0.0.1:8188 cpu_blur sd15_txt2img_512 \
        --set steps=2 --set width=64 --set height=64

Each workflow is first checked against the server's /object_info (class names,
required and unknown inputs, links), then submitted unless --validate-only.
``--set NAME=VALUE`` (VALUE parsed as JSON when it parses) changes that input on
every node that has it, and applies only to workflows that have it.  Prints one
JSON line per workflow; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from gpulab import comfy_http


def parse_set(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workflows", nargs="+", help="names under workflows/ or paths")
    p.add_argument("--url", default="http://127.0.0.1:8188")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--validate-only", action="store_true")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per workflow")
    args = p.parse_args(argv)

    overrides = parse_set(args.set)
    object_info = comfy_http.get(args.url, "/object_info", timeout=60)
    failed = False
    for name in args.workflows:
        wf = comfy_http.load_workflow(name)
        applicable = {k: v for k, v in overrides.items() if any(k in n.get("inputs", {}) for n in wf.values())}
        wf = comfy_http.patch(wf, **applicable)
        result: dict[str, object] = {"workflow": name, "overrides": applicable}
        problems = comfy_http.validate(wf, object_info)
        result["problems"] = problems
        if not problems and not args.validate_only:
            try:
                entry, secs = comfy_http.run(args.url, wf, args.timeout)
                result.update(seconds=round(secs, 2), status=entry.get("status", {}).get("status_str"),
                              images=comfy_http.images(entry))
            except (comfy_http.ComfyError, TimeoutError) as e:
                result["error"] = str(e)
        failed |= bool(problems) or "error" in result
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
