"""Config changes are translated in part, to the same result as a whole translation.

:class:`EndpointTranslate` brings its last translation up to date for what a config
change touches (:mod:`controlplane.translate.config_changes`). Random sequences of
edits (add, edit and remove of ServiceEntries, WorkloadEntries, VirtualServices,
DestinationRules, security policies, and registrations meanwhile) must give, after
every step and for every node shape, exactly the resources of a whole translation
(byte for byte), or the same refusal; changes it cannot bound (a new namespace) are
translated whole.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import pytest
import yaml

from controlplane.config.errors import ConfigError
from controlplane.config.loader import build_config
from controlplane.config.yaml_files import Document
from controlplane.endpoint_translate import EndpointTranslate
from controlplane.model import Locality, MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import PolicySettings, Resources, TranslationError, translate
from controlplane.translate.services import collect_services
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.errors import SnapshotError
from controlplane.xds.updater import SnapshotUpdater
from tests.controlplane.config_cases import (
    destination_rule,
    service_entry,
    virtual_service,
    workload_entry,
)

_T = TypeVar("_T")
API_SECURITY = "security.istio.io/v1"
POLICY = PolicySettings(trust_domain="example.org")

# Each slot holds at most one resource; a step sets a slot to another variant or empties it.
SLOTS: dict[str, list[str]] = {
    "se-sessions": [
        service_entry(
            """
            hosts: [sessions]
            ports:
            - {number: 50051, name: grpc, protocol: GRPC}
            - {number: 8080, name: http, protocol: HTTP}
            resolution: STATIC
            workloadSelector: {labels: {app: sessions}}
            """,
            "sessions",
        ),
        service_entry(
            """
            hosts: [sessions]
            ports: [{number: 50051, name: grpc, protocol: GRPC}]
            resolution: STATIC
            workloadSelector: {labels: {app: sessions}}
            endpoints:
            - address: 10.1.0.1
              labels: {version: v1}
              locality: eu/eu-1
              serviceAccount: sessions
            """,
            "sessions",
        ),
    ],
    "se-talks": [
        service_entry(
            """
            hosts: [talks]
            ports: [{number: 50052, name: grpc, protocol: GRPC}]
            resolution: STATIC
            endpoints:
            - {address: 10.2.0.1, labels: {version: v1}}
            - {address: 10.2.0.2, labels: {version: v2}, locality: us/us-1}
            """,
            "talks",
        ),
        service_entry(
            """
            hosts: [talks]
            ports: [{number: 50052, name: grpc, protocol: GRPC}]
            resolution: STATIC
            endpoints: [{address: 10.2.0.3, labels: {version: v2}, weight: 3}]
            """,
            "talks",
        ),
    ],
    "se-degraded": [  # the degraded switch: in cluster metadata
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: speakers\n"
        "  namespace: conference\n  annotations: {meshlib.dev/degraded: 'true'}\n"
        "spec:\n  hosts: [speakers]\n  ports: [{number: 50053, name: grpc, protocol: GRPC}]\n"
        "  resolution: STATIC\n  endpoints: [{address: 10.3.0.1}]\n",
        service_entry(
            """
            hosts: [speakers]
            ports: [{number: 50053, name: grpc, protocol: GRPC}]
            resolution: STATIC
            endpoints: [{address: 10.3.0.1}]
            """,
            "speakers",
        ),
    ],
    "vs-two-hosts": [  # one VirtualService for two hosts (refused while another names one)
        virtual_service(
            """
            hosts: [speakers, search.example.com]
            http:
            - timeout: 2s
              route: [{destination: {host: speakers, port: {number: 50053}}}]
            """,
            "two-hosts",
        ),
    ],
    "dr-search": [
        destination_rule(
            """
            host: search.example.com
            trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 10}}}
            """,
            "search",
        ),
    ],
    "we-ops": [  # a namespace the mesh does not have otherwise
        workload_entry("{address: 10.8.0.1, labels: {app: sessions}}", "ops-1", "ops"),
    ],
    "se-search": [
        service_entry(
            """
            hosts: [search.example.com]
            ports: [{number: 80, name: http, protocol: HTTP}]
            resolution: DNS
            """,
            "search",
        ),
        service_entry(
            """
            hosts: [search.example.com]
            ports: [{number: 443, name: https, protocol: HTTP}]
            resolution: DNS
            endpoints: [{address: search.example.com}]
            """,
            "search",
        ),
    ],
    "se-metrics": [  # the only resource of its namespace: a new namespace when added
        service_entry(
            """
            hosts: [metrics]
            ports: [{number: 9090, name: http, protocol: HTTP}]
            resolution: STATIC
            endpoints: [{address: 10.9.0.1}]
            """,
            "metrics",
            "ops",
        ),
    ],
    "we-v1": [
        workload_entry(
            "{address: 127.0.0.1, ports: {grpc: 18091}, labels: {app: sessions, version: v1}, "
            "serviceAccount: sessions}",
            "sessions-v1",
        ),
        workload_entry("{address: 127.0.0.1, labels: {app: sessions, version: v2}}", "sessions-v1"),
    ],
    "we-v2": [
        workload_entry(
            "{address: 127.0.0.2, labels: {app: sessions, version: v2}, locality: us/us-1}",
            "sessions-v2",
        ),
    ],
    "vs-sessions": [
        virtual_service(
            """
            hosts: [sessions]
            http:
            - match: [{sourceLabels: {app: web}}]
              route: [{destination: {host: sessions, subset: v2, port: {number: 50051}}}]
            - route:
              - {destination: {host: sessions, subset: v1, port: {number: 50051}}, weight: 80}
              - {destination: {host: talks}, weight: 20}
            """,
            "sessions",
        ),
        virtual_service(
            """
            hosts: [sessions]
            http:
            - timeout: 3s
              retries: {attempts: 2, retryOn: unavailable}
              mirror: {host: talks}
              route: [{destination: {host: sessions, port: {number: 50051}}}]
            """,
            "sessions",
        ),
    ],
    "vs-talks": [
        virtual_service(
            """
            hosts: [talks]
            http:
            - match: [{headers: {x-canary: {exact: "yes"}}}]
              route: [{destination: {host: talks, subset: v2}}]
            - timeout: 5s
              route: [{destination: {host: talks}}]
            """,
            "talks",
        ),
        virtual_service(  # no port: ambiguous when "implicit" registers two ports
            """
            hosts: [talks]
            http:
            - route: [{destination: {host: implicit}}]
            """,
            "talks",
        ),
        virtual_service(
            """
            hosts: [talks]
            http:
            - fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
              route: [{destination: {host: sessions, port: {number: 50051}}}]
            """,
            "talks",
        ),
    ],
    "dr-sessions": [
        destination_rule(
            """
            host: sessions
            trafficPolicy:
              loadBalancer: {simple: LEAST_REQUEST, localityLbSetting: {enabled: true}}
              outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s}
            subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
            """,
            "sessions",
        ),
        destination_rule(
            """
            host: sessions
            trafficPolicy:
              loadBalancer: {consistentHash: {httpHeaderName: x-user}}
            subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
            """,
            "sessions",
        ),
    ],
    "dr-talks": [
        destination_rule(
            """
            host: talks
            trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
            subsets: [{name: v2, labels: {version: v2}}]
            """,
            "talks",
        ),
        destination_rule(
            """
            host: talks
            trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
            subsets: [{name: v2, labels: {version: v2}}]
            """,
            "talks",
        ),
    ],
    "peer-authentication": [
        f"apiVersion: {API_SECURITY}\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: conference}\nspec: {mtls: {mode: STRICT}}\n",
        f"apiVersion: {API_SECURITY}\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: conference}\nspec: {mtls: {mode: PERMISSIVE}}\n",
    ],
    "peer-root": [  # mesh-wide
        f"apiVersion: {API_SECURITY}\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n",
        f"apiVersion: {API_SECURITY}\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: DISABLE}}\n",
    ],
    "peer-ops": [
        f"apiVersion: {API_SECURITY}\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: ops}\nspec: {mtls: {mode: STRICT}}\n",
    ],
    "authorization-ops": [
        f"apiVersion: {API_SECURITY}\nkind: AuthorizationPolicy\n"
        "metadata: {name: from-ops, namespace: ops}\nspec:\n"
        "  rules: [{from: [{source: {namespaces: [ops]}}]}]\n",
    ],
    "intentions-talks": [
        "apiVersion: consul.hashicorp.com/v1alpha1\nkind: ServiceIntentions\n"
        "metadata: {name: talks, namespace: conference}\nspec:\n"
        "  destination: {name: talks}\n  sources: [{name: '*', action: deny}]\n",
        "apiVersion: consul.hashicorp.com/v1alpha1\nkind: ServiceIntentions\n"
        "metadata: {name: talks, namespace: conference}\nspec:\n"
        "  destination: {name: '*'}\n  sources: [{name: web, action: deny}]\n",
    ],
    "authorization-policy": [
        f"apiVersion: {API_SECURITY}\nkind: AuthorizationPolicy\n"
        "metadata: {name: only-web, namespace: conference}\nspec:\n"
        "  selector: {matchLabels: {app: sessions}}\n"
        "  rules: [{from: [{source: {namespaces: [conference]}}]}]\n",
    ],
}
# The documents, made once: unchanged ones keep their parsed resources, as files do.
PARSED = {
    slot: [Document(f"{slot}.yaml", 1, yaml.safe_load(text)) for text in texts]
    for slot, texts in SLOTS.items()
}

NODES = [
    NodeInfo(id="proxyless"),
    NodeInfo(
        id="web",
        locality="eu/eu-1",
        metadata={"LABELS": {"app": "web"}, "NAMESPACE": "conference"},
    ),
    NodeInfo(
        id="sidecar-in",
        metadata={
            "mesh.proxy": "sidecar",
            "mesh.outbound_port": 15001,
            "mesh.inbound_port": 15006,
            "mesh.app_port": 18091,
            "mesh.cert_dir": "/run/mesh",
            "NAMESPACE": "conference",
            "LABELS": {"app": "sessions", "version": "v1"},
        },
    ),
    NodeInfo(
        id="sidecar-out",
        locality="us/us-1",
        metadata={"mesh.proxy": "sidecar", "mesh.outbound_port": 15001},
    ),
]

ID = "spiffe://example.org/ns/conference/sa/{}"
REGISTRATIONS: list[tuple[RegisteredWorkload, ...]] = [
    (),
    (RegisteredWorkload("r1", "sessions", "10.0.0.1", {50051: 7000}, namespace="conference"),),
    (
        RegisteredWorkload(
            "r1",
            "sessions",
            "10.0.0.1",
            {50051: 7000},
            labels={"version": "v2"},
            namespace="conference",
            identity=ID.format("r1"),
        ),
        RegisteredWorkload(
            "r2", "talks", "10.0.1.1", {50052: 7000}, locality=Locality("eu", "eu-1")
        ),
    ),
    (RegisteredWorkload("r3", "implicit", "10.0.3.1", {9000: 9000}, namespace="conference"),),
    (
        RegisteredWorkload(
            "r3", "implicit", "10.0.3.1", {9000: 9000, 9001: 9001}, namespace="conference"
        ),
    ),
]
# Refused by translate: tried for one step, the registrations in force stay.
REFUSED = (RegisteredWorkload("r4", "talks", "10.0.4.1", {50052: 7000}, weight=-1),)


def compose(state: Mapping[str, int | None]) -> MeshConfig:
    """The config of the chosen variants (raises ConfigError as the loader does)."""
    return build_config([PARSED[slot][i] for slot, i in sorted(state.items()) if i is not None])


def outcome(translate_once: Callable[[], _T]) -> _T | str:
    """What it returns, or the refusal's message."""
    try:
        return translate_once()
    except TranslationError as exc:
        return f"refused: {exc}"


def assert_same(got: Resources | str, want: Resources | str, step: str) -> None:
    if isinstance(want, str) or isinstance(got, str):
        assert got == want, step
        return
    assert got.keys() == want.keys(), step
    for type_url, messages in want.items():
        assert sorted(got[type_url]) == sorted(messages), (step, type_url)
        for name, message in messages.items():
            assert got[type_url][name].SerializeToString(
                deterministic=True
            ) == message.SerializeToString(deterministic=True), (step, type_url, name)


def first_state() -> dict[str, int | None]:
    state: dict[str, int | None] = dict.fromkeys(SLOTS, 0)
    for slot in (
        "se-metrics",
        "authorization-policy",
        "vs-two-hosts",
        "we-ops",
        "peer-root",
        "peer-ops",
        "authorization-ops",
        "intentions-talks",
    ):
        state[slot] = None
    return state


def random_steps(
    seed: int, count: int
) -> Iterator[tuple[str, MeshConfig, tuple[RegisteredWorkload, ...]]]:
    """(what changed, config, registrations) after each of ``count`` random edits, the
    first being the starting point; edits the loader refuses are skipped."""
    rng = random.Random(seed)
    state = first_state()
    config = compose(state)
    workloads = REGISTRATIONS[0]
    yield f"seed {seed} start", config, workloads
    steps = 0
    while steps < count:
        slot = rng.choice([*SLOTS, "registrations", "refused"])
        if slot == "refused":
            steps += 1
            yield f"seed {seed} step {steps}: refused registration", config, REFUSED
            continue
        if slot == "registrations":
            workloads = rng.choice(REGISTRATIONS)
            step = f"seed {seed} step {steps}: registrations {[w.id for w in workloads]}"
        else:
            choices = [None, *range(len(SLOTS[slot]))]
            choices.remove(state[slot])
            trial = {**state, slot: rng.choice(choices)}
            try:
                config = compose(trial)
            except ConfigError:
                continue  # the loader refuses it: nothing reaches translate
            state = trial
            step = f"seed {seed} step {steps}: {slot} -> {state[slot]}"
        steps += 1
        yield step, config, workloads


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_equal_a_whole_translation_at_every_step(seed: int) -> None:
    incremental = EndpointTranslate(POLICY)
    refused = 0
    for step, config, workloads in random_steps(seed, 40):
        # the catalog reuses the services of unchanged ServiceEntries: as made afresh
        fresh = outcome(lambda: collect_services(config, workloads, reuse=False))  # noqa: B023
        assert outcome(lambda: collect_services(config, workloads)) == fresh, step  # noqa: B023
        for node in NODES:
            got = outcome(lambda: incremental(config, workloads, node))  # noqa: B023
            want = outcome(lambda: translate(config, workloads, node, POLICY))  # noqa: B023
            assert_same(got, want, f"{step}, node {node.id}")
            refused += isinstance(want, str)
    assert incremental.partial > 40  # most steps were brought up to date, not made whole
    assert refused < 40 * len(NODES) / 2


def verdict(
    updater: SnapshotUpdater, config: MeshConfig, workloads: tuple[RegisteredWorkload, ...]
) -> str:
    """What a check says of these inputs (passed ones are then served)."""
    try:
        updater.check(config=config, workloads=workloads)
    except (TranslationError, SnapshotError) as exc:
        return f"{type(exc).__name__}: {exc}"
    updater.set_inputs(config=config, workloads=workloads)
    assert updater.rebuild()
    return "passed"


@pytest.mark.parametrize("seed", [0, 1, 2])  # 0 and 2 meet an ambiguity
def test_the_checks_verdicts_and_snapshots_are_the_whole_translations(seed: int) -> None:
    """Refusals (their messages), ambiguity, and what connected nodes are sent."""
    caches = SnapshotCache(), SnapshotCache()
    whole = SnapshotUpdater(caches[0], lambda c, w, n: translate(c, w, n, POLICY))
    incremental = SnapshotUpdater(caches[1], EndpointTranslate(POLICY))
    verdicts = set()
    for step, config, workloads in random_steps(seed, 60):
        said = verdict(whole, config, workloads)
        assert verdict(incremental, config, workloads) == said, step
        verdicts.add(said.split(":")[0])
        if step.endswith("start"):
            for updater in (whole, incremental):
                for node in NODES:
                    updater.connect(node)
        for node in NODES:
            got, want = caches[1].get(node.id), caches[0].get(node.id)
            assert got is not None and want is not None, step
            assert got.versions() == want.versions(), (step, node.id)
    assert {"passed", "TranslationError"} <= verdicts


def test_an_edit_translates_in_part_and_a_new_namespace_whole() -> None:
    state = first_state()
    incremental = EndpointTranslate(POLICY)
    node = NODES[0]
    incremental(compose(state), (), node)
    edits: list[tuple[str, int | None, bool]] = [
        ("vs-sessions", 1, True),
        ("dr-talks", 1, True),
        ("se-talks", 1, True),
        ("we-v2", None, True),
        ("peer-authentication", 1, True),  # every inbound listener and cluster again
        ("authorization-policy", 0, True),  # every inbound listener again
        ("se-metrics", 0, False),  # a namespace the mesh did not have
        ("se-metrics", None, True),
    ]
    for slot, variant, in_part in edits:
        state[slot] = variant
        config = compose(state)
        before = incremental.partial
        assert_same(incremental(config, (), node), translate(config, (), node, POLICY), slot)
        assert incremental.partial == before + in_part, slot
