"""The one module that reads OpenTelemetry internals: both its forms answer alike.

The internal read (this API version) and the public fallback (an API that keeps
its global elsewhere) must both say "no recording provider" until an SDK
provider is set and "set" after, and ``ClientMetrics.active`` must follow either.
The global provider can be set only once per process: each case runs in a
fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

COMMON = """
import sys

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider

from meshlib.observability import _otel_internals as otel
from meshlib.observability.metrics import ClientMetrics

recorder = ClientMetrics()
forms = {"internal": otel._set_internal, "public": otel._set_public}
assert not otel.global_provider_set() and not recorder.active
assert not otel._set_public()
assert otel.provider_first_look() is (None if otel.READS_INTERNAL else True)
frames = []
sys.setprofile(lambda frame, event, arg: event == "call" and frames.append(frame.f_code))
unset = recorder.active
sys.setprofile(None)
# No provider yet: the per-request check is the property's own frame, nothing more.
assert not unset and (len(frames) == 1 or not otel.READS_INTERNAL), frames
metrics.set_meter_provider(MeterProvider())
assert otel.provider_first_look() is not None
assert otel.global_provider_set() and recorder.active
assert otel._set_public()
assert not otel.is_recording_provider(metrics.NoOpMeterProvider())
assert not otel.is_recording_provider(None)
"""

INTERNAL = """
import opentelemetry.metrics._internal  # noqa: F401  (this API keeps its global there)
"""

FALLBACK = """
# An API version without the private global: hide it while meshlib detects the layout.
import opentelemetry.metrics._internal as api_internal
saved = api_internal._METER_PROVIDER
del api_internal._METER_PROVIDER
import meshlib.observability._otel_internals as detected
assert not detected.READS_INTERNAL
assert detected.global_provider_set is detected._set_public
api_internal._METER_PROVIDER = saved
"""


def _run(prelude: str, check: str) -> None:
    script = textwrap.dedent(prelude) + textwrap.dedent(COMMON) + textwrap.dedent(check)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_internal_read_answers_as_the_public_getter() -> None:
    _run(
        INTERNAL,
        """
        assert otel.READS_INTERNAL and otel.global_provider_set is otel._set_internal
        assert otel._set_internal()
        assert otel.provider_first_look() is metrics.get_meter_provider()
        print("ok")
        """,
    )


def test_without_the_internal_the_public_getter_answers() -> None:
    _run(
        FALLBACK,
        """
        assert otel.global_provider_set is otel._set_public
        assert otel.provider_first_look() is True  # never says "unset": the getter decides
        print("ok")
        """,
    )
