"""Where a ``Mesh`` gets its identity: a join token, else the bootstrap's certificate files.

Order (DESIGN.md): ``Mesh(token=...)``, then ``MESH_TOKEN``, then ``MESH_TOKEN_FILE``;
with none of them, the bootstrap's ``certificate_providers`` file_watcher (files kept
by ``meshctl agent``); with none of that, no identity (plaintext, as before).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from meshlib.security.join_token import read_token_file
from meshlib.security.keeper import CertificateKeeper

TOKEN_ENV = "MESH_TOKEN"
TOKEN_FILE_ENV = "MESH_TOKEN_FILE"


def find_token(
    token: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """(token, where it came from), or None when the process has no token."""
    env = os.environ if environ is None else environ
    if token is not None:
        return token, "Mesh(token=...)"
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    if env.get(TOKEN_FILE_ENV):
        path = env[TOKEN_FILE_ENV]
        return read_token_file(path), f"${TOKEN_FILE_ENV} ({path})"
    return None


def workload_keeper(token: str | None) -> CertificateKeeper | None:
    """The keeper for this process's identity, its first certificate already obtained;
    JoinTokenError / CertificateRequestError (both SecurityError) say why not."""
    found = find_token(token)
    if found is None:
        return None
    value, where = found
    return CertificateKeeper.from_token(value, where=where)


__all__ = ["TOKEN_ENV", "TOKEN_FILE_ENV", "find_token", "workload_keeper"]
