"""The lease state machine.

    pending → running → noticed → preempted
       │         │   └──────────→ stopped | completed | failed
       │         └──→ stopped | completed | failed
       └──→ stopped | failed

``noticed`` is a spot lease told it will be stopped at ``stop_at``; it still runs (and is billed)
until then. A stop the tenant asked for is ``stopped``; one the owner's work (or a passed
``max_price``) forced is ``preempted``; a command that exits 0 is ``completed``, else ``failed``.
"""

from __future__ import annotations

from enum import StrEnum


class LeaseState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    NOTICED = "noticed"
    STOPPED = "stopped"
    PREEMPTED = "preempted"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def holds_gpus(self) -> bool:
        return self in (LeaseState.RUNNING, LeaseState.NOTICED)


_TERMINAL = frozenset(
    {LeaseState.STOPPED, LeaseState.PREEMPTED, LeaseState.COMPLETED, LeaseState.FAILED}
)

_ALLOWED: dict[LeaseState, frozenset[LeaseState]] = {
    LeaseState.PENDING: frozenset({LeaseState.RUNNING, LeaseState.STOPPED, LeaseState.FAILED}),
    LeaseState.RUNNING: frozenset({LeaseState.NOTICED} | _TERMINAL),
    LeaseState.NOTICED: _TERMINAL,
}


ACTIVE_STATES = tuple(state for state in LeaseState if not state.terminal)
"""Pending, running or noticed: a lease that holds (or will hold) GPUs."""


class IllegalTransition(ValueError):
    pass


def transition(current: LeaseState, target: LeaseState) -> LeaseState:
    """Return ``target`` if a lease in ``current`` may move to it, else raise IllegalTransition."""
    if target not in _ALLOWED.get(current, frozenset()):
        raise IllegalTransition(f"a lease cannot go from {current} to {target}")
    return target
