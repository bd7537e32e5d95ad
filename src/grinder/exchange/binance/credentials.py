"""Where the client's identity comes from: the venues' URLs, the API key and secret (from
the environment or files, masked in every output), and the HMAC-SHA256 signature."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from grinder.reconcile.config import ConfigError
from grinder.redaction import register_secret


@dataclass(frozen=True)
class Venue:
    name: str
    rest_url: str
    ws_url: str


VENUES: dict[str, Venue] = {
    "mainnet": Venue("mainnet", "https://fapi.binance.com", "wss://fstream.binance.com"),
    "testnet": Venue(
        "testnet", "https://testnet.binancefuture.com", "wss://fstream.binancefuture.com"
    ),
}


@dataclass(frozen=True)
class Credentials:
    """An API key and secret. ``repr`` shows neither."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(api_key=…{self.api_key[-4:]})" if self.api_key else "Credentials()"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, prefix: str = "BINANCE", purpose: str = ""
    ) -> Credentials:
        """``{prefix}_API_KEY``/``{prefix}_API_SECRET`` or their ``…_FILE`` variants."""
        src = os.environ if env is None else env
        return cls(
            api_key=_secret(src, f"{prefix}_API_KEY", purpose),
            api_secret=_secret(src, f"{prefix}_API_SECRET", purpose),
        )


def _secret(env: Mapping[str, str], name: str, purpose: str) -> str:
    direct = env.get(name)
    path = env.get(f"{name}_FILE")
    why = f" ({purpose})" if purpose else ""
    if direct and path:
        raise ConfigError(f"{name} and {name}_FILE are both set; set one{why}")
    if direct:
        register_secret(direct)  # masked in every output from now on
        return direct.strip()
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}_FILE: {path} is not UTF-8 text") from None
        if not value:
            raise ConfigError(f"{name}_FILE: {path} is empty")
        register_secret(value)
        return value
    raise ConfigError(f"{name} (or {name}_FILE) is not set{why}")


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
