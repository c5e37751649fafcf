"""Nodes taken out of service and put back: a failure the operator reports, or maintenance.

Taking a node down ends the work on it at once (its leases end ``failed``, an involuntary
interruption, with a ``lease.ended`` webhook); its GPUs go to no one until it is put back up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backfill.errors import NotFound
from backfill.services.context import Context
from backfill.services.sync import sync

NodeState = Literal["down", "up"]
DOWN: NodeState = "down"
UP: NodeState = "up"


@dataclass(frozen=True)
class NodeView:
    name: str
    pool: str
    state: NodeState
    """``down`` (out of service) or ``up``."""


def set_down(ctx: Context, *, node: str, reason: str) -> NodeView:
    """Take ``node`` out of service; the leases it ended are in the store when this returns.
    Taking a node that is down down again changes nothing. ``NotFound`` for an unknown node."""
    pool = _pool_of(ctx, node)
    with ctx.lock:
        ctx.engine.set_node_down(node, reason=reason)
    sync(ctx)
    return NodeView(name=node, pool=pool, state=DOWN)


def set_up(ctx: Context, *, node: str) -> NodeView:
    """Put ``node`` back in service (idempotent); waiting work may start on it at once."""
    pool = _pool_of(ctx, node)
    with ctx.lock:
        ctx.engine.set_node_up(node)
    sync(ctx)
    return NodeView(name=node, pool=pool, state=UP)


def _pool_of(ctx: Context, node: str) -> str:
    for pool in ctx.engine.fleet().pools:
        if any(n.name == node for n in pool.nodes):
            return pool.key
    raise NotFound(f"no node {node!r}", field="node")
