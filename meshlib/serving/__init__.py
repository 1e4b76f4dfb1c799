"""Server-side policies, written once for gRPC servers and ASGI apps.

Every incoming call meets one ordered list of policies before its handler runs.
A policy sees the call (:class:`~meshlib.serving.call.IncomingCall`: protocol,
method, path, headers or metadata, peer, deadline) and answers :data:`PASS`,
:class:`Deny` (a status for both protocols) or :class:`Wrap` (a context entered
around the handler). The adapters only translate:

- :mod:`meshlib.transport.grpc_server`: ``grpc.server`` and ``grpc.aio`` interceptors
- :mod:`meshlib.transport.asgi_middleware`: the ASGI middleware (``meshlib.asgi``)

Map: :mod:`.call` (what a policy sees), :mod:`.decision` (what it answers and the
one loop that applies a list), :mod:`.deadline_policy`, :mod:`.rate_limit_policy`,
:mod:`.stack` (the default list, in order). Adding a policy (authentication,
authorization, metrics, tracing) is one module with a ``check`` method and one
line in :mod:`.stack`.
"""

from __future__ import annotations

from meshlib.serving.call import IncomingCall
from meshlib.serving.deadline_policy import DeadlinePolicy
from meshlib.serving.decision import PASS, Admitted, Decision, Deny, Pass, ServerPolicy, Wrap, admit
from meshlib.serving.rate_limit_policy import RateLimitPolicy
from meshlib.serving.stack import server_policies

__all__ = [
    "PASS",
    "Admitted",
    "DeadlinePolicy",
    "Decision",
    "Deny",
    "IncomingCall",
    "Pass",
    "RateLimitPolicy",
    "ServerPolicy",
    "Wrap",
    "admit",
    "server_policies",
]
