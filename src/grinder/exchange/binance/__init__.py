"""Binance USDⓈ-M futures adapter pieces.

``parsing`` turns decoded wire JSON (REST bodies and user-data stream events)
into the core's domain types; ``errors`` maps Binance error responses onto the
``ExchangeError`` hierarchy of :mod:`grinder.exchange.port`.
"""
