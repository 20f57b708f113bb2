"""How ``comfyrig install`` looks: the plan as a table, progress while it runs.

``render_install_plan`` is a pure function of the plan (the dry run prints
only it); ``RichInstallEvents`` turns the executor's events into lines above
a Rich progress display, each with the exact command it runs.
"""

from __future__ import annotations

import shlex
from types import TracebackType

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..install.plan import InstallPlan, Step
from ..install.steps import InstallEvents, RunResult

__all__ = ["RichInstallEvents", "command_text", "render_install_plan"]

FAILURE_LINES = 25


def command_text(step: Step) -> str:
    if step.write is not None:
        return f"write {step.write[0]}"
    return shlex.join(step.argv)


def _status(step: Step) -> Text:
    if step.satisfied:
        return Text("✓ done", style="green")
    if step.pending:
        return Text("… later", style="dim")
    return Text("→ run", style="bold cyan")


def render_install_plan(plan: InstallPlan) -> RenderableType:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="cyan", no_wrap=True)
    facts.add_column()
    facts.add_row("folder", str(plan.target))
    if plan.scope == "install":
        facts.add_row("ComfyUI", f"{plan.repo} @ {plan.ref or '<newest release tag>'}  ({plan.ref_source})")
        if plan.comfyui_version:
            facts.add_row("version", plan.comfyui_version)
    if plan.torch is not None:
        facts.add_row("torch", f"{' '.join(plan.torch_packages)} from {plan.torch.url}")
        facts.add_row("why", plan.torch.reason)
    facts.add_row("python", str(plan.venv_python))
    for pack in plan.packs:
        ref = pack.ref.ref[:12] if pack.ref.ref else ("chosen after checkout" if pack.ref.pending else "default branch")
        facts.add_row(pack.name, f"{pack.url} @ {pack.ref.label} ({ref}): {pack.ref.reason}")
    steps = Table(box=box.SIMPLE_HEAD, expand=True, show_lines=False)
    steps.add_column("#", justify="right", no_wrap=True)
    steps.add_column("status", no_wrap=True)
    steps.add_column("step")
    for number, step in enumerate(plan.steps, 1):
        body = Text()
        body.append(step.title, style="bold")
        body.append(f"\n{step.why}" if not step.satisfied else f"\n{step.check}", style="dim")
        if not step.satisfied and (step.argv or step.write):
            body.append(f"\n$ {command_text(step)}")
            if step.pending:
                body.append(f"  (final form {step.pending})", style="dim")
        steps.add_row(str(number), _status(step), body)
    parts: list[RenderableType] = [
        Panel(facts, title="comfyrig install plan" if plan.scope == "install" else "comfyrig nodes plan", box=box.ROUNDED),
        steps,
    ]
    todo = len(plan.todo)
    parts.append(Text(f"{todo} step{'s' if todo != 1 else ''} to run, {len(plan.steps) - todo} already done.", style="bold"))
    parts += [Text(f"⚠ {w}", style="bold yellow") for w in plan.warnings]
    return Group(*parts)


class RichInstallEvents(InstallEvents):
    """Progress on ``console``: a spinner with the command's latest output line."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.title = ""

    def __enter__(self) -> RichInstallEvents:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def started(self, step: Step, number: int, total: int) -> None:
        self.title = f"[{number}/{total}] {step.title}"
        self.progress.console.print(Text(f"→ {self.title}", style="bold cyan"))
        self.progress.console.print(Text(f"  $ {command_text(step)}", style="dim"), soft_wrap=True)
        self.task = self.progress.add_task(self.title, total=None)

    def line(self, step: Step, text: str) -> None:
        if self.task is not None and text.strip():
            short = text.strip()
            short = short if len(short) <= 70 else short[:67] + "..."
            self.progress.update(self.task, description=f"{self.title}  [dim]{escape(short)}[/]")

    def finished(self, step: Step, seconds: float) -> None:
        self._drop()
        self.progress.console.print(Text(f"✓ {self.title} ({seconds:.1f} s)", style="green"))

    def failed(self, step: Step, result: RunResult) -> None:
        self._drop()
        tail = "\n".join(result.output[-FAILURE_LINES:]) or "(no output)"
        self.progress.console.print(Text(f"✗ {self.title} (exit code {result.returncode})", style="bold red"))
        self.progress.console.print(
            Panel(Text(tail), title=f"last output of: {command_text(step)}", title_align="left", border_style="red")
        )

    def _drop(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
