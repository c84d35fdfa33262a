"""
TLS for client ports, from PEM files named in the cluster file.
"""

from __future__ import annotations

from twisted.internet import ssl


def server_context(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    """
    Server TLS options from a PEM certificate (chain) and a PEM private key.

    @raise OSError: a file cannot be read.
    @raise ValueError: the files do not hold a matching certificate and key.
    """
    with open(cert_path, "rb") as f:
        cert = f.read()
    with open(key_path, "rb") as f:
        key = f.read()
    try:
        certificate = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key)
    except Exception as e:
        raise ValueError(f"{cert_path} and {key_path} do not hold a usable certificate and key: {e}") from None
    return certificate.options()
