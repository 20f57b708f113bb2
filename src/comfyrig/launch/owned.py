"""ComfyUI flags that comfyrig owns, found among the user's own ComfyUI flags.

comfyrig starts ComfyUI as ``main.py --listen L --port P <user flags>`` and sets
``CUDA_VISIBLE_DEVICES`` (and, for a fleet, each worker's output, temp and database).
The same flag in the user's part (after ``--`` or in ``COMFYUI_ARGS``) used to win
unseen, since argparse keeps the last: ComfyUI bound another port than the one comfyrig
waited on (a silent 300 s wait), or every address while the dashboard said 127.0.0.1.
One rule per flag, the same whatever the source:

* **taken over** (removed from ComfyUI's flags, applied by comfyrig, with a note):
  ``--port`` and ``--listen``, exactly as comfyrig's own ``--port``/``--listen`` (with
  ``--workers``, where the gateway or the first worker is), and for a fleet ``--output-directory``
  and ``--temp-directory`` (each worker gets its own folder under the one given);
* **refused**: ``--cuda-device`` (ComfyUI rewrites ``CUDA_VISIBLE_DEVICES`` with it, so it
  would undo comfyrig's GPU selection: ``--single N``/``--gpus`` say the same), a fleet's
  ``--database-url`` (one SQLite file cannot serve several ComfyUIs: 0.24 locks it, and
  comfyrig gives each worker its own), any owned flag given twice with different
  values (comfyrig's setting and a ComfyUI flag, or two ComfyUI flags), and one with no
  value (``--port`` last, ``--listen=``), which ComfyUI would reject;
* kept as they are: ``--base-directory``, ``--user-directory``, ``--input-directory``
  (comfyrig never passes them; worker folders go under ``--base-directory``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from ..comfy.args import ComfyArgs, FlagTable, Occurrence, parse_comfy_args, user_args
from ..config.settings import Settings, Sourced
from ..errors import ConfigError

__all__ = ["TakenOver", "take_over"]

_FLEET_DIRS = ("--output-directory", "--temp-directory")


@dataclass(frozen=True)
class TakenOver:
    settings: Settings  # port and listen from ComfyUI's flags, those flags removed from its arguments
    dirs: dict[str, str]  # a fleet's --output-directory / --temp-directory: the parent of each worker's own
    notes: tuple[str, ...]


def _span(occurrence: Occurrence) -> range:
    """The token positions one occurrence takes: the flag, and its values unless inline."""
    return range(occurrence.index, occurrence.index + 1 + (0 if occurrence.inline else len(occurrence.values)))


def _where(settings: Settings, index: int) -> str:
    return "COMFYUI_ARGS" if index < len(settings.comfyui_args.value) else "ComfyUI's flags after --"


def _one_value(flag: str, found: Sequence[Occurrence], settings: Settings, own: Sourced[object] | None) -> str:
    """The single value of an owned flag, from comfyrig's setting (when given) and ComfyUI's flags.
    Raises ConfigError when one has no value or they name different values."""
    for o in found:
        if not o.value:
            raise ConfigError(
                f"{o.written} in {_where(settings, o.index)} has no value: ComfyUI would exit with code 2.",
                hint=f"Give it once, with comfyrig's own {flag}." if own is not None else "Give it a value.",
            )
    values = {o.value for o in found}
    if own is not None and own.source != "default" and found:
        values.add(str(own.value))
    if len(values) > 1:
        given = [f"{flag} {o.value} in {_where(settings, o.index)}" for o in found]
        if own is not None and own.source != "default":
            given.insert(0, f"comfyrig's {flag} {own.value} ({_source(own.source)})")
        raise ConfigError(
            f"{flag} is given twice with different values: {'; '.join(given)}. "
            f"ComfyUI would keep the last while comfyrig looked elsewhere.",
            hint=f"Give it once, with comfyrig's own {flag}." if own is not None else "Give it once.",
        )
    return str(found[-1].value)


def _source(source: str) -> str:
    return {"cli": "command line", "env": "environment"}.get(source, source)


def _check_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {value!r} in ComfyUI's flags is not a port (1 to 65535).")
    return port


def take_over(settings: Settings, table: FlagTable | None, *, fleet: bool) -> TakenOver:
    """Apply the rules above to the user's ComfyUI flags. ``fleet``: several workers.
    Raises ConfigError for a refused flag."""
    args: ComfyArgs = parse_comfy_args(user_args(settings), table)
    strip: set[int] = set()
    notes: list[str] = []
    changes: dict[str, Sourced[object]] = {}

    def occurrences(flag: str) -> tuple[Occurrence, ...]:
        return args.occurrences_of(flag)

    if found := occurrences("--cuda-device"):
        raise ConfigError(
            f"{' '.join(filter(None, ('--cuda-device', found[-1].value)))} in {_where(settings, found[-1].index)}: "
            "ComfyUI would rewrite "
            "CUDA_VISIBLE_DEVICES with it and undo comfyrig's GPU selection.",
            hint="Choose the GPU with comfyrig instead: 'comfyrig --single N' (or --gpus LIST), and drop --cuda-device.",
        )
    if fleet and (found := occurrences("--database-url")):
        raise ConfigError(
            f"--database-url in {_where(settings, found[-1].index)} would be shared by every worker: one SQLite "
            "database cannot serve several ComfyUIs (ComfyUI 0.24 locks it), and comfyrig gives each worker its own.",
            hint="Drop --database-url with --workers, or run one ComfyUI.",
        )
    if found := occurrences("--port"):
        value = _one_value("--port", found, settings, settings.port)
        port = _check_port(value)
        changes["port"] = Sourced(port, "derived")
        notes.append(f"--port {port} in ComfyUI's flags is taken as comfyrig's --port.")
    if found := occurrences("--listen"):
        value = _one_value("--listen", found, settings, settings.listen)
        changes["listen"] = Sourced(value, "derived")
        notes.append(f"--listen {value} in ComfyUI's flags is taken as comfyrig's --listen.")
    dirs: dict[str, str] = {}
    if fleet:
        for flag in _FLEET_DIRS:
            if found := occurrences(flag):
                parent = _one_value(flag, found, settings, None)
                dirs[flag] = parent
                notes.append(
                    f"{flag} {parent} would be shared by every worker (they would overwrite each other's images, "
                    f"or empty each other's temp folder): each worker gets its own folder under it instead."
                )
    for flag in ("--port", "--listen", *dirs):
        for occurrence in occurrences(flag):
            strip.update(_span(occurrence))
    if not strip:
        return TakenOver(settings, dirs, tuple(notes))
    head = len(settings.comfyui_args.value)
    kept_env = tuple(t for i, t in enumerate(args.tokens) if i < head and i not in strip)
    kept_extra = tuple(t for i, t in enumerate(args.tokens) if i >= head and i not in strip)
    new = dataclasses.replace(
        settings,
        comfyui_args=Sourced(kept_env, settings.comfyui_args.source),
        extra_args=kept_extra,
        **changes,  # type: ignore[arg-type]
    )
    return TakenOver(new, dirs, tuple(notes))
