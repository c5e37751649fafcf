"""Owner traces: the owner's own job history, loaded for replay against the fleet.

``loaders`` reads Microsoft's ITP traces, Backfill's own CSV (the format owners bring their
history in) and Slurm's ``sacct -P`` output, always into one ``Trace`` of ``Job``s.
"""

from __future__ import annotations

from backfill.traces.loaders import (
    ITP_NODES,
    ITP_START,
    Job,
    SacctTrace,
    Trace,
    load_csv,
    load_itp,
    load_sacct,
    read_sacct,
    sacct_to_csv,
    write_csv,
)

__all__ = [
    "ITP_NODES",
    "ITP_START",
    "Job",
    "SacctTrace",
    "Trace",
    "load_csv",
    "load_itp",
    "load_sacct",
    "read_sacct",
    "sacct_to_csv",
    "write_csv",
]
