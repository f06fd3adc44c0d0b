"""Registry credentials: Docker's client configuration (``$DOCKER_CONFIG/config.json``, default
``~/.docker/config.json``, with ``auths``, ``credsStore`` and ``credHelpers``) and the
``docker-credential-<name>`` helper programs it names, for reading, storing and erasing them.

Credentials are looked up by the registry's ``host[:port]`` (Docker Hub's under its legacy
``https://index.docker.io/v1/`` key); where they may be sent is ``tokens.may_send_secret``'s and
``authorizer.Authorizer``'s business.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ctrstore.errdefs import InvalidArgument, NotFound, PermissionDenied, Unavailable
from ctrstore.remotes.transport import clean, loads_json

__all__ = ["DOCKER_HUB_AUTH_KEY", "Credentials", "CredentialsFunc", "DockerConfig", "auth_key"]

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    secret: str = ""
    """A password, or with an empty username an identity (refresh) token."""
    source: str = ""
    """Where they came from, for messages."""

    @property
    def is_identity_token(self) -> bool:
        return not self.username and bool(self.secret)

    def encoded(self) -> str:
        """``base64(username:secret)``, as config.json's ``auth`` and a Basic header carry it."""
        return base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()

    def basic(self) -> str:
        """The ``Authorization`` value for Basic authentication."""
        return "Basic " + self.encoded()

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<hidden>, source={self.source!r})"


def auth_key(host: str) -> str:
    """The key of a registry in ``auths``: Docker Hub's legacy URL, else ``host[:port]``."""
    if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB_AUTH_KEY
    return host


def _key_host(key: str) -> str:
    if "://" in key:
        try:
            return urlsplit(key).netloc
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            return key
    return key.split("/", 1)[0]


class DockerConfig:
    """Docker's client configuration file (``$DOCKER_CONFIG/config.json``, default
    ``~/.docker/config.json``), for credentials."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            d = os.environ.get("DOCKER_CONFIG")
            base = Path(d) if d else Path(os.path.expanduser("~")) / ".docker"
            path = base / "config.json"
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        """The file's JSON object ({} if there is none). The fields ctrstore reads are
        type-checked here: InvalidArgument naming the file and the field otherwise (and
        ``store``/``erase`` then leave the file alone)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except PermissionError as e:
            raise PermissionDenied(f"{self.path}: {e.strerror or e}") from None
        except OSError as e:
            raise InvalidArgument(f"{self.path}: cannot read: {e.strerror or e}") from None
        try:
            text = raw.decode()
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"{self.path}: not UTF-8 (byte {e.start})") from None
        if not text.strip():
            return {}
        try:
            doc = loads_json(text)
        except ValueError as e:
            raise InvalidArgument(f"{self.path}: not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{self.path}: not a JSON object")
        self._check(doc)
        return doc

    def _check(self, doc: dict[str, Any]) -> None:
        def bad(field: str, want: str) -> InvalidArgument:
            return InvalidArgument(f"{self.path}: {field} must be {want}")

        auths = doc.get("auths")
        if auths is not None:
            if not isinstance(auths, dict):
                raise bad("auths", "an object of registry entries")
            for key, entry in auths.items():
                if entry is None:
                    continue
                if not isinstance(entry, dict):
                    raise bad(f"auths[{key!r}]", "an object")
                for f in ("auth", "identitytoken", "username", "password", "registrytoken"):
                    if entry.get(f) is not None and not isinstance(entry[f], str):
                        raise bad(f"auths[{key!r}].{f}", "a string")
        helpers = doc.get("credHelpers")
        if helpers is not None:
            if not isinstance(helpers, dict):
                raise bad("credHelpers", "an object of registry: helper name")
            for key, name in helpers.items():
                if not isinstance(name, str) or not _HELPER_RE.fullmatch(name):
                    raise bad(f"credHelpers[{key!r}]", "a helper name (letters, digits, '.', '_', '-')")
        store = doc.get("credsStore")
        if store is not None and store != "" and not (isinstance(store, str) and _HELPER_RE.fullmatch(store)):
            raise bad("credsStore", "a helper name (letters, digits, '.', '_', '-')")

    def save(self, doc: dict[str, Any]) -> None:
        """Write atomically, mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config.json.")
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump(doc, f, indent="\t")
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _helper(self, doc: dict[str, Any], host: str) -> str | None:
        """The credential helper for ``host`` (names checked by ``load``)."""
        helpers = doc.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for k in (host, auth_key(host)):
                if k in helpers:
                    return str(helpers[k])
        store = doc.get("credsStore")
        return str(store) if store else None

    def credentials(self, host: str) -> Credentials | None:
        """The credentials stored for a registry host, or None."""
        doc = self.load()
        helper = self._helper(doc, host)
        if helper:
            return _helper_get(helper, auth_key(host))
        auths = doc.get("auths") or {}
        if not isinstance(auths, dict):
            return None
        key = auth_key(host)
        entry = auths.get(key)
        if entry is None:
            want = _key_host(key)
            for k, v in auths.items():
                if _key_host(k) == want:
                    entry = v
                    break
        if not isinstance(entry, dict):
            return None
        src = f"{self.path} ({key})"
        if entry.get("identitytoken"):
            return Credentials("", str(entry["identitytoken"]), src)
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except ValueError:
                raise InvalidArgument(
                    f"{self.path}: auths[{key!r}].auth is not base64 user:password"
                ) from None
            return Credentials(user, pw, src)
        if entry.get("username") or entry.get("password"):
            return Credentials(str(entry.get("username", "")), str(entry.get("password", "")), src)
        return None

    def store(self, host: str, creds: Credentials) -> None:
        with self._lock:
            doc = self.load()
            key = auth_key(host)
            helper = self._helper(doc, host)
            if helper:
                _helper_run(
                    helper,
                    "store",
                    json.dumps(
                        {"ServerURL": key, "Username": creds.username or "<token>", "Secret": creds.secret}
                    ),
                )
                auths = doc["auths"] = doc.get("auths") or {}
                if key not in auths:  # docker records the registry with an empty entry
                    auths[key] = {}
                    self.save(doc)
                return
            auths = doc["auths"] = doc.get("auths") or {}
            if creds.is_identity_token:
                auths[key] = {"identitytoken": creds.secret}
            else:
                auths[key] = {"auth": creds.encoded()}
            self.save(doc)

    def erase(self, host: str) -> bool:
        """Forget a registry's credentials; False if there were none."""
        with self._lock:
            doc = self.load()
            key = auth_key(host)
            found = False
            helper = self._helper(doc, host)
            if helper:
                try:
                    _helper_run(helper, "erase", key)
                    found = True
                except NotFound:
                    pass
            auths = doc.get("auths") or {}
            for k in list(auths):
                if k == key or _key_host(k) == _key_host(key):
                    del auths[k]
                    found = True
            if found:
                self.save(doc)
            return found


_HELPER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _helper_run(helper: str, action: str, stdin: str) -> str:
    prog = f"docker-credential-{helper}"
    exe = shutil.which(prog)
    if exe is None:
        raise NotFound(f"credential helper {prog} not found in PATH")
    try:
        p = subprocess.run(
            [exe, action], input=stdin, capture_output=True, text=True, errors="replace", timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"{prog} {action}: {e}") from None
    if p.returncode != 0:
        msg = clean(p.stdout.strip() or p.stderr.strip() or f"exit status {p.returncode}")
        if "credentials not found" in msg.lower():
            raise NotFound(f"{prog}: {msg}")
        raise Unavailable(f"{prog} {action}: {msg}")
    return p.stdout


def _helper_get(helper: str, server: str) -> Credentials | None:
    try:
        out = _helper_run(helper, "get", server)
    except NotFound:
        return None
    try:
        doc = loads_json(out)
    except ValueError:
        raise Unavailable(f"docker-credential-{helper} get: output is not JSON") from None
    if not isinstance(doc, dict):
        raise Unavailable(f"docker-credential-{helper} get: output is not a JSON object")
    user, secret = doc.get("Username") or "", doc.get("Secret") or ""
    if not isinstance(user, str) or not isinstance(secret, str):
        raise Unavailable(f"docker-credential-{helper} get: Username and Secret must be strings")
    if not secret and not user:
        return None
    src = f"docker-credential-{helper}"
    if user == "<token>":
        return Credentials("", secret, src)
    return Credentials(user, secret, src)


#: Where an Authorizer gets the credentials of a registry host (None: anonymous).
CredentialsFunc = Callable[[str], "Credentials | None"]
