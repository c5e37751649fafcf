"""Loading an owner's job history (a trace) from ITP files, Backfill's CSV, or Slurm's sacct.

A trace is what the owner's own teams ran: when each job was submitted, how long it ran and on
how many GPUs. A replay starts the jobs itself, so a trace records run times, not start times.
Every loader refuses a bad file outright, naming the file, the line and the column: a trace
that silently loses rows would make a replay look emptier than the fleet really is.

Backfill's CSV format
---------------------

For owners who bring their own history. A header line, then one job per line::

    id,submit,duration,gpus,pool,tier
    train-llm-7b,2026-03-01T08:00:00Z,2-06:00:00,64,h100,internal
    eval-nightly,2026-03-01T09:30:00+01:00,01:15:00,8,h100,
    notebook-17,2026-03-01T10:02:41Z,5400,1,,

Required columns (in any order; other columns are ignored):

``submit``
    Either seconds from the trace's start (a number >= 0, e.g. ``0`` or ``12.5``) or an ISO-8601
    timestamp with a UTC offset (``2026-03-01T08:00:00Z``, ``2026-03-01T09:30:00+01:00``). A
    timestamp without an offset is refused (its instant is unknown). A file uses one or the
    other, not both; with timestamps, submit becomes seconds since the earliest one, which the
    trace keeps as ``Trace.start`` (UTC).
``duration``
    Run time: seconds (a number > 0) or ``HH:MM:SS`` or Slurm's ``D-HH:MM:SS``.
``gpus``
    GPUs the job ran on, a whole number from 1 to 4096.

Optional columns:

``pool``
    The pool the job ran in (empty: none in particular).
``tier``
    ``internal`` (the default, also when empty), ``reserved``, ``on_demand`` or ``spot``.
``id``
    The job's name, unique in the file (empty or absent: ``job-<line>``).

The file is UTF-8 (a BOM is fine), comma-separated with standard CSV quoting, at most 256 MiB.
``sacct_to_csv`` writes this format from Slurm's accounting, and ``write_csv`` from any trace.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backfill.domain.tiers import Tier
from backfill.errors import InvalidRequest, InvalidTrace

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_GPUS = 4096
TIERS = tuple(tier.value for tier in Tier)
DEFAULT_TIER = Tier.INTERNAL.value
ITP_COLUMNS = ("job_id", "submission_time", "duration", "num_gpu")
ITP_START = 1_614_816_000
"""2021-03-04T00:00:00Z: the ITP traces' first day (their times count from it)."""
ITP_NODES = {"cluster02": 64, "cluster04": 128, "cluster06": 64, "cluster07": 128}
"""The ITP clusters' sizes in 8-GPU nodes, as the ElasticFlow authors simulate them (the real
sizes are not published)."""
CSV_COLUMNS = ("submit", "duration", "gpus")
CSV_OPTIONAL_COLUMNS = ("pool", "tier", "id")
SACCT_COLUMNS = ("JobID", "Submit", "Elapsed", "AllocTRES")
SACCT_OPTIONAL_COLUMNS = ("Partition", "Start", "State")
SACCT_NOT_STARTED = frozenset({"unknown", "none", ""})
"""``Start`` of a job that never started (pending, or cancelled before it started)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One job of the owner's: submitted at ``submit``, ran ``duration`` seconds on ``gpus``."""

    id: str
    submit: float
    """Seconds from the trace's start (>= 0)."""
    duration: float
    """Seconds of run time (> 0)."""
    gpus: int
    pool: str | None = None
    tier: str = "internal"


@dataclass(frozen=True)
class Trace:
    """A job history, in submission order (ties keep the file's order)."""

    jobs: tuple[Job, ...]
    source: str
    """Where it was loaded from (the file's path)."""
    start: datetime | None = None
    """The instant of ``submit == 0`` (UTC), when the file gave timestamps rather than seconds."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(sorted(self.jobs, key=_submit_of)))

    @cached_property
    def gpu_seconds(self) -> float:
        """The work in the trace: the sum of GPUs × duration."""
        return math.fsum(job.gpus * job.duration for job in self.jobs)

    @cached_property
    def span(self) -> float:
        """Seconds from the first submission to the last end, each job run as it was submitted."""
        if not self.jobs:
            return 0.0
        return max(job.submit + job.duration for job in self.jobs) - self.jobs[0].submit

    @cached_property
    def max_gpus(self) -> int:
        """The widest job's GPUs (0 for no jobs)."""
        return max((job.gpus for job in self.jobs), default=0)

    def __len__(self) -> int:
        return len(self.jobs)


@dataclass(frozen=True)
class SacctTrace:
    """A trace read from ``sacct -P`` output, with the rows it left out and why."""

    trace: Trace
    steps: int
    """Rows that are job steps (``1234.batch``, ``1234.0``): their job is counted already."""
    never_ran: int
    """Jobs pending, cancelled before they started, or with no elapsed time."""
    no_gpu: int
    """Jobs that ran without GPUs (no ``gres/gpu`` in ``AllocTRES``)."""

    @property
    def skipped(self) -> int:
        return self.steps + self.never_ran + self.no_gpu


_submit_of = attrgetter("submit")


# --- reading the file ----------------------------------------------------------------------------


def _error(path: Path, line: int, field: str, message: str) -> InvalidTrace:
    return InvalidTrace(message, path=str(path), line=line, field=field)


class _Table:
    """A delimited file's header and rows, with the checks every trace format shares.

    The file is read whole (refused above ``MAX_FILE_BYTES``) and must be UTF-8; a bad byte is
    reported at its line and column. ``index`` maps each wanted column to its position; rows
    come as ``(line, fields)`` and a row whose field count differs from the header's is an error
    (the usual sign of a truncated file), as is a header with no rows after it.
    """

    def __init__(
        self,
        path: Path,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
        *,
        delimiter: str = ",",
        quoted: bool = True,
        any_case: bool = False,
        hint: str = "",
    ) -> None:
        self.path = path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidTrace(
                f"cannot read the file: {exc.strerror or exc}", path=str(path)
            ) from exc
        if len(data) > MAX_FILE_BYTES:
            raise InvalidTrace(
                f"the file is {len(data)} bytes, over the limit of {MAX_FILE_BYTES}",
                path=str(path),
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line, field = _where_in_bytes(data, exc.start, delimiter)
            raise _error(
                path, line, field, f"the file is not UTF-8 text (byte {data[exc.start]:#04x})"
            ) from exc
        del data
        self._reader = csv.reader(
            io.StringIO(text),
            delimiter=delimiter,
            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        )
        self.header = [name.strip() for name in self._next_row() or ()]
        if not self.header or self.header == [""]:
            raise _error(
                path, 1, "header", f"the file is empty (it needs a header: {','.join(required)})"
            )
        wanted = required + optional
        key = str.casefold if any_case else str
        canonical = {key(name): name for name in wanted}
        self.index: dict[str, int] = {}
        for position, name in enumerate(self.header):
            column = canonical.get(key(name))
            if column is None:
                continue
            if column in self.index:
                raise _error(path, 1, column, "the header names this column twice")
            self.index[column] = position
        missing = [name for name in required if name not in self.index]
        if missing:
            raise _error(
                path,
                1,
                missing[0],
                f"the header lacks column(s) {', '.join(missing)}"
                f" (it has {delimiter.join(self.header)}){hint}",
            )

    def _next_row(self) -> list[str] | None:
        try:
            return next(self._reader, None)
        except csv.Error as exc:
            raise self._unreadable(exc) from exc

    def _unreadable(self, exc: csv.Error) -> InvalidTrace:
        return _error(self.path, max(self._reader.line_num, 1), "row", f"unreadable CSV: {exc}")

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        width = len(self.header)
        reader = self._reader
        count = 0
        try:
            for row in reader:
                if len(row) != width:
                    if not row:
                        continue
                    field = self.header[len(row)] if len(row) < width else "row"
                    raise _error(
                        self.path,
                        reader.line_num,
                        field,
                        f"{len(row)} columns where the header has {width} (truncated or malformed)",
                    )
                count += 1
                yield reader.line_num, row
        except csv.Error as exc:
            raise self._unreadable(exc) from exc
        if not count:
            raise _error(self.path, 1, "header", "the file has a header and no rows")


def _where_in_bytes(data: bytes, offset: int, delimiter: str) -> tuple[int, str]:
    """The line of the byte at ``offset``, and the column it falls in (by the header's names)."""
    line = data.count(b"\n", 0, offset) + 1
    if line == 1:
        return line, "header"
    line_start = data.rfind(b"\n", 0, offset) + 1
    before = data[line_start:offset].decode("utf-8").replace("\0", "")
    position = len(next(csv.reader([before], delimiter=delimiter), [""])) - 1 if before else 0
    header_end = data.find(b"\n")
    header = data[:header_end].decode("utf-8-sig", errors="replace").rstrip("\r")
    names = [name.strip() for name in next(csv.reader([header], delimiter=delimiter), [])]
    return line, names[position] if position < len(names) else f"column {position + 1}"


# --- values --------------------------------------------------------------------------------------
#
# The loaders take the common case inline (a plain ``float``/``int`` in range) and call these
# only when it fails: they parse leniently (surrounding blanks, ``HH:MM:SS``) or raise the error
# that names the line and column. A million rows then load in seconds.


def _number(text: str, path: Path, line: int, field: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(path, line, field, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _error(path, line, field, f"{text!r} is not a finite number")
    if positive and value <= 0:
        raise _error(path, line, field, f"{text.strip()} is not > 0 (a job runs for some time)")
    if value < 0:
        raise _error(path, line, field, f"{text.strip()} is negative")
    return value


def _gpus(text: str, path: Path, line: int, field: str) -> int:
    digits = text.strip()
    if not digits.isdecimal():
        raise _error(path, line, field, f"{text!r} is not a whole number")
    count = int(digits)
    if not 1 <= count <= MAX_GPUS:
        raise _error(path, line, field, f"{count} is outside 1..{MAX_GPUS}")
    return count


def _clock(text: str, *, minutes_seconds: bool) -> float | None:
    """Seconds in ``[D-]HH:MM:SS`` (and ``MM:SS`` if ``minutes_seconds``), or None if malformed.

    Seconds may carry a fraction (``.123``); without days, hours may exceed 23.
    """
    days, dash, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    if len(parts) == 2 and minutes_seconds and not dash:
        parts.insert(0, "0")
    if len(parts) != 3 or not (parts[0].isdecimal() and parts[1].isdecimal()):
        return None
    if (dash and not days.isdecimal()) or not parts[2].replace(".", "", 1).isdecimal():
        return None
    day, hours, minutes, seconds = int(days or 0), int(parts[0]), int(parts[1]), float(parts[2])
    if minutes >= 60 or seconds >= 60 or (dash and hours >= 24):
        return None
    return (day * 24 + hours) * 3600 + minutes * 60 + seconds


def _duration(text: str, path: Path, line: int, field: str) -> float:
    if ":" not in text:
        return _number(text, path, line, field, positive=True)
    seconds = _clock(text, minutes_seconds=False)
    if seconds is None:
        raise _error(path, line, field, f"{text!r} is not seconds, HH:MM:SS or D-HH:MM:SS")
    if seconds <= 0:
        raise _error(path, line, field, f"{text.strip()} is not > 0 (a job runs for some time)")
    return seconds


def _timestamp(text: str, path: Path, line: int, field: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _error(
            path,
            line,
            field,
            f"{text!r} is neither seconds nor an ISO-8601 timestamp like 2026-03-01T08:00:00Z",
        ) from None
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        raise _error(
            path,
            line,
            field,
            f"timestamp {text.strip()} has no time zone: give a UTC offset"
            " (2026-03-01T08:00:00Z or 2026-03-01T08:00:00+02:00)",
        )
    return stamp


def _unique(seen: dict[str, int], job_id: str, path: Path, line: int, field: str) -> None:
    first = seen.setdefault(job_id, line)
    if first != line:
        raise _error(
            path, line, field, f"job {job_id!r} appears twice, on lines {first} and {line}"
        )


_Row = tuple[str, datetime, float, int, str | None, str]


def _from_timestamps(rows: list[_Row], source: str) -> Trace:
    """Submissions become seconds since the earliest, which is the trace's ``start``."""
    start = min(row[1] for row in rows)
    jobs = [
        Job(job_id, (stamp - start).total_seconds(), duration, gpus, pool, tier)
        for job_id, stamp, duration, gpus, pool, tier in rows
    ]
    return Trace(tuple(jobs), source, start.astimezone(UTC))


# --- ITP -----------------------------------------------------------------------------------------


def load_itp(path: str | Path) -> Trace:
    """A Microsoft ITP trace (``job_id,submission_time,duration,num_gpu``; seconds).

    Every job is the owner's (tier ``internal``, no pool). A duration of zero or less, a
    ``num_gpu`` outside 1..4096 and a ``job_id`` seen before are errors.
    """
    path = Path(path)
    table = _Table(path, ITP_COLUMNS)
    i_id, i_submit, i_duration, i_gpus = (table.index[name] for name in ITP_COLUMNS)
    seen: dict[str, int] = {}
    jobs: list[Job] = []
    for line, row in table.rows():
        job_id = row[i_id].strip()
        if not job_id:
            raise _error(path, line, "job_id", "empty job_id")
        _unique(seen, job_id, path, line, "job_id")
        try:
            submit = float(row[i_submit])
            duration = float(row[i_duration])
        except ValueError:
            submit = duration = math.nan
        if not (0.0 <= submit < math.inf and 0.0 < duration < math.inf):
            submit = _number(row[i_submit], path, line, "submission_time", positive=False)
            duration = _number(row[i_duration], path, line, "duration", positive=True)
        text = row[i_gpus]
        gpus = int(text) if text.isdecimal() else 0
        if not 0 < gpus <= MAX_GPUS:
            gpus = _gpus(text, path, line, "num_gpu")
        jobs.append(Job(job_id, submit, duration, gpus))
    return Trace(tuple(jobs), str(path))


# --- Backfill's CSV ------------------------------------------------------------------------------


def load_csv(path: str | Path) -> Trace:
    """A trace in Backfill's CSV format (see the module's docstring)."""
    path = Path(path)
    table = _Table(path, CSV_COLUMNS, CSV_OPTIONAL_COLUMNS)
    i_submit, i_duration, i_gpus = (table.index[name] for name in CSV_COLUMNS)
    i_pool, i_tier, i_id = (table.index.get(name) for name in CSV_OPTIONAL_COLUMNS)
    seen: dict[str, int] = {}
    seconds: list[Job] = []
    stamped: list[_Row] = []
    first_line = 0
    for line, row in table.rows():
        job_id = (row[i_id].strip() if i_id is not None else "") or f"job-{line}"
        _unique(seen, job_id, path, line, "id")
        pool = (row[i_pool].strip() if i_pool is not None else "") or None
        tier = (row[i_tier].strip().lower() if i_tier is not None else "") or DEFAULT_TIER
        if tier not in TIERS:
            raise _error(path, line, "tier", f"{tier!r} is not one of {', '.join(TIERS)}")
        text = row[i_duration]
        try:
            duration = float(text)
        except ValueError:
            duration = math.nan
        if not 0.0 < duration < math.inf:
            duration = _duration(text, path, line, "duration")
        text = row[i_gpus]
        gpus = int(text) if text.isdecimal() else 0
        if not 0 < gpus <= MAX_GPUS:
            gpus = _gpus(text, path, line, "gpus")
        text = row[i_submit]
        try:
            submit = float(text)
        except ValueError:
            stamp = _timestamp(text, path, line, "submit")
            if seconds:
                raise _error(
                    path,
                    line,
                    "submit",
                    f"a timestamp, where line {first_line} gave seconds"
                    " (use one or the other for the whole file)",
                ) from None
            stamped.append((job_id, stamp, duration, gpus, pool, tier))
        else:
            if stamped:
                raise _error(
                    path,
                    line,
                    "submit",
                    f"seconds, where line {first_line} gave a timestamp"
                    " (use one or the other for the whole file)",
                )
            if not 0.0 <= submit < math.inf:
                submit = _number(text, path, line, "submit", positive=False)
            seconds.append(Job(job_id, submit, duration, gpus, pool, tier))
        first_line = first_line or line
    if stamped:
        return _from_timestamps(stamped, str(path))
    return Trace(tuple(seconds), str(path))


def write_csv(trace: Trace, path: str | Path) -> int:
    """Write ``trace`` in Backfill's CSV format; returns the number of jobs written.

    With a ``start``, submissions are written as UTC timestamps, otherwise as seconds.
    """
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("id", "submit", "duration", "gpus", "pool", "tier"))
        for job in trace.jobs:
            if trace.start is None:
                submit = _seconds_text(job.submit)
            else:
                stamp = trace.start + timedelta(seconds=job.submit)
                submit = stamp.isoformat().replace("+00:00", "Z")
            writer.writerow(
                (job.id, submit, _seconds_text(job.duration), job.gpus, job.pool or "", job.tier)
            )
    return len(trace)


def _seconds_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


# --- Slurm ---------------------------------------------------------------------------------------


def read_sacct(path: str | Path, *, timezone: str = "UTC") -> SacctTrace:
    """The jobs in ``sacct -P`` output that ran on GPUs, and counts of the rows left out.

    Made for ``sacct -a -X -P -o JobID,Submit,Start,End,Elapsed,AllocTRES,Partition,State``
    (columns in any order; ``JobID``, ``Submit``, ``Elapsed`` and ``AllocTRES`` are required).
    ``Submit`` is in the cluster's local time without a zone, so ``timezone`` (an IANA name) says
    which; in a DST change's repeated hour the first occurrence is taken. ``Elapsed``
    (``[D-]HH:MM:SS`` or ``MM:SS``) is the duration; the GPUs are ``gres/gpu=N`` in
    ``AllocTRES``, or the sum of the typed ``gres/gpu:<type>=N`` when there is no untyped count.
    ``Partition`` becomes the pool and ``JobID`` the id. Left out: job steps (a ``.`` in the
    JobID), jobs that never ran (``State`` PENDING, ``Start`` Unknown/None, or no elapsed time),
    and jobs without GPUs. A job still running counts with its elapsed time so far.
    """
    path = Path(path)
    zone = _zone(timezone)
    table = _Table(
        path,
        SACCT_COLUMNS,
        SACCT_OPTIONAL_COLUMNS,
        delimiter="|",
        quoted=False,
        any_case=True,
        hint="; run sacct with -P and without --noheader",
    )
    i_id, i_submit, i_elapsed, i_tres = (table.index[name] for name in SACCT_COLUMNS)
    i_pool, i_start, i_state = (table.index.get(name) for name in SACCT_OPTIONAL_COLUMNS)
    seen: dict[str, int] = {}
    rows: list[_Row] = []
    steps = never_ran = no_gpu = 0
    first_skipped: dict[str, int] = {}
    for line, row in table.rows():
        job_id = row[i_id].strip()
        if not job_id:
            raise _error(path, line, "JobID", "empty JobID")
        if "." in job_id:
            steps += 1
            first_skipped.setdefault("JobID", line)
            continue
        pending = i_state is not None and row[i_state].strip().upper().startswith("PENDING")
        started = i_start is None or row[i_start].strip().casefold() not in SACCT_NOT_STARTED
        if pending or not started:
            never_ran += 1
            first_skipped.setdefault("State" if pending else "Start", line)
            continue
        elapsed = _clock(row[i_elapsed], minutes_seconds=True)
        if elapsed is None:
            raise _error(
                path,
                line,
                "Elapsed",
                f"{row[i_elapsed]!r} is not [D-]HH:MM:SS or MM:SS",
            )
        if elapsed <= 0:
            never_ran += 1
            first_skipped.setdefault("Elapsed", line)
            continue
        gpus = _tres_gpus(row[i_tres], path, line)
        if not gpus:
            no_gpu += 1
            first_skipped.setdefault("AllocTRES", line)
            continue
        _unique(seen, job_id, path, line, "JobID")
        submit = _local_timestamp(row[i_submit], zone, path, line)
        pool = (row[i_pool].strip() if i_pool is not None else "") or None
        rows.append((job_id, submit, elapsed, gpus, pool, DEFAULT_TIER))
    if not rows:
        field, line = min(first_skipped.items(), key=lambda item: item[1])
        raise _error(
            path,
            line,
            field,
            f"no job here ran on GPUs: {steps} job step(s), {never_ran} that never ran and"
            f" {no_gpu} without gres/gpu (the first left out is on this line)",
        )
    return SacctTrace(_from_timestamps(rows, str(path)), steps, never_ran, no_gpu)


def load_sacct(path: str | Path, *, timezone: str = "UTC") -> Trace:
    """The GPU jobs in ``sacct -P`` output, as a trace (see ``read_sacct``)."""
    return read_sacct(path, timezone=timezone).trace


def sacct_to_csv(src: str | Path, dst: str | Path, *, timezone: str = "UTC") -> int:
    """Convert ``sacct -P`` output to Backfill's CSV (see ``read_sacct``); returns rows written.

    Submissions are written as UTC timestamps, so ``load_csv(dst)`` gives the same trace.
    """
    return write_csv(load_sacct(src, timezone=timezone), dst)


def _zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)",
            field="timezone",
        ) from exc


def _local_timestamp(text: str, zone: tzinfo, path: Path, line: int) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _error(
            path, line, "Submit", f"{text!r} is not a timestamp like 2026-03-01T08:00:00"
        ) from None
    return stamp.replace(tzinfo=zone) if stamp.tzinfo is None else stamp


def _tres_gpus(text: str, path: Path, line: int) -> int:
    """GPUs in an AllocTRES list: ``gres/gpu=N``, else the sum of ``gres/gpu:<type>=N``.

    Slurm lists the untyped count next to the typed ones when both are tracked, so adding
    them all would count each GPU twice.
    """
    if "gres/gpu" not in text:
        return 0
    untyped: int | None = None
    typed = 0
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name != "gres/gpu" and not name.startswith("gres/gpu:"):
            continue
        digits = value.strip()
        if not digits.isdecimal():
            raise _error(path, line, "AllocTRES", f"{item.strip()!r} is not a GPU count")
        if name == "gres/gpu":
            untyped = int(digits)
        else:
            typed += int(digits)
    count = typed if untyped is None else untyped
    if count > MAX_GPUS:
        raise _error(path, line, "AllocTRES", f"{count} GPUs is over {MAX_GPUS}")
    return count
