"""Opening a PKCS#11 token and keeping logged-in sessions to it.

A ``Token`` is found by label in a PKCS#11 module (SoftHSM2's is found automatically on Debian
and Ubuntu; ``JTCA_PKCS11_MODULE`` or an explicit path overrides). The PIN comes from a
``PinSource``: an environment variable, a file, a prompt, or an M-of-N share quorum.

Sessions come from a small pool. One session holds the login (PKCS#11 login state belongs to
the application, not the session); the others are opened without a PIN and share it. When a
session is dropped underneath us (closed, logged out, device reset), ``Token.run`` throws the
pool away, logs in again and runs the operation once more. Operations find their objects by URI
inside the operation, never through handles kept from an earlier session.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import getpass
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Protocol, TypeVar

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11._pkcs11 import lib as Pkcs11Lib
from pkcs11.constants import TokenFlag

from hsm.errors import JtcaError

MODULE_ENV: Final = "JTCA_PKCS11_MODULE"
SOFTHSM_PATHS: Final = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
# Errors that mean "this session is gone", after which a fresh login makes the call good again.
DROPPED: Final = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.UserNotLoggedIn,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
)


class TokenError(JtcaError):
    title = "Token error"
    exit_code = 5


class ObjectMissing(TokenError):
    """An object an operation looked for is not in the token (or not visible: logged out)."""

    title = "Key not found"
    exit_code = 3


# One lock for every call into PKCS#11 modules (see Token.session).
MODULE_LOCK: Final = threading.RLock()
FIND_ATTEMPTS: Final = 8  # finding a token by label, when the module answers a general error


@functools.cache
def _openssl_err_clear() -> Callable[[], None] | None:
    name = ctypes.util.find_library("crypto")
    if name is None:  # pragma: no cover - every Debian/Ubuntu has libcrypto
        return None
    try:
        function: Callable[[], None] = ctypes.CDLL(name).ERR_clear_error
    except (OSError, AttributeError):  # pragma: no cover
        return None
    return function


def clear_openssl_errors() -> None:
    """Empty this thread's OpenSSL error queue after a token call.

    SoftHSM2 runs in our process on the system's libcrypto — the same library Python's ``ssl``
    module uses — and leaves errors of its own on the thread's error queue (for example
    ``EVP: expecting an ec key`` after unwrapping an SM2 key). The next TLS handshake in that
    thread then reads the stale error as its own and fails. The queue is per thread and holds
    nothing of ours, so emptying it after each token call is safe.
    """
    clear = _openssl_err_clear()
    if clear is not None:
        clear()


def find_module(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The PKCS#11 module to load: ``explicit``, else $JTCA_PKCS11_MODULE, else SoftHSM2."""
    chosen = explicit or os.environ.get(MODULE_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise TokenError(
                f"PKCS#11 module {path} does not exist", title="PKCS#11 module missing"
            )
        return path
    for candidate in SOFTHSM_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise TokenError(
        "no PKCS#11 module found: install SoftHSM2 (Debian: apt-get install softhsm2) or set "
        f"{MODULE_ENV} to your token's module",
        title="PKCS#11 module missing",
    )


_libs: dict[str, Pkcs11Lib] = {}
_libs_lock = threading.Lock()


def load_module(path: Path) -> Pkcs11Lib:
    """Load (once per process) and initialise a PKCS#11 module."""
    key = str(path.resolve())
    with _libs_lock:
        lib = _libs.get(key)
        if lib is None:
            try:
                lib = pkcs11.lib(key)
            except (RuntimeError, OSError) as exc:
                raise TokenError(
                    f"cannot load PKCS#11 module {path}: {exc}", title="PKCS#11 module unusable"
                ) from None
            _libs[key] = lib
        return lib


_generations: dict[str, int] = {}


def module_generation(path: Path) -> int:
    return _generations.get(str(path.resolve()), 0)


def rescan(path: Path) -> None:
    """Re-initialise a module so that it sees tokens created since it was loaded (SoftHSM2
    reads its token directory at C_Initialize).

    Re-initialising invalidates every session of every token of the module, and the module may
    hand the same session handle numbers out again for other tokens. Each ``Token`` therefore
    notes the module generation its sessions belong to and drops (never closes: the numbers may
    now belong to someone else) sessions of an older generation before any use.
    """
    lib = load_module(path)
    with MODULE_LOCK, _libs_lock:
        try:
            lib.reinitialize()
        finally:
            clear_openssl_errors()
        key = str(path.resolve())
        _generations[key] = _generations.get(key, 0) + 1


# -- PIN sources ---------------------------------------------------------------------------
class PinSource(Protocol):
    def pin(self) -> str: ...

    def describe(self) -> str: ...


class EnvPin:
    def __init__(self, variable: str) -> None:
        self.variable = variable

    def pin(self) -> str:
        value = os.environ.get(self.variable)
        if not value:
            raise TokenError(f"environment variable {self.variable} holds no PIN", title="No PIN")
        return value

    def describe(self) -> str:
        return f"env:{self.variable}"


class FilePin:
    """A PIN read from a file. ``nofollow`` (the embedded default's own PIN files, which jtca
    wrote) refuses a symbolic link in the file's place instead of following it out of the
    folder; a PIN file an operator names (``file:PATH``) may be a link (mounted secrets are)."""

    def __init__(self, path: str | os.PathLike[str], *, nofollow: bool = False) -> None:
        self.path = Path(path)
        self.nofollow = nofollow

    def pin(self) -> str:
        flags = os.O_RDONLY | (os.O_NOFOLLOW if self.nofollow else 0)
        try:
            fd = os.open(self.path, flags)
            with os.fdopen(fd, "rb") as source:
                raw = source.read(4096)
        except OSError as exc:
            raise TokenError(
                f"cannot read PIN file {self.path}: {exc.strerror}", title="No PIN"
            ) from None
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise TokenError(f"PIN file {self.path} is not UTF-8 text", title="No PIN") from None
        if not value:
            raise TokenError(f"PIN file {self.path} is empty", title="No PIN")
        return value

    def describe(self) -> str:
        return f"file:{self.path}"


def write_pin_file(path: str | os.PathLike[str], pin: str) -> None:
    """Write an embedded token's PIN file (mode 0600): never through a symbolic link planted
    in its place (O_NOFOLLOW), and a refusal is a typed TokenError naming the file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        why = "a symbolic link is in its place" if exc.errno == errno.ELOOP else exc.strerror
        raise TokenError(f"cannot write PIN file {path}: {why}", title="PIN file refused") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(pin + "\n")
        out.flush()
        os.fsync(out.fileno())  # on disk before the token it opens is made (a power cut)


def write_secret_file(path: str | os.PathLike[str], value: bytearray) -> None:
    """Write a secret beside a token's PIN file (mode 0600) atomically
    (``hsm.atomic.replace_atomically``: a fresh ``O_EXCL`` temporary file of the same folder,
    fsync'd, renamed over ``path`` — a symbolic link in its place is replaced, never followed —
    the folder fsync'd). A reader sees no file or the whole one; a crash leaves at most a
    temporary file that names its dead writer, which the service's start sweeps."""
    from hsm.atomic import replace_atomically

    try:
        replace_atomically(Path(path), value, mode=0o600)
    except OSError as exc:
        raise TokenError(
            f"cannot write {path}: {exc.strerror}", title="Secret file refused"
        ) from None


class PromptPin:
    def __init__(self, prompt: str = "Token PIN: ", ask: Callable[[str], str] = getpass.getpass):
        self.prompt = prompt
        self.ask = ask

    def pin(self) -> str:
        value = self.ask(self.prompt)
        if not value:
            raise TokenError("no PIN entered", title="No PIN")
        return value

    def describe(self) -> str:
        return "prompt"


class QuorumPin:
    """A PIN rebuilt from M of N custodians' shares (hsm.custody)."""

    def __init__(self, shares: list[str]) -> None:
        self.shares = shares

    def pin(self) -> str:
        from hsm.custody import combine_secret

        secret = combine_secret(self.shares)
        try:
            return secret.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenError("the shares do not combine to a PIN", title="Bad shares") from None

    def describe(self) -> str:
        return f"quorum:{len(self.shares)} shares"


def pin_source_from_spec(spec: str) -> PinSource:
    """``env:VAR``, ``file:PATH`` or ``prompt``: how the command line names a PIN source."""
    kind, _, rest = spec.partition(":")
    if kind == "env" and rest:
        return EnvPin(rest)
    if kind == "file" and rest:
        return FilePin(rest)
    if spec == "prompt":
        return PromptPin()
    raise TokenError(
        f"PIN source {spec!r}: use env:VARIABLE, file:PATH or prompt", title="Bad PIN source"
    )


# -- tokens and the session pool -----------------------------------------------------------
T = TypeVar("T")


class Token:
    """A token found by label, with a pool of logged-in sessions."""

    def __init__(
        self,
        label: str,
        pin_source: PinSource,
        module: str | os.PathLike[str] | None = None,
        pool_size: int = 4,
    ) -> None:
        self.label = label
        self.module_path = find_module(module)
        self._pin_source = pin_source
        self._pool_size = max(1, pool_size)
        self._lock = threading.Lock()
        self._idle: list[pkcs11.Session] = []
        self._login: pkcs11.Session | None = None
        self._generation = module_generation(self.module_path)
        self._token = self._find_token()
        self.reconnects = 0

    def _find_token(self) -> pkcs11.Token:
        with MODULE_LOCK:
            try:
                return self._find_token_locked()
            finally:
                clear_openssl_errors()  # loading the module (C_Initialize) leaves some too

    def _find_token_locked(self) -> pkcs11.Token:
        lib = load_module(self.module_path)
        for attempt in range(1, FIND_ATTEMPTS + 1):
            try:
                return self._get_token(lib)
            except p11e.GeneralError:
                # SoftHSM2 answers CKR_GENERAL_ERROR while another process (a second service,
                # a site tool) rewrites the token's files: a passing state, tried again.
                if attempt == FIND_ATTEMPTS:
                    raise TokenError(
                        f"token {self.label!r}: the module kept failing (CKR_GENERAL_ERROR) "
                        f"after {FIND_ATTEMPTS} attempts",
                        title="Token unavailable",
                    ) from None
                time.sleep(0.02 * attempt)
            except p11e.PKCS11Error as exc:
                raise TokenError(
                    f"token {self.label!r}: {type(exc).__name__} {exc}".strip(),
                    title="Token unavailable",
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_token(self, lib: Pkcs11Lib) -> pkcs11.Token:
        try:
            token: pkcs11.Token = lib.get_token(token_label=self.label)
            return token
        except p11e.NoSuchToken:
            labels = sorted({s.get_token().label for s in lib.get_slots(token_present=True)} - {""})
            known = ", ".join(labels) if labels else "none"
            raise TokenError(
                f"no token labelled {self.label!r} in {self.module_path} (tokens: {known})",
                title="Token missing",
            ) from None
        except p11e.MultipleTokensReturned:
            raise TokenError(
                f"more than one token is labelled {self.label!r}", title="Token ambiguous"
            ) from None

    @property
    def _login_key(self) -> tuple[str, str, str]:
        return (str(self.module_path.resolve()), self.label, str(self._token.serial))

    @property
    def mechanisms(self) -> frozenset[int]:
        with MODULE_LOCK:
            return frozenset(int(m) for m in self._token.slot.get_mechanisms())

    def _log_in(self) -> pkcs11.Session:
        pin = self._pin_source.pin()
        try:
            session = self._token.open(rw=True, user_pin=pin)
            _login_digests[self._login_key] = _digest(pin)
            return session
        except p11e.PinIncorrect:
            raise TokenError(
                f"wrong PIN for token {self.label!r} (from {self._pin_source.describe()})"
                + self._retry_warning(),
                title="Wrong PIN",
            ) from None
        except p11e.PinLocked:
            raise TokenError(
                f"the user PIN of token {self.label!r} is locked; the security officer must "
                "reset it",
                title="PIN locked",
            ) from None
        except (p11e.PinLenRange, p11e.PinInvalid):
            raise TokenError(
                f"the PIN for token {self.label!r} has an invalid length or characters",
                title="Wrong PIN",
            ) from None
        except p11e.UserAlreadyLoggedIn:
            # Another Token object of this process holds the login (PKCS#11 login state belongs
            # to the application). Share it only if this PIN is the one that logged in.
            if _login_digests.get(self._login_key) != _digest(pin):
                raise TokenError(
                    f"wrong PIN for token {self.label!r} (from {self._pin_source.describe()})",
                    title="Wrong PIN",
                ) from None
            return self._token.open(rw=True)
        except p11e.UserPinNotInitialized:
            raise TokenError(
                f"token {self.label!r} has no user PIN yet (initialise it first)",
                title="Token not initialised",
            ) from None

    def _retry_warning(self) -> str:
        """What the token says of its retry counter after a wrong PIN (PKCS#11 token flags,
        read afresh): the final try before it locks, or that it has counted failures."""
        try:
            with MODULE_LOCK:
                flags = int(self._token.slot.get_token().flags)
        except p11e.PKCS11Error:
            return ""
        if flags & TokenFlag.USER_PIN_LOCKED:
            return "; the token has now LOCKED its user PIN: the security officer must reset it"
        if flags & TokenFlag.USER_PIN_FINAL_TRY:
            return (
                "; the token says this was the last try but one: one more wrong PIN locks it, "
                "and only its security officer can reset it"
            )
        if flags & TokenFlag.USER_PIN_COUNT_LOW:
            return (
                "; the token has counted failed logins (its retry counter is low): at its limit "
                "it locks, and only its security officer can reset it"
            )
        return ""

    def _acquire(self) -> pkcs11.Session:
        if self._generation != module_generation(self.module_path):
            self._reset()
        with self._lock:
            if self._login is None:
                self._login = self._log_in()
                return self._login
            if self._idle:
                return self._idle.pop()
        return self._token.open(rw=True)

    def _release(self, session: pkcs11.Session) -> None:
        if self._generation != module_generation(self.module_path):
            return  # a session of a re-initialised module: void, never to be reused or closed
        with self._lock:
            if session is self._login:
                self._idle.append(session)
                return
            if len(self._idle) < self._pool_size:
                self._idle.append(session)
                return
        _quiet_close(session)

    def _discard_pool(self) -> None:
        """Close every pooled session; after a module re-initialise, only forget them: their
        handles are void and may have been reissued to other tokens' sessions."""
        stale = self._generation != module_generation(self.module_path)
        with self._lock:
            sessions = [*self._idle, *([self._login] if self._login is not None else [])]
            self._idle, self._login = [], None
            self._generation = module_generation(self.module_path)
        if not stale:
            for session in {id(s): s for s in sessions}.values():
                _quiet_close(session)

    def _reset(self) -> None:
        """Start again: a new pool, a fresh look-up of the token, a new login on next use."""
        self._discard_pool()
        self._token = self._find_token()
        self.reconnects += 1

    @contextmanager
    def session(self) -> Iterator[pkcs11.Session]:
        """A logged-in session for one operation (no retry: prefer ``run``).

        Calls into the module are serialised: python-pkcs11 initialises modules without
        locking arguments (``C_Initialize(NULL)``), which tells SoftHSM2 the application will
        not call it from several threads at once, and it releases the GIL around every call.
        """
        with MODULE_LOCK:
            session = self._acquire()
            try:
                yield session
            except DROPPED:
                self._reset()
                raise
            except BaseException:
                self._release(session)  # a failed operation must not leak its session
                raise
            else:
                self._release(session)

    def run(self, operation: Callable[[pkcs11.Session], T]) -> T:
        """Run ``operation`` in a logged-in session; if the session was dropped underneath us,
        log in again and run it once more. The operation must find its objects itself.
        Afterwards the thread's OpenSSL error queue is emptied (``clear_openssl_errors``)."""
        try:
            return self._run(operation)
        finally:
            clear_openssl_errors()

    def _run(self, operation: Callable[[pkcs11.Session], T]) -> T:
        """``run`` itself.

        A session closed underneath us that held the login leaves the others open but logged
        out (python-pkcs11 logs out on close): private objects then look absent. So when an
        operation finds its object missing, the login is checked, and restored, once.
        """
        busy = 0
        attempt = 0
        while attempt < 2:
            attempt += 1
            try:
                with self.session() as session:
                    return operation(session)
            except DROPPED:
                if attempt == 2:
                    raise TokenError(
                        f"lost the session to token {self.label!r} twice in a row",
                        title="Token unavailable",
                    ) from None
            except ObjectMissing:
                if attempt == 2 or not self._logged_in_again():
                    raise
            except p11e.GeneralError:
                # SoftHSM2 answers CKR_GENERAL_ERROR while another process rewrites the
                # token's files (two services on one token folder): a passing state. The call
                # failed whole (SoftHSM2 changes an object store atomically), so it is tried
                # again, a few times, with the session it failed on thrown away.
                busy += 1
                if busy >= FIND_ATTEMPTS:
                    raise TokenError(
                        f"token {self.label!r}: the module kept failing (CKR_GENERAL_ERROR) "
                        f"after {FIND_ATTEMPTS} attempts",
                        title="Token unavailable",
                    ) from None
                self._discard_pool()
                time.sleep(0.02 * busy)
                attempt -= 1
            except p11e.PKCS11Error as exc:
                raise TokenError(
                    f"token {self.label!r}: {type(exc).__name__} {exc}".strip()
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _logged_in_again(self) -> bool:
        """Log in if the application was logged out underneath us. True if it was."""
        with MODULE_LOCK:
            try:
                fresh = self._token.open(rw=True, user_pin=self._pin_source.pin())
            except p11e.UserAlreadyLoggedIn:
                return False
            except p11e.PKCS11Error:
                return False
            self._reset()
            with self._lock:
                self._login = fresh
                self._idle.append(fresh)
            return True

    def pooled_sessions(self) -> list[pkcs11.Session]:
        """The sessions the pool holds now (tests close them underneath the pool)."""
        with self._lock:
            found = list(self._idle)
            if self._login is not None and self._login not in found:
                found.append(self._login)
            return found

    def close(self) -> None:
        with MODULE_LOCK:
            self._discard_pool()

    def __enter__(self) -> Token:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_login_digests: dict[tuple[str, str, str], bytes] = {}


def _digest(pin: str) -> bytes:
    return hashlib.sha256(b"jtca-pin-check:" + pin.encode("utf-8")).digest()


def _quiet_close(session: pkcs11.Session) -> None:
    with contextlib.suppress(p11e.PKCS11Error):  # already gone: that is what we wanted
        session.close()
