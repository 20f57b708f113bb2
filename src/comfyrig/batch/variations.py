"""Variations: --set, --sweep (range, list, file), --zip, --repeat and --seed -> jobs.

Expansion is lazy (a 20,000-job batch is never a list of prompts) and
deterministic: job ``k`` always has the same values, so its id (a hash of the
workflow and its values) is the same on every run and resuming finds it.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..comfy.workflow import FieldRef, FieldType, Workflow, canonical_json, coerce, resolve_field, seed_fields
from ..errors import WorkflowError
from ..files import MIB, read_text

__all__ = [
    "Job",
    "SeedMode",
    "Sweep",
    "VariationSpec",
    "build_spec",
    "job_id",
    "parse_sweep_values",
    "prompt_id_for",
]

SeedMode = Literal["keep", "random", "increment"]
SEED_MODES: tuple[SeedMode, ...] = ("keep", "random", "increment")
REPEAT_KEY = "#repeat"
_PROMPT_NS = uuid.UUID("6c0a3c5e-9b55-4c4b-9a55-3f1f0c6b7a11")  # comfyrig's namespace for prompt ids
MAX_SEED = 2**53 - 1
# The most jobs one batch may have: a journal row each, about 200 bytes on disk. More is a
# typo in a range or a product of sweeps, refused before anything is written.
MAX_JOBS = 10_000_000  # exact in JSON readers that use doubles (the ComfyUI frontend)


@dataclass(frozen=True)
class Sweep:
    ref: FieldRef
    values: tuple[Any, ...]
    text: str  # as given, for messages


@dataclass(frozen=True)
class Job:
    index: int
    id: str
    values: Mapping[str, Any]


def job_id(workflow_digest: str, values: Mapping[str, Any]) -> str:
    """16 hex digits of sha256(workflow digest, canonical values): stable across runs."""
    return hashlib.sha256(f"{workflow_digest}\n{canonical_json(values)}".encode()).hexdigest()[:16]


def prompt_id_for(job: str, attempt: int) -> str:
    """The prompt id of one attempt: a UUID derived from the job id and the attempt number,
    so a restarted dispatcher knows which /history/{prompt_id} to look up."""
    return str(uuid.uuid5(_PROMPT_NS, f"{job}/{attempt}"))


def _split_list(spec: str) -> list[str]:
    items, current, escaped = [], [], False
    for char in spec:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


_NUM = r"\s*[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*"
_RANGE = re.compile(rf"^({_NUM})\.\.({_NUM})(?:\.\.({_NUM}))?$")


def _range(spec: str, where: str) -> list[int | float]:
    # Strict: "1...3" split on ".." was 1..0.3, which ran 1 and 0. Only finite decimal numbers.
    match = _RANGE.match(spec)
    if match is None:
        raise WorkflowError(f"{where}: {spec!r} is not a range; write START..END or START..END..STEP (both ends included).")
    nums = [_number(p.strip()) for p in match.groups() if p is not None]
    start, end = nums[0], nums[1]
    step = nums[2] if len(nums) == 3 else (1 if end >= start else -1)
    if step == 0 or (end - start) * step < 0:
        raise WorkflowError(f"{where}: the range {spec!r} is empty (check the step's sign).")
    if not all(math.isfinite(n) for n in nums):
        raise WorkflowError(f"{where}: the range {spec!r} has a number too large to be finite.")
    steps = (end - start) / step
    if not math.isfinite(steps) or steps + 1 > MAX_JOBS:
        raise WorkflowError(f"{where}: the range {spec!r} has more than {MAX_JOBS:,} values; that is too many.",
                            hint="Use a larger step, or split the batch.")
    count = round(steps + 1e-9) + 1
    if all(isinstance(n, int) for n in nums):
        return [int(start + i * step) for i in range(count)]
    return [round(start + i * step, 10) for i in range(count)]


def _from_file(spec: str, base: Path, where: str) -> list[str]:
    name, column = spec[1:], None
    path = base / name
    if not path.is_file() and ":" in name:
        name, column = name.rsplit(":", 1)
        path = base / name
    text = read_text(path, f"{where}: the file", limit=256 * MIB, error=WorkflowError)
    if column is None:
        values = [line for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            raise WorkflowError(f"{where}: {path} is empty.")
        header = rows[0]
        if column in header:
            col = header.index(column)
            body = rows[1:]
        elif column.isdigit() and int(column) < len(header):
            col = int(column)
            body = rows  # a column number: the file has no header row
        else:
            raise WorkflowError(f"{where}: {path} has no column {column!r}; its columns: {', '.join(header)}.")
        values = [row[col] for row in body if len(row) > col and row[col].strip()]
    if not values:
        raise WorkflowError(f"{where}: {path} holds no values.")
    return values


def _is_range(spec: str) -> bool:
    return not spec.startswith("@") and ".." in spec and "|" not in spec and re.match(r"\s*[-+]?\.?\d", spec) is not None


def parse_sweep_values(spec: str, base: Path, where: str) -> list[Any]:
    """``1..100`` / ``0..1..0.25`` (ranges, ends included), ``a|b|c`` (``\\|`` for a bar), ``@file``
    (one value per non-empty line) or ``@file.csv:column`` (a header name or a 0-based number)."""
    if spec.startswith("@"):
        return _from_file(spec, base, where)
    if _is_range(spec):
        return _range(spec, where)  # it starts like a number: a range, or an error saying how to write one
    return _split_list(spec)


@dataclass(frozen=True)
class VariationSpec:
    """Everything that decides the job list; ``jobs()`` expands it lazily."""

    workflow_digest: str
    sets: tuple[tuple[FieldRef, Any], ...]
    sweeps: tuple[Sweep, ...]
    zipped: bool
    repeat: int
    seed_mode: SeedMode
    seed_refs: tuple[FieldRef, ...]
    seed_bases: tuple[int, ...]
    seed_salt: int

    @property
    def combinations(self) -> int:
        if not self.sweeps:
            return 1
        if self.zipped:
            return len(self.sweeps[0].values)
        total = 1
        for sweep in self.sweeps:
            total *= len(sweep.values)
        return total

    @property
    def count(self) -> int:
        return self.combinations * self.repeat

    def _combos(self) -> Iterator[tuple[Any, ...]]:
        if not self.sweeps:
            return iter([()])
        if self.zipped:
            return zip(*(s.values for s in self.sweeps), strict=True)  # lengths checked in build_spec
        return itertools.product(*(s.values for s in self.sweeps))

    def _seed(self, index: int, n: int) -> int:
        if self.seed_mode == "increment":
            return (self.seed_bases[n] + index) % (MAX_SEED + 1)
        digest = hashlib.sha256(f"{self.seed_salt}/{index}/{self.seed_refs[n].key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % (MAX_SEED + 1)

    def jobs(self, start: int = 0) -> Iterator[Job]:
        """The jobs from number ``start`` on (the ones before are skipped without being built)."""
        index = (start // self.repeat) * self.repeat
        base = {ref.key: value for ref, value in self.sets}
        for combo in itertools.islice(self._combos(), start // self.repeat, None):
            for r in range(self.repeat):
                if index < start:
                    index += 1
                    continue
                values = dict(base)
                for sweep, value in zip(self.sweeps, combo, strict=True):
                    values[sweep.ref.key] = value
                if self.seed_mode != "keep":
                    for n, ref in enumerate(self.seed_refs):
                        values[ref.key] = self._seed(index, n)
                if self.repeat > 1:
                    values[REPEAT_KEY] = r
                yield Job(index=index, id=job_id(self.workflow_digest, values), values=values)
                index += 1


def build_spec(
    wf: Workflow,
    *,
    sets: Sequence[str] = (),
    sweeps: Sequence[str] = (),
    zipped: bool = False,
    repeat: int = 1,
    seed: str = "keep",
    seed_salt: int = 0,
    base_dir: Path = Path("."),
    object_info: Mapping[str, Any] | None = None,
) -> VariationSpec:
    """Parse and type-check every --set/--sweep/--seed against ``wf``; raises WorkflowError
    before anything runs (unknown node or field, a value of the wrong type, unequal --zip lengths)."""
    if repeat < 1:
        raise WorkflowError(f"--repeat {repeat}: give 1 or more.")
    if seed not in SEED_MODES:
        raise WorkflowError(f"--seed {seed!r}: choose random or increment.")
    used: dict[str, str] = {}

    def claim(ref: FieldRef, option: str) -> None:
        if ref.key in used:
            raise WorkflowError(f"{option}: {ref.key} is already given by {used[ref.key]}.")
        used[ref.key] = option

    parsed_sets = []
    for text in sets:
        target, eq, raw = text.partition("=")
        if not eq:
            raise WorkflowError(f"--set {text!r}: write NODE.FIELD=VALUE, e.g. 3.seed=42.")
        ref, ftype = resolve_field(wf, target, "--set", object_info)
        claim(ref, f"--set {text}")
        parsed_sets.append((ref, coerce(raw, ftype, f"--set {ref.key} ({wf.describe(ref.node_id)})")))
    parsed_sweeps = []
    for text in sweeps:
        target, eq, spec = text.partition("=")
        if not eq or not spec:
            raise WorkflowError(f"--sweep {text!r}: write NODE.FIELD=SPEC with SPEC 1..10, a|b|c or @file.")
        ref, ftype = resolve_field(wf, target, "--sweep", object_info)
        claim(ref, f"--sweep {text}")
        where = f"--sweep {ref.key} ({wf.describe(ref.node_id)})"
        raw_values = parse_sweep_values(spec, base_dir, where)
        values = _typed_range(raw_values, ftype, where) if _is_range(spec) else tuple(_typed(v, ftype, where) for v in raw_values)
        if not zipped and not _is_range(spec):  # a range's values are distinct by construction
            _refuse_repeats(values, where)
        parsed_sweeps.append(Sweep(ref, values, text))
    if zipped and len(parsed_sweeps) > 1:
        lengths = {s.text: len(s.values) for s in parsed_sweeps}
        if len(set(lengths.values())) > 1:
            raise WorkflowError(
                "--zip pairs sweeps value by value, so they need the same length; got "
                + ", ".join(f"{text}: {n}" for text, n in lengths.items())
                + "."
            )
        _refuse_repeats(tuple(zip(*(s.values for s in parsed_sweeps), strict=True)), "--zip")
    count = repeat * (len(parsed_sweeps[0].values) if zipped and parsed_sweeps else math.prod(len(s.values) for s in parsed_sweeps))
    if count > MAX_JOBS:
        sizes = " x ".join([*(str(len(s.values)) for s in parsed_sweeps), *([f"--repeat {repeat}"] if repeat > 1 else [])])
        raise WorkflowError(
            f"These variations make {count:,} jobs ({sizes}); one batch takes at most {MAX_JOBS:,}.",
            hint="Did you mean --zip (pair the sweeps value by value)? Otherwise split the batch into several --out folders.",
        )
    seed_refs: list[FieldRef] = []
    if seed != "keep":
        seed_refs = seed_fields(wf)
        if not seed_refs:
            raise WorkflowError(f"--seed {seed}: {wf.source} has no sampler seed (an integer input named seed or noise_seed).")
        for ref in seed_refs:
            claim(ref, f"--seed {seed}")
    return VariationSpec(
        workflow_digest=wf.digest,
        sets=tuple(parsed_sets),
        sweeps=tuple(parsed_sweeps),
        zipped=zipped,
        repeat=repeat,
        seed_mode=seed,
        seed_refs=tuple(seed_refs),
        seed_bases=tuple(int(wf.prompt[r.node_id]["inputs"][r.field]) for r in seed_refs),
        seed_salt=seed_salt,
    )


def _refuse_repeats(values: Sequence[Any], where: str) -> None:
    """Two equal values would be one job (same values, same id), while the count said two: refuse,
    naming the value and its positions. Several runs of one variation are --repeat's job."""
    # Hashes, not the texts: a million prompts would otherwise be held twice. A hash seen before is
    # confirmed by comparing the texts (a collision of two different values is not a repeat).
    seen: set[int] = set()
    for n, value in enumerate(values):
        key = canonical_json(value)
        if hash(key) in seen:
            earlier = next((m for m in range(n) if canonical_json(values[m]) == key), None)
            if earlier is not None:
                shown = key if len(key) <= 60 else key[:57] + "..."
                raise WorkflowError(
                    f"{where}: the value {shown} is given twice (values {earlier + 1} and {n + 1}); "
                    "each value makes one job, so a repeated value would silently be one job, not two.",
                    hint="Remove the repeat; to run a variation several times use --repeat N (with --seed random for different images).",
                )
        seen.add(hash(key))


def _typed_range(values: Sequence[Any], ftype: FieldType, where: str) -> tuple[Any, ...]:
    """A range's values, typed by its ends: they are monotonic, so the ends decide the limits, and
    a million values are not checked one by one (a batch of a million jobs starts at once)."""
    ends = (_typed(values[0], ftype, where), _typed(values[-1], ftype, where))
    if ftype.kind in ("INT", "NUMBER") and all(isinstance(v, int) and not isinstance(v, bool) for v in (*ends, *values[:2])):
        return tuple(values)
    if ftype.kind in ("FLOAT", "NUMBER") and all(isinstance(v, int | float) for v in ends):
        return tuple(float(v) for v in values) if ftype.kind == "FLOAT" else tuple(values)
    return tuple(_typed(v, ftype, where) for v in values)


def _typed(value: Any, ftype: FieldType, where: str) -> Any:
    return coerce(value, ftype, where)
