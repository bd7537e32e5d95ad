"""The indexes the account and the algo book keep of their orders, and made-up client ids.

Open orders are indexed by symbol (then id) and by client order id; an index entry is
dropped only while it still points at the order being removed (a newer order may have
taken the client id since).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TypeVar

_ID_ALPHABET = string.ascii_letters + string.digits
_K = TypeVar("_K")
_V = TypeVar("_V")


def random_client_id(rng: random.Random) -> str:
    """A 22-character id, as the venue makes up for an order sent without one."""
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(22))


def iter_open(by_symbol: Mapping[str, Mapping[int, _V]], symbol: str | None) -> Iterator[_V]:
    """The open entries of one symbol, or of every symbol when ``symbol`` is ``None``."""
    if symbol is not None:
        yield from by_symbol[symbol].values()
        return
    for name in by_symbol:
        yield from by_symbol[name].values()


def drop(index: MutableMapping[_K, _V], key: _K, value: _V) -> None:
    """Remove ``key`` from ``index`` only while it still points at ``value``."""
    if index.get(key) is value:
        del index[key]
