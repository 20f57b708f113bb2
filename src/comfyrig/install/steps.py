"""Run an install plan: one step at a time, re-inspecting the disk after each.

The loop is "inspect -> plan -> run the first unsatisfied step -> repeat", so
the plan always describes the disk as it is. A step that fails, is
interrupted, or runs out of disk stops the loop and leaves everything done so
far in place; the next run inspects again and carries on from there.

Commands run through an injected ``runner`` (production: ``run_command``,
a subprocess with an argv list, never a shell), so tests can fail any step.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import GitNotFoundError, InstallError, InstallInterrupted, RemoteError, StepFailedError
from ..host.gpus.inventory import Inventory
from .nodes import version_tuple
from .plan import InstallOptions, InstallPlan, Step, plan_install
from .state import ExistingState, inspect_state

__all__ = [
    "InstallEvents",
    "InstallResult",
    "Installer",
    "RunResult",
    "Runner",
    "StepOutcome",
    "git_env",
    "latest_release_tag",
    "run_command",
]

OUTPUT_TAIL = 40  # lines kept from a command's output for the failure report
GIT_MISSING_HINT = (
    "Install git (Debian/Ubuntu: sudo apt-get install git; Fedora: sudo dnf install git; macOS: xcode-select --install), "
    "then run the same command again."
)


@dataclass(frozen=True)
class RunResult:
    returncode: int
    output: tuple[str, ...]  # the last OUTPUT_TAIL lines, stdout and stderr together


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], on_line: Callable[[str], None]) -> RunResult: ...


def git_env(environ: Mapping[str, str]) -> dict[str, str]:
    # A wrong https URL makes git ask for a user name; with a progress display
    # on screen that looks like a hang, so git must fail instead.
    return {**environ, "GIT_TERMINAL_PROMPT": "0"}


def run_command(argv: Sequence[str], *, env: Mapping[str, str], on_line: Callable[[str], None]) -> RunResult:
    """Run ``argv`` (no shell), streaming each output line to ``on_line``.

    On Ctrl-C the child (which got the same SIGINT from the terminal) is given
    10 s to clean up, then killed; KeyboardInterrupt is re-raised.
    """
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(env), text=True, errors="replace", bufsize=1,
        )
    except FileNotFoundError:
        return RunResult(127, (f"{argv[0]}: command not found",))
    except OSError as exc:
        return RunResult(126, (f"{argv[0]}: cannot run ({exc})",))
    with proc:  # closes the pipe, waits for the child
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\r\n")
                tail.append(line)
                on_line(line)
            return RunResult(proc.wait(), tuple(tail))
        except KeyboardInterrupt:
            _stop(proc)
            raise


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def latest_release_tag(repo: str, environ: Mapping[str, str], timeout_s: float = 60.0) -> str:
    """The newest vX.Y.Z tag of ``repo`` by ``git ls-remote --tags``.

    Raises GitNotFoundError without git and RemoteError (with git's own
    message, which names the URL) when the remote does not answer.
    """
    argv = ["git", "ls-remote", "--tags", "--refs", repo]
    try:
        result = subprocess.run(argv, env=git_env(environ), capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise GitNotFoundError("git is not installed (or not on PATH); comfyrig needs it to fetch ComfyUI.", hint=GIT_MISSING_HINT) from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{repo} did not answer within {timeout_s:.0f} s (git ls-remote).",
                          hint="Check the network or proxy, or pass --ref TAG with a reachable --repo.") from None
    if result.returncode != 0:
        said = " ".join(line.strip() for line in result.stderr.strip().splitlines()[-3:]) or f"exit code {result.returncode}"
        raise RemoteError(
            f"Cannot reach {repo} to find ComfyUI's newest release: git ls-remote said: {said}",
            hint="Check the network (and proxy settings), or the --repo URL; then run the same command again.",
        )
    return pick_release_tag(result.stdout, repo)


def pick_release_tag(ls_remote_output: str, repo: str) -> str:
    """The highest vX.Y.Z in ``git ls-remote --tags`` output (pre-releases and other tags ignored)."""
    best: tuple[tuple[int, ...], str] | None = None
    for line in ls_remote_output.splitlines():
        _, _, ref = line.partition("\t")
        tag = ref.removeprefix("refs/tags/").removesuffix("^{}")
        if not re.fullmatch(r"v?\d+(\.\d+)+", tag):
            continue
        key = version_tuple(tag)
        if key is not None and (best is None or key > best[0]):
            best = (key, tag)
    if best is None:
        raise RemoteError(f"{repo} has no release tags (vX.Y.Z).", hint="Choose what to check out with --ref TAG|COMMIT.")
    return best[1]


class InstallEvents:
    """What the executor reports; the UI subclasses it. Defaults do nothing."""

    def planned(self, plan: InstallPlan) -> None: ...
    def started(self, step: Step, number: int, total: int) -> None: ...
    def line(self, step: Step, text: str) -> None: ...
    def finished(self, step: Step, seconds: float) -> None: ...
    def failed(self, step: Step, result: RunResult) -> None: ...


@dataclass(frozen=True)
class StepOutcome:
    key: str
    title: str
    argv: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class InstallResult:
    plan: InstallPlan  # re-planned after the last step: everything satisfied
    ran: tuple[StepOutcome, ...]
    state: ExistingState


Inspect = Callable[[Path, Mapping[str, str]], ExistingState]


class Installer:
    """Converges the install folder onto ``plan_install``'s steps."""

    def __init__(
        self,
        inventory: Inventory,
        options: InstallOptions,
        environ: Mapping[str, str],
        *,
        runner: Runner = run_command,
        inspect: Inspect | None = None,
        events: InstallEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inventory = inventory
        self.options = options
        self.environ = environ
        self.runner = runner
        self.inspect = inspect or (lambda target, env: inspect_state(target, env, options.packs))
        self.events = events or InstallEvents()
        self.clock = clock

    def _plan(self) -> tuple[ExistingState, InstallPlan]:
        state = self.inspect(self.options.target, self.environ)
        return state, plan_install(self.inventory, state, self.options)

    def run(self) -> InstallResult:
        """Raises StepFailedError, GitNotFoundError or InstallInterrupted; what
        was done stays done, and running again continues."""
        current: Step | None = None
        try:
            state, plan = self._plan()
            self.events.planned(plan)
            attempted: set[str] = set()
            ran: list[StepOutcome] = []
            for _ in range(4 * len(plan.steps) + 8):
                current = next((s for s in plan.steps if not s.satisfied and not s.pending and s.key not in attempted), None)
                if current is None:
                    break
                number = len(ran) + 1
                total = len(ran) + sum(1 for s in plan.steps if not s.satisfied and s.key not in attempted)
                self.events.started(current, number, total)
                began = self.clock()
                self._run_step(current, state, number, total)
                attempted.add(current.key)
                state, plan = self._plan()
                self._verify(current, plan)
                seconds = self.clock() - began
                self.events.finished(current, seconds)
                ran.append(StepOutcome(current.key, current.title, current.argv, seconds))
                current = None
            stuck = [s for s in plan.steps if not s.satisfied and s.key not in attempted]
            if stuck:
                raise InstallError(
                    f"The install cannot go on: '{stuck[0].title}' is waiting for {stuck[0].pending or 'an earlier step'}.",
                    hint="Run 'comfyrig install --dry-run' to see the plan.",
                )
            return InstallResult(plan, tuple(ran), state)
        except KeyboardInterrupt:
            during = f"during '{current.title}'" if current else "while checking the install"
            raise InstallInterrupted(
                f"Interrupted {during}. Nothing was rolled back and nothing needs to be.",
                hint="Run the same command again: it checks every step and repairs or finishes what is missing.",
            ) from None

    def _run_step(self, step: Step, state: ExistingState, number: int, total: int) -> None:
        if step.write is not None:
            path, text = step.write
            try:
                with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite one written meanwhile
                    handle.write(text)
            except FileExistsError:
                return
            except OSError as exc:
                raise StepFailedError(f"Step {number}/{total} '{step.title}' failed: cannot write {path}: {exc.strerror or exc}.",
                                      hint="Run the same command again once it is writable.") from exc
            return
        if step.needs_git and not state.git_available:
            raise GitNotFoundError(
                f"git is not installed (or not on PATH); comfyrig needs it for step {number}/{total} '{step.title}'.",
                hint=GIT_MISSING_HINT,
            )
        # Unbuffered, so pip's lines reach the progress display as they happen.
        env = git_env(self.environ) if step.needs_git else {**self.environ, "PYTHONUNBUFFERED": "1"}
        result = self.runner(step.argv, env=env, on_line=lambda text: self.events.line(step, text))
        if result.returncode != 0:
            self.events.failed(step, result)
            raise StepFailedError(
                f"Step {number}/{total} '{step.title}' failed (exit code {result.returncode}): "
                f"{' '.join(step.argv)} -- {_gist(result.output)}",
                hint=_retry_hint(step, result),
            )

    def _verify(self, step: Step, plan: InstallPlan) -> None:
        after = plan.step(step.key)
        if step.verify and after is not None and not after.satisfied and after.pending is None:
            raise StepFailedError(
                f"'{step.title}' ran without error, but its check still fails: {after.check} is not true.",
                hint=f"Why it was needed: {after.why}. Run 'comfyrig install --dry-run' to see the state.",
            )


def _gist(output: tuple[str, ...]) -> str:
    """The telling output: the first and last error-looking lines (git names the
    cause first, pip last), else the last line."""
    found = [line.strip() for line in output if re.search(r"error|fatal|denied|no space|not found|could not|failed", line, re.IGNORECASE)]
    if found:
        return " / ".join(dict.fromkeys((found[0], found[-1])))
    return output[-1].strip() if output else "no output"


def _retry_hint(step: Step, result: RunResult) -> str:
    text = "\n".join(result.output)
    parts = []
    if re.search(r"No space left on device|Errno 28|ENOSPC", text):
        parts.append("The disk is full: free some space (torch alone needs several GB).")
    elif step.key == "torch" and re.search(r"No matching distribution found for torch", text):
        parts.append(
            "That index has no torch wheel for this Python version or platform: create the venv with another "
            "interpreter (--python python3.12; remove DIR/.venv first) or pick another build (--cuda X.Y)."
        )
    elif step.retry:
        parts.append(step.retry)
    parts.append(
        "Then run the same command again: finished steps are checked and kept, and this one is retried "
        "(a half-installed venv is repaired, never rebuilt from scratch)."
    )
    return " ".join(parts)
