"""``comfyrig batch`` as a service: workflow + variations + backend -> journal, outputs, report.

Order matters for "a clear error before any job is sent": the workflow and
every --set/--sweep are checked against the workflow file before a worker is
started; once a worker answers, the UI format is converted and every value is
checked again against the server's node schemas, before the first job.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .. import __version__
from ..errors import ConfigError, WorkflowError
from ..ui.batch_view import batch_view, dry_run_table, summary_view
from .backends import Backend
from .dispatcher import BatchOptions, BatchSnapshot, Dispatcher
from .journal import Journal
from .report import build_report, write_report
from ..comfy.convert import convert_ui
from .variations import VariationSpec, build_spec
from .worker import LocalSink
from ..comfy.workflow import Workflow, load_workflow, require_api_format, schema_problems

__all__ = ["BatchRequest", "run_batch"]

JOURNAL_NAME = "journal.sqlite"


@dataclass(frozen=True)
class BatchRequest:
    workflow: Path
    out_dir: Path
    sets: tuple[str, ...] = ()
    sweeps: tuple[str, ...] = ()
    zipped: bool = False
    repeat: int = 1
    seed: str = "keep"
    dry_run: bool = False
    json_out: bool = False
    plain: bool = False
    ready_timeout_s: float = 300.0
    options: BatchOptions | None = None
    show_jobs: int = 10


def _spec(wf: Workflow, req: BatchRequest, salt: int, object_info: dict[str, Any] | None) -> VariationSpec:
    return build_spec(
        wf, sets=req.sets, sweeps=req.sweeps, zipped=req.zipped, repeat=req.repeat, seed=req.seed,
        seed_salt=salt, base_dir=Path.cwd(), object_info=object_info,
    )


def _existing_salt(out_dir: Path) -> int | None:
    path = out_dir / JOURNAL_NAME
    if not path.exists():
        return None
    journal = Journal(path)
    try:
        value = journal.get_meta("seed_salt")
        return int(value) if value is not None else None
    finally:
        journal.close()


def _check_schema(wf: Workflow, object_info: dict[str, Any]) -> None:
    problems = schema_problems(wf, object_info)
    if problems:
        raise WorkflowError(
            "The workers' ComfyUI would reject this workflow: " + " ".join(problems),
            hint="Fix the workflow (or install the missing node pack on every worker).",
        )


@contextmanager
def _signals(handler: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C and SIGTERM only enqueue while the dispatcher runs (it decides what they mean)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: handler())
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_batch(req: BatchRequest, backend: Backend, console: Console, *, err_console: Console | None = None) -> int:
    """Run (or with ``dry_run`` only describe) the batch; returns the exit code:
    0 all done, 1 some failed or unfinished, 130 stopped by Ctrl-C with jobs left."""
    wf = load_workflow(req.workflow)
    options = req.options or BatchOptions(out_dir=req.out_dir)
    salt = _existing_salt(req.out_dir)
    if wf.needs_conversion:
        if req.dry_run and backend.kind != "url":
            require_api_format(wf, "converting it needs a running ComfyUI's /object_info, and --dry-run starts none",
                               alternative="Pass --url of a running ComfyUI to --dry-run.")
    else:
        # Everything checkable without a server, before one is started.
        _spec(wf, req, salt or 0, None)
    if req.dry_run:
        object_info = backend.object_info(req.ready_timeout_s) if wf.needs_conversion else None
        if object_info is not None:
            wf = convert_ui(wf, object_info)
        spec = _spec(wf, req, salt if salt is not None else random.getrandbits(63), object_info)
        return _dry_run(wf, spec, backend, console, req)

    req.out_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(req.out_dir / JOURNAL_NAME)
    progress_console = err_console if req.json_out and err_console is not None else console
    plain = req.plain or req.json_out or not progress_console.is_terminal
    say = _sayer(progress_console) if plain else None
    try:
        # One websocket client id per output folder: a resumed run hears its earlier prompts' events.
        client_id = journal.meta_default("client_id", lambda: f"comfyrig-batch-{uuid.uuid4().hex}")
        backend.start(client_id, say)
        try:
            object_info = backend.object_info(req.ready_timeout_s)
            wf = convert_ui(wf, object_info)
            _check_schema(wf, object_info)
            previous = journal.get_meta("workflow")
            if previous is not None and previous != wf.digest:
                raise ConfigError(
                    f"{req.out_dir} holds a batch of another workflow (or another version of this one).",
                    hint="Use a new --out folder; comfyrig never mixes two workflows' outputs.",
                )
            salt_value = int(journal.meta_default("seed_salt", lambda: random.getrandbits(63)))
            spec = _spec(wf, req, salt_value, object_info)
            journal.set_meta("workflow", wf.digest)
            journal.set_meta("workflow_source", str(req.workflow))
            dispatcher = Dispatcher(wf, spec, journal, options, on_line=say)
            sink = LocalSink(req.out_dir)
            sink.clean_partials()
            dispatcher.prepare(backend.endpoints(dispatcher.post, sink))
            title = (f"comfyrig {__version__} · batch {req.workflow.name} -> {req.out_dir} · "
                     f"{len(dispatcher.endpoints)} worker(s) ({backend.kind})")
            if say is not None:
                say(f"{spec.count} jobs, {dispatcher.scheduler.done} already done; {len(dispatcher.endpoints)} worker(s)")
            with _signals(dispatcher.signal):
                if plain:
                    result = dispatcher.run()
                else:
                    with Live(console=progress_console, refresh_per_second=4, transient=False) as live:
                        def show(snap: BatchSnapshot) -> None:
                            live.update(batch_view(snap, title))

                        result = dispatcher.run(on_snapshot=show)
        finally:
            backend.stop()
        report = build_report(journal, set(dispatcher.scheduler.jobs), result, workflow=str(req.workflow), out_dir=req.out_dir)
        write_report(req.out_dir, report)
    finally:
        journal.close()
    if req.json_out:
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        console.print(summary_view(report))
    if report["done"] == report["total"]:
        return 0
    if result.interrupted and report["unfinished"]:
        return 130
    return 1


def _sayer(console: Console) -> Callable[[str], None]:
    def say(text: str) -> None:
        console.print(Text(f"comfyrig: {text}"), soft_wrap=True)

    return say


def _dry_run(wf: Workflow, spec: VariationSpec, backend: Backend, console: Console, req: BatchRequest) -> int:
    first: list[tuple[int, str, dict[str, Any]]] = []
    for job in spec.jobs():
        if len(first) >= req.show_jobs:
            break
        first.append((job.index, job.id, dict(job.values)))
    warnings = []
    if req.repeat > 1 and spec.seed_mode == "keep" and not spec.sweeps:
        warnings.append("--repeat without --seed sends identical prompts; ComfyUI caches them, so the copies are the same image.")
    if req.json_out:
        sys.stdout.write(json.dumps({
            "workflow": str(req.workflow), "workflow_sha256": wf.digest, "jobs": spec.count,
            "first": [{"index": i, "job": j, "values": v} for i, j, v in first],
            "workers": [{"name": n, "url": u, "gpu": g} for n, u, g in backend.members()],
            "warnings": warnings,
        }, indent=2, ensure_ascii=False) + "\n")
        return 0
    console.print(Text(f"{spec.count} job{'s' if spec.count != 1 else ''} from {req.workflow} -> {req.out_dir}", style="bold"))
    console.print(dry_run_table(first, spec.count))
    members = backend.members()
    console.print(Text(f"Workers ({backend.kind}): " + ", ".join(f"{n} {g} {u}" for n, u, g in members), style="dim"))
    for warning in warnings:
        console.print(Text(f"⚠ {warning}", style="yellow"))
    return 0
