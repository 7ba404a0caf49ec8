"""The factory's signed record of what it registered: a tag nobody without its key can forge.

Registry tags are writable by anyone with registry write access, so ``factory.decision=blessed``
alone cannot decide what serves. At registration (and at review) the factory writes
``factory.attestation``: an HMAC-SHA256, keyed by a secret only the factory holds, over

    (registered model, version, run id, sha256 of the model file, decision)

and ``factory.model_digest`` (that sha256, for the review to re-sign without downloading). The
safe loader recomputes the model file's digest and checks the HMAC for ``blessed`` before
deserialising: a version the factory never registered, a rejected version re-tagged blessed, a
version whose model file was swapped, or an attestation copied onto another version number is
refused with the reason.

The key: ``FACTORY_SIGNING_KEY`` (any string; set the same value for every factory process of a
deployment: Airflow workers and gateways), else ``<FACTORY_HOME>/secrets/signing.key``, created
(32 random bytes, mode 0600) by the first process that needs it. The key is never logged or shown.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from model_factory.settings import FactorySettings

KEY_ENV = "FACTORY_SIGNING_KEY"
SCHEME = "hmac-sha256-v1"


def key_file(settings: FactorySettings) -> Path:
    return settings.home / "secrets" / "signing.key"


def signing_key(settings: FactorySettings) -> bytes:
    """The factory's signing key (see the module doc); created under FACTORY_HOME when absent."""
    given = settings.signing_key
    if given:
        return given.encode()
    path = key_file(settings)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic: of two processes creating it at once, one wins, both read it
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def file_digest(path: Path | str) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sign(key: bytes, model: str, version: str, run_id: str | None, digest: str, decision: str) -> str:
    message = "\n".join((SCHEME, model, str(version), run_id or "", digest, decision)).encode()
    return f"{SCHEME}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def verify(
    key: bytes,
    attestation: str | None,
    model: str,
    version: str,
    run_id: str | None,
    digest: str,
    decision: str,
) -> bool:
    if not attestation:
        return False
    return hmac.compare_digest(attestation, sign(key, model, version, run_id, digest, decision))
