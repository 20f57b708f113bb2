"""ComfyUI's command line, read the way its argparse parser will read it.

comfyrig starts ComfyUI as ``main.py --listen L --port P <flags> <user flags>``,
and whatever the user adds is parsed by ComfyUI's argparse parser, with its
rules: an exact option wins, otherwise any unique prefix is taken for the
flag (``--low`` is ``--lowvram``; an ambiguous prefix is an error),
``--flag=value`` and ``--flag value`` are the same, the last occurrence of a
flag wins, and anything it cannot place (an unknown flag, a missing value, a
stray word, two flags of one mutually exclusive group) makes ComfyUI exit
with code 2 before it starts.

The flags come from the target checkout's ``comfy/cli_args.py``, read as
text (``checkout.flag_table``; never imported, since that would import
torch-adjacent modules), so version differences (``--enable-manager`` from
0.3.76, ``--cuda-device`` an int before 0.24 and a list after, no
``--normalvram`` in 0.24) come with the checkout. Without a checkout the
``BUILTIN`` table knows the shape of the flags comfyrig itself reads, and
nothing is reported as unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..config.settings import Settings

__all__ = [
    "BUILTIN",
    "LISTEN_ALL",
    "ArgProblem",
    "ComfyArgs",
    "FlagSpec",
    "FlagTable",
    "Occurrence",
    "comfy_args",
    "effective_listen",
    "effective_port",
    "parse_comfy_args",
    "user_args",
]

# ComfyUI's "--listen" with no address (cli_args.py: const="0.0.0.0,::").
LISTEN_ALL = "0.0.0.0,::"

# How many values a flag takes: a count (0 for store_true and the like), or argparse's "?", "*", "+".
Nargs = int | Literal["?", "*", "+"]
# How a token was matched: exactly, as a unique prefix, not at all; "unchecked" when the table is partial.
MatchStatus = Literal["exact", "abbrev", "ambiguous", "unknown", "unchecked"]
ProblemKind = Literal["unknown", "ambiguous", "missing_value", "unexpected_value", "bad_value", "conflict", "stray"]

# argparse: a token like -1 or -.5 is a value, not a flag, unless some flag looks like a negative number.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


@dataclass(frozen=True)
class FlagSpec:
    """One option of ComfyUI's parser, as far as reading a command line needs it."""

    names: tuple[str, ...]  # its option strings, e.g. ("--listen",) or ("-h", "--help")
    nargs: Nargs = 1
    const: str | None = None  # what a bare nargs="?" flag stands for ("0.0.0.0,::" for --listen)
    type: str | None = None  # the type= callable as written: "int", "float", "str", "is_valid_directory", ...
    choices: tuple[str, ...] | None = None
    group: str | None = None  # the mutually exclusive group it belongs to, if any

    @property
    def name(self) -> str:
        """The name messages use: its first long option string."""
        return next((n for n in self.names if n.startswith("--")), self.names[0])

    @property
    def takes_value(self) -> bool:
        return self.nargs != 0


HELP = FlagSpec(("-h", "--help"), nargs=0)  # every argparse parser has it unless add_help=False


@dataclass(frozen=True)
class FlagTable:
    """The options of one ComfyUI's parser.

    ``complete`` is False for a partial table (``BUILTIN``): flags it does not
    list are "unchecked", not unknown, and prefixes are not resolved, since
    another flag of the real parser could make them ambiguous.
    """

    flags: tuple[FlagSpec, ...]
    complete: bool = True
    allow_abbrev: bool = True
    add_help: bool = True
    source: str = ""  # where it was read, for messages
    _index: Mapping[str, FlagSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        specs = (*self.flags, HELP) if self.add_help else self.flags
        object.__setattr__(self, "_index", {name: spec for spec in specs for name in spec.names})

    def __len__(self) -> int:
        """The flags cli_args.py defines (argparse's own --help not counted)."""
        return len(self.flags)

    def __contains__(self, option: object) -> bool:
        return option in self._index

    def __iter__(self) -> Iterator[FlagSpec]:
        return iter(self.flags)

    @property
    def option_strings(self) -> frozenset[str]:
        return frozenset(self._index)

    def spec(self, option: str) -> FlagSpec | None:
        """The flag with exactly this option string."""
        return self._index.get(option)

    def has(self, flag: str) -> bool:
        return flag in self._index


def _flag(names: str, nargs: Nargs = 1, const: str | None = None, type: str | None = None,
          group: str | None = None) -> FlagSpec:
    return FlagSpec(tuple(names.split()), nargs, const, type, group=group)


# The shape of the flags comfyrig reads or adds, the same in ComfyUI 0.3.64 to 0.24; used only
# when the checkout's own table is unknown (no checkout yet), so their values can still be read
# and the --cpu that CPU mode adds is still seen to clash with --lowvram and the other VRAM modes.
BUILTIN = FlagTable(
    flags=(
        _flag("--listen", "?", LISTEN_ALL, "str"),
        _flag("--port", type="int"),
        _flag("--enable-cors-header", "?", "*", "str"),
        _flag("--cuda-device"),
        _flag("--default-device", type="int"),
        *(_flag(f"--{kind}-directory", type="str") for kind in ("base", "output", "temp", "input", "user")),
        _flag("--extra-model-paths-config", "+"),
        _flag("--whitelist-custom-nodes", "+"),
        _flag("--reserve-vram", type="float"),
        _flag("--preview-method"),
        _flag("--fast", "*"),
        *(_flag(name, 0, group="vram") for name in ("--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu")),
        *(_flag(name, 0, group="cuda_malloc") for name in ("--cuda-malloc", "--disable-cuda-malloc")),
        *(_flag(name, 0) for name in (
            "--enable-manager", "--disable-smart-memory", "--multi-user", "--dont-print-server", "--log-stdout",
            "--auto-launch", "--disable-auto-launch",
        )),
    ),
    complete=False,
    source="comfyrig's built-in list",
)


# -- reading a command line ------------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """One flag in the arguments and what argparse makes of it."""

    index: int  # position of its token in the arguments
    written: str  # the option as written, without "=value": "--cuda-dev"
    flag: str | None  # the flag argparse takes it for; None when unknown or ambiguous
    status: MatchStatus
    values: tuple[str, ...] = ()  # the values it took
    value: str | None = None  # its one value: the last it took, or the const of a bare nargs="?" flag
    inline: bool = False  # given as --flag=value
    candidates: tuple[str, ...] = ()  # the flags an ambiguous prefix could mean


@dataclass(frozen=True)
class ArgProblem:
    """Something ComfyUI's argparse rejects: ComfyUI exits with code 2 before it starts."""

    kind: ProblemKind
    token: str  # the token (or flag as written) it is about
    detail: str  # one clause saying what is wrong, no final period
    flag: str | None = None  # the flag it concerns, when one is known


@dataclass(frozen=True)
class ComfyArgs:
    """A command line as ComfyUI's parser reads it: ``parse_comfy_args`` builds it.

    ``own`` counts the leading tokens comfyrig itself put there (e.g. ``--cpu``
    in CPU mode), so checks can tell them from the user's.
    """

    tokens: tuple[str, ...]
    table: FlagTable
    occurrences: tuple[Occurrence, ...]
    problems: tuple[ArgProblem, ...]
    own: int = 0

    @property
    def checked(self) -> bool:
        """True when the flags were checked against the checkout's complete table."""
        return self.table.complete

    @property
    def ok(self) -> bool:
        """True when argparse accepts the line (as far as a partial table can tell)."""
        return not self.problems

    @property
    def user_tokens(self) -> tuple[str, ...]:
        return self.tokens[self.own:]

    @property
    def user_occurrences(self) -> tuple[Occurrence, ...]:
        return tuple(o for o in self.occurrences if o.index >= self.own)

    @property
    def abbreviations(self) -> tuple[Occurrence, ...]:
        return tuple(o for o in self.user_occurrences if o.status == "abbrev")

    def occurrences_of(self, flag: str) -> tuple[Occurrence, ...]:
        return tuple(o for o in self.occurrences if o.flag == flag)

    def given(self, flag: str) -> bool:
        """Whether ``flag`` (its full name) is in the arguments, in any form argparse accepts."""
        return any(o.flag == flag for o in self.occurrences)

    def user_given(self, flag: str) -> bool:
        """Whether the user's part of the arguments has ``flag`` (comfyrig's own not counted)."""
        return any(o.flag == flag for o in self.user_occurrences)

    def last(self, flag: str) -> Occurrence | None:
        found = self.occurrences_of(flag)
        return found[-1] if found else None

    def value(self, flag: str) -> str | None:
        """The value ComfyUI will use for ``flag`` if given: that of its last occurrence
        (argparse keeps the last), the const for a bare ``--listen``; None when not given
        or when it takes no value."""
        occurrence = self.last(flag)
        return occurrence.value if occurrence is not None else None


@dataclass(frozen=True)
class _Match:
    written: str
    spec: FlagSpec | None
    status: MatchStatus
    inline: str | None = None  # the value after "=" (or after a short option's letter)
    candidates: tuple[str, ...] = ()


def _match(token: str, table: FlagTable) -> _Match | None:
    """What argparse makes of one token: None for a value (or a stray word), else the flag."""
    if not token.startswith("-") or token == "-":
        return None
    if token == "--":
        return _Match(token, None, "unknown")  # the end of the flags; parse_comfy_args handles it
    spec = table.spec(token)
    if spec is not None:
        return _Match(token, spec, "exact")
    name, eq, inline = token.partition("=")
    if eq and (spec := table.spec(name)) is not None:
        return _Match(name, spec, "exact", inline)
    if table.complete:
        found = _prefix_matches(token, table)
        specs = {id(s): s for _, s, _ in found}
        if len(specs) > 1:
            written = name if token.startswith("--") else token
            return _Match(written, None, "ambiguous", candidates=tuple(sorted(o for o, _, _ in found)))
        if found:
            option, spec, inline_value = found[0]
            written = name if token.startswith("--") else token[: len(token) - len(inline_value or "")]
            return _Match(written, spec, "exact" if written == option else "abbrev", inline_value)
    if _NEGATIVE_NUMBER.match(token) or " " in token:
        return None  # argparse: a negative number or text with a space is a value
    return _Match(name if token.startswith("--") else token, None, "unknown" if table.complete else "unchecked",
                  inline if eq else None)


def _prefix_matches(token: str, table: FlagTable) -> list[tuple[str, FlagSpec, str | None]]:
    if token.startswith("--"):
        if not table.allow_abbrev:
            return []
        prefix, eq, inline = token.partition("=")
        return [(o, s, inline if eq else None) for o in sorted(table.option_strings)
                if o.startswith(prefix) and (s := table.spec(o)) is not None]
    # "-hx": the short option -h with "x" attached; "-xyz": options starting with it.
    found: list[tuple[str, FlagSpec, str | None]] = []
    for option in sorted(table.option_strings):
        spec = table.spec(option)
        if spec is None:
            continue
        if option == token[:2]:
            found.append((option, spec, token[2:] or None))
        elif option.startswith(token):
            found.append((option, spec, None))
    return found


def _check_value(spec: FlagSpec, value: str) -> str | None:
    """Why argparse rejects ``value`` for ``spec``, if it does."""
    converters = {"int": int, "float": float}
    convert = converters.get(spec.type or "")
    if convert is not None:
        try:
            convert(value)
        except ValueError:
            return f"{spec.name} {value!r} is not {'a whole number' if spec.type == 'int' else 'a number'}"
    if spec.choices is not None and value not in spec.choices:
        return f"{spec.name} {value!r} is not one of {', '.join(spec.choices)}"
    return None


def parse_comfy_args(tokens: Sequence[str], table: FlagTable | None = None, *, own: int = 0) -> ComfyArgs:
    """Read ``tokens`` (ComfyUI's arguments after ``main.py``) as ComfyUI's parser would.

    ``table`` is the checkout's flags (``checkout.flag_table``); None means
    unknown, and the partial ``BUILTIN`` table is used. Every problem is
    collected (argparse stops at the first), so one run can report them all.
    """
    table = table if table is not None else BUILTIN
    tokens = tuple(tokens)
    matches = [_match(t, table) for t in tokens]
    occurrences: list[Occurrence] = []
    problems: list[ArgProblem] = []
    seen_in_group: dict[str, str] = {}
    previous: FlagSpec | None = None
    i = 0
    while i < len(tokens):
        token, m = tokens[i], matches[i]
        if token == "--":
            # Everything after "--" is positional, and ComfyUI takes no positional argument.
            rest = " ".join(tokens[i:])
            problems.append(ArgProblem("stray", token, f"'{rest}' would be taken as positional arguments, "
                                                       "and ComfyUI takes none"))
            break
        if m is None:
            problems.append(ArgProblem("stray", token, _stray_detail(token, previous)))
            i += 1
            continue
        following = 0
        while i + 1 + following < len(tokens) and matches[i + 1 + following] is None and tokens[i + 1 + following] != "--":
            following += 1
        spec = m.spec
        if spec is None:
            # Unknown or ambiguous: argparse stops here; the words after it read as its values.
            taken = tokens[i + 1: i + 1 + following] if m.inline is None else (m.inline,)
            occurrences.append(Occurrence(i, m.written, None, m.status, taken, taken[-1] if taken else None,
                                          m.inline is not None, m.candidates))
            if m.status == "unknown":
                problems.append(ArgProblem("unknown", m.written, f"ComfyUI has no {m.written} flag"))
            elif m.status == "ambiguous":
                problems.append(ArgProblem("ambiguous", m.written, f"{m.written} is an abbreviation of "
                                           f"{', '.join(m.candidates)}, and argparse refuses an ambiguous one"))
            previous = None
            i += 1 + (following if m.inline is None else 0)
            continue
        values, consumed, problem = _take(spec, m, tokens[i + 1: i + 1 + following], tokens[i + 1 + following:])
        if problem is not None:
            problems.append(ArgProblem(problem[0], m.written, problem[1], spec.name))
        for text in values:
            if (why := _check_value(spec, text)) is not None:
                problems.append(ArgProblem("bad_value", m.written, why, spec.name))
        value = values[-1] if values else (spec.const if spec.nargs == "?" else None)
        occurrences.append(Occurrence(i, m.written, spec.name, m.status, values, value, m.inline is not None))
        if spec.group is not None:
            first = seen_in_group.setdefault(spec.group, spec.name)
            if first != spec.name:
                problems.append(ArgProblem("conflict", m.written, f"{first} and {spec.name} exclude each other "
                                           "(ComfyUI takes only one of them)", spec.name))
        previous = spec
        i += 1 + consumed
    return ComfyArgs(tokens, table, tuple(occurrences), tuple(problems), own)


def _take(
    spec: FlagSpec, m: _Match, free: Sequence[str], after: Sequence[str]
) -> tuple[tuple[str, ...], int, tuple[ProblemKind, str] | None]:
    """(values, tokens consumed after the flag, problem) for one known flag."""
    name = spec.name
    if m.inline is not None:
        if spec.nargs == 0:
            return (), 0, ("unexpected_value", f"{name} takes no value, but {m.written}={m.inline} gives it one")
        if isinstance(spec.nargs, int) and spec.nargs > 1:
            return (m.inline,), 0, ("missing_value", f"{name} needs {spec.nargs} values")
        return (m.inline,), 0, None
    nargs = spec.nargs
    if nargs == "?":
        return tuple(free[:1]), min(1, len(free)), None
    if nargs == "*":
        return tuple(free), len(free), None
    wanted = 1 if nargs == "+" else nargs
    assert isinstance(wanted, int)
    if len(free) >= wanted:
        count = len(free) if nargs == "+" else wanted
        return tuple(free[:count]), count, None
    how = "a value" if wanted == 1 else f"{wanted} values"
    nxt = after[0] if after else None
    if nxt is None:
        return tuple(free), len(free), ("missing_value", f"{name} needs {how} and is the last argument")
    why = f"{name} needs {how}, but {nxt!r} after it reads as a flag (write {m.written}={nxt} to pass it as the value)"
    return tuple(free), len(free), ("missing_value", why)


def _stray_detail(token: str, previous: FlagSpec | None) -> str:
    if previous is None:
        return f"{token!r} is not a flag, and no flag before it takes it as a value"
    if previous.nargs == 0:
        return f"{token!r} is not a flag, and {previous.name} before it takes no value"
    return f"{token!r} is not a flag, and {previous.name} before it takes no more values"


# -- the user's flags in the settings -------------------------------------------------------


def user_args(settings: Settings) -> tuple[str, ...]:
    """The ComfyUI flags the user added: COMFYUI_ARGS, then those after ``--``."""
    return (*settings.comfyui_args.value, *settings.extra_args)


def comfy_args(settings: Settings, table: FlagTable | None, *, own: Sequence[str] = ()) -> ComfyArgs:
    """The user's ComfyUI flags as ComfyUI will read them, after ``own`` (the flags comfyrig adds)."""
    return parse_comfy_args((*own, *user_args(settings)), table, own=len(own))


def effective_listen(settings: Settings, args: ComfyArgs) -> str:
    """The address ComfyUI will bind: a ``--listen`` in its flags wins over COMFYUI_LISTEN."""
    given = args.value("--listen")
    return given if given is not None else str(settings.listen.value)


def effective_port(settings: Settings, args: ComfyArgs) -> int | None:
    """The port ComfyUI will bind; None for "auto" (chosen at launch) or a port ComfyUI rejects."""
    if args.given("--port"):
        try:
            return int(args.value("--port") or "")
        except ValueError:
            return None  # ComfyUI itself rejects it; the args check says so
    value = settings.port.value
    return value if isinstance(value, int) else None
