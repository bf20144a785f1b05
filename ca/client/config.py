"""Where the service is: ``JTCA_URL`` (with ``JTCA_SERVER_CERT`` to pin its certificate), else
``$XDG_CONFIG_HOME/jtca/config.toml``, else ``/etc/jtca/config.toml``, else the embedded default:
a service on a Unix socket in the state folder (``JTCA_STATE``, default ``./state``), started on
first use by the client itself — but only for a state folder made by ``jtca init`` or
``jtca demo``: a client never creates a database in whatever folder it was started from.

config.toml::

    [service]
    url = "https://ca.example.internal:8443"   # or unix:///run/jtca/jtca.sock
    server_cert = "/etc/jtca/server.pem"        # the certificate to pin (https only)
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from ca.core.errors import JtcaError

URL_ENV: Final = "JTCA_URL"
CERT_ENV: Final = "JTCA_SERVER_CERT"
STATE_ENV: Final = "JTCA_STATE"
SYSTEM_CONFIG: Final = Path("/etc/jtca/config.toml")
STATE_MARKER: Final = "jtca-state.toml"  # written by `jtca init` / `jtca demo`
SOCKET_NAME: Final = "jtca.sock"
UDS_MAX: Final = 100  # sun_path is 108 bytes on Linux; keep a margin

Source = Literal["environment", "user config", "system config", "embedded"]


class ConfigError(JtcaError):
    title = "Client configuration"
    exit_code = 2


class NoService(JtcaError):
    """No service is configured and there is no state folder to start the embedded one on."""

    title = "No authority here"
    exit_code = 69  # EX_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Target:
    """How to reach the service."""

    source: Source
    url: str  # https://host:port, http://127.0.0.1:port (loopback only) or unix:///path
    server_cert: Path | None = None
    state: Path | None = None  # the embedded default's state folder
    config_file: Path | None = None

    @property
    def uds(self) -> str | None:
        return urlsplit(self.url).path if self.url.startswith("unix://") else None


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV, "state"))


def user_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jtca" / "config.toml"


def socket_path(state: Path) -> Path:
    """The embedded service's socket: in the state folder, or — when that path is too long for
    a Unix socket — under /tmp, named by the state folder's hash."""
    inside = state.resolve() / SOCKET_NAME
    if len(str(inside).encode()) <= UDS_MAX:
        return inside
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:16]
    folder = Path("/tmp") / f"jtca-{os.getuid()}"  # noqa: S108 - private folder, mode 0700
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{digest}.sock"


def has_state(state: Path) -> bool:
    """A state folder made by ``jtca init`` or ``jtca demo`` (or an older one with its
    database)."""
    return (state / STATE_MARKER).is_file() or (state / "jtca.db").is_file()


def _check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix" and parts.path:
        return url
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return url.rstrip("/")
    raise ConfigError(
        f"{where}: {url!r} is not a service URL: use https://HOST:PORT, unix:///PATH, or "
        "http:// on loopback only"
    )


def _from_file(path: Path, source: Source) -> Target:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    service = data.get("service")
    if not isinstance(service, dict) or not isinstance(service.get("url"), str):
        raise ConfigError(f'{path}: needs a [service] table with url = "…"')
    unknown = sorted(set(service) - {"url", "server_cert"})
    if unknown:
        raise ConfigError(f"{path}: [service] has unknown keys {unknown}")
    cert = service.get("server_cert")
    if cert is not None and not isinstance(cert, str):
        raise ConfigError(f"{path}: [service] server_cert must be a path")
    return Target(
        source=source,
        url=_check_url(service["url"], f"{path} [service] url"),
        server_cert=Path(cert) if cert else None,
        config_file=path,
    )


def resolve() -> Target:
    """The service this client talks to (see the module docstring for the order)."""
    url = os.environ.get(URL_ENV)
    if url:
        cert = os.environ.get(CERT_ENV)
        return Target("environment", _check_url(url, URL_ENV), Path(cert) if cert else None)
    for path, source in ((user_config(), "user config"), (SYSTEM_CONFIG, "system config")):
        if path.is_file():
            return _from_file(path, source)  # type: ignore[arg-type]
    state = state_dir()
    return Target("embedded", f"unix://{socket_path(state)}", state=state)
