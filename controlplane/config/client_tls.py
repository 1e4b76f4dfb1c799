"""A DestinationRule's ``tls`` (trafficPolicy, port level, subset): Istio's ClientTLSSettings.

``mode`` DISABLE, SIMPLE, MUTUAL (certificate files the client reads) or ISTIO_MUTUAL
(the workload's own mesh certificate); ``sni`` and ``subjectAltNames`` for all but
DISABLE. Files are paths on the client's machine: they are not read here.
"""

from __future__ import annotations

from controlplane.config.fields import Fields, as_string
from controlplane.security_model import ClientTLSSettings, TlsMode

TLS_FIELDS = (
    "mode",
    "clientCertificate",
    "privateKey",
    "caCertificates",
    "sni",
    "subjectAltNames",
)
TLS_NOT_YET = ("credentialName", "insecureSkipVerify", "caCrl")
_FILES = ("clientCertificate", "privateKey", "caCertificates")
MODES = tuple(mode.value for mode in TlsMode)


def parse_client_tls(fields: Fields) -> ClientTLSSettings | None:
    """Validate a ``tls`` block; None when any issue was reported."""
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(TLS_FIELDS, TLS_NOT_YET, "tls")
    text = fields.choice("mode", supported=MODES, what="TLS mode")
    if text is None and not fields.present("mode"):
        ctx.error(fields.at("mode"), f"is required (one of {', '.join(MODES)})")
    mode = TlsMode(text) if text is not None else None
    files = {key: fields.string(key) or "" for key in _FILES}
    sni = fields.string("sni") or ""
    sans = _subject_alt_names(fields)
    if mode is not None:
        _check_files(fields, mode, files)
        if mode is TlsMode.DISABLE:
            for key in ("sni", "subjectAltNames"):
                if fields.present(key):
                    ctx.error(fields.at(key), "has no meaning with mode DISABLE")
    if ctx.count != before or mode is None:
        return None
    return ClientTLSSettings(
        mode=mode,
        client_certificate=files["clientCertificate"],
        private_key=files["privateKey"],
        ca_certificates=files["caCertificates"],
        sni=sni,
        subject_alt_names=sans,
    )


def _check_files(fields: Fields, mode: TlsMode, files: dict[str, str]) -> None:
    ctx = fields.ctx
    if mode in (TlsMode.DISABLE, TlsMode.ISTIO_MUTUAL):
        for key in _FILES:
            if fields.present(key):
                ctx.error(
                    fields.at(key),
                    f"must not be set with mode {mode.value} (certificate files are for "
                    "SIMPLE and MUTUAL)",
                )
        return
    if mode is TlsMode.MUTUAL:
        for key in ("clientCertificate", "privateKey"):
            if not files[key] and not fields.present(key):
                ctx.error(fields.at(key), "is required with mode MUTUAL")
    elif fields.present("clientCertificate") or fields.present("privateKey"):
        key = "clientCertificate" if fields.present("clientCertificate") else "privateKey"
        ctx.error(fields.at(key), "is only for mode MUTUAL (SIMPLE presents no certificate)")
    if not files["caCertificates"] and not fields.present("caCertificates"):
        ctx.error(
            fields.at("caCertificates"),
            f"is required with mode {mode.value} (meshlib never skips server verification; "
            "system roots are not supported yet)",
        )


def _subject_alt_names(fields: Fields) -> tuple[str, ...]:
    names: list[str] = []
    for path, value in fields.items("subjectAltNames") or ():
        name = as_string(fields.ctx, path, value)
        if name is not None:
            names.append(name)
    return tuple(names)
