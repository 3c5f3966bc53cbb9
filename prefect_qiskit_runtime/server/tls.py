"""A self-signed certificate for ``--tls-self-signed``: created once per service home, then reused.

The old client streams interim results only over ``wss://``, so only from an ``https`` service. Its
users point ``REQUESTS_CA_BUNDLE`` and ``WEBSOCKET_CLIENT_CA_BUNDLE`` at ``<home>/tls/cert.pem``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path


def self_signed_paths(home: Path) -> tuple[Path, Path]:
    """Where the self-signed certificate and its key live under ``home``."""
    return home / "tls" / "cert.pem", home / "tls" / "key.pem"


def ensure_self_signed(home: Path, *, days: int = 3650) -> tuple[Path, Path]:
    """Return ``(cert, key)`` under ``<home>/tls``, creating them on first use.

    The certificate is valid for ``localhost`` and ``127.0.0.1`` and is its own CA, so it can be
    used directly as a CA bundle. The key file is readable by its owner only.

    Args:
        home: The service home.
        days: Validity of a new certificate.

    Returns:
        Paths of the PEM certificate and the PEM private key.

    Example:
        >>> cert, key = ensure_self_signed(tmp_path)  # doctest: +SKIP
    """
    cert_path, key_path = self_signed_paths(home)
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(cert_path.parent, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prefect-qiskit-runtime local")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Write the key with 0600 from the start (never world-readable, not even briefly), then move
    # both files into place so that a concurrent reader never sees half a file.
    tmp_key = key_path.with_suffix(".pem.tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    tmp_cert = cert_path.with_suffix(".pem.tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)
    return cert_path, key_path


__all__ = ["ensure_self_signed", "self_signed_paths"]
