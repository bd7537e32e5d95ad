"""Binance USDⓈ-M futures adapter pieces.

``parsing`` turns decoded wire JSON (REST bodies and user-data stream events)
into the core's domain types; ``errors`` maps Binance error responses onto the
``ExchangeError`` hierarchy of :mod:`grinder.exchange.port` (the codes it knows are
listed in ``error_codes``); ``retry_policy`` decides what the REST client does after a
failed request.
"""
