"""The default server policy list, in order, in one readable place.

    rate limit (when given)  ->  inbound (JWT + RBAC, when given)  ->  deadline

A cheap refusal first, so an overloaded server spends nothing on a call it
drops; then authentication and authorization from the workload's inbound
listener (:mod:`.inbound_policy`); metrics and tracing go outermost when they land.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshlib.resilience.rate_limit import TokenBucket
from meshlib.serving.deadline_policy import DeadlinePolicy
from meshlib.serving.decision import ServerPolicy
from meshlib.serving.inbound_policy import InboundPolicy
from meshlib.serving.rate_limit_policy import RateLimitPolicy


def server_policies(
    *, rate_limit: TokenBucket | None = None, inbound: InboundPolicy | None = None
) -> tuple[ServerPolicy, ...]:
    """The policies a mesh server applies, in order."""
    policies: list[ServerPolicy] = []
    if rate_limit is not None:
        policies.append(RateLimitPolicy(rate_limit))
    if inbound is not None:
        policies.append(inbound)
    policies.append(DeadlinePolicy())
    return tuple(policies)


def policy_list(
    policies: Sequence[ServerPolicy] | None, rate_limit: TokenBucket | None
) -> tuple[ServerPolicy, ...]:
    """What an adapter applies: ``policies`` as given, or the default list (with
    ``rate_limit``); both at once is an error."""
    if policies is None:
        return server_policies(rate_limit=rate_limit)
    if rate_limit is not None:
        raise ValueError(
            "give rate_limit= or policies=, not both (add RateLimitPolicy to the list)"
        )
    chosen = tuple(policies)
    for index, policy in enumerate(chosen):
        if not callable(getattr(policy, "check", None)) or not hasattr(policy, "name"):
            raise TypeError(
                f"policies[{index}]: {policy!r} is not a server policy "
                "(it needs a name and a check(call) method)"
            )
    return chosen
