"""The Slurm engine: the FleetEngine port on a real Slurm cluster (see ``engine``)."""

from backfill.engines.slurm.cli import SlurmCLI, SlurmRefused
from backfill.engines.slurm.engine import SlurmConfig, SlurmEngine

__all__ = ["SlurmCLI", "SlurmConfig", "SlurmEngine", "SlurmRefused"]
