"""The shared store: etcd v3 (``--store etcd://HOST:PORT[,HOST:PORT...]``), for several
control plane replicas serving one mesh.

Layout under ``prefix`` (``/meshlib/``):

    resources/KIND/NAMESPACE/NAME   the document (canonical JSON); its version is the key's
                                    ``mod_revision``, so the store's revision is etcd's
    registrations/ID                ``{"record": ..., "expires_at": ...}`` on a lease of the
                                    TTL left: etcd drops it when its workload stops heartbeating
    origin                          rewritten by every transaction: which store instance
                                    (replica) made it
    ca                              the CA (``{"key_pem", "chain_pem", "trust_domain"}``),
                                    created only if absent (a transaction comparing its
                                    create_revision with 0), so racing replicas get one root
    revoked-tokens/ID               ``{"expires_at": ...}``: a join token refused everywhere

A commit is one etcd transaction comparing every key's ``mod_revision`` with the version
its write expects (0: absent): one stale write and nothing is written. A heartbeat
re-puts the registration on a fresh lease, so every replica sees the new expiry. A watch
on the prefix (from the revision loaded) feeds the change feed with other replicas'
commits, one :class:`Change` per etcd revision, and this instance's own are announced
when made (as the SQLite store does) and skipped on the watch. When the watch breaks
(a member down) it resumes from the last revision seen on the next member; a compacted
revision is re-read whole and announced as the difference.

While no member answers, calls raise StoreError naming the endpoints and
:attr:`EtcdStore.problem` says so; the control plane keeps serving what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import structlog

from controlplane.store.base import (
    ABSENT,
    Change,
    Contents,
    DeleteResource,
    PutResource,
    ResourceKey,
    RevokedToken,
    Store,
    StoredCa,
    StoredRegistration,
    StoredResource,
    StoreError,
    VersionConflict,
    Write,
)
from controlplane.store.etcd_client import RETRY_S, EtcdClient, b64, prefix_end, unb64
from controlplane.store.sqlite import encode

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "/meshlib/"
WATCH_RETRY_S = 0.5
_RESOURCES = "resources/"
_REGISTRATIONS = "registrations/"
_ORIGIN = "origin"
_CA = "ca"
_REVOKED = "revoked-tokens/"
#: Origin of changes no replica made (a registration's lease ran out).
ETCD_ORIGIN = "etcd"


class EtcdStore(Store):
    """``endpoints``: ``HOST:PORT`` of the cluster's members, tried in order."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        origin: str | None = None,
        clock: Callable[[], float] = time.time,
        retry_s: float = RETRY_S,
    ) -> None:
        super().__init__(origin or uuid.uuid4().hex)
        if not endpoints:
            raise StoreError("etcd: name at least one endpoint, etcd://HOST:PORT")
        self.endpoints = tuple(endpoints)
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._clock = clock
        self._retry_s = retry_s
        self._client: EtcdClient | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._revision = 0
        self._versions: dict[ResourceKey, int] = {}
        self._registrations: dict[str, StoredRegistration] = {}
        self._problem: str | None = None

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(self.endpoints)

    @property
    def persistent(self) -> bool:
        return True

    @property
    def problem(self) -> str | None:
        return self._problem

    # --- keys -------------------------------------------------------------------

    def _resource_key(self, key: ResourceKey) -> str:
        return f"{self.prefix}{_RESOURCES}{key.kind}/{key.namespace}/{key.name}"

    def _registration_key(self, workload_id: str) -> str:
        return f"{self.prefix}{_REGISTRATIONS}{workload_id}"

    def _origin_put(self) -> dict[str, Any]:
        return {"request_put": {"key": b64(self.prefix + _ORIGIN), "value": b64(self.origin)}}

    # --- lifecycle --------------------------------------------------------------

    async def open(self) -> Contents:
        if self._client is not None:
            raise StoreError(f"store {self.url} is already open")
        client = EtcdClient(self.endpoints, retry_s=self._retry_s)
        try:
            contents = await self._load(client)
        except BaseException:
            await client.close()
            raise
        self._client = client
        self._problem = None
        self._watch_task = asyncio.create_task(self._follow(client), name="etcd-watch")
        log.info(
            "store_opened",
            store=self.url,
            revision=contents.revision,
            resources=len(contents.resources),
            registrations=len(contents.registrations),
        )
        return contents

    async def close(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _open_client(self) -> EtcdClient:
        if self._client is None:
            raise StoreError(f"store {self.url} is not open")
        return self._client

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self._open_client().call(path, body)
        except StoreError as exc:
            self._problem = str(exc)
            raise
        self._problem = None
        return answer

    async def _load(self, client: EtcdClient) -> Contents:
        answer = await client.call(
            "kv/range", {"key": b64(self.prefix), "range_end": prefix_end(self.prefix)}
        )
        revision = int(answer["header"]["revision"])
        resources: list[StoredResource] = []
        registrations: list[StoredRegistration] = []
        revoked: list[RevokedToken] = []
        ca: StoredCa | None = None
        expired: list[str] = []
        now = self._clock()
        for kv in answer.get("kvs", []):
            key = unb64(kv["key"])
            value = unb64(kv.get("value", ""))
            if key == self.prefix + _CA:
                ca = self._ca(value)
            elif key.startswith(self.prefix + _REVOKED):
                revocation = self._revocation(key, value)
                if revocation is None or revocation.expires_at <= now:
                    expired.append(key)
                else:
                    revoked.append(revocation)
            elif key.startswith(self.prefix + _RESOURCES):
                resources.append(self._resource(key, value, int(kv["mod_revision"])))
            elif key.startswith(self.prefix + _REGISTRATIONS):
                registration = self._registration(key, value)
                if registration is None or registration.expires_at <= now:
                    expired.append(key)
                else:
                    registrations.append(registration)
        if expired:
            deletes = [{"request_delete_range": {"key": b64(key)}} for key in expired]
            await client.call("kv/txn", {"success": [*deletes, self._origin_put()]})
        resources.sort(key=lambda r: (r.version, r.key))
        self._revision = revision
        self._versions = {r.key: r.version for r in resources}
        self._registrations = {r.id: r for r in registrations}
        return Contents(revision, tuple(resources), tuple(registrations), ca, tuple(revoked))

    def _ca(self, value: str) -> StoredCa:
        try:
            data = json.loads(value)
            return StoredCa(str(data["key_pem"]), str(data["chain_pem"]), str(data["trust_domain"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"store {self.url}: key {self.prefix}{_CA} is not a CA record ({exc!r})"
            ) from exc

    def _revocation(self, key: str, value: str) -> RevokedToken | None:
        token_id = key[len(self.prefix + _REVOKED) :]
        try:
            return RevokedToken(token_id, float(json.loads(value)["expires_at"]))
        except (ValueError, KeyError, TypeError):
            log.warning("store_revocation_unreadable", id=token_id, store=self.url)
            return None

    def _resource(self, key: str, value: str, version: int) -> StoredResource:
        parts = key[len(self.prefix + _RESOURCES) :].split("/", 2)
        if len(parts) != 3:
            raise StoreError(f"store {self.url}: {key} is not KIND/NAMESPACE/NAME")
        resource_key = ResourceKey(*parts)
        try:
            document = json.loads(value)
        except ValueError as exc:
            raise StoreError(
                f"store {self.url}: {resource_key} is not readable JSON: {exc}"
            ) from exc
        return StoredResource(resource_key, document, version)

    def _registration(self, key: str, value: str) -> StoredRegistration | None:
        workload_id = key[len(self.prefix + _REGISTRATIONS) :]
        try:
            data = json.loads(value)
            return StoredRegistration(workload_id, data["record"], float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            log.warning("store_registration_unreadable", id=workload_id, store=self.url)
            return None

    # --- resources --------------------------------------------------------------

    async def commit(self, writes: Sequence[Write]) -> int:
        keys = [write.key for write in writes]
        if len(set(keys)) != len(keys):
            raise StoreError("a commit writes each resource at most once")
        if not writes:
            answer = await self._call("kv/range", {"key": b64(self.prefix + _ORIGIN)})
            return int(answer["header"]["revision"])
        compare: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        for write in writes:
            key = b64(self._resource_key(write.key))
            if isinstance(write, DeleteResource):
                compare.append(
                    {"key": key, "target": "CREATE", "result": "GREATER", "create_revision": "0"}
                )
                success.append({"request_delete_range": {"key": key}})
            else:
                value = b64(encode(write.document))
                success.append({"request_put": {"key": key, "value": value}})
            if write.expected_version is not None:
                compare.append(
                    {
                        "key": key,
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": str(write.expected_version),
                    }
                )
        failure = [{"request_range": {"key": b64(self._resource_key(k))}} for k in keys]
        body = {"compare": compare, "success": [*success, self._origin_put()], "failure": failure}
        answer = await self._call("kv/txn", body)
        if not answer.get("succeeded"):
            self._raise_conflict(writes, answer.get("responses", []))
        revision = int(answer["header"]["revision"])
        put: list[StoredResource] = []
        deleted: list[ResourceKey] = []
        for write in writes:
            if isinstance(write, PutResource):
                put.append(StoredResource(write.key, write.document, revision))
                self._versions[write.key] = revision
            else:
                deleted.append(write.key)
                self._versions.pop(write.key, None)
        self._revision = max(self._revision, revision)
        self._announce(Change(self.origin, revision, tuple(put), tuple(deleted)))
        return revision

    @staticmethod
    def _raise_conflict(writes: Sequence[Write], responses: Sequence[Mapping[str, Any]]) -> None:
        for write, response in zip(writes, responses, strict=False):
            kvs = response.get("response_range", {}).get("kvs", [])
            actual = int(kvs[0]["mod_revision"]) if kvs else None
            expected = write.expected_version
            if isinstance(write, DeleteResource) and actual is None:
                raise VersionConflict(write.key, expected, None)
            if expected is not None and (actual or ABSENT) != expected:
                raise VersionConflict(write.key, expected, actual)
        raise StoreError("etcd refused the commit, yet no write is stale now: apply it again")

    # --- registrations ----------------------------------------------------------

    async def save_registrations(
        self, put: Sequence[StoredRegistration], deleted: Sequence[str]
    ) -> None:
        if not put and not deleted:
            return
        await self._put_registrations(put, deleted)
        self._announce(
            Change(self.origin, registrations_put=tuple(put), registrations_deleted=tuple(deleted))
        )

    async def touch_registrations(self, expiries: Mapping[str, float]) -> None:
        known = self._registrations
        moved = [
            StoredRegistration(wid, known[wid].record, at)
            for wid, at in expiries.items()
            if wid in known
        ]
        if moved:
            await self._put_registrations(moved, ())

    async def _put_registrations(
        self, put: Sequence[StoredRegistration], deleted: Sequence[str]
    ) -> None:
        now = self._clock()
        ttls = {
            registration.id: max(1, math.ceil(registration.expires_at - now))
            for registration in put
        }
        leases: dict[int, str] = {}
        for ttl in sorted(set(ttls.values())):
            granted = await self._call("lease/grant", {"TTL": str(ttl)})
            leases[ttl] = str(granted["ID"])
        ops: list[dict[str, Any]] = []
        for registration in put:
            value = encode({"record": registration.record, "expires_at": registration.expires_at})
            key = b64(self._registration_key(registration.id))
            lease = leases[ttls[registration.id]]
            ops.append({"request_put": {"key": key, "value": b64(value), "lease": lease}})
        for workload_id in deleted:
            ops.append({"request_delete_range": {"key": b64(self._registration_key(workload_id))}})
        await self._call("kv/txn", {"success": [*ops, self._origin_put()]})
        for registration in put:
            self._registrations[registration.id] = registration
        for workload_id in deleted:
            self._registrations.pop(workload_id, None)

    # --- the CA and revoked tokens --------------------------------------------------

    async def create_ca(self, ca: StoredCa) -> StoredCa:
        key = b64(self.prefix + _CA)
        record = {"key_pem": ca.key_pem, "chain_pem": ca.chain_pem, "trust_domain": ca.trust_domain}
        absent = {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        body = {
            "compare": [absent],
            "success": [{"request_put": {"key": key, "value": b64(encode(record))}}],
            "failure": [{"request_range": {"key": key}}],
        }
        answer = await self._call("kv/txn", body)
        if answer.get("succeeded"):
            return ca
        kvs = answer.get("responses", [{}])[0].get("response_range", {}).get("kvs", [])
        if not kvs:
            raise StoreError(f"store {self.url}: the CA was neither created nor found")
        return self._ca(unb64(kvs[0].get("value", "")))

    async def revoke_tokens(self, revoked: Sequence[RevokedToken]) -> None:
        if not revoked:
            return
        ops = [
            {
                "request_put": {
                    "key": b64(f"{self.prefix}{_REVOKED}{r.id}"),
                    "value": b64(encode({"expires_at": r.expires_at})),
                }
            }
            for r in revoked
        ]
        await self._call("kv/txn", {"success": [*ops, self._origin_put()]})
        self._announce(Change(self.origin, tokens_revoked=tuple(revoked)))

    # --- following other replicas -----------------------------------------------

    async def _follow(self, client: EtcdClient) -> None:
        """Watch the prefix from the revision loaded; resume on the next member."""
        while True:
            body = {
                "create_request": {
                    "key": b64(self.prefix),
                    "range_end": prefix_end(self.prefix),
                    "start_revision": str(self._revision + 1),
                }
            }
            try:
                async for result in client.watch(body):
                    if int(result.get("compact_revision", 0)) > 0:
                        await self._resync(client)
                        break
                    if result.get("canceled"):
                        break
                    if self._problem is not None:
                        log.info("store_reachable", store=self.url)
                    self._problem = None
                    self._receive(result.get("events", []))
            except (httpx.HTTPError, StoreError, ValueError, KeyError) as exc:
                if self._problem is None:
                    log.warning("store_watch_broken", store=self.url, error=str(exc) or repr(exc))
                self._problem = f"etcd watch at {client.member}: {str(exc) or repr(exc)}"
            client.next_member()
            await asyncio.sleep(WATCH_RETRY_S)

    def _receive(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Events of whole revisions (etcd never splits one), announced per revision."""
        group: list[Mapping[str, Any]] = []
        for event in events:
            if group and event["kv"]["mod_revision"] != group[0]["kv"]["mod_revision"]:
                self._receive_revision(group)
                group = []
            group.append(event)
        if group:
            self._receive_revision(group)

    def _receive_revision(self, events: Sequence[Mapping[str, Any]]) -> None:
        revision = int(events[0]["kv"]["mod_revision"])
        origin = ETCD_ORIGIN
        resources_put: list[StoredResource] = []
        resources_deleted: list[ResourceKey] = []
        registrations_put: list[StoredRegistration] = []
        registrations_deleted: list[str] = []
        revoked: list[RevokedToken] = []
        for event in events:
            kv = event["kv"]
            key = unb64(kv["key"])
            deleted = event.get("type") == "DELETE"
            value = "" if deleted else unb64(kv.get("value", ""))
            if key == self.prefix + _ORIGIN:
                origin = value
            elif key.startswith(self.prefix + _REVOKED) and not deleted:
                revocation = self._revocation(key, value)
                if revocation is not None:
                    revoked.append(revocation)
            elif key.startswith(self.prefix + _RESOURCES):
                try:
                    resource = self._resource(key, value or "{}", revision)
                except StoreError as exc:
                    log.error("store_event_unreadable", error=str(exc))
                    continue
                if deleted:
                    resources_deleted.append(resource.key)
                else:
                    resources_put.append(resource)
            elif key.startswith(self.prefix + _REGISTRATIONS):
                workload_id = key[len(self.prefix + _REGISTRATIONS) :]
                registration = None if deleted else self._registration(key, value)
                if registration is None:
                    registrations_deleted.append(workload_id)
                else:
                    registrations_put.append(registration)
        self._revision = max(self._revision, revision)
        if origin == self.origin:
            return  # announced when made
        for resource in resources_put:
            self._versions[resource.key] = resource.version
        for resource_key in resources_deleted:
            self._versions.pop(resource_key, None)
        for registration in registrations_put:
            self._registrations[registration.id] = registration
        for workload_id in registrations_deleted:
            self._registrations.pop(workload_id, None)
        moved_resources = bool(resources_put or resources_deleted)
        self._announce(
            Change(
                origin,
                revision if moved_resources else 0,
                tuple(resources_put),
                tuple(resources_deleted),
                tuple(registrations_put),
                tuple(registrations_deleted),
                tuple(revoked),
            )
        )

    async def _resync(self, client: EtcdClient) -> None:
        """The watch's start was compacted away: read everything, announce the difference."""
        versions, registrations = dict(self._versions), dict(self._registrations)
        contents = await self._load(client)
        log.warning("store_resynced", store=self.url, revision=contents.revision)
        put = tuple(r for r in contents.resources if versions.get(r.key) != r.version)
        gone = tuple(key for key in versions if key not in self._versions)
        regs_put = tuple(r for r in contents.registrations if registrations.get(r.id) != r)
        regs_gone = tuple(wid for wid in registrations if wid not in self._registrations)
        revoked = contents.revoked_tokens  # all of them: following one twice changes nothing
        if put or gone or regs_put or regs_gone or revoked:
            revision = contents.revision if put or gone else 0
            self._announce(Change(ETCD_ORIGIN, revision, put, gone, regs_put, regs_gone, revoked))
