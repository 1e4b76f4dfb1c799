"""Every read of an OpenTelemetry API internal, each with its feature detection.

meshlib records through the OpenTelemetry API only, but one question the API
does not answer cheaply is asked per request while no SDK is installed: *is a
real global meter provider set yet?* (``metrics.get_meter_provider()`` reads the
environment on every call, which costs more than recording.) So it is answered
here by reading the API's private global, when this API version keeps it where
we expect (``opentelemetry.metrics._internal._METER_PROVIDER``), and through the
public getter otherwise. Nothing else in meshlib touches OpenTelemetry internals;
tests cover both forms (``tests/unit/test_otel_internals.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from typing import Final

from opentelemetry import metrics

try:  # where the API keeps the global provider (None until one is set)
    from opentelemetry.metrics import _internal as _api_global
except ImportError:  # pragma: no cover - another API layout: the public getter answers
    _api_global = None  # type: ignore[assignment]

#: Whether this API version keeps the global provider where :func:`_set_internal` reads it.
READS_INTERNAL: Final = _api_global is not None and hasattr(_api_global, "_METER_PROVIDER")

#: The class name of the API's placeholder provider (what the getter hands out until
#: a provider is set); compared by name, as the class itself is not public.
_PROXY_CLASS_NAME: Final = "_ProxyMeterProvider"


def is_recording_provider(provider: object | None) -> bool:
    """Whether ``provider`` records: set, not the no-op one, not the API's placeholder."""
    return (
        provider is not None
        and not isinstance(provider, metrics.NoOpMeterProvider)
        and type(provider).__name__ != _PROXY_CLASS_NAME
    )


def _set_internal() -> bool:
    """One attribute read of the API's private global (None, the common answer while
    no SDK is installed, costs no further call)."""
    provider = _api_global._METER_PROVIDER
    return provider is not None and is_recording_provider(provider)


def _set_public() -> bool:
    """The public getter (slower: it consults the environment on each call)."""
    return is_recording_provider(metrics.get_meter_provider())


#: ``global_provider_set()``: whether a recording global meter provider is set.
global_provider_set: Final[Callable[[], bool]] = _set_internal if READS_INTERNAL else _set_public

#: ``provider_first_look()``: None means no global meter provider is set (the common
#: answer while no SDK is installed), anything else means ask :data:`global_provider_set`.
#: A C-level call (the global's read; the fallback never says None), so the per-request
#: check runs no Python frame of its own until a provider is set.
provider_first_look: Final[Callable[[], object | None]] = (
    partial(getattr, _api_global, "_METER_PROVIDER")
    if READS_INTERNAL
    else itertools.repeat(True).__next__
)
