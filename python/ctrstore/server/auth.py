"""Who may talk to ``ctrstore serve``: an htpasswd file (Basic) and/or a token file (Bearer).

- ``--htpasswd FILE``: ``user:hash`` lines as Debian's docker-registry reads them (made with
  ``htpasswd -B``): bcrypt (``$2y$``, ``$2b$``, ``$2a$``); sha-crypt (``$5$``, ``$6$``) and
  yescrypt (``$y$``) work too. Hashes are checked by the system's libcrypt (libxcrypt,
  ``libcrypt.so.1``) through ctypes: Python's ``crypt`` module is deprecated and gone in 3.13,
  and no new dependency is needed. A successful check is remembered for five minutes (keyed by a
  keyed hash of user and password, never the password), so that a pull of many blobs does not
  pay bcrypt's cost on every request.
- ``--token-file FILE``: one secret per line; a request carrying ``Authorization: Bearer
  <token>`` with one of them is let in (clients send it as a configured header: hosts.toml
  ``[header]``, ``skopeo --registry-token``). There is no token service: the challenge is
  ``Basic`` when an htpasswd file is given, else ``Bearer realm="ctrstore"``.

Comparisons are constant-time. Nothing here limits how often a password may be tried.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path

from ctrstore.errdefs import FailedPrecondition, InvalidArgument, PermissionDenied

__all__ = ["Authenticator", "load_htpasswd", "load_tokens"]

REALM = "ctrstore"
CACHE_SECONDS = 300.0
CACHE_MAX = 1024
MIN_TOKEN = 16
_HASH_PREFIXES = ("$2y$", "$2b$", "$2a$", "$5$", "$6$", "$y$")
_CRYPT_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt


class _LibCrypt:
    """``crypt_rn`` of the system's libcrypt (re-entrant: each call has its own buffer)."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libcrypt.so.1")
        except OSError as e:
            raise FailedPrecondition(
                f"checking htpasswd hashes needs the system's libcrypt.so.1 (libxcrypt): {e}"
            ) from None
        fn = lib.crypt_rn
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        self._fn = fn

    def crypt(self, phrase: bytes, setting: bytes) -> bytes | None:
        buf = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
        out: bytes | None = self._fn(phrase, setting, buf, _CRYPT_DATA_SIZE)
        return out


_libcrypt: _LibCrypt | None = None
_libcrypt_lock = threading.Lock()


def _crypt() -> _LibCrypt:
    global _libcrypt
    with _libcrypt_lock:
        if _libcrypt is None:
            _libcrypt = _LibCrypt()
        return _libcrypt


def _read(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
    except PermissionError as e:
        raise PermissionDenied(f"{what} {path}: {e.strerror}") from None
    except OSError as e:
        raise InvalidArgument(f"{what} {path}: {e.strerror or e}") from None
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"{what} {path}: not UTF-8 (byte {e.start})") from None


def load_htpasswd(path: str | Path) -> dict[str, bytes]:
    """``user -> hash`` from an htpasswd file; InvalidArgument naming the line of a malformed
    entry or a hash libcrypt cannot check."""
    p = Path(path)
    users: dict[str, bytes] = {}
    lib = _crypt()
    for n, raw in enumerate(_read(p, "htpasswd file").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        where = f"htpasswd file {p}, line {n}"
        if not sep or not user or not hashed:
            raise InvalidArgument(f"{where}: expected USER:HASH")
        if not hashed.startswith(_HASH_PREFIXES):
            raise InvalidArgument(
                f"{where}: user {user!r}: unsupported password hash (use bcrypt, `htpasswd -B`, as "
                "docker-registry does; or $5$/$6$/$y$ crypt hashes)"
            )
        check = lib.crypt(b"probe", hashed.encode())
        if check is None or not check.startswith(b"$"):
            raise InvalidArgument(f"{where}: user {user!r}: the password hash is malformed")
        if user in users:
            raise InvalidArgument(f"{where}: user {user!r} appears twice")
        users[user] = hashed.encode()
    if not users:
        raise InvalidArgument(f"htpasswd file {p} names no user")
    return users


def load_tokens(path: str | Path) -> list[bytes]:
    """The bearer tokens of a token file: one per line, visible ASCII, at least 16 characters."""
    p = Path(path)
    tokens: list[bytes] = []
    for n, raw in enumerate(_read(p, "token file").splitlines(), 1):
        tok = raw.strip()
        if not tok or tok.startswith("#"):
            continue
        if not all(0x21 <= ord(c) <= 0x7E for c in tok):
            raise InvalidArgument(f"token file {p}, line {n}: a token is visible ASCII without spaces")
        if len(tok) < MIN_TOKEN:
            raise InvalidArgument(
                f"token file {p}, line {n}: a token of {len(tok)} characters is too short to be a "
                f"secret (at least {MIN_TOKEN}; e.g. `openssl rand -hex 32`)"
            )
        tokens.append(tok.encode())
    if not tokens:
        raise InvalidArgument(f"token file {p} holds no token")
    return tokens


class Authenticator:
    """Checks a request's ``Authorization`` header against the users and tokens given."""

    def __init__(self, users: dict[str, bytes] | None = None, tokens: list[bytes] | None = None) -> None:
        if not users and not tokens:
            raise InvalidArgument("an authenticator needs users or tokens")
        self.users = dict(users or {})
        self.tokens = list(tokens or [])
        self._key = secrets.token_bytes(32)
        self._ok: dict[bytes, float] = {}
        self._lock = threading.Lock()

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        if self.users:
            return f'Basic realm="{REALM}"'
        return f'Bearer realm="{REALM}"'

    def check(self, authorization: str | None) -> str | None:
        """The user a request authenticates as (``token:<n>`` for the n-th token), or None."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic" and self.users:
            return self._basic(value)
        if scheme.lower() == "bearer" and self.tokens:
            tok = value.encode(errors="replace")
            found = None
            for i, t in enumerate(self.tokens, 1):
                if hmac.compare_digest(tok, t) and found is None:
                    found = f"token:{i}"
            return found
        return None

    def _basic(self, value: str) -> str | None:
        try:
            raw = base64.b64decode(value, validate=True)
            user, sep, password = raw.decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not sep or "\0" in password:
            return None
        hashed = self.users.get(user)
        if hashed is None:
            _crypt().crypt(password.encode(), next(iter(self.users.values())))  # same time as a user
            return None
        key = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            until = self._ok.get(key)
            if until is not None and until > now:
                return user
        got = _crypt().crypt(password.encode(), hashed)
        if got is None or not hmac.compare_digest(got, hashed):
            return None
        with self._lock:
            if len(self._ok) >= CACHE_MAX:
                self._ok.clear()
            self._ok[key] = now + CACHE_SECONDS
        return user
