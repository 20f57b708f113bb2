"""``comfyrig batch`` as a service: workflow + variations + backend -> journal, outputs, report.

Order matters for "a clear error before any job is sent": the workflow and
every --set/--sweep are checked against the workflow file before a worker is
started; once a worker answers, the UI format is converted and every value is
checked again against the server's node schemas, before the first job.

It prints nothing: what happens is reported as ``batch.events`` to the caller's
reporter (``cli/batch_cmd.py`` renders them with ``ui/batch_view.BatchView``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..comfy.convert import convert_ui
from ..comfy.workflow import Workflow, canonical_json, load_workflow, require_api_format, schema_problems
from ..errors import ComfyrigError, ConfigError, WorkflowError
from ..events import Reporter, discard
from ..files import check_writable_dir, write_error
from ..launch.signals import capture_signals
from .backends import Backend
from .dispatcher import BatchOptions, Dispatcher
from .events import BatchEvent, BatchFinished, BatchStarted, DryRunPlan, PlannedJob
from .journal import Journal, read_meta
from .report import build_report, exit_code, write_report
from .variations import VariationSpec, build_spec, parse_sweep_values
from .worker import LocalSink

__all__ = ["BatchRequest", "run_batch"]

JOURNAL_NAME = "journal.sqlite"

SignalCapture = Callable[[Callable[[int], None]], AbstractContextManager[None]]


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
    ready_timeout_s: float = 300.0
    options: BatchOptions | None = None
    show_jobs: int = 10  # jobs listed by a dry run


def _spec(wf: Workflow, req: BatchRequest, salt: int, object_info: dict[str, Any] | None) -> VariationSpec:
    return build_spec(
        wf, sets=req.sets, sweeps=req.sweeps, zipped=req.zipped, repeat=req.repeat, seed=req.seed,
        seed_salt=salt, base_dir=Path.cwd(), object_info=object_info,
    )


class OutLock:
    """An exclusive lock on ``out_dir/.lock`` for the whole run (``flock``): a second batch on the
    same --out is refused at start, instead of failing on a locked journal in the middle of its
    run. The kernel drops the lock when the process ends, however it ends, so no stale lock is
    left by a SIGKILL. Raises ConfigError naming the holder's pid when it is taken."""

    def __init__(self, out_dir: Path) -> None:
        path = out_dir / ".lock"
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise write_error(exc, path, "The lock file") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            os.close(self._fd)
            raise ConfigError(
                f"Another batch is running on {out_dir}{f' (pid {holder})' if holder else ''}; "
                "two batches on one --out would interleave one journal.",
                hint="Wait for it to finish (or stop it), or use another --out folder.",
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        os.close(self._fd)  # closing drops the flock


def job_set_identity(wf: Workflow, req: BatchRequest) -> str:
    """sha256 of what decides the job list: the workflow file's content and every variation as
    given (a sweep by its values, so an edited @file counts). A rerun into the same --out must
    match it, or it would mix two batches in one journal and manifest."""
    where = "--sweep"
    sweeps = []
    for text in req.sweeps:
        target, _, spec = text.partition("=")
        sweeps.append([target.strip(), parse_sweep_values(spec, Path.cwd(), f"{where} {target.strip()}")])
    content = wf.digest if not wf.needs_conversion else hashlib.sha256(canonical_json(wf.ui).encode()).hexdigest()
    identity = {"workflow": content, "sets": list(req.sets), "sweeps": sweeps, "zip": req.zipped,
                "repeat": req.repeat, "seed": req.seed}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def _check_same_batch(meta: dict[str, str], wf: Workflow, identity: str, req: BatchRequest) -> None:
    """Before any worker starts (and in a dry run): the --out folder holds this batch or none."""
    previous = meta.get("job_set")
    other_workflow = not wf.needs_conversion and meta.get("workflow") not in (None, wf.digest)
    if other_workflow or (previous is not None and previous != identity):
        what = "another workflow (or another version of this one)" if other_workflow else "other variations"
        raise ConfigError(
            f"{req.out_dir} holds a batch of {what}: {meta.get('workflow_source', 'an earlier run')} with "
            "other --set/--sweep/--zip/--repeat/--seed values. A rerun into the same --out resumes that batch, so it must be the same command.",
            hint="Use a new --out folder for the new batch; comfyrig never mixes two batches in one.",
        )


def _check_schema(wf: Workflow, object_info: dict[str, Any]) -> None:
    problems = schema_problems(wf, object_info)
    if problems:
        raise WorkflowError(
            "The workers' ComfyUI would reject this workflow: " + " ".join(problems),
            hint="Fix the workflow (or install the missing node pack on every worker).",
        )


def run_batch(
    req: BatchRequest,
    backend: Backend,
    reporter: Reporter[BatchEvent] = discard,
    *,
    signals: SignalCapture = capture_signals,
) -> int:
    """Run (or with ``dry_run`` only describe) the batch, reporting to ``reporter`` (from this
    thread, and from the fleet's for ``FleetNews``); returns the exit code: 0 all done, 1 some
    failed or unfinished, 130 stopped by Ctrl-C with jobs left.

    While the dispatcher runs, ``signals`` routes Ctrl-C and SIGTERM to it (and restores the
    previous handlers after). Raises WorkflowError or ConfigError for a workflow or option
    that cannot run (before any job is sent), LaunchError when no worker answers."""
    # --out "" (the current folder), "/", a file, an unwritable or missing parent: refused before
    # anything starts; a dry run checks the same without creating the folder.
    check_writable_dir(req.out_dir, "--out", create=not req.dry_run)
    wf = load_workflow(req.workflow)
    options = req.options or BatchOptions(out_dir=req.out_dir)
    meta = read_meta(req.out_dir / JOURNAL_NAME)
    salt = int(meta["seed_salt"]) if "seed_salt" in meta else None
    if wf.needs_conversion:
        if req.dry_run and backend.kind != "url":
            require_api_format(wf, "converting it needs a running ComfyUI's /object_info, and --dry-run starts none",
                               alternative="Pass --url of a running ComfyUI to --dry-run.")
    else:
        # Everything checkable without a server, before one is started.
        _spec(wf, req, salt or 0, None)
    identity = job_set_identity(wf, req)
    _check_same_batch(meta, wf, identity, req)
    if req.dry_run:
        notes: list[str] = []
        object_info = backend.object_info(req.ready_timeout_s) if wf.needs_conversion else None
        if object_info is None and backend.kind == "url":
            # Servers that run already: one quick look, so values are checked against the node
            # schemas as the real run will (1.width=1.5 where the workflow holds a whole number).
            try:
                object_info = backend.object_info(0.0)
            except ComfyrigError as exc:
                notes.append(f"values were checked against the workflow only: {exc.message}")
        if object_info is not None:
            wf = convert_ui(wf, object_info)
            _check_schema(wf, object_info)
        spec = _spec(wf, req, salt if salt is not None else random.getrandbits(63), object_info)
        reporter(_dry_run(wf, spec, backend, req, notes))
        return 0

    lock = OutLock(req.out_dir)  # before the journal is touched: a second batch stops here
    journal = Journal(req.out_dir / JOURNAL_NAME)
    try:
        # One websocket client id per output folder: a resumed run hears its earlier prompts' events.
        client_id = journal.meta_default("client_id", lambda: f"comfyrig-batch-{uuid.uuid4().hex}")
        backend.start(client_id, reporter)
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
            held = sum(journal.counts().values())
            if "job_set" not in meta and held not in (0, spec.count):
                # A journal from before job sets were recorded, which listed every job at start:
                # another count means other variations, and jobs now stream by number.
                raise ConfigError(
                    f"{req.out_dir} holds {held} jobs of an earlier batch, and these variations make {spec.count}.",
                    hint="Use a new --out folder for the new batch; comfyrig never mixes two batches in one.",
                )
            journal.set_meta("workflow", wf.digest)
            journal.set_meta("workflow_source", str(req.workflow))
            journal.set_meta("job_set", identity)
            dispatcher = Dispatcher(wf, spec, journal, options, reporter=reporter)
            sink = LocalSink(req.out_dir)
            sink.clean_partials()
            dispatcher.prepare(backend.endpoints(dispatcher.post, sink))
            reporter(BatchStarted(
                workflow=str(req.workflow), out_dir=str(req.out_dir), backend=backend.kind,
                workers=len(dispatcher.endpoints), total=spec.count, done_before=dispatcher.scheduler.done,
            ))
            with signals(dispatcher.signal):
                result = dispatcher.run()
        finally:
            backend.stop()
        report = build_report(journal, None, result, workflow=str(req.workflow), out_dir=req.out_dir)
        write_report(req.out_dir, report)
    finally:
        journal.close()
        lock.release()
    reporter(BatchFinished(report))
    return exit_code(report)


def _dry_run(wf: Workflow, spec: VariationSpec, backend: Backend, req: BatchRequest, notes: list[str]) -> DryRunPlan:
    first: list[PlannedJob] = []
    for job in spec.jobs():
        if len(first) >= req.show_jobs:
            break
        first.append(PlannedJob(job.index, job.id, dict(job.values)))
    warnings = list(notes)
    if req.repeat > 1 and spec.seed_mode == "keep" and not spec.sweeps:
        warnings.append("--repeat without --seed sends identical prompts; ComfyUI caches them, so the copies are the same image.")
    return DryRunPlan(
        workflow=str(req.workflow), workflow_sha256=wf.digest, out_dir=str(req.out_dir), backend=backend.kind,
        jobs=spec.count, first=tuple(first), workers=tuple(backend.members()), warnings=tuple(warnings),
    )
