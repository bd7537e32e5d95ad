"""User-data events into the observed store (the core's observed-state updates)."""

from __future__ import annotations

from dataclasses import replace

from grinder.exchange.binance.parsing import AccountUpdate, AlgoUpdate, OrderUpdate, UserEvent
from grinder.state.observed import ObservedStore


def apply_user_event(store: ObservedStore, event: UserEvent) -> bool:
    """Apply one parsed event; returns whether it changed the store.

    Order and algo updates go through the store's ordering rules (a stale or
    duplicated event changes nothing). Account updates carry the positions that
    changed, without a mark price: the last known mark price is kept.
    """
    if isinstance(event, OrderUpdate | AlgoUpdate):
        return store.apply_order(event.order)
    if isinstance(event, AccountUpdate):
        changed = False
        for pos in event.positions:
            current = store.get_position(pos.key)
            if pos.mark_price is None and current is not None and current.mark_price is not None:
                pos = replace(pos, mark_price=current.mark_price)
            changed = store.apply_position(pos) or changed
        return changed
    return False
