"""A certificate kept in files (``meshctl agent``'s folder, a bootstrap's file_watcher).

``meshctl agent`` replaces each file by a rename, root first, then the key, then the
chain, so a reader can catch a new key with the old chain: the set is used only
when the leaf matches the key, and is read again at the next look otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from meshlib.errors import SecurityError
from meshlib.security.pki import WorkloadCertificate, load_certificates

_Stamp = tuple[tuple[int, int, int], ...]


@dataclass
class CertificateFiles:
    chain_file: Path
    key_file: Path
    root_file: Path
    _stamp: _Stamp = ()

    def _stat(self) -> _Stamp:
        stamps = []
        for path in (self.chain_file, self.key_file, self.root_file):
            try:
                info = os.stat(path)
            except OSError as exc:
                raise SecurityError(f"certificate file {path}: {exc.strerror or exc}") from exc
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def _bytes(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SecurityError(f"certificate file {path}: {exc.strerror or exc}") from exc

    def read(self) -> WorkloadCertificate:
        """The certificate the files hold now; SecurityError naming the file at fault."""
        stamp = self._stat()
        chain, key, root = (
            self._bytes(p) for p in (self.chain_file, self.key_file, self.root_file)
        )
        leaf = load_certificates(chain, f"certificate file {self.chain_file}")[0]
        load_certificates(root, f"certificate file {self.root_file}")
        try:
            private = load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as exc:
            raise SecurityError(f"key file {self.key_file}: not an unencrypted PEM key") from exc
        if private.public_key() != leaf.public_key():
            raise SecurityError(
                f"key file {self.key_file}: does not match the leaf of {self.chain_file} "
                "(being replaced?)"
            )
        self._stamp = stamp
        return WorkloadCertificate(key, chain, root)

    def read_if_changed(self) -> WorkloadCertificate | None:
        """The new certificate when a file changed since the last look, else None
        (SecurityError once per unusable set: it is read again when it changes)."""
        stamp = self._stat()
        if stamp == self._stamp:
            return None
        try:
            return self.read()
        finally:
            self._stamp = stamp
