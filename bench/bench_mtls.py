"""The overhead benchmark's mTLS groups, first call and rotation.

Every client of a group holds the same workload certificate, issued by the
stack's control plane for ``bench-client``: meshlib's ``Mesh(token=...)`` gets
it; the bare clients and grpcio's xDS client read it from files (as
``meshctl agent`` writes them; grpcio through ``meshctl bootstrap --cert-dir``).
The servers require a client certificate from the mesh root.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import grpc.experimental
import httpx
from bench_clients import (
    BARE,
    BARE_LIMITS,
    ECHO_METHOD,
    PAYLOAD,
    AsyncVariant,
    SyncVariant,
    grpc_async_variant,
    grpc_sync_variant,
    http_async_variant,
    http_sync_variant,
)
from bench_stack import (
    GRPC_MTLS_HOST,
    GRPC_PORT,
    HTTP_HOST,
    HTTP_MTLS_HOST,
    HTTP_PORT,
    START_TIMEOUT_S,
    Stack,
    console_script,
    write_cert_dir,
)

import meshlib
from meshlib.security import WorkloadCertificate, renew_certificate

MTLS_HTTP_URL = f"http://{HTTP_MTLS_HOST}:{HTTP_PORT}/ping"  # meshlib: mTLS at connect
MTLS_GRPC_TARGET = f"xds:///{GRPC_MTLS_HOST}:{GRPC_PORT}"
FIRST_CALL_ROUNDS = 3
ROTATION_WINDOW_S = 2.0  # steady calls before and after the rotation


@dataclass(frozen=True)
class ClientCerts:
    """The mTLS mesh's certificate in files, and a grpcio bootstrap over them."""

    certificate: WorkloadCertificate
    cert_dir: Path
    bootstrap: Path  # secure xDS address, tls channel_creds, certificate_providers.default


def client_certs(stack: Stack, mesh: meshlib.Mesh) -> ClientCerts:
    assert mesh.certificates is not None, "the mTLS mesh needs a token"
    certificate = mesh.certificates.current()
    cert_dir = write_cert_dir(stack.workdir / "certs-client", certificate)
    bootstrap = stack.workdir / "bootstrap-mtls.json"
    subprocess.run(
        [console_script("meshctl"), "bootstrap", "--xds-address", stack.secure_xds_address,
         "--node-id", "bench-grpcio", "--cert-dir", str(cert_dir), "-o", str(bootstrap)],
        check=True, capture_output=True, timeout=START_TIMEOUT_S,
    )  # fmt: skip
    return ClientCerts(certificate, cert_dir, bootstrap)


def http_context(certs: ClientCerts) -> ssl.SSLContext:
    """The workload certificate, the mesh root; no host name check (the server's
    certificate names its SPIFFE ID, not 127.0.0.1), which meshlib does check."""
    context = ssl.create_default_context(cafile=certs.cert_dir / "root-cert.pem")
    context.load_cert_chain(certs.cert_dir / "cert-chain.pem", certs.cert_dir / "key.pem")
    context.check_hostname = False
    return context


def _bare_grpc_args(stack: Stack, certs: ClientCerts) -> dict[str, Any]:
    """A secure channel expecting the server's identity DNS SAN, as meshlib's does."""
    credentials = grpc.ssl_channel_credentials(
        certs.certificate.root_pem, certs.certificate.key_pem, certs.certificate.chain_pem
    )
    options = [("grpc.ssl_target_name_override", stack.server_identity.dns_name)]
    return {
        "target": f"127.0.0.1:{stack.mtls_grpc_port}",
        "credentials": credentials,
        "options": options,
    }


def _xds_credentials() -> grpc.ChannelCredentials:
    plaintext = grpc.experimental.insecure_channel_credentials()  # type: ignore[no-untyped-call]
    return grpc.xds_channel_credentials(plaintext)


def http_sync_mtls_variants(
    stack: Stack, mesh: meshlib.Mesh, certs: ClientCerts
) -> list[SyncVariant]:
    group = "httpx sync mtls"
    bare = httpx.Client(verify=http_context(certs), limits=BARE_LIMITS)
    return [
        http_sync_variant(group, BARE, bare, f"https://127.0.0.1:{stack.mtls_http_port}/ping"),
        http_sync_variant(group, "meshlib", mesh.http_client(), MTLS_HTTP_URL),
    ]


def http_async_mtls_variants(
    stack: Stack, mesh: meshlib.Mesh, certs: ClientCerts
) -> list[AsyncVariant]:
    group = "httpx async mtls"
    bare = httpx.AsyncClient(verify=http_context(certs), limits=BARE_LIMITS)
    return [
        http_async_variant(group, BARE, bare, f"https://127.0.0.1:{stack.mtls_http_port}/ping"),
        http_async_variant(group, "meshlib", mesh.async_http_client(), MTLS_HTTP_URL),
    ]


def grpc_sync_mtls_variants(
    stack: Stack, mesh: meshlib.Mesh, certs: ClientCerts
) -> list[SyncVariant]:
    group = "grpc sync mtls"
    return [
        grpc_sync_variant(group, BARE, grpc.secure_channel(**_bare_grpc_args(stack, certs))),
        grpc_sync_variant(group, "meshlib", mesh.grpc_channel(MTLS_GRPC_TARGET)),
        grpc_sync_variant(
            group, "grpcio xds", grpc.secure_channel(MTLS_GRPC_TARGET, _xds_credentials())
        ),
    ]


def grpc_async_mtls_variants(
    stack: Stack, mesh: meshlib.Mesh, certs: ClientCerts
) -> list[AsyncVariant]:
    group = "grpc aio mtls"
    return [
        grpc_async_variant(group, BARE, grpc.aio.secure_channel(**_bare_grpc_args(stack, certs))),
        grpc_async_variant(group, "meshlib", mesh.aio_grpc_channel(MTLS_GRPC_TARGET)),
        grpc_async_variant(
            group, "grpcio xds", grpc.aio.secure_channel(MTLS_GRPC_TARGET, _xds_credentials())
        ),
    ]


# --- the time to a first call ------------------------------------------------------


@dataclass(frozen=True)
class FirstCall:
    what: str
    construct_ms: float  # Mesh(...) returned (with a token: the certificate is in hand)
    total_ms: float  # the first response arrived


def _first_calls(
    stack: Stack, token: str | None, call: Callable[[meshlib.Mesh], object]
) -> list[tuple[float, float]]:
    timings = []
    for _ in range(FIRST_CALL_ROUNDS):
        started = time.perf_counter()
        with meshlib.Mesh(str(stack.bootstrap), token=token, ready_timeout_s=15) as mesh:
            built = time.perf_counter()
            call(mesh)
            answered = time.perf_counter()
        timings.append(((built - started) * 1e3, (answered - started) * 1e3))
    return timings


def _http_get(url: str) -> Callable[[meshlib.Mesh], object]:
    def call(mesh: meshlib.Mesh) -> object:
        with mesh.http_client() as client:
            return client.get(url).raise_for_status()

    return call


def _grpc_ping(target: str) -> Callable[[meshlib.Mesh], object]:
    def call(mesh: meshlib.Mesh) -> object:
        channel = mesh.grpc_channel(target)
        try:
            return channel.unary_unary(ECHO_METHOD)(PAYLOAD, timeout=15)
        finally:
            channel.close()

    return call


def time_to_first_call(stack: Stack) -> list[FirstCall]:
    """A new process's path to its first response: ``Mesh(...)`` (with a token: key,
    CSR, certificate, then xDS over TLS) and the first call, median of a few rounds."""
    cases = [
        ("httpx, Mesh() plaintext", None, _http_get(f"http://{HTTP_HOST}:{HTTP_PORT}/ping")),
        ("httpx, Mesh(token=) mTLS", stack.client_token, _http_get(MTLS_HTTP_URL)),
        ("grpc, Mesh() plaintext", None, _grpc_ping(f"xds:///bench-grpc:{GRPC_PORT}")),
        ("grpc, Mesh(token=) mTLS", stack.client_token, _grpc_ping(MTLS_GRPC_TARGET)),
    ]
    results = []
    for what, token, call in cases:
        timings = _first_calls(stack, token, call)
        results.append(
            FirstCall(
                what,
                round(statistics.median(t[0] for t in timings), 1),
                round(statistics.median(t[1] for t in timings), 1),
            )
        )
    return results


# --- one rotation ------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    calls_before: int
    calls_after: int
    failed: int
    replace_ms: float  # keeper.replace(): every subscriber told (snapshots rebuilt)
    median_before_ms: float
    median_after_ms: float
    slowest_after_ms: float  # includes the new handshakes
    old_serial: str
    new_serial: str


@dataclass
class _Caller:
    call: Callable[[], object]
    samples: list[tuple[float, float]]  # (start, latency ms)
    failed: int = 0


def _steady(caller: _Caller, stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            caller.call()
        except Exception:  # counted: a rotation must not fail a call
            caller.failed += 1
            continue
        caller.samples.append((started, (time.perf_counter() - started) * 1e3))


def rotation_cost(stack: Stack, mesh: meshlib.Mesh) -> Rotation:
    """Steady sequential httpx and gRPC calls (meshlib, mTLS) on two threads; halfway,
    the renewal meshlib's keeper does at half the lifetime, done now: a new certificate
    from the control plane (proven by the current one), then ``replace``."""
    keeper = mesh.certificates
    assert keeper is not None
    channel = mesh.grpc_channel(MTLS_GRPC_TARGET)
    ping = channel.unary_unary(ECHO_METHOD)
    with mesh.http_client() as http, _joined_threads() as start:
        callers = [
            _Caller(lambda: http.get(MTLS_HTTP_URL).raise_for_status(), []),
            _Caller(lambda: ping(PAYLOAD, timeout=10), []),
        ]
        stop = threading.Event()
        for caller in callers:
            start(functools.partial(_steady, caller, stop))
        time.sleep(ROTATION_WINDOW_S)
        old = keeper.current()
        new = renew_certificate(stack.secure_xds_address, old)
        rotated = time.perf_counter()
        keeper.replace(new)
        replace_ms = (time.perf_counter() - rotated) * 1e3
        time.sleep(ROTATION_WINDOW_S)
        stop.set()
    channel.close()
    before = [ms for c in callers for t, ms in c.samples if t < rotated]
    after = [ms for c in callers for t, ms in c.samples if t >= rotated]
    return Rotation(
        calls_before=len(before),
        calls_after=len(after),
        failed=sum(c.failed for c in callers),
        replace_ms=round(replace_ms, 2),
        median_before_ms=round(statistics.median(before), 3),
        median_after_ms=round(statistics.median(after), 3),
        slowest_after_ms=round(max(after), 3),
        old_serial=format(old.serial, "x"),
        new_serial=format(new.serial, "x"),
    )


@contextlib.contextmanager
def _joined_threads() -> Iterator[Callable[[Callable[[], None]], None]]:
    threads: list[threading.Thread] = []

    def start(target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append(thread)

    try:
        yield start
    finally:
        for thread in threads:
            thread.join(timeout=15)


def print_extras(first_calls: list[FirstCall], rotation: Rotation) -> None:
    print(f"\ntime to first call (new Mesh each time, median of {FIRST_CALL_ROUNDS}):")
    print(f"  {'':<26} {'Mesh() ms':>10} {'first response ms':>18}")
    for first in first_calls:
        print(f"  {first.what:<26} {first.construct_ms:>10.1f} {first.total_ms:>18.1f}")
    print(
        f"\none rotation under steady meshlib mTLS calls (httpx + gRPC sync, "
        f"{ROTATION_WINDOW_S:.0f} s before and after):"
        f"\n  calls {rotation.calls_before} before, {rotation.calls_after} after, "
        f"failed {rotation.failed}; replace() {rotation.replace_ms:.2f} ms; median "
        f"{rotation.median_before_ms:.3f} ms before, {rotation.median_after_ms:.3f} ms after; "
        f"slowest after {rotation.slowest_after_ms:.3f} ms"
        f"\n  serial {rotation.old_serial[:12]}... -> {rotation.new_serial[:12]}..."
    )
