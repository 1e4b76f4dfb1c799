"""The control plane process: config + registry -> xDS, plus the admin API.

    cp = ControlPlane("mesh.yaml", xds_address="127.0.0.1:0", admin_address="127.0.0.1:0")
    await cp.start()          # ConfigError when the initial config is bad
    ... cp.xds_port, cp.admin_port ...
    await cp.stop()

One grpc.aio server on ``xds_address`` serves ADS and the workload
registration service; the admin API listens on ``admin_address``. The config
file (or folder) is watched: a good edit is fed to the xDS service, a bad one
is refused and shown by ``GET /v1/config`` while the last good config stays.

"Good" means parsed *and* translatable: every new config, and every new
registration that makes or changes a service, is first translated on trial
(:meth:`XdsService.check`) for the connected nodes, a proxyless client and a
sidecar (:mod:`controlplane.registration_admission`). A config translate refuses
is refused like a parse error (at start: ConfigError, nothing served); a
registration that would break translation is refused at the API, so no single
change can leave every client without config.

The config in force is the files (``config_path``, optional) layered with the
resources applied through the API (:mod:`controlplane.layers`,
:mod:`controlplane.applied_config`), kept in the store with the registrations
(``store``: a :class:`Store`, a ``--store`` URL, or None for SQLite in
``data_dir`` or, without one, memory). The store is loaded before anything is
served: ADS and ``/readyz`` answer only once it is.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
import structlog
from aiohttp import web

from controlplane.addresses import HostPort, parse_host_port
from controlplane.admin import (
    AdminServer,
    build_admin_app,
    check_admin_address,
    check_remote_needs_tokens,
)
from controlplane.admin_auth import TokenStore
from controlplane.admin_tokens import add_token_routes
from controlplane.app_store import load_store, store_status
from controlplane.applied_config import AppliedConfig
from controlplane.ca import CaError, Security, SecuritySettings
from controlplane.certificate_service import CertificateService
from controlplane.cli_common import distribution_version
from controlplane.config import ConfigError, ConfigIssue, ConfigWatcher
from controlplane.config.emptying import check_not_emptied
from controlplane.config.yaml_lines import with_line
from controlplane.cp_metrics import ControlPlaneMetrics
from controlplane.endpoint_translate import EndpointTranslate
from controlplane.jwks_keeper import DEFAULT_REFRESH_S as DEFAULT_JWKS_REFRESH_S
from controlplane.jwks_keeper import JwksKeeper
from controlplane.layers import FileRead, Layers, compose, read_files
from controlplane.model import MeshConfig, RegisteredWorkload, Source
from controlplane.registration_admission import RegistrationAdmission
from controlplane.registration_service import RegistrationService
from controlplane.registration_store import RegistrationJournal
from controlplane.registry import Registry
from controlplane.store import ResourceKey, Store, StoredResource, StoreError, locate_store
from controlplane.store.timed import TimedStore
from controlplane.store_follower import StoreFollower
from controlplane.translate import PolicySettings, translate
from controlplane.xds import SnapshotError, TranslationError, XdsService
from controlplane.xds.server import SERVER_OPTIONS as XDS_SERVER_OPTIONS
from controlplane.xds.updater import Translate

log = structlog.get_logger(__name__)

GRACE_S = 1.0
# Without this grpc sets SO_REUSEPORT, and a second control plane on a busy port would
# silently share it instead of failing.
_SERVER_OPTIONS = (("grpc.so_reuseport", 0), *XDS_SERVER_OPTIONS)


class StartupError(Exception):
    """The control plane could not start (a port, the data folder, ...)."""


class DataDirError(StartupError):
    """``--data-dir`` is not a writable folder."""


class SecuritySetupError(DataDirError):
    """The CA material (``--ca-cert/--ca-key``, ``DATA_DIR/ca``) cannot be used."""


class StoreUnavailable(StartupError):
    """The store cannot be opened (locked by another process, unreadable, ...)."""


def default_replica_id() -> str:
    """``HOST:PID``: tells replicas apart, and a restarted process from its predecessor."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def prepare_data_dir(path: Path) -> Path:
    """Create ``path`` if missing and prove it is a writable folder."""
    if path.exists() and not path.is_dir():
        raise DataDirError(f"--data-dir {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise DataDirError(f"--data-dir {path}: not a writable folder: {exc.strerror}") from exc
    return path.resolve()


# Translate names a resource "Kind namespace/name (FILE#DOC): ..." in its errors.
_TRANSLATE_ORIGIN = re.compile(r"^(\w+ [\w.-]+/[\w.-]+) \((.+)#(\d+)\): (.*)$", re.DOTALL)


def untranslatable(error: TranslationError | SnapshotError, where: str | Path) -> ConfigError:
    """A translation refusal as a config error: ``FILE#DOC: ...`` when the message
    names the resource, else ``where`` (the config path, the request)."""
    found = _TRANSLATE_ORIGIN.match(str(error))
    if found is None:
        issue = ConfigIssue(str(where), None, "", f"cannot be served over xDS: {error}")
    else:
        what, file, document, rest = found.groups()
        issue = ConfigIssue(file, int(document), "", f"{what} cannot be served over xDS: {rest}")
    return ConfigError([issue])


class ControlPlane:
    """Everything one ``mesh-controlplane serve`` runs, started and stopped together."""

    def __init__(
        self,
        config_path: str | Path | None,
        xds_address: str = "127.0.0.1:15010",
        admin_address: str = "127.0.0.1:15014",
        data_dir: str | Path | None = None,
        debounce_s: float = 0.1,
        *,
        max_debounce_s: float = 1.0,
        admin_allow_remote: bool = False,
        allow_empty_config: bool = False,
        translate_fn: Translate = translate,
        admin_token_file: str | Path | None = None,
        replica_id: str | None = None,
        store: Store | str | None = None,
        security: SecuritySettings | None = None,
        plaintext_registration: bool = True,
        jwks_refresh_s: float = DEFAULT_JWKS_REFRESH_S,
    ) -> None:
        """Checks the arguments only (AddressError, AdminAddressError); starts nothing.

        ``allow_empty_config`` lets an edit remove every ServiceEntry (refused
        otherwise, see :mod:`controlplane.config.emptying`); ``translate_fn``
        replaces the translation (tests of the refusal paths). ``admin_token_file`` is
        read here (TokenFileError names the file and line); ``replica_id`` names this
        process in the client view and metrics (default ``HOST:PID``). ``store`` as in the
        module docstring (StoreLocationError for a URL naming no usable store)."""
        self.config_path = Path(config_path) if config_path is not None else None
        self._xds_address = parse_host_port(xds_address, what="--xds-address", allow_port_zero=True)
        self._admin_address = parse_host_port(
            admin_address, what="--admin-address", allow_port_zero=True
        )
        check_admin_address(self._admin_address, allow_remote=admin_allow_remote)
        check_remote_needs_tokens(allow_remote=admin_allow_remote, token_file=admin_token_file)
        self.admin_tokens = TokenStore(admin_token_file) if admin_token_file is not None else None
        self.replica_id = replica_id or default_replica_id()
        self.metrics = ControlPlaneMetrics(self.replica_id, distribution_version())
        # RequestAuthentication jwksUri key sets, fetched here and pushed inline.
        self.jwks = JwksKeeper(self._jwks_changed, refresh_s=jwks_refresh_s, metrics=self.metrics)
        if debounce_s < 0 or max_debounce_s < debounce_s:
            raise ValueError(f"debounce {debounce_s}s must be >= 0 and <= {max_debounce_s}s")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.allow_empty_config = allow_empty_config
        # The CA and the secure xDS address (controlplane.ca); None: plaintext xDS only.
        self._security_settings = security
        self.security: Security | None = None
        self.plaintext_registration = plaintext_registration
        self.store = TimedStore(
            store if isinstance(store, Store) else locate_store(store, self.data_dir),
            self.metrics.store_call,
        )
        self.journal = RegistrationJournal(self.store)
        # A registration is translated on trial only when it changes a service.
        self.admission = RegistrationAdmission(
            lambda workloads: self.xds.check(workloads=workloads), lambda: self._config
        )
        self.registry = Registry(
            on_change=self._workloads_changed, admission=self.admission, journal=self.journal
        )
        self.applied = AppliedConfig(self.store, self)
        self._layers = Layers()
        self._store_loaded = False
        # The watcher's latest load (config, files, stored layer used), taken by _config_changed.
        self._loaded: tuple[MeshConfig, FileRead, Mapping[ResourceKey, StoredResource]] | None
        self._loaded = None
        if translate_fn is translate:
            # Policies and expected SANs name identities in the CA's trust domain;
            # a registration moving endpoints rebuilds only what they touch.
            policy = PolicySettings()
            if security is not None:
                policy = PolicySettings(trust_domain=security.trust_domain)
            translate_fn = EndpointTranslate(policy)
        self.xds = XdsService(
            debounce_s=debounce_s,
            max_debounce_s=max_debounce_s,
            translate_fn=translate_fn,
            observer=self.metrics,
        )
        self._grpc: grpc.aio.Server | None = None
        self._admin: AdminServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._xds_port: int | None = None
        self._serving = False
        self._stopped = False
        self._config: MeshConfig | None = None
        self._config_loaded_at: str | None = None
        self._config_error: tuple[ConfigError, str] | None = None

    @property
    def xds_port(self) -> int:
        if self._xds_port is None:
            raise RuntimeError("the control plane is not started")
        return self._xds_port

    @property
    def admin_port(self) -> int:
        if self._admin is None:
            raise RuntimeError("the control plane is not started")
        return self._admin.port

    @property
    def xds_address(self) -> HostPort:
        """The xDS address with the bound port."""
        return self._xds_address.with_port(self.xds_port)

    @property
    def secure_xds_address(self) -> HostPort | None:
        """The secure xDS address with the bound port; None without one."""
        return None if self.security is None else self.security.address

    @property
    def admin_address(self) -> HostPort:
        """The admin address with the bound port."""
        return self._admin_address.with_port(self.admin_port)

    async def start(self) -> None:
        """Load config, then serve; on any failure everything started is stopped again."""
        if self._grpc is not None or self._stopped:
            raise RuntimeError("a ControlPlane starts once")
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        if self.data_dir is not None:
            self.data_dir = await asyncio.to_thread(prepare_data_dir, self.data_dir)
        try:
            layers, contents = await load_store(self.store, self.registry, self.journal)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._store_loaded = True
        if self._security_settings is not None:
            try:
                self.security = await Security.open(
                    self._security_settings, self.store, contents, self.data_dir
                )
            except (CaError, OSError) as exc:
                raise SecuritySetupError(f"CA: {exc}") from exc
            except StoreError as exc:
                raise StoreUnavailable(f"CA: {exc}") from exc
        # Other replicas' commits (a shared store): held from here, applied once serving.
        security = self.security
        follower = StoreFollower(
            self.store,
            self,
            self.registry,
            on_revoked=None if security is None else security.follow,
        )
        self.store.watch(follower)
        files = await asyncio.to_thread(read_files, self.config_path)
        config = await asyncio.to_thread(compose, files, layers.stored)  # ConfigError
        refusal = self._translation_refusal(config)
        if refusal is not None and self._drop_restored_registrations(config, refusal):
            refusal = None
        if refusal is not None:
            raise refusal
        if not config.service_entries:
            log.warning("config_without_services", path=str(self.config_path))
        self._layers = Layers(files, layers.stored, layers.revision)
        self._config, self._config_loaded_at = config, _now_iso()
        self._grpc = grpc.aio.server(options=_SERVER_OPTIONS)
        self.xds.register(self._grpc)
        RegistrationService(
            self.registry, self.security, plaintext=self.plaintext_registration
        ).add_to_server(self._grpc)
        try:
            self._xds_port = self._grpc.add_insecure_port(str(self._xds_address))
        except RuntimeError as exc:
            raise StartupError(f"--xds-address {self._xds_address}: cannot listen") from exc
        if self.security is not None:
            CertificateService(self.security.ca, self.security.tokens).add_to_server(self._grpc)
            try:
                self.security.serve(self._grpc)
            except RuntimeError as exc:
                address = self.security.settings.address
                raise StartupError(f"--secure-xds-address {address}: cannot listen") from exc
        await self.xds.start()
        await self.jwks.prefetch(config)
        self.xds.update(config=self.jwks.resolve(config), workloads=self.registry.snapshot())
        follower.go_live()
        await self._grpc.start()
        self._serving = True
        admin = AdminServer(self.admin_app(), self._admin_address)
        try:
            await admin.start()
        except OSError as exc:
            raise StartupError(str(exc)) from exc
        self._admin = admin
        self._tasks = [
            asyncio.create_task(self.registry.run_expiry(), name="registry-expiry"),
            asyncio.create_task(self.journal.run(), name="registration-journal"),
            asyncio.create_task(self.jwks.run(), name="jwks-keeper"),
        ]
        if self.config_path is not None:
            watcher = ConfigWatcher(
                self.config_path,
                self._config_changed,
                self._config_refused,
                on_unchanged=self._config_reread,
                last_good=config,
                load=self._load_layered,
            )
            self._tasks.append(asyncio.create_task(watcher.run(), name="config-watcher"))
        if self.admin_tokens is not None:
            self._tasks.append(asyncio.create_task(self.admin_tokens.watch(), name="admin-tokens"))
        for task in self._tasks:
            task.add_done_callback(_log_crash)
        log.info(
            "controlplane_started",
            xds_address=str(self.xds_address),
            secure_xds_address=str(self.secure_xds_address),
            admin_address=str(self.admin_address),
            config=str(self.config_path),
            store=self.store.url,
        )

    async def stop(self) -> None:
        """Stop watching, stop the admin API, end xDS streams, close the gRPC server."""
        if self._stopped:
            return
        self._stopped = True
        self._serving = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._admin is not None:
            await self._admin.stop()
        await self.xds.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=GRACE_S)
        if self._store_loaded:
            await self.journal.flush()
        await self.store.close()
        if self._grpc is not None:
            log.info("controlplane_stopped")

    def _drop_restored_registrations(self, config: MeshConfig, refusal: ConfigError) -> bool:
        """When only the registrations restored from the store keep ``config`` from being
        served (the files changed while the control plane was down), drop them: their
        workloads register again at their next heartbeat, and are refused with the reason."""
        restored = self.registry.snapshot()
        if not restored:
            return False
        try:
            self.xds.check(config=config, workloads=())
        except (TranslationError, SnapshotError):
            return False
        log.warning("restored_registrations_dropped", count=len(restored), reason=str(refusal))
        for workload in restored:
            self.registry.deregister(workload.id)
        return True

    def _load_layered(self, path: Path) -> MeshConfig:
        """The watcher's load (on a worker thread): the files layered with the stored
        resources in force now."""
        stored = self._layers.stored
        files = read_files(path)
        config = compose(files, stored)  # ConfigError
        self._loaded = (config, files, stored)
        return config

    def _taken_files(self, config: MeshConfig) -> tuple[MeshConfig, FileRead]:
        """The files behind a config the watcher loaded, the union recomposed if the
        stored layer changed since (an apply landed while the files were read)."""
        loaded = self._loaded
        if loaded is None or loaded[0] is not config:
            return config, self._layers.files
        _, files, stored = loaded
        if stored is not self._layers.stored:
            config = compose(files, self._layers.stored)  # ConfigError
        return config, files

    def _config_changed(self, config: MeshConfig) -> None:
        """A new config that validates: raises ConfigError to refuse it (the watcher
        then reports it through :meth:`_config_refused`)."""
        assert self.config_path is not None, "only watched files change"
        config, files = self._taken_files(config)
        if not self.allow_empty_config:
            check_not_emptied(self._config, config, self.config_path)
        refusal = self._translation_refusal(config)
        if refusal is not None:
            raise refusal
        self._layers = Layers(files, self._layers.stored, self._layers.revision)
        self._config, self._config_loaded_at = config, _now_iso()
        self._config_error = None
        self.metrics.config_reload("accepted")
        self.xds.update(config=self.jwks.resolve(config))

    def _config_reread(self, config: MeshConfig) -> None:
        """The files validate again as the config in force (a bad edit reverted)."""
        _, files = self._taken_files(config)
        self._layers = Layers(files, self._layers.stored, self._layers.revision)
        self._config_loaded_at = _now_iso()
        self._config_error = None
        self.metrics.config_reload("unchanged")

    def _config_refused(self, error: ConfigError) -> None:
        self._config_error = (error, _now_iso())
        self.metrics.config_reload("refused")
        for issue in error.issues:
            log.warning("config_issue", issue=with_line(issue))

    def _translation_refusal(
        self, config: MeshConfig, where: str | Path | None = None
    ) -> ConfigError | None:
        """None when ``config`` translates with the live registrations, else why not
        (``where``: what to blame when the error names no resource; the config path)."""
        where = where or self.config_path or "config"
        try:
            self.xds.check(config=config)
        except (TranslationError, SnapshotError) as exc:
            log.error("config_untranslatable", where=str(where), error=str(exc))
            return untranslatable(exc, where)
        return None

    # The applied config's ConfigHost.

    def layers(self) -> Layers:
        return self._layers

    def check_translation(self, config: MeshConfig) -> None:
        refusal = self._translation_refusal(config, "request")
        if refusal is not None:
            raise refusal

    def install(self, layers: Layers, config: MeshConfig | ConfigError) -> None:
        self._layers = layers
        if isinstance(config, ConfigError):  # stored, but clashing with files changed meanwhile
            self._config_error = (config, _now_iso())
            return
        self._config, self._config_loaded_at = config, _now_iso()
        self.xds.update(config=self.jwks.resolve(config))

    def _jwks_changed(self) -> None:
        """A jwksUri gave new keys: push the config in force with them."""
        if self._config is not None:
            self.xds.update(config=self.jwks.resolve(self._config))

    def _workloads_changed(self, workloads: tuple[RegisteredWorkload, ...]) -> None:
        self.xds.update(workloads=workloads)

    # The admin API's StatusSource.

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if not self._store_loaded:
            reasons.append(f"store {self.store.url} not loaded")
        if self._config is None:
            reasons.append("config not loaded")
        if not self._serving:
            reasons.append("xDS server not serving")
        if self.xds.last_error is not None:
            reasons.append(f"xDS rebuild refused, clients keep older config: {self.xds.last_error}")
        return reasons

    def admin_app(self) -> web.Application:
        """The admin API over this control plane: every route it serves, behind its tokens."""
        app = build_admin_app(self.registry, self, tokens=self.admin_tokens, applied=self.applied)
        if self.security is not None:
            add_token_routes(app, self.security)
        return app

    def reload_admin_tokens(self) -> None:
        """Re-read the admin token file (SIGHUP); a bad file keeps the tokens in force."""
        if self.admin_tokens is not None:
            self.admin_tokens.reload()

    def clients_status(self) -> list[dict[str, Any]]:
        return [{**c, "replica": self.replica_id} for c in self.xds.clients_status()]

    def client_detail(self, node_id: str) -> dict[str, Any] | None:
        detail = self.xds.client_detail(node_id)
        return None if detail is None else {**detail, "replica": self.replica_id}

    def metrics_text(self) -> str:
        return self.metrics.render()

    def config_status(self) -> dict[str, Any]:
        config = self._config
        status: dict[str, Any] = {
            "path": None if self.config_path is None else str(self.config_path.resolve()),
            "loaded": config is not None,
            "loaded_at": self._config_loaded_at,
            "files": sorted({document.file for document in self._layers.files.documents}),
            "resources": [] if config is None else _resources(config),
            "store": store_status(self.store, self._layers, self._store_loaded),
            "last_error": None,
            "xds_error": self.xds.last_error,
            "jwks": self.jwks.status(),
        }
        if self._config_error is not None:
            error, at = self._config_error
            status["last_error"] = {
                "at": at,
                "message": str(error),
                "issues": [str(issue) for issue in error.issues],
            }
        return status


def _log_crash(task: asyncio.Task[None]) -> None:
    """A background task must run until stop; say loudly when one dies early."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_failed", task=task.get_name(), exc_info=task.exception())


def _resource_rows(config: MeshConfig) -> list[tuple[str, str, str, Source | None]]:
    kinds: list[tuple[str, Sequence[Any]]] = [
        ("ServiceEntry", config.service_entries),
        ("WorkloadEntry", config.workload_entries),
        ("VirtualService", config.virtual_services),
        ("DestinationRule", config.destination_rules),
    ]
    return [(kind, r.namespace, r.name, r.source) for kind, rs in kinds for r in rs]


def _resources(config: MeshConfig) -> list[dict[str, str]]:
    return [
        {"kind": kind, "namespace": ns, "name": name, "source": str(src) if src else ""}
        for kind, ns, name, src in _resource_rows(config)
    ]
