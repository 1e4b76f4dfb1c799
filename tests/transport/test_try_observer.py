"""The per-try observer: one done hook per try reports load and metrics, once, alike for
HTTP and gRPC; shadows report load only; typed gRPC call options never leak a change."""

from __future__ import annotations

import grpc
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from meshlib.balancing.picker import Outcome
from meshlib.observability.metrics import ClientMetrics
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_routing import rpc_status
from meshlib.transport.outcome import grpc_outcome, http_error_outcome, http_outcome
from meshlib.transport.try_observer import TryObserver
from meshlib.xds_client.resources import Endpoint

from .recording import Recorder

ENDPOINT = Endpoint("10.0.0.1", 8080)


def _http_observer(
    recorder: Recorder, metrics: ClientMetrics | None, records: list[tuple[object, ...]]
) -> TryObserver[str, int]:
    def record(
        elapsed: float,
        call: str,
        cluster: str,
        endpoint: Endpoint,
        status: int | None,
        error: BaseException | None,
    ) -> None:
        assert elapsed >= 0
        records.append((call, cluster, endpoint.authority, status, type(error).__name__))

    return TryObserver(
        recorder,
        "c1",
        outcome_of=lambda status, _details: http_outcome(status),
        error_outcome=http_error_outcome,
        metrics=metrics,
        record=record if metrics is not None else None,
    )


def _recording_metrics() -> ClientMetrics:
    return ClientMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def test_each_try_is_reported_once_to_the_load_reporter_and_the_metrics() -> None:
    recorder, records = Recorder(), []
    observer = _http_observer(recorder, _recording_metrics(), records)

    observer.start(ENDPOINT, "GET").finished(503)
    observer.start(ENDPOINT, "POST").failed(ConnectionError("reset"))

    assert recorder.started == ["10.0.0.1:8080", "10.0.0.1:8080"]
    assert recorder.finished == [
        ("10.0.0.1:8080", Outcome.GATEWAY_ERROR),
        ("10.0.0.1:8080", Outcome.SUCCESS),  # not an httpx transport error: not the endpoint's
    ]
    assert records == [
        ("GET", "c1", "10.0.0.1:8080", 503, "NoneType"),
        ("POST", "c1", "10.0.0.1:8080", None, "ConnectionError"),
    ]


def test_a_shadow_observer_reports_load_but_records_no_metrics() -> None:
    recorder, records = Recorder(), []
    observer = _http_observer(recorder, None, records)

    report = observer.start(ENDPOINT, "GET")
    assert report.span is None  # the trace span's seat, empty until tracing binds one
    report.finished(200)

    assert recorder.finished == [("10.0.0.1:8080", Outcome.SUCCESS)]
    assert records == []


def test_inactive_metrics_skip_the_record_but_not_the_load_report() -> None:
    recorder, records = Recorder(), []
    observer = _http_observer(recorder, ClientMetrics(NoOpMeterProvider()), records)

    observer.start(ENDPOINT, "GET").finished(200)

    assert recorder.finished == [("10.0.0.1:8080", Outcome.SUCCESS)]
    assert records == []


def test_a_grpc_try_that_raised_reads_its_status_or_counts_as_cancelled() -> None:
    class Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "failed to connect to all addresses"

    status = rpc_status(Failed())
    assert status == (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert grpc_outcome(*status) is Outcome.LOCAL_ORIGIN_FAILURE
    assert rpc_status(grpc.RpcError()) == (None, None)
    assert rpc_status(KeyboardInterrupt()) == (grpc.StatusCode.CANCELLED, None)


def test_call_options_are_replaced_never_changed() -> None:
    options = CallOptions(timeout=2.0, metadata=(("k", "v"),))
    tried = options._replace(timeout=0.5)
    seen: dict[str, object] = {}

    def send(request: bytes, **kwargs: object) -> bytes:
        seen.update(kwargs)
        return request

    assert tried.send(send, b"x") == b"x"
    assert seen == {
        "timeout": 0.5,
        "metadata": (("k", "v"),),
        "credentials": None,
        "wait_for_ready": None,
        "compression": None,
    }
    assert options.timeout == 2.0


def test_the_usual_status_reports_its_quick_outcome_and_others_are_looked_up() -> None:
    recorder = Recorder()
    decided: list[object] = []

    def outcome_of(status: grpc.StatusCode | None, details: str | None) -> Outcome:
        decided.append(status)
        return grpc_outcome(status, details)

    observer: TryObserver[str, grpc.StatusCode | None] = TryObserver(
        recorder,
        "c1",
        outcome_of=outcome_of,
        error_outcome=http_error_outcome,
        quick={grpc.StatusCode.OK: Outcome.SUCCESS},
        usual=grpc.StatusCode.OK,
    )

    observer.start(ENDPOINT, "/svc/M").finished(grpc.StatusCode.OK)
    observer.start(ENDPOINT, "/svc/M").finished(grpc.StatusCode.UNAVAILABLE, "reset")

    assert recorder.finished == [
        ("10.0.0.1:8080", Outcome.SUCCESS),
        ("10.0.0.1:8080", grpc_outcome(grpc.StatusCode.UNAVAILABLE, "reset")),
    ]
    assert decided == [grpc.StatusCode.UNAVAILABLE]  # only the status the map lacks
