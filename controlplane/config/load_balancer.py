"""``trafficPolicy.loadBalancer`` of a DestinationRule: Istio's LoadBalancerSettings.

``simple`` or ``consistentHash`` (one hash key; ring hash or maglev), plus
``localityLbSetting`` and ``warmupDurationSecs``. ``LEAST_CONN`` is Istio's
deprecated name for ``LEAST_REQUEST`` and is read as such; ``UNSPECIFIED`` means
"not set". The deprecated ``consistentHash.minimumRingSize`` is read as ringHash.
``PASSTHROUGH`` (forward to the caller's original destination address) is refused:
a proxyless client has no original destination, so no xDS client could honour it.
"""

from __future__ import annotations

from types import MappingProxyType

from controlplane.config.durations import duration
from controlplane.config.fields import Fields, as_integer, as_string
from controlplane.traffic_model import (
    ConsistentHash,
    HashAlgorithm,
    HashCookie,
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
    SimpleLB,
)

LB_FIELDS = ("simple", "consistentHash", "localityLbSetting", "warmupDurationSecs")
LB_NOT_YET = ("warmup",)
SIMPLE = tuple(policy.value for policy in SimpleLB if policy is not SimpleLB.PASSTHROUGH)
SIMPLE_ALIASES = {"LEAST_CONN": SimpleLB.LEAST_REQUEST}
HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
HASH_FIELDS = (*HASH_KEYS, "ringHash", "maglev", "minimumRingSize")
MAX_RING_SIZE = 8_388_608  # Envoy's maximum_ring_size limit
MAX_MAGLEV_TABLE = 5_000_011  # Envoy's limit; the size must be prime
WARMUP_POLICIES = (None, SimpleLB.ROUND_ROBIN, SimpleLB.LEAST_REQUEST)
PERCENT = 100


def parse_load_balancer(fields: Fields) -> LoadBalancerSettings | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(LB_FIELDS, LB_NOT_YET, "loadBalancer")
    fields.exclusive("simple", "consistentHash")
    simple = _simple(fields)
    hash_fields = fields.mapping("consistentHash")
    consistent_hash = _consistent_hash(hash_fields) if hash_fields is not None else None
    locality_fields = fields.mapping("localityLbSetting")
    locality = _locality(locality_fields) if locality_fields is not None else None
    warmup = duration(fields, "warmupDurationSecs")
    if warmup is not None and (fields.present("consistentHash") or simple not in WARMUP_POLICIES):
        ctx.error(
            fields.at("warmupDurationSecs"),
            "works only with ROUND_ROBIN or LEAST_REQUEST (Envoy's slow start)",
        )
    if ctx.count != before:
        return None
    return LoadBalancerSettings(
        simple=simple,
        consistent_hash=consistent_hash,
        locality_lb_setting=locality,
        warmup_duration_s=warmup,
    )


def _simple(fields: Fields) -> SimpleLB | None:
    value = fields.data.get("simple")
    if value in SIMPLE_ALIASES:
        return SIMPLE_ALIASES[str(value)]
    if value == "UNSPECIFIED":
        return None
    if value == SimpleLB.PASSTHROUGH.value:
        fields.ctx.error(
            fields.at("simple"),
            "PASSTHROUGH is not supported: proxyless clients have no original destination "
            "to pass through to (use ROUND_ROBIN, LEAST_REQUEST, RANDOM or consistentHash)",
        )
        return None
    text = fields.choice("simple", supported=SIMPLE, what="load balancer")
    return SimpleLB(text) if text is not None else None


def _consistent_hash(fields: Fields) -> ConsistentHash | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(HASH_FIELDS, what="consistentHash")
    keys = [key for key in HASH_KEYS if fields.present(key)]
    if not keys:
        ctx.error(fields.path, f"must set one of {', '.join(HASH_KEYS)}")
    fields.exclusive(*HASH_KEYS)
    header = fields.string("httpHeaderName")
    cookie_fields = fields.mapping("httpCookie")
    cookie = _cookie(cookie_fields) if cookie_fields is not None else None
    source_ip = fields.boolean("useSourceIp")
    if source_ip is False:
        ctx.error(fields.at("useSourceIp"), "must be true when set (it selects the hash key)")
    query = fields.string("httpQueryParameterName")
    fields.exclusive("ringHash", "maglev", "minimumRingSize")
    ring_size = fields.integer("minimumRingSize", minimum=1, maximum=MAX_RING_SIZE)
    ring_fields = fields.mapping("ringHash")
    if ring_fields is not None:
        ring_fields.reject_unknown(("minimumRingSize",), what="ringHash")
        ring_size = ring_fields.integer("minimumRingSize", minimum=1, maximum=MAX_RING_SIZE)
    table_size = _maglev_table_size(fields)
    if ctx.count != before:
        return None
    return ConsistentHash(
        http_header_name=header or "",
        http_cookie=cookie,
        use_source_ip=bool(source_ip),
        http_query_parameter_name=query or "",
        algorithm=HashAlgorithm.MAGLEV if fields.present("maglev") else HashAlgorithm.RING_HASH,
        minimum_ring_size=ring_size,
        maglev_table_size=table_size,
    )


def _cookie(fields: Fields) -> HashCookie | None:
    before = fields.ctx.count
    fields.reject_unknown(("name", "path", "ttl"), ("attributes",), "httpCookie")
    name = fields.string("name", required=True)
    path = fields.string("path")
    ttl = duration(fields, "ttl", allow_zero=True)  # 0: a session cookie, as in Envoy
    if fields.ctx.count != before or name is None:
        return None
    return HashCookie(name=name, path=path or "", ttl_s=ttl)


def _maglev_table_size(fields: Fields) -> int | None:
    maglev = fields.mapping("maglev")
    if maglev is None:
        return None
    maglev.reject_unknown(("tableSize",), what="maglev")
    size = maglev.integer("tableSize", minimum=2, maximum=MAX_MAGLEV_TABLE)
    if size is not None and not _is_prime(size):
        maglev.ctx.error(maglev.at("tableSize"), f"must be a prime number, got {size}")
        return None
    return size


def _is_prime(number: int) -> bool:
    if number < 2:
        return False
    divisor = 2
    while divisor * divisor <= number:
        if number % divisor == 0:
            return False
        divisor += 1
    return True


def _locality(fields: Fields) -> LocalityLbSetting | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(
        ("enabled", "distribute", "failover", "failoverPriority"), what="localityLbSetting"
    )
    enabled = fields.boolean("enabled")
    fields.exclusive("distribute", "failover")
    distribute = tuple(_distribute(fields))
    failover = tuple(_failover(fields))
    priority: list[str] = []
    for path, value in fields.items("failoverPriority") or ():
        label = as_string(ctx, path, value)
        if label is not None:
            priority.append(label)
    if ctx.count != before:
        return None
    return LocalityLbSetting(
        enabled=True if enabled is None else enabled,
        distribute=distribute,
        failover=failover,
        failover_priority=tuple(priority),
    )


def locality_pattern(value: str) -> str | None:
    """``region[/zone[/subzone]]``; ``*`` may stand for the last part (Istio's rule)."""
    parts = value.split("/")
    if len(parts) > 3 or not all(parts):
        return f"locality {value!r} must be 'region', 'region/zone' or 'region/zone/subzone'"
    if any("*" in part for part in parts[:-1]) or (parts[-1] != "*" and "*" in parts[-1]):
        return f"locality {value!r}: a wildcard '*' may only be the whole last part"
    return None


def _distribute(fields: Fields) -> list[LocalityDistribute]:
    ctx = fields.ctx
    result: list[LocalityDistribute] = []
    for path, value in fields.items("distribute") or ():
        entry = Fields.of(ctx, path, value)
        if entry is None:
            continue
        before = ctx.count
        entry.reject_unknown(("from", "to"), what="a distribute entry")
        source = entry.string("from", required=True, check=locality_pattern)
        targets = entry.mapping("to", required=True)
        weights: dict[str, int] = {}
        for locality, weight in targets.data.items() if targets is not None else ():
            where = targets.at(locality) if targets is not None else path
            problem = locality_pattern(locality)
            if problem is not None:
                ctx.error(where, problem)
            number = as_integer(ctx, where, weight, 1, PERCENT)
            if number is not None:
                weights[locality] = number
        if targets is not None and ctx.count == before and sum(weights.values()) != PERCENT:
            ctx.error(targets.path, f"weights must sum to {PERCENT}, got {sum(weights.values())}")
        if ctx.count == before and source is not None:
            result.append(LocalityDistribute(from_=source, to=MappingProxyType(weights)))
    return result


def _failover(fields: Fields) -> list[LocalityFailover]:
    ctx = fields.ctx
    result: list[LocalityFailover] = []
    for path, value in fields.items("failover") or ():
        entry = Fields.of(ctx, path, value)
        if entry is None:
            continue
        entry.reject_unknown(("from", "to"), what="a failover entry")
        source = entry.string("from", required=True, check=_region)
        target = entry.string("to", required=True, check=_region)
        if source is not None and source == target:
            ctx.error(entry.at("to"), f"must differ from 'from' ({source!r})")
        elif source is not None and target is not None:
            result.append(LocalityFailover(from_=source, to=target))
    return result


def _region(value: str) -> str | None:
    if "/" in value or "*" in value:
        return f"{value!r} must be a region (no '/', no wildcard)"
    return None
