"""Request signing of the venues' private REST APIs (pure functions, no I/O).

* **Binance** spot (``SIGNED`` endpoints): ``signature`` = lowercase hex HMAC-SHA256, keyed by the
  API secret, of the *total params*: the query string concatenated with the form-encoded body,
  exactly as sent. The API key travels in the ``X-MBX-APIKEY`` header; ``timestamp`` (ms) and
  ``recvWindow`` are ordinary signed parameters.
* **Kraken** spot REST: ``API-Sign`` = base64 of HMAC-SHA512, keyed by the *base64-decoded*
  secret, of ``uri_path + SHA256(nonce + post_data)`` where ``uri_path`` starts at
  ``/0/private`` and ``post_data`` is the form-encoded body (which contains ``nonce`` too). The
  key travels in ``API-Key``; the nonce must increase for each key.
* **Coinbase** Advanced Trade with a *legacy* API key (HMAC): ``CB-ACCESS-SIGN`` = lowercase hex
  HMAC-SHA256, keyed by the secret as given, of ``timestamp + METHOD + request_path + body``
  (``request_path`` without host and without the query string, ``body`` empty for GET), with
  ``CB-ACCESS-KEY`` and ``CB-ACCESS-TIMESTAMP`` (Unix seconds, accepted within +/-30 s).
  Coinbase's current scheme is an ES256 JWT per request from a CDP key; it needs an ECDSA
  implementation that is not a dependency of this project (no ``cryptography`` in the lock), so
  the documented legacy scheme is what the gateway speaks.

The unit tests pin the Binance and Kraken functions to the vectors published in the venues'
documentation; the fake venues verify signatures with their own code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import urlencode

__all__ = [
    "binance_signature",
    "coinbase_signature",
    "decimal_text",
    "form",
    "kraken_signature",
]


def form(params: Mapping[str, str | int]) -> str:
    """``application/x-www-form-urlencoded`` text of ``params`` in the given order."""
    return urlencode([(k, str(v)) for k, v in params.items()])


def decimal_text(value: Decimal) -> str:
    """A decimal as plain text (never exponent notation): ``Decimal('1E-8')`` -> ``0.00000001``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def binance_signature(secret: str, total_params: str) -> str:
    """Hex HMAC-SHA256 of ``total_params`` (query string + body, as sent)."""
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


def kraken_signature(secret_b64: str, uri_path: str, nonce: str, post_data: str) -> str:
    """Base64 HMAC-SHA512 of ``uri_path + SHA256(nonce + post_data)`` keyed by the decoded secret.

    Raises :class:`ValueError` if the secret is not valid base64.
    """
    key = base64.b64decode(secret_b64, validate=True)
    digest = hashlib.sha256((nonce + post_data).encode()).digest()
    mac = hmac.new(key, uri_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def coinbase_signature(secret: str, timestamp: str, method: str, path: str, body: str) -> str:
    """Hex HMAC-SHA256 of ``timestamp + METHOD + path + body`` (legacy Advanced Trade keys)."""
    message = f"{timestamp}{method.upper()}{path}{body}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
