"""Slurm's command-line clients, run as subprocesses, and what their output means.

Why the CLI and not slurmrestd: the clients (``sbatch``, ``squeue``, ``sacct``, ``scancel``,
``sacctmgr``, ``scontrol``) are on every machine that can reach a Slurm cluster, authenticate with
the cluster's own munge, and keep their flags stable across releases. slurmrestd must be run as
its own service (never as root), needs JWT keys set up in the cluster's configuration, and its
OpenAPI schema changes version with almost every Slurm release (22.05 serves v0.0.38; later
releases drop it). What the CLI costs: a process per call (about 10-30 ms), so the engine reads
the whole queue once per refresh rather than job by job. Where a client speaks JSON
(``squeue --json``, ``sacct --json``) the engine reads JSON; ``scontrol`` and ``sacctmgr`` have no
JSON in 22.05, so their one-line (``-o``) and parsable (``-P``) forms are read.

Every failure becomes a Backfill error that says which command failed and what Slurm said:
``EngineUnavailable`` when Slurm cannot be reached (or a client is missing), ``SlurmRefused`` when
Slurm answered with an error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backfill.errors import Conflict, EngineUnavailable

DEFAULT_TIMEOUT = 20.0
_UNREACHABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Zero Bytes were transmitted|slurm_persist_conn_open|Problem talking to the database|"
    r"Unable to establish|communication connection failure|munge",
    re.IGNORECASE,
)


class SlurmRefused(Conflict):
    """Slurm answered a command with an error (a bad request, a limit, an unknown job...)."""

    code = "slurm_refused"


@dataclass
class SlurmCLI:
    """Runs Slurm's clients against one cluster (``conf``: its ``slurm.conf``; None: the
    clients' own default)."""

    conf: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    env: Mapping[str, str] = field(default_factory=dict)

    def run(self, *args: str, input: str | None = None, timeout: float | None = None) -> str:
        env = dict(os.environ)
        env.update(self.env)
        if self.conf is not None:
            env["SLURM_CONF"] = str(self.conf)
        env["TZ"] = "UTC"  # the times the clients print and read are UTC
        env.pop("SLURM_TIME_FORMAT", None)
        # Slurm's clients read these from the environment; a caller's would change what runs.
        for name in ("SLURM_JOB_ID", "SBATCH_ACCOUNT", "SBATCH_QOS", "SBATCH_PARTITION"):
            env.pop(name, None)
        try:
            done = subprocess.run(
                list(args),
                input=input,
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout or self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise EngineUnavailable(
                f"Slurm's {args[0]} is not installed here (install slurm-client)"
            ) from None
        except subprocess.TimeoutExpired:
            raise EngineUnavailable(
                f"Slurm did not answer `{_shown(args)}` within {timeout or self.timeout:g} s"
            ) from None
        if done.returncode != 0:
            said = _said(done.stderr or done.stdout)
            if _UNREACHABLE.search(said):
                raise EngineUnavailable(f"Slurm cannot be reached: `{_shown(args)}`: {said}")
            raise SlurmRefused(f"Slurm refused `{_shown(args)}`: {said}")
        return done.stdout

    def json(self, *args: str) -> dict[str, Any]:
        out = self.run(*args, "--json")
        try:
            document = json.loads(out)
        except json.JSONDecodeError as exc:
            raise EngineUnavailable(f"`{_shown(args)} --json` did not print JSON: {exc}") from None
        errors = [e for e in document.get("errors", []) if e and not _nothing_found(e)]
        if errors:  # a read that Slurm could not answer (its controller or database is away)
            said = "; ".join(str(e.get("description") or e) for e in errors)
            raise EngineUnavailable(f"Slurm cannot answer `{_shown(args)}`: {said}")
        return dict(document)

    def records(self, *args: str) -> list[dict[str, str]]:
        """``sacctmgr -n -P ... format=a,b`` rows as dicts keyed by the format's fields."""
        fields = next(a.split("=", 1)[1] for a in args if a.startswith("format="))
        names = [f.split("%")[0].lower() for f in fields.split(",")]
        out = self.run(*args)
        return [
            dict(zip(names, line.split("|"), strict=False)) for line in out.splitlines() if line
        ]


def _nothing_found(error: Any) -> bool:
    """sacct reports an empty answer as an error ("Nothing found"); it is just empty."""
    return isinstance(error, dict) and error.get("description") == "Nothing found"


def _shown(args: Sequence[str]) -> str:
    shown = " ".join(args)
    return shown if len(shown) <= 160 else shown[:157] + "..."


def _said(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    said = "; ".join(lines[-3:]) if lines else "(no message)"
    return said.removeprefix("sbatch: error: ").removeprefix("scancel: error: ")


# -- what Slurm's outputs say ----------------------------------------------------------------------

_GRES_DETAIL = re.compile(r"^gpu(?::(?P<type>[^:(]+))?:(?P<count>\d+)\(IDX:(?P<idx>[^)]*)\)")


def gpu_indices(spec: str) -> tuple[int, ...]:
    """``0-1,4`` → (0, 1, 4); ``N/A`` (no GPUs) → ()."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part or part == "N/A":
            continue
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return tuple(out)


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's compressed host list: ``gpu[01-03,07],cpu5`` → gpu01, gpu02, gpu03, gpu07, cpu5."""
    names: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", hostlist):
        if plain:
            names.append(plain)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            if not last:
                names.append(prefix + first)
                continue
            width = len(first)
            names.extend(f"{prefix}{i:0{width}d}" for i in range(int(first), int(last) + 1))
    return names


def job_allocation(job: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Node → GPU indices of a job in ``squeue --json`` (its ``gres_detail`` lists one entry per
    allocated node, in the order of its node list)."""
    nodes = expand_hostlist(job.get("nodes") or "")
    details = job.get("gres_detail") or []
    out: dict[str, tuple[int, ...]] = {}
    for node, detail in zip(nodes, details, strict=False):
        match = _GRES_DETAIL.match(detail)
        if match is not None:
            out[node] = gpu_indices(match["idx"])
    return out


def tres_gpus(tres: str) -> int:
    """GPUs in a TRES string (``cpu=1,node=1,gres/gpu=8,gres/gpu:h100=8`` → 8)."""
    for part in tres.split(","):
        name, _, value = part.partition("=")
        if name == "gres/gpu":
            return int(value)
    return 0


def per_node_gpus(tres_per_node: str) -> int:
    """GPUs asked per node (``gres:gpu:h100:8`` → 8; ``gres:gpu:2`` → 2)."""
    for part in tres_per_node.split(","):
        bits = part.split(":")
        if len(bits) >= 3 and bits[0] == "gres" and bits[1] == "gpu":
            return int(bits[-1])
    return 0


def scontrol_records(text: str) -> list[dict[str, str]]:
    """``scontrol -o show ...``: one object per line of ``Key=Value`` pairs."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        record: dict[str, str] = {}
        for token in re.split(r"\s+(?=[A-Za-z/:_]+=)", line.strip()):
            key, _, value = token.partition("=")
            record[key] = value.strip()
        records.append(record)
    return records
