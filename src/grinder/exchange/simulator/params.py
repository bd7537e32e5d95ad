"""Request parameters, read the way Binance reads them.

Names are matched case-insensitively (``reduceOnly`` and ``reduceonly`` are the
same parameter, as on the venue); an empty value counts as not sent. Every
malformed value raises the ``ErrorReply`` the venue would return.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation

from grinder.exchange.simulator import errors as E

_DECIMAL_RE = re.compile(E.DECIMAL_RANGE)
_LONG_RE = re.compile(E.LONG_RANGE)
_CLIENT_ID_RE = re.compile(E.CLIENT_ID_RANGE)


class Params:
    """The merged query-string and form-body parameters of one request."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._values: dict[str, str] = {}
        for key, value in pairs:
            self._values[key.lower()] = value

    @classmethod
    def of(cls, **values: object) -> Params:
        return cls((k, str(v)) for k, v in values.items() if v is not None)

    def names(self) -> list[str]:
        return list(self._values)

    def sent(self, name: str) -> bool:
        """The parameter is present with a non-empty value."""
        return bool(self._values.get(name.lower(), ""))

    def present(self, name: str) -> bool:
        """The parameter is present, even empty."""
        return name.lower() in self._values

    def raw(self, name: str) -> str | None:
        value = self._values.get(name.lower())
        return value if value else None

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None and required:
            raise E.mandatory(name)
        return value

    def required_text(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            raise E.mandatory(name)
        return value

    def enum(
        self,
        name: str,
        allowed: Sequence[str],
        error: E.ErrorReply | None = None,
        *,
        required: bool = False,
        default: str | None = None,
    ) -> str | None:
        value = self.text(name, required=required)
        if value is None:
            return default
        if value not in allowed:
            raise error if error is not None else E.invalid_value(name)
        return value

    def decimal(self, name: str, *, required: bool = False) -> Decimal | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        if not _DECIMAL_RE.match(value):
            raise E.illegal_chars(name, E.DECIMAL_RANGE)
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the regex rules this out
            raise E.illegal_chars(name, E.DECIMAL_RANGE) from exc

    def long(self, name: str, *, required: bool = False) -> int | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        if not _LONG_RE.match(value):
            raise E.illegal_chars(name, E.LONG_RANGE)
        return int(value)

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        raise E.invalid_value(name)

    def limit(self, default: int, maximum: int, name: str = "limit") -> int:
        """A row count: ``default`` when not sent, 1..``maximum`` (else -1130)."""
        value = self.long(name)
        if value is None:
            return default
        if not 1 <= value <= maximum:
            raise E.invalid_value(name)
        return value

    def window(self, max_span_ms: int | None = None) -> tuple[int | None, int | None]:
        """``startTime`` and ``endTime`` (ms, inclusive): -1023 when start > end; -1127 when
        they are further apart than ``max_span_ms``."""
        start = self.long("startTime")
        end = self.long("endTime")
        if start is not None and end is not None:
            if start > end:
                raise E.err(E.START_AFTER_END)
            if max_span_ms is not None and end - start > max_span_ms:
                raise E.more_than_hours(max_span_ms // 3_600_000)
        return start, end

    def client_id(self, name: str) -> str | None:
        """A client order id: ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``."""
        value = self.raw(name)
        if value is None:
            return None
        if len(value) > 36:
            raise E.err(E.CLIENT_ID_INVALID)
        if not _CLIENT_ID_RE.match(value):
            raise E.illegal_chars(name, E.CLIENT_ID_RANGE)
        return value


def valid_client_id(value: str) -> bool:
    return bool(_CLIENT_ID_RE.match(value))
