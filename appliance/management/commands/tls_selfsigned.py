"""`hearth tls_selfsigned`: a self-signed certificate for a first start without the organization's own."""

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Write a self-signed TLS certificate and key (0600) for HEARTH_TLS_CERT/HEARTH_TLS_KEY. "
        "Replace them with a certificate from your own CA when you have one."
    )

    def add_arguments(self, parser):
        home = Path(settings.HEARTH_HOME) / "tls"
        parser.add_argument("--cert", type=Path, default=home / "cert.pem", help="Certificate file to write.")
        parser.add_argument("--key", type=Path, default=home / "key.pem", help="Private key file to write.")
        parser.add_argument(
            "--host",
            action="append",
            default=[],
            help="Name or address the certificate is valid for (repeatable; default: this "
            "host's names, localhost and 127.0.0.1).",
        )
        parser.add_argument("--days", type=int, default=825, help="Validity in days.")
        parser.add_argument("--force", action="store_true", help="Overwrite existing files.")

    def handle(self, *args, **opts):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        cert_path, key_path = opts["cert"], opts["key"]
        if not opts["force"] and (cert_path.exists() or key_path.exists()):
            raise CommandError(f"{cert_path} or {key_path} exists; pass --force to replace them.")
        hosts = opts["host"] or sorted({socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1"})
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hearth (self-signed)"),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=opts["days"]))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        for path, data in (
            (
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
            (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
        ):
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        self.stdout.write(f"Wrote {cert_path} and {key_path} for {', '.join(hosts)}")
