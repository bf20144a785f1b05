"""``jtca serve`` and ``jtca db``: the commands that run on the authority's own machine.

``jtca serve --listen HOST:PORT`` serves HTTPS (TLS 1.3 only) with ``--tls-cert``/``--tls-key``,
or with a server certificate it makes once under ``state/tls/`` (clients pin it with
``JTCA_SERVER_CERT``); ``--uds PATH`` serves plain HTTP on a Unix socket of mode 0600. It refuses
to start on a schema that is behind (``jtca db upgrade``) or ahead of the code; ``--embedded`` (the
client's own start of the embedded default) upgrades the schema itself. SIGTERM and SIGINT stop
it gracefully: it stops accepting and finishes the requests in flight.

Before it serves, it starts keeping the audit log (issue #13, ``Runtime.start_log``): every entry
it appends is sealed, and a checkpointer thread signs a checkpoint after every batch of changes
into the checkpoint folder (``<state>/log``, or ``$JTCA_LOG_DIR``). Both stop with the service.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import ipaddress
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ca.core.errors import JtcaError

GRACE: Final = 60  # seconds to finish requests in flight on SIGTERM
log = logging.getLogger("jtca.serve")


class ServeError(JtcaError):
    title = "Cannot serve"
    exit_code = 2


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError(f"--listen {value!r}: use HOST:PORT (for example 127.0.0.1:8443)")
    return host.strip("[]"), int(port)


def self_made_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """A server certificate for ``host`` (and localhost), made once under ``folder``: P-256,
    two years. Transport security only — the authority's own signatures are SM2 in tokens."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / "server.pem", folder / "server-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"jtca service {host}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _unix_socket(path: Path) -> socket.socket:
    from ca.client.embedded import answers

    if answers(path):
        raise ServeError(f"a jtca service already answers on {path}")
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    path.chmod(0o600)
    sock.listen(128)
    return sock


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ca.api.app import Activity, create_app

    _GracefulServer = _graceful_server_class()
    from ca.client.config import state_dir
    from ca.client.embedded import PID_FILE, mark_state
    from ca.obs import logs
    from ca.service.runtime import open_runtime

    logs.configure()  # JSON lines on stderr (JTCA_LOG_FORMAT=text, JTCA_LOG_LEVEL): issue #16
    if (args.listen is None) == (args.uds is None):
        raise ServeError("give one of --listen HOST:PORT or --uds PATH")
    metrics_token = None
    if args.metrics_token_file:
        from ca.api.metrics_http import read_token_file

        metrics_token = read_token_file(Path(args.metrics_token_file))
    from ca.policy.in_force import read_policy

    read_policy(Path(args.policy) if args.policy else None)  # a bad file: no start (#16)
    state = Path(args.state) if args.state else state_dir()
    if args.embedded:
        mark_state(state)
    runtime = open_runtime(
        state, migrate="upgrade" if args.embedded else "check", embedded=args.embedded
    )
    from ca.service.policy import adopt_or_check

    try:  # issue #16: validated; adopted on a new database, else the policy in force only
        adopt_or_check(runtime, Path(args.policy) if args.policy else None)
    except BaseException:
        runtime.close()
        raise
    activity = Activity()
    app = create_app(
        runtime, max_body=args.max_body, activity=activity, metrics_token=metrics_token
    )
    config_args: dict[str, object] = {
        "log_config": None,  # uvicorn's own lines go through jtca's JSON log (ca.obs.logs)
        "log_level": "warning",
        "timeout_keep_alive": 30,
        "timeout_graceful_shutdown": GRACE,
        "h11_max_incomplete_event_size": 64 * 1024,
        "limit_concurrency": args.max_connections,
        "server_header": False,
    }
    sockets: list[socket.socket] = []
    if args.uds:
        sockets.append(_unix_socket(Path(args.uds)))
        where = f"unix://{args.uds}"
    else:
        host, port = parse_listen(args.listen)
        if args.tls_cert or args.tls_key:
            if not (args.tls_cert and args.tls_key):
                raise ServeError("--tls-cert and --tls-key go together")
            cert, key = Path(args.tls_cert), Path(args.tls_key)
        else:
            cert, key = self_made_certificate(state / "tls", host)
            print(f"jtca serve: TLS with the server certificate {cert} (clients pin it: "
                  f"JTCA_SERVER_CERT={cert})", file=sys.stderr)  # fmt: skip
        config_args.update(host=host, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key))
        where = f"https://{host}:{port}"
        if not _loopback(host):
            log.info("listening beyond loopback on %s: TLS 1.3 only", host)
    for option, module in (("http", "httptools"), ("loop", "uvloop")):  # issue #16 point 7
        if importlib.util.find_spec(module) is not None:
            config_args[option] = module  # else uvicorn's h11 / asyncio
    config = uvicorn.Config(app, **config_args)  # type: ignore[arg-type]
    config.load()
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
    server = _GracefulServer(config)
    pid_file = state / PID_FILE
    if args.embedded:
        pid_file.write_text(f"{os.getpid()}\n")
    if args.idle_exit:
        _idle_watch(server, activity, args.idle_exit)
    runtime.start_log()  # seal entries, sign checkpoints (never fails the start: logged)
    from ca.service.recovery import recover_quietly

    for item in recover_quietly(runtime, now=int(time.time())):  # what a crash left (#14)
        print(
            f"jtca serve: recovered intent {item.intent} ({item.operation} on {item.subject}): "
            f"{item.result}: {item.outcome}",
            file=sys.stderr,
        )
    print(
        f"jtca serve: {where} (state {state.resolve()}, database {runtime.database})",
        file=sys.stderr,
    )
    try:
        server.run(sockets=sockets or None)
    finally:
        runtime.close()
        if args.uds:
            Path(args.uds).unlink(missing_ok=True)
        if args.embedded and pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink(missing_ok=True)
    return 0


def _graceful_server_class() -> type:
    import contextlib
    from collections.abc import Iterator

    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, so the process would die by the
        signal; a shutdown that finished its requests exits 0 instead (systemd, supervisors)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                getattr(self, "_captured_signals", []).clear()

    return GracefulServer


def _idle_watch(server: object, activity: object, seconds: int) -> None:
    from ca.api.app import Activity

    if not isinstance(activity, Activity):
        raise TypeError("activity must be an Activity")

    def watch() -> None:
        while not getattr(server, "should_exit", False):
            time.sleep(min(1.0, seconds / 4))
            if activity.running == 0 and time.monotonic() - activity.last > seconds:
                log.info("idle for %s s: exiting", seconds)
                server.should_exit = True  # type: ignore[attr-defined]
                return

    threading.Thread(target=watch, name="idle-exit", daemon=True).start()


def db(args: argparse.Namespace) -> int:
    from ca.client.config import state_dir
    from ca.store.db import database_url, make_engine
    from ca.store.schema import check_schema, upgrade

    state = Path(args.state) if args.state else state_dir()
    engine = make_engine(database_url(state))
    try:
        if args.db_command == "upgrade":
            before = check_schema(engine)
            after = upgrade(engine)
            if before.current == after.current:
                print(f"jtca db: already at the newest revision {after.current}")
            else:
                print(f"jtca db: upgraded from {before.current or '(empty)'} to {after.current}")
            return 0
        found = check_schema(engine)
        state_text = (
            "current"
            if found.current_is_head
            else "ahead of this jtca"
            if found.ahead
            else "behind: run `jtca db upgrade`"
        )
        print(f"revision {found.current or '(empty)'}; this jtca knows {found.head}: {state_text}")
        return 0 if found.current_is_head else 1
    finally:
        engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    from ca.cli.main import Parser

    parser = Parser(prog="jtca")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    p = sub.add_parser("serve", help="run the authority service")
    p.add_argument("--listen", metavar="HOST:PORT", help="HTTPS (TLS 1.3) on this address")
    p.add_argument("--uds", metavar="PATH", help="plain HTTP on a Unix socket (mode 0600)")
    p.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="its private key")
    p.add_argument(
        "--state", metavar="DIR", help="the state folder (default $JTCA_STATE or ./state)"
    )
    p.add_argument("--embedded", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--policy",
        metavar="PATH",
        help="the policy file (default $JTCA_POLICY, else the shipped policies/authority.toml): "
        "adopted at the first start, afterwards only the approved policy in force "
        "(docs/policy.md)",
    )
    p.add_argument(
        "--idle-exit",
        type=int,
        default=0,
        metavar="SECONDS",
        help="exit after this long with no request (0: never)",
    )
    p.add_argument(
        "--max-body",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="largest request body",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=256,
        metavar="N",
        help="concurrent connections before 503",
    )
    p.add_argument(
        "--metrics-token-file",
        metavar="FILE",
        help="GET /metrics beyond loopback needs 'Authorization: Bearer' with this file's token",
    )
    p.set_defaults(handler=serve)
    d = sub.add_parser("db", help="the database schema: upgrade, status")
    dsub = d.add_subparsers(dest="db_command", metavar="COMMAND", parser_class=Parser)
    dsub.required = True
    for name, text in (("upgrade", "run the migrations (refuses a database newer than jtca)"),
                       ("status", "the schema revision against this jtca's")):  # fmt: skip
        q = dsub.add_parser(name, help=text)
        q.add_argument("--state", metavar="DIR")
        q.set_defaults(handler=db)
    return parser


def main(argv: Sequence[str]) -> int:
    from ca.cli.main import run_guarded

    def run() -> int:
        args = build_parser().parse_args(list(argv))
        status: int = args.handler(args)
        return status

    return run_guarded(run)
