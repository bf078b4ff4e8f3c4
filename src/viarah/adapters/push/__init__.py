"""Web Push adapter: aes128gcm encryption (RFC 8291), VAPID (RFC 8292), HTTP push (RFC 8030).

The container builds one :class:`WebPushSender` from the ``WEBPUSH_VAPID_*`` settings and
``VIA_RAH_OUTBOUND_ALLOWLIST``; it implements the domain's ``PushSender`` port.
"""

from viarah.adapters.push.webpush import (
    PreparedRequest,
    WebPushSender,
    crypto_floor_operation,
    parse_retry_after,
)

__all__ = ["PreparedRequest", "WebPushSender", "crypto_floor_operation", "parse_retry_after"]
