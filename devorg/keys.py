"""Key pairs for the JWT bearer flow: the private key signs assertions, the certificate is what a
client app registers with the org (in Salesforce: uploaded to the External Client App)."""
from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def key_and_certificate(common_name: str = "sfconnect local org",
                        days: int = 30) -> tuple[bytes, str]:
    """A fresh 2048-bit RSA key (PEM, PKCS#8) and a self-signed certificate for it (PEM text)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   # a day of slack for clocks that disagree
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .sign(key, hashes.SHA256()))
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return private_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()
