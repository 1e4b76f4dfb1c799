"""Load a certificate and key into an ``ssl.SSLContext`` without the key touching disk.

Python's ssl reads a key only from a path. The chain and key go into anonymous
memory files (``os.memfd_create``: RAM, no name in any file system, closed on
exec), the context loads them through ``/proc/self/fd/N``, and the files are
closed at once.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from meshlib.errors import SecurityError

if TYPE_CHECKING:
    from meshlib.security.pki import WorkloadCertificate


@contextmanager
def _memory_file(data: bytes, name: str) -> Iterator[str]:
    create = getattr(os, "memfd_create", None)
    if create is None:
        raise SecurityError("loading the workload key needs os.memfd_create (Linux)")
    fd = create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def load_workload_certificate(context: ssl.SSLContext, certificate: WorkloadCertificate) -> None:
    """Make ``context`` present ``certificate``; SecurityError if OpenSSL refuses it."""
    with (
        _memory_file(certificate.chain_pem, "meshlib-chain") as chain,
        _memory_file(certificate.key_pem, "meshlib-key") as key,
    ):
        try:
            context.load_cert_chain(chain, key)
        except (ssl.SSLError, OSError) as exc:
            raise SecurityError(f"workload certificate: OpenSSL refused it ({exc})") from exc
