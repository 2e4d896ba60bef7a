"""The webhooks' signatures: Shopify's ``X-Shopify-Hmac-Sha256`` and the ePOS signature."""

from __future__ import annotations

import base64
import hashlib
import hmac

# --- signatures ------------------------------------------------------------------------------------------------


def sign_body(raw_body: bytes, secret: str) -> str:
    """``base64(HMAC-SHA256(secret, raw_body))``: the Shopify scheme, also used by our ePOS contract.

    Example:
        >>> sign_body(b"{}", "s3cret")
        'rb3hzkDInBQhVofV12Kkffbfrvz61h4uhnGP/ISYVxs='
    """
    return base64.b64encode(hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()).decode()


def verify_shopify_hmac(raw_body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``X-Shopify-Hmac-Sha256`` (``header``) signs ``raw_body`` with the shop's ``secret``.

    Computed on the raw bytes (re-serialised JSON would differ) and compared in constant time (a
    timing side channel would let an attacker forge a signature byte by byte). A missing header is False.

    Example:
        >>> verify_shopify_hmac(b"{}", sign_body(b"{}", "k"), "k"), verify_shopify_hmac(b"{} ", sign_body(b"{}", "k"), "k")
        (True, False)
    """
    if not header:
        return False
    expected = sign_body(raw_body, secret).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def verify_epos_signature(raw_body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``X-Epos-Signature`` signs ``raw_body``: the same scheme as Shopify's (body only, not the
    URL as Square does, which breaks behind proxies — docs/intake-api.md §2.4)."""
    return verify_shopify_hmac(raw_body, header, secret)
