"""A real FTP (or explicit FTPS) server for tests: pyftpdlib on 127.0.0.1, an ephemeral port, one thread.

    with FtpServer(tmp_path / "home") as server:
        options = server.store_options(path="/incoming")   # host, port, user, password_env

The password is put in the environment variable `PASSWORD_ENV` by the caller (monkeypatch.setenv), as a
store's `password_env` names it. `server.faults` switches on misbehaviour a test needs: an old server
without MLSD, one that refuses to rename over an existing file, a connection dropped mid-upload, a server
that keeps fewer bytes than it was sent. Faults apply only to uploads of Lethe's temp files
(".<name>.lethe-tmp-..."), so a test's own set-up uploads are never affected.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.servers import FTPServer

USER = "lethe"
PASSWORD = "Pw-9f3kQ-not-in-any-message"
PASSWORD_ENV = "LETHE_TEST_FTP_PASSWORD"
TEMP_MARK = ".lethe-tmp-"

_log = logging.getLogger("pyftpdlib")
_log.setLevel(logging.WARNING)  # quiet, and a handler of its own stops pyftpdlib configuring logging itself
_log.addHandler(logging.NullHandler())


@dataclass
class Faults:
    """Misbehaviour, read by the server thread on every command."""

    no_mlsd: bool = False  # MLSD/MLST answered "500 not understood", as old servers do
    refuse_rename_over: bool = False  # RNTO onto an existing file refused with 550 (Windows/IIS-like)
    drop_upload_after: int | None = None  # close control and data connections after N bytes of a temp upload
    truncate_upload_at: int | None = None  # keep only N bytes of a temp upload, yet answer 226
    unlistable: set[str] = field(default_factory=set)  # folders whose listing is refused (550)
    commands: list[str] = field(default_factory=list)  # verbs received (RNFR, DELE, ...), for assertions


def _temp_upload(dtp) -> bool:
    return dtp.receive and dtp.file_obj is not None and TEMP_MARK in str(getattr(dtp.file_obj, "name", ""))


class _FaultyDTP(DTPHandler):
    faults: Faults

    def handle_read(self):
        super().handle_read()
        faults = self.faults
        if not _temp_upload(self):
            return
        if faults.truncate_upload_at is not None and self.file_obj.tell() > faults.truncate_upload_at:
            self.file_obj.seek(faults.truncate_upload_at)
            self.file_obj.truncate()
        if faults.drop_upload_after is not None and self.tot_bytes_received >= faults.drop_upload_after:
            self.cmd_channel.close()  # closes this data channel too: the partial file stays, as on a crash

    handle_read_event = handle_read  # DTPHandler aliases it; the alias must see the override


class _FaultyHandler(FTPHandler):
    faults: Faults

    def pre_process_command(self, line, cmd, arg):
        self.faults.commands.append(cmd)
        if self.faults.no_mlsd and cmd in ("MLSD", "MLST"):
            self.respond(f'500 Command "{cmd}" not understood.')
            return
        if cmd in ("MLSD", "NLST", "LIST") and arg and arg.rstrip("/") in self.faults.unlistable:
            self.respond("550 Permission denied.")
            return
        super().pre_process_command(line, cmd, arg)

    def ftp_RNTO(self, path):
        if self.faults.refuse_rename_over and self._rnfr and self.fs.lexists(path):
            self._rnfr = None
            self.respond("550 Cannot rename: the destination exists.")
            return None
        return super().ftp_RNTO(path)


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1, valid for a day; an EC key, quick to make."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class FtpServer:
    """pyftpdlib serving `home` to USER/PASSWORD; with `tls_cert` an explicit-FTPS server that requires TLS
    on both the control and the data connection."""

    def __init__(self, home: Path, *, tls_cert: tuple[Path, Path] | None = None, port: int = 0,
                 user: str = USER, password: str = PASSWORD):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.faults = Faults()
        self.user = user
        authorizer = DummyAuthorizer()
        authorizer.add_user(user, password, str(self.home), perm="elradfmwMT")
        if tls_cert is None:
            dtp = type("DTP", (_FaultyDTP,), {"faults": self.faults})
            handler = type("Handler", (_FaultyHandler,), {
                "authorizer": authorizer, "dtp_handler": dtp, "faults": self.faults, "banner": "test ftpd",
                "auth_failed_timeout": 0.05})
        else:
            from pyftpdlib.handlers import TLS_FTPHandler

            handler = type("TlsHandler", (TLS_FTPHandler,), {
                "authorizer": authorizer, "certfile": str(tls_cert[0]), "keyfile": str(tls_cert[1]),
                "tls_control_required": True, "tls_data_required": True, "banner": "test ftpsd"})
        self.server = FTPServer(("127.0.0.1", port), handler)
        self.host, self.port = self.server.address[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-ftpd", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.server.ioloop.loop(timeout=0.02, blocking=False)
        self.server.close_all()

    def start(self) -> "FtpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> "FtpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def store_options(self, **extra) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "password_env": PASSWORD_ENV, **extra}

    def put(self, remote: str, content: bytes) -> Path:
        """Place a file straight into the served folder (set-up, not through FTP)."""
        path = self.home / remote.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    def read(self, remote: str) -> bytes:
        return (self.home / remote.lstrip("/")).read_bytes()

    def files(self) -> list[str]:
        """Every file on the server, as /-rooted paths, sorted."""
        return sorted("/" + p.relative_to(self.home).as_posix() for p in self.home.rglob("*") if p.is_file())
