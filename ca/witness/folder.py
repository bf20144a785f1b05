"""The witness's folder: everything it knows, in files it alone writes (docs/witness.md).

    DIR/witness.json                  its name, key, token, trusted certificates, the log origin
    DIR/trust/audit-<n>.pem           the audit certificate(s) it trusts (copied at init)
    DIR/trust/root-<n>.pem            the root certificate(s) they must chain to (optional)
    DIR/checkpoint                    the newest checkpoint it cosigned, with its cosignature
    DIR/checkpoints/<size>            every checkpoint it cosigned (12 digits, zero-padded)
    DIR/split-view-<size>-<time>/     the evidence of a split view (never removed by jtca)
    DIR/.lock                         held while a round runs: two rounds never interleave

The checkpoint files keep the layout of the service's checkpoint folder
(``ca.log.checkpoint_folder``), so
``jtca audit verify --witness-dir DIR`` reads them as they are. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ca.core.errors import BadInput, JtcaError
from ca.core.files import write_atomically
from ca.log.checkpoint_folder import CheckpointFolder, size_name

FORMAT: Final = "jtca-witness/1"
CONFIG: Final = "witness.json"
TRUST: Final = "trust"
LOCK: Final = ".lock"
SPLIT_PREFIX: Final = "split-view-"
MAX_CONFIG: Final = 64 * 1024


class WitnessFolderError(JtcaError):
    """A witness folder that cannot be used as it is; names the file and the field."""

    title = "Witness folder"
    exit_code = 3


class WitnessBusy(JtcaError):
    """Another round holds the folder's lock."""

    title = "Witness busy"
    exit_code = 75  # EX_TEMPFAIL: the timer tries again at its next tick


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    """``witness.json``: who the witness is and what it trusts (paths relative to the folder)."""

    name: str
    public_key: str  # hex, uncompressed SM2 point (65 bytes)
    token_label: str
    module: str | None  # the token's PKCS#11 module; None: the embedded SoftHSM2 below
    softhsm: str | None  # the embedded SoftHSM2 folder (absolute) when ``module`` is None
    audit_certs: tuple[str, ...]
    root_certs: tuple[str, ...] = ()
    origin: str | None = None  # the log's origin, pinned at the first checkpoint verified
    created_at: int = 0
    format: str = field(default=FORMAT)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["audit_certs"] = list(self.audit_certs)
        data["root_certs"] = list(self.root_certs)
        return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _field(
    data: dict[str, Any], name: str, kind: type, where: Path, *, optional: bool = False
) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise WitnessFolderError(
            f"{where}: field {name!r} must be a {kind.__name__}, found {type(value).__name__}"
        )
    return value


def _paths(data: dict[str, Any], name: str, where: Path) -> tuple[str, ...]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WitnessFolderError(f"{where}: field {name!r} must be a list of file names")
    return tuple(value)


class WitnessFolder:
    """One witness's folder (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoints = CheckpointFolder(path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def trust(self) -> Path:
        return self.path / TRUST

    def exists(self) -> bool:
        return self.config_path.is_file()

    # -- the configuration -----------------------------------------------------------------
    def load(self) -> WitnessConfig:
        where = self.config_path
        try:
            with where.open("rb") as handle:
                raw = handle.read(MAX_CONFIG + 1)
        except FileNotFoundError:
            raise WitnessFolderError(
                f"{self.path} is not a witness folder (no {CONFIG}): make one with "
                "jtca witness init --name NAME --dir DIR --audit-cert PEM"
            ) from None
        except OSError as exc:
            raise WitnessFolderError(f"{where}: cannot read it ({exc.strerror})") from None
        if len(raw) > MAX_CONFIG:
            raise WitnessFolderError(f"{where}: more than {MAX_CONFIG} bytes")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise WitnessFolderError(f"{where}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise WitnessFolderError(f"{where}: not a JSON object")
        if data.get("format") != FORMAT:
            raise WitnessFolderError(
                f"{where}: format {data.get('format')!r}, this jtca reads {FORMAT!r}"
            )
        unknown = sorted(set(data) - set(WitnessConfig.__dataclass_fields__))
        if unknown:
            raise WitnessFolderError(f"{where}: unknown field(s) {', '.join(unknown)}")
        return WitnessConfig(
            name=_field(data, "name", str, where),
            public_key=_field(data, "public_key", str, where),
            token_label=_field(data, "token_label", str, where),
            module=_field(data, "module", str, where, optional=True),
            softhsm=_field(data, "softhsm", str, where, optional=True),
            audit_certs=_paths(data, "audit_certs", where),
            root_certs=_paths(data, "root_certs", where),
            origin=_field(data, "origin", str, where, optional=True),
            created_at=_field(data, "created_at", int, where),
        )

    def save(self, config: WitnessConfig) -> None:
        write_atomically(self.config_path, config.to_json())

    def resolve(self, name: str) -> Path:
        """A file named in ``witness.json``, inside the folder."""
        path = (self.path / name).resolve()
        if self.path.resolve() not in path.parents:
            raise WitnessFolderError(f"{self.config_path}: {name!r} is outside the folder")
        return path

    # -- the lock --------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock for one round; a second round at the same time is refused."""
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise WitnessFolderError(
                f"{self.path / LOCK}: cannot open it ({exc.strerror})"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WitnessBusy(
                    f"{self.path}: another round of this witness is running; try again later"
                ) from None
            yield
        finally:
            os.close(fd)

    # -- its copies ------------------------------------------------------------------------
    def copy_at(self, size: int) -> bytes | None:
        return _read(self.checkpoints.history(size))

    def newest(self) -> bytes | None:
        return _read(self.checkpoints.newest)

    def sizes(self) -> list[int]:
        folder = self.path / "checkpoints"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_file() and p.name.isdigit())

    def keep(self, note: str, size: int) -> Path:
        return self.checkpoints.write(note, size)

    # -- split views -----------------------------------------------------------------------
    def split_views(self) -> list[Path]:
        return sorted(p for p in self.path.glob(SPLIT_PREFIX + "*") if p.is_dir())

    def record_split_view(self, size: int, at: int, files: dict[str, bytes]) -> Path:
        """The evidence, each file written atomically, in a folder of its own."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
        base = f"{SPLIT_PREFIX}{size_name(size)}-{stamp}"
        for attempt in range(100):
            folder = self.path / (base if attempt == 0 else f"{base}-{attempt}")
            try:
                folder.mkdir(mode=0o755)
            except FileExistsError:
                continue
            except OSError as exc:
                raise BadInput(
                    f"cannot write the split-view evidence {folder}: {exc.strerror}"
                ) from None
            for name, data in files.items():
                write_atomically(folder / name, data)
            return folder
        raise BadInput(f"{self.path}: too many split-view folders named {base}")


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_CONFIG + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WitnessFolderError(f"{path}: cannot read it ({exc.strerror})") from None
