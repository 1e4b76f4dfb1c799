"""A local rate limit on the server: an empty token bucket refuses the call.

As Envoy's local_ratelimit filter answers: 429 ``local_rate_limited`` (or the
bucket's status, with its response headers) for HTTP, UNAVAILABLE (or
RESOURCE_EXHAUSTED when the bucket says so) for gRPC. The refusal is logged and
counted by the bucket.
"""

from __future__ import annotations

from meshlib.resilience.rate_limit import TokenBucket
from meshlib.serving.call import IncomingCall
from meshlib.serving.decision import PASS, Decision, Deny

#: The body Envoy's local rate limit answers with.
ENVOY_RATE_LIMITED_BODY = "local_rate_limited"


class RateLimitPolicy:
    """Takes one token per call from ``bucket``; refuses the call when it is empty."""

    name = "rate_limit"

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket

    def check(self, call: IncomingCall) -> Decision:
        if self.bucket.try_acquire():
            return PASS
        return Deny.from_error(self.bucket.rejection(), body=ENVOY_RATE_LIMITED_BODY)

    def __repr__(self) -> str:
        return f"RateLimitPolicy({self.bucket!r})"
