"""Owner traces: ITP, Backfill's CSV and sacct loaders give exact jobs or say file:line: column."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backfill.errors import InvalidRequest, InvalidTrace
from backfill.traces import (
    Job,
    Trace,
    load_csv,
    load_itp,
    load_sacct,
    loaders,
    read_sacct,
    sacct_to_csv,
    write_csv,
)

CLUSTER04 = Path(__file__).resolve().parents[3] / "shared/traces/itp/cluster04.csv"
ITP_HEADER = "job_id,submission_time,duration,num_gpu\n"
CSV_HEADER = "submit,duration,gpus\n"
SACCT_HEADER = "JobID|Submit|Start|End|Elapsed|AllocTRES|Partition|State\n"
SACCT_SAMPLE = SACCT_HEADER + (
    "1001|2026-01-15T09:00:00|2026-01-15T09:00:05|2026-01-16T11:03:09|1-02:03:04"
    "|billing=64,cpu=64,gres/gpu:h100=8,mem=512G,node=1|h100|COMPLETED\n"
    "1001.batch|2026-01-15T09:00:05|2026-01-15T09:00:05|2026-01-16T11:03:09|1-02:03:04"
    "|cpu=64,gres/gpu:h100=8,mem=512G,node=1||COMPLETED\n"
    "1002|2026-01-15T09:30:00|2026-01-15T10:00:00|2026-01-15T12:03:04|02:03:04"
    "|billing=16,cpu=16,gres/gpu=2,mem=128G,node=1|a100|COMPLETED\n"
    "1003|2026-01-15T09:45:00|2026-01-15T09:45:01|2026-01-15T09:48:05|03:04"
    "|billing=8,cpu=8,mem=32G,node=1|cpu|COMPLETED\n"
    "1004|2026-01-15T10:00:00|Unknown|Unknown|00:00:00||h100|PENDING\n"
    "1005|2026-01-15T10:05:00|None|2026-01-15T10:06:00|00:00:00||h100|CANCELLED by 1000\n"
    "1006_3|2026-01-15T10:10:00|2026-01-15T10:10:02|2026-01-15T10:13:06|03:04"
    "|cpu=4,gres/gpu=4,gres/gpu:h100=4,mem=16G,node=1|h100|FAILED\n"
)
SACCT_JOBS = [
    # Submit in the file's local time; 1001 is the earliest, so submit 0.
    Job("1001", 0.0, 93_784.0, 8, "h100"),  # 1-02:03:04; typed gres/gpu:h100=8
    Job("1002", 1_800.0, 7_384.0, 2, "a100"),  # gres/gpu=2
    Job("1006_3", 4_200.0, 184.0, 4, "h100"),  # MM:SS; typed and untyped count the same 4
]


def write(tmp_path: Path, text: str | bytes, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- ITP -----------------------------------------------------------------------------------------


def test_itp_gives_the_jobs_in_submission_order(tmp_path: Path) -> None:
    path = write(tmp_path, ITP_HEADER + "b,20,100,8\na,5,12.5,1\nc,20,3600,64\n")

    trace = load_itp(path)

    assert list(trace.jobs) == [  # the tie at 20 keeps the file's order
        Job("a", 5.0, 12.5, 1),
        Job("b", 20.0, 100.0, 8),
        Job("c", 20.0, 3600.0, 64),
    ]
    assert trace.source == str(path) and trace.start is None
    assert len(trace) == 3 and trace.max_gpus == 64
    assert trace.gpu_seconds == 12.5 + 800 + 64 * 3600
    assert trace.span == 3620 - 5


def test_itp_loads_the_real_cluster04_trace() -> None:
    if not CLUSTER04.exists():
        pytest.skip(f"{CLUSTER04.parent} absent (the shared ITP traces are not here)")

    trace = load_itp(CLUSTER04)

    assert len(trace) == 15_802 and trace.max_gpus == 64
    assert round(trace.gpu_seconds / 3600) == 705_683  # ABOUT.md's GPU-hours
    assert all(a.submit <= b.submit for a, b in zip(trace.jobs, trace.jobs[1:], strict=False))


# --- Backfill's CSV ------------------------------------------------------------------------------


def test_csv_with_timestamps_offsets_defaults_and_extra_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "id,submit,duration,gpus,pool,tier,owner\n"
        "train,2026-03-01T08:00:00Z,2-06:00:00,64,h100,internal,alice\n"
        "eval,2026-03-01T09:30:00+01:00,01:15:00,8,h100,,bob\n"
        ",2026-03-01T08:02:41Z,5400,1,,SPOT,carol\n",
    )

    trace = load_csv(path)

    assert list(trace.jobs) == [
        Job("train", 0.0, 194_400.0, 64, "h100", "internal"),
        Job("job-4", 161.0, 5_400.0, 1, None, "spot"),
        Job("eval", 1_800.0, 4_500.0, 8, "h100", "internal"),
    ]
    assert trace.start == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_csv_with_seconds_and_only_the_required_columns(tmp_path: Path) -> None:
    path = write(tmp_path, CSV_HEADER + "10,60,1\n0,12.5,2\n10,30,4\n")

    trace = load_csv(path)

    assert list(trace.jobs) == [
        Job("job-3", 0.0, 12.5, 2),
        Job("job-2", 10.0, 60.0, 1),
        Job("job-4", 10.0, 30.0, 4),
    ]
    assert trace.start is None and trace.span == 70.0


def test_write_csv_then_load_csv_gives_the_same_trace(tmp_path: Path) -> None:
    itp = load_itp(write(tmp_path, ITP_HEADER + 'x,1,2.5,2\n"y,z",0,7,1\n', "itp.csv"))

    assert write_csv(itp, tmp_path / "out.csv") == 2
    assert load_csv(tmp_path / "out.csv").jobs == itp.jobs


# --- sacct ---------------------------------------------------------------------------------------


def test_sacct_keeps_jobs_that_ran_on_gpus_and_counts_the_rest(tmp_path: Path) -> None:
    read = read_sacct(write(tmp_path, SACCT_SAMPLE, "sacct.txt"))

    assert list(read.trace.jobs) == SACCT_JOBS
    assert read.trace.start == datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    assert (read.steps, read.never_ran, read.no_gpu, read.skipped) == (1, 2, 1, 4)


def test_sacct_local_times_follow_the_timezone(tmp_path: Path) -> None:
    path = write(tmp_path, SACCT_SAMPLE, "sacct.txt")

    paris = load_sacct(path, timezone="Europe/Paris")

    assert list(paris.jobs) == SACCT_JOBS
    assert paris.start == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)  # UTC+1 in winter
    with pytest.raises(InvalidRequest, match="unknown time zone"):
        load_sacct(path, timezone="Mars/Olympus_Mons")


def test_sacct_to_csv_writes_what_load_csv_reads_back(tmp_path: Path) -> None:
    src = write(tmp_path, SACCT_SAMPLE, "sacct.txt")
    dst = tmp_path / "jobs.csv"

    assert sacct_to_csv(src, dst, timezone="Europe/Paris") == 3

    assert dst.read_text().splitlines()[:2] == [
        "id,submit,duration,gpus,pool,tier",
        "1001,2026-01-15T08:00:00Z,93784,8,h100,internal",
    ]
    back = load_csv(dst)
    assert list(back.jobs) == SACCT_JOBS
    assert back.start == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


def test_sacct_with_nothing_that_ran_on_gpus_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "JobID|Submit|Elapsed|AllocTRES\n"
        "7|2026-01-15T09:00:00|01:00:00|cpu=4\n"
        "7.batch|2026-01-15T09:00:00|01:00:00|cpu=4\n",
        "sacct.txt",
    )

    with pytest.raises(InvalidTrace, match="no job here ran on GPUs") as caught:
        load_sacct(path)
    assert str(caught.value).startswith(f"{path}:2: AllocTRES: ")


# --- malformed files -----------------------------------------------------------------------------

Loader = Callable[[Path], Trace]
MALFORMED: list[tuple[str, Loader, str | bytes, int, str, str]] = [
    # (case, loader, file, line, column, part of the message)
    ("bad number", load_itp, ITP_HEADER + "a,5,x,1\n", 2, "duration", "'x' is not a number"),
    ("zero duration", load_itp, ITP_HEADER + "a,5,100,1\nb,6,0,1\n", 3, "duration", "not > 0"),
    ("negative submit", load_itp, ITP_HEADER + "a,-5,100,1\n", 2, "submission_time", "negative"),
    ("too many GPUs", load_itp, ITP_HEADER + "a,5,100,4097\n", 2, "num_gpu", "outside 1..4096"),
    (
        "duplicate id",
        load_itp,
        ITP_HEADER + "a,5,100,1\nb,6,100,1\na,7,100,1\n",
        4,
        "job_id",
        "appears twice, on lines 2 and 4",
    ),
    ("truncated", load_itp, ITP_HEADER + "a,5,100,1\nb,6,10", 3, "num_gpu", "truncated"),
    ("empty file", load_itp, "", 1, "header", "the file is empty"),
    ("header only", load_itp, ITP_HEADER, 1, "header", "a header and no rows"),
    (
        "missing column",
        load_itp,
        "job_id,submission_time,num_gpu\na,5,1\n",
        1,
        "duration",
        "lacks column(s) duration",
    ),
    (
        "non-UTF-8",
        load_itp,
        ITP_HEADER.encode() + b"a,5,100,1\nb,6,1\xe900,1\n",
        3,
        "duration",
        "not UTF-8",
    ),
    ("csv bad number", load_csv, CSV_HEADER + "0,60,two\n", 2, "gpus", "not a whole number"),
    ("csv zero duration", load_csv, CSV_HEADER + "0,00:00:00,1\n", 2, "duration", "not > 0"),
    ("csv bad clock", load_csv, CSV_HEADER + "0,1:75:00,1\n", 2, "duration", "HH:MM:SS"),
    ("csv negative submit", load_csv, CSV_HEADER + "-1,60,1\n", 2, "submit", "negative"),
    ("csv too many GPUs", load_csv, CSV_HEADER + "0,60,5000\n", 2, "gpus", "outside 1..4096"),
    (
        "csv duplicate id",
        load_csv,
        "id,submit,duration,gpus\nx,0,60,1\ny,0,60,1\nx,1,60,1\n",
        4,
        "id",
        "on lines 2 and 4",
    ),
    ("csv truncated", load_csv, CSV_HEADER + "0,60,1\n5,60", 3, "gpus", "truncated"),
    ("csv empty file", load_csv, "", 1, "header", "the file is empty"),
    ("csv header only", load_csv, "id," + CSV_HEADER, 1, "header", "a header and no rows"),
    ("csv missing column", load_csv, "submit,gpus\n0,1\n", 1, "duration", "lacks column(s)"),
    (
        "csv non-UTF-8",
        load_csv,
        CSV_HEADER.encode() + b"0,60,1\n\xff1,60,1\n",
        3,
        "submit",
        "not UTF-8",
    ),
    (
        "naive timestamp",
        load_csv,
        CSV_HEADER + "2026-03-01T08:00:00,60,1\n",
        2,
        "submit",
        "give a UTC offset",
    ),
    (
        "seconds after timestamps",
        load_csv,
        CSV_HEADER + "2026-03-01T08:00:00Z,60,1\n120,60,1\n",
        3,
        "submit",
        "where line 2 gave a timestamp",
    ),
    (
        "timestamps after seconds",
        load_csv,
        CSV_HEADER + "0,60,1\n2026-03-01T08:00:00Z,60,1\n",
        3,
        "submit",
        "where line 2 gave seconds",
    ),
    ("not a submit", load_csv, CSV_HEADER + "soon,60,1\n", 2, "submit", "neither seconds nor"),
    (
        "unknown tier",
        load_csv,
        "submit,duration,gpus,tier\n0,60,1,gold\n",
        2,
        "tier",
        "'gold' is not one of internal, reserved, on_demand, spot",
    ),
    (
        "sacct bad Elapsed",
        load_sacct,
        SACCT_HEADER
        + "7|2026-01-15T09:00:00|2026-01-15T09:00:01|Unknown|INVALID|gres/gpu=1|p|RUNNING\n",
        2,
        "Elapsed",
        "not [D-]HH:MM:SS or MM:SS",
    ),
    (
        "sacct bad Submit",
        load_sacct,
        "JobID|Submit|Elapsed|AllocTRES\n7|yesterday|01:00|gres/gpu=1\n",
        2,
        "Submit",
        "not a timestamp",
    ),
    (
        "sacct duplicate JobID",
        load_sacct,
        "JobID|Submit|Elapsed|AllocTRES\n"
        "7|2026-01-15T09:00:00|01:00|gres/gpu=1\n"
        "7|2026-01-15T09:00:00|01:00|gres/gpu=1\n",
        3,
        "JobID",
        "on lines 2 and 3",
    ),
    (
        "sacct truncated",
        load_sacct,
        "JobID|Submit|Elapsed|AllocTRES\n7|2026-01-15T09:00:00|01:00|gres/gpu=1\n8|2026-01",
        3,
        "Elapsed",
        "truncated",
    ),
    (
        "sacct without header",
        load_sacct,
        "7|2026-01-15T09:00:00|01:00|gres/gpu=1\n",
        1,
        "JobID",
        "without --noheader",
    ),
]


@pytest.mark.parametrize(
    ("loader", "text", "line", "column", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_malformed_file_is_an_error_naming_file_line_and_column(
    tmp_path: Path, loader: Loader, text: str | bytes, line: int, column: str, message: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(InvalidTrace) as caught:
        loader(path)

    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), line, column)
    assert str(error).startswith(f"{path}:{line}: {column}: ")
    assert message in str(error)


def test_a_file_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loaders, "MAX_FILE_BYTES", 64)
    path = write(tmp_path, ITP_HEADER + "a,5,100,1\n" * 10)

    with pytest.raises(InvalidTrace, match="over the limit of 64") as caught:
        load_itp(path)
    assert caught.value.path == str(path)


def test_a_trace_sorts_its_jobs_whoever_builds_it() -> None:
    late, early = Job("late", 9.0, 1.0, 1), Job("early", 0.0, 20.0, 2)

    trace = Trace((late, early), "memory")

    assert trace.jobs == (early, late) and trace.span == 20.0 and trace.gpu_seconds == 41.0
    assert Trace((), "memory").span == 0.0 and Trace((), "memory").max_gpus == 0
