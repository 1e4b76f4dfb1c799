"""Client metrics skip work while no SDK is installed, and record once one is set.

The global meter provider can be set only once per process, so each case runs
in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from meshlib.observability.metrics import RPC_DURATION, ClientMetrics, client_metrics

    recorder = client_metrics()
    assert not recorder.active, "no SDK yet: nothing to record"
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    assert recorder.active, "the SDK provider was set later: record"
    recorder.record_rpc(
        0.01, full_method="/test.Echo/Unary", status_code=0, error_type=None,
        service="echo:50051", cluster="main", endpoint="127.0.0.1:1",
        server_address="echo", server_port=50051,
    )
    data = reader.get_metrics_data()
    names = [m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    assert RPC_DURATION in names, names
    assert not ClientMetrics(metrics.NoOpMeterProvider()).active
    print("ok")
    """
)


def test_metrics_turn_on_when_an_sdk_provider_is_set_later() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
