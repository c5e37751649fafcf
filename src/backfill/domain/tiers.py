"""Tiers and the one rule: internal first.

A higher tier may take GPUs from a lower one; nothing may take GPUs from a higher one. Of the
external tiers only ``spot`` is ever taken back: ``reserved`` was sold out of forecast surplus and
``on_demand`` under the sellable floor, so internal work never needs to interrupt them.
"""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    INTERNAL = "internal"
    RESERVED = "reserved"
    ON_DEMAND = "on_demand"
    SPOT = "spot"

    @property
    def rank(self) -> int:
        """Higher runs first."""
        return _RANK[self]

    @property
    def external(self) -> bool:
        return self is not Tier.INTERNAL

    @property
    def preemptible(self) -> bool:
        """Whether any other work may take this tier's GPUs (with notice)."""
        return self is Tier.SPOT


_RANK = {Tier.INTERNAL: 3, Tier.RESERVED: 2, Tier.ON_DEMAND: 1, Tier.SPOT: 0}

EXTERNAL_TIERS = (Tier.RESERVED, Tier.ON_DEMAND, Tier.SPOT)
"""The tiers sold to tenants, in the order the catalog lists them."""


def may_preempt(claimant: Tier, holder: Tier) -> bool:
    """True when work of tier ``claimant`` may take GPUs held by work of tier ``holder``."""
    return holder.preemptible and claimant.rank > holder.rank
