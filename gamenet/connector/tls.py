"""
TLS for client ports, from PEM files named in the cluster file.
"""

from __future__ import annotations

from twisted.internet import ssl


def certificate_problem(error: OSError | ValueError, section: str, cert_key: str, key_key: str, key_path: str) -> str:
    """
    One line for a certificate and key that cannot be used: the section, the
    key naming the file at fault, and why.

    @param error: what reading them raised (L{server_context}'s errors).
    @param section: as in C{"[server:gate-1]"}.
    @param key_path: the file of C{key_key}, to tell which of the two was unreadable.
    """
    if isinstance(error, OSError):
        key = key_key if error.filename == key_path else cert_key
        return f"{section} {key}: cannot read {error.filename}: {error.strerror}; expected a readable PEM file"
    return f"{section} {cert_key}: {error}"


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
