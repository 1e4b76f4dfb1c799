"""An xDS fuzzer: a real ADS server pushes mutated resources at meshlib's XdsClient.

One service (``svc:80`` → route config ``rc`` → cluster ``c1`` → 10.0.0.1:8080)
is the last good config; a ServiceDirectory (as a Mesh has) resolves it through
the client. Each case pushes one response of one type holding a mutated
resource: the baseline itself mutated ("replace"), a mutated seed next to the
baseline ("add"), a duplicate, corrupt bytes or a wrong type. Every push must be
answered (ACK or NACK) within ``answer_bound_s``; while the baseline is not
legitimately replaced, the service must still route to the baseline endpoint
right after the answer; a replaced baseline is pushed back and must route
again (once the client caches it and the watcher callbacks queued before have
run). The config dump must stay JSON-able. Nothing may be logged as a crash,
and the stream must never restart.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from meshlib.errors import MeshError
from meshlib.routing.directory import ServiceDirectory
from meshlib.xds_client import CLUSTER, XdsClient
from meshlib.xds_client.cache import to_jsonable
from meshlib.xds_client.resource_types import RESOURCE_TYPES
from meshlib.xds_client.watchers import CallbackWatcher
from tests.xds_client import xds_builders as b
from tests.xds_client.conftest import bootstrap_for
from tests.xds_client.fake_ads import FakeAds
from tests.xds_client.fuzz_corpus import seeds
from tests.xds_client.fuzz_mutator import MessageMutator, corrupt_bytes, pack

SERVICE = "svc:80"
TYPES = (b.LDS, b.RDS, b.CDS, b.EDS)
SHORT = {b.LDS: "LDS", b.RDS: "RDS", b.CDS: "CDS", b.EDS: "EDS"}
# Events that mean "an exception escaped somewhere it should not have".
CRASH_EVENTS = (
    "xds_client_task_failed",
    "xds_decoder_failed",
    "xds_stream_crashed",
    "xds_watcher_failed",
    "xds_stream_lost",
)


def baseline() -> dict[str, Any]:
    return {
        b.LDS: b.listener(SERVICE, "rc"),
        b.RDS: b.route_config("rc", "c1"),
        b.CDS: b.cluster("c1"),
        b.EDS: b.cluster_load_assignment("c1"),
    }


@dataclass
class FuzzCase:
    index: int
    type_url: str
    mode: str
    resources: list[Any]  # Any messages, in push order
    ops: list[str]
    replaced: bool = False  # the baseline resource itself was mutated
    renamed: bool = False  # ... and now carries another readable name

    def describe(self) -> str:
        return f"case {self.index} {SHORT[self.type_url]} {self.mode}: {'; '.join(self.ops)}"


@dataclass
class FuzzReport:
    cases: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # ACK / NACK
    modes: Counter[str] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)  # type URL -> cases
    restores: int = 0
    slowest_answer_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        modes = ", ".join(f"{k}={v}" for k, v in sorted(self.modes.items()))
        types = ", ".join(f"{SHORT[t]}={self.types[t]}" for t in TYPES)
        return (
            f"{self.cases} cases: {self.answers['ACK']} ACK, {self.answers['NACK']} NACK; "
            f"types {types}; modes {modes}; {self.restores} restores; slowest answer "
            f"{self.slowest_answer_s * 1000:.1f} ms; {len(self.failures)} failures"
        )


class CaseMaker:
    """Draws fuzz cases from one seed (the same seed gives the same cases)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seeds = seeds()
        self.mutator = MessageMutator(self.rng, extra_any=tuple(s[0] for s in self.seeds.values()))

    def make(self, index: int) -> FuzzCase:
        rng = self.rng
        type_url = rng.choice(TYPES)
        base = baseline()
        rtype = RESOURCE_TYPES[type_url]
        roll = rng.random()
        if roll < 0.35:
            msg = base[type_url]
            ops = self.mutator.mutate(msg, self._count())
            case = FuzzCase(index, type_url, "replace", [pack(msg)], ops, replaced=True)
        elif roll < 0.8:
            msg = _copy(rng.choice(self.seeds[type_url]))
            ops = self.mutator.mutate(msg, self._count())
            case = FuzzCase(index, type_url, "add", [pack(base[type_url]), pack(msg)], ops)
        elif roll < 0.87:
            first = pack(base[type_url])
            twin = base[type_url]
            ops = ["duplicate name", *self.mutator.mutate(twin, rng.randint(0, 1))]
            setattr(twin, rtype.name_field, _name(type_url, baseline()[type_url]))
            case = FuzzCase(index, type_url, "duplicate", [first, pack(twin)], ops)
        elif roll < 0.95:
            replaced = rng.random() < 0.5
            source = base[type_url] if replaced else rng.choice(self.seeds[type_url])
            bad = pack(source)
            bad.value = corrupt_bytes(rng, bad.value)
            kept = [] if replaced else [pack(base[type_url])]
            case = FuzzCase(index, type_url, "corrupt", [*kept, bad], ["corrupt bytes"])
            case.replaced = replaced
        else:
            other = rng.choice([t for t in TYPES if t != type_url])
            wrong = pack(rng.choice(self.seeds[other]))
            ops = [f"a {SHORT[other]} resource in a {SHORT[type_url]} response"]
            if rng.random() < 0.5:
                wrapper = discovery_pb2.Resource(name="w", resource=wrong)
                wrong = pack(wrapper)
                ops.append("in a Resource wrapper")
            case = FuzzCase(index, type_url, "wrong-type", [pack(base[type_url]), wrong], ops)
        if rng.random() < 0.1:  # SotW may wrap each resource; the wrapper must not matter
            case.resources = [_wrap(r) for r in case.resources]
            case.ops.append("wrapped")
        if case.replaced:  # absent from an LDS/CDS response under a readable name: deleted
            name = rtype.resource_name(case.resources[-1])
            case.renamed = name is not None and name != _name(type_url, baseline()[type_url])
        return case

    def _count(self) -> int:
        return 1 + min(3, int(self.rng.expovariate(1.2)))


class AdsFuzzer:
    """Runs cases against one XdsClient fed by a real (fake) ADS server."""

    def __init__(self, ads: FakeAds, client: XdsClient, answer_bound_s: float = 1.0) -> None:
        self.ads = ads
        self.client = client
        self.answer_bound_s = answer_bound_s
        self.directory = ServiceDirectory(lambda: client, ready_timeout_s=5.0)
        self.crashes: list[str] = []
        self.report = FuzzReport()

    def start(self) -> None:
        """Serve the baseline until the service routes (the last good config)."""
        self.directory.membership()
        self.directory.service(SERVICE)
        self.ads.wait_for_streams(1)
        self._restore()

    def run(self, maker: CaseMaker, count: int, *, stop_after_failures: int = 5) -> FuzzReport:
        for index in range(count):
            self.run_case(maker.make(index))
            if len(self.report.failures) >= stop_after_failures:
                break
        if self.ads.stream_count() != 1:
            self._fail(f"the ADS stream restarted: {self.ads.stream_count()} streams")
        return self.report

    def run_case(self, case: FuzzCase) -> None:
        report = self.report
        report.cases += 1
        report.modes[case.mode] += 1
        report.types[case.type_url] += 1
        start = self.ads.request_count()
        sent = time.monotonic()
        nonce = self.ads.push(case.type_url, [], f"f{case.index}", raw=case.resources)
        try:
            answer = self.ads.wait_for_request(
                lambda r: r.type_url == case.type_url and r.response_nonce == nonce,
                timeout_s=self.answer_bound_s,
                start=start,
            )
        except AssertionError:
            self._fail(f"{case.describe()}: no ACK or NACK within {self.answer_bound_s}s")
            self._restore()
            return
        report.slowest_answer_s = max(report.slowest_answer_s, time.monotonic() - sent)
        nacked = bool(answer.error_detail.message)
        report.answers["NACK" if nacked else "ACK"] += 1
        if "meshlib decoder failed" in answer.error_detail.message:
            self._fail(f"{case.describe()}: decoder crash: {answer.error_detail.message[:500]}")
        try:
            json.dumps(self.client.config_dump())
        except (TypeError, ValueError) as exc:
            self._fail(f"{case.describe()}: the config dump is not JSON-able: {exc}")
        deletes = case.type_url in (b.LDS, b.CDS)
        if case.replaced and (not nacked or (case.renamed and deletes)):
            report.restores += 1
            self._restore()
            return
        problem = self._routing_problem()
        if problem is not None:
            self._fail(f"{case.describe()}: the last good config no longer routes: {problem}")
            self._restore()

    def _routing_problem(self) -> str | None:
        try:
            if not self.directory.is_member(SERVICE, 1.0):
                return f"{SERVICE} is no longer a mesh service"
            snapshot = self.directory.service(SERVICE).snapshot(1.0)
            result, _cluster, endpoint = snapshot.route(SERVICE, "/", {})
        except MeshError as exc:
            return f"{type(exc).__name__}: {exc}"
        if (result.cluster, endpoint.address, endpoint.port) != ("c1", "10.0.0.1", 8080):
            return f"routed to {result.cluster} {endpoint.address}:{endpoint.port}"
        return None

    def _restore(self, timeout_s: float = 10.0) -> None:
        """Push the whole baseline (again, as re-subscriptions need it) until it routes."""
        deadline = time.monotonic() + timeout_s
        problem: str | None = "not tried"
        while time.monotonic() < deadline:
            for type_url, message in baseline().items():
                self.ads.push(type_url, [message], "base")
            settle = time.monotonic() + 0.3
            while time.monotonic() < settle:
                problem = self._baseline_missing()
                if problem is None and not self._callbacks_drained():
                    problem = "watcher callbacks did not drain"
                problem = problem or self._routing_problem_quiet()
                if problem is None:
                    return
                time.sleep(0.005)
        self._fail(f"the baseline did not route again within {timeout_s}s: {problem}")

    def _callbacks_drained(self, timeout_s: float = 5.0) -> bool:
        """Wait for the watcher callbacks queued so far (the services see a change only
        when its callback has run): a new watch of a cached resource is answered at once,
        behind them, as callbacks run in order. Only called while ``c1`` is cached."""
        seen = threading.Event()
        watcher = CallbackWatcher(lambda r: seen.set(), lambda e: seen.set(), lambda e: seen.set())
        cancel = self.client.watch(CLUSTER, "c1", watcher)
        try:
            return seen.wait(timeout_s)
        finally:
            cancel()

    def _baseline_missing(self) -> str | None:
        """Which baseline resource the client does not hold (as its last good), if any."""
        dump = self.client.config_dump()["types"]
        for type_url, (name, expected) in _baseline_dumps().items():
            entries = dump.get(RESOURCE_TYPES[type_url].name, {}).get("resources", [])
            held = next((e["resource"] for e in entries if e["name"] == name), None)
            if held != expected:
                return f"{SHORT[type_url]} {name!r} is not the baseline in the client's cache"
        return None

    def _routing_problem_quiet(self) -> str | None:
        try:
            return self._routing_problem()
        except Exception as exc:  # reported, not raised: the run goes on
            return f"{type(exc).__name__}: {exc}"

    def _fail(self, message: str) -> None:
        self.report.failures.append(message)


class CrashLog(logging.Handler):
    """Collects meshlib log records that mean an exception escaped."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info or message.split(" ", 1)[0] in CRASH_EVENTS:
            self.records.append(f"{record.name}: {message[:300]}")


@contextmanager
def fuzz_setup(answer_bound_s: float = 1.0) -> Iterator[tuple[AdsFuzzer, CrashLog]]:
    """A FakeAds, an XdsClient and the fuzzer, torn down afterwards."""
    crash_log = CrashLog()
    meshlib_logger = logging.getLogger("meshlib")
    meshlib_logger.addHandler(crash_log)
    ads = FakeAds()
    client = XdsClient(bootstrap_for(ads.address), backoff_base_s=0.05, backoff_max_s=0.2)
    fuzzer = AdsFuzzer(ads, client, answer_bound_s)
    try:
        fuzzer.start()
        yield fuzzer, crash_log
    finally:
        fuzzer.directory.close()
        client.close()
        ads.stop()
        meshlib_logger.removeHandler(crash_log)


@cache
def _baseline_dumps() -> dict[str, tuple[str, Any]]:
    """type URL -> (name, the decoded baseline as the config dump shows it)."""
    out = {}
    for type_url, message in baseline().items():
        model = RESOURCE_TYPES[type_url].decode(pack(message))
        out[type_url] = (_name(type_url, message), to_jsonable(model))
    return out


def _copy(message: Any) -> Any:
    out = type(message)()
    out.CopyFrom(message)
    return out


def _name(type_url: str, message: Any) -> str:
    return str(getattr(message, RESOURCE_TYPES[type_url].name_field))


def _wrap(any_msg: Any) -> Any:
    return pack(discovery_pb2.Resource(resource=any_msg))
