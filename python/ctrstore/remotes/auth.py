"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens, Docker's
credential store (``~/.docker/config.json`` with ``auths``, ``credsStore`` and
``credHelpers``), and ``login``/``logout``.

An :class:`Authorizer` is shared by every request of a resolver. It remembers each host's
challenge and caches bearer tokens per host and scope set until they expire. Tokens are
fetched as containerd does: with a secret (password or identity token) first a POST of an
OAuth2 form to the realm, falling back to a GET ``realm?service=..&scope=..`` with Basic
credentials; anonymously a plain GET.

Where credentials go (see README.md, "Registries and credentials"): a challenge belongs to the
host that sent it, and the credentials looked up for that host answer it. A token realm may be
on another host (Docker Hub's is ``auth.docker.io``), but a password or identity token goes in
clear text (an ``http://`` realm) only to the registry's own host name when the registry itself
is spoken to over HTTP, or to a loopback realm of a loopback registry (:func:`may_send_secret`).
Redirects of requests that carry credentials are followed only to the same host, never from
https down to http.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ctrstore.errdefs import (
    CtrstoreError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from ctrstore.remotes.hosts import is_localhost
from ctrstore.remotes.transport import (
    Response,
    Transport,
    check_url,
    clean,
    loads_json,
    same_origin,
)

__all__ = [
    "Authorizer",
    "Challenge",
    "Credentials",
    "DockerConfig",
    "may_send_secret",
    "merge_scopes",
    "parse_www_authenticate",
    "repository_scope",
]

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
CLIENT_ID = "ctrstore"
DEFAULT_TOKEN_TTL = 60.0
#: Longer lifetimes a token server states are cut to this (a resolver lives for one command).
MAX_TOKEN_TTL = 24 * 3600.0
#: A token longer than this, or with characters other than visible ASCII, is refused: it
#: goes into an ``Authorization`` header as it is.
MAX_TOKEN_LENGTH = 1 << 16
#: Tokens are renewed this many seconds before they expire.
TOKEN_MARGIN = 5.0


# -- challenges ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Challenge:
    scheme: str
    """``bearer`` or ``basic`` (lower case)."""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")

    @property
    def error(self) -> str:
        return self.params.get("error", "")


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*(,|$)')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Challenges from ``WWW-Authenticate`` header values (several may share one value)."""
    out: list[Challenge] = []
    for value in values:
        s = value
        while s.strip():
            m = _SCHEME_RE.match(s)
            if not m:
                break
            scheme = m.group(1).lower()
            s = s[m.end() :]
            params: dict[str, str] = {}
            while True:
                pm = _PARAM_RE.match(s)
                if not pm:
                    break
                key, val = pm.group(1).lower(), pm.group(2)
                if val.startswith('"'):
                    val = re.sub(r"\\(.)", r"\1", val[1:-1])
                params[key] = val
                s = s[pm.end() :]
            out.append(Challenge(scheme, params))
            s = s.lstrip(", ")
    return out


def repository_scope(repo: str, push: bool = False) -> str:
    return f"repository:{repo}:{'pull,push' if push else 'pull'}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes deduplicated and sorted; actions on the same resource are merged
    (``repository:a:pull`` + ``repository:a:push`` = ``repository:a:pull,push``)."""
    actions: dict[str, set[str]] = {}
    plain: set[str] = set()
    for group in scopes:
        for scope in group.split():
            head, sep, acts = scope.rpartition(":")
            if not sep or not head:
                plain.add(scope)
                continue
            actions.setdefault(head, set()).update(a for a in acts.split(",") if a)
    out = {f"{h}:{','.join(sorted(a))}" for h, a in actions.items()} | plain
    return tuple(sorted(out))


# -- credentials -----------------------------------------------------------------------------
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

    def basic(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

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
                auths[key] = {"auth": base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()}
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


# -- tokens and the authorizer ---------------------------------------------------------------
CredentialsFunc = Callable[[str], "Credentials | None"]


@dataclass
class _Token:
    value: str
    expires: float


class Authorizer:
    """Authorization headers for registry requests, by host and scope set.

    ``credentials(host)`` gives what to log in with (default: the Docker config)."""

    def __init__(
        self,
        transport: Transport | None = None,
        credentials: CredentialsFunc | None = None,
    ) -> None:
        self._own_transport = transport is None
        self.transport = transport or Transport()
        if credentials is None:
            cfg = DockerConfig()
            credentials = cfg.credentials
        self.credentials = credentials
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._schemes: dict[str, str] = {}
        """The scheme each challenge came over (``http``: the registry is spoken to in clear)."""
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}
        self._creds: dict[str, Credentials | None] = {}
        self._fetch_locks: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}

    def close(self) -> None:
        if self._own_transport:
            self.transport.close()

    def _credentials(self, host: str) -> Credentials | None:
        with self._lock:
            if host in self._creds:
                return self._creds[host]
        creds = self.credentials(host)
        with self._lock:
            self._creds[host] = creds
        return creds

    def header(self, host: str, scopes: Iterable[str]) -> str | None:
        """The Authorization value for a request to ``host`` needing ``scopes``; None
        before the host has asked for authentication."""
        with self._lock:
            ch = self._challenges.get(host)
        if ch is None:
            return None
        creds = self._credentials(host)
        if ch.scheme == "basic":
            return creds.basic() if creds and creds.username else None
        if ch.scheme != "bearer":
            return None
        wanted = tuple(scopes)
        merged = merge_scopes(wanted if wanted else [ch.scope])
        key = (host, merged)
        with self._lock:
            tok = self._tokens.get(key)
            if tok and tok.expires > time.monotonic():
                return f"Bearer {tok.value}"
            flock = self._fetch_locks.setdefault(key, threading.Lock())
        with flock:  # one fetch per host and scope set, however many threads ask
            with self._lock:
                tok = self._tokens.get(key)
                if tok and tok.expires > time.monotonic():
                    return f"Bearer {tok.value}"
            with self._lock:
                scheme = self._schemes.get(host, "https")
            value, ttl = fetch_token(self.transport, ch, merged, creds, host, registry_scheme=scheme)
            with self._lock:
                self._tokens[key] = _Token(value, time.monotonic() + max(ttl - TOKEN_MARGIN, 1.0))
        return f"Bearer {value}"

    def challenged(
        self, host: str, resp: Response, scopes: Iterable[str], sent: str | None, final: bool
    ) -> None:
        """Handle a 401 to a request sent with Authorization ``sent``: remember the
        challenge (and forget a refused token) so the next ``header`` answers it. With
        ``final``, or when answering cannot help, raise Unauthenticated (no or refused
        credentials) or PermissionDenied (credentials accepted, access refused).

        A challenge belongs to the host that sent it: a 401 from anywhere but ``host``
        (after a redirect to a storage host, or from https down to http) is not filed under
        ``host`` and not answered with its credentials: Unauthenticated."""
        u = urlsplit(resp.url)
        if u.netloc != host:
            resp.drain()
            raise Unauthenticated(
                f"{host}: redirected to {clean(u.netloc, 100)}, which asks for authentication; "
                f"ctrstore does not send credentials or tokens for {host} to another host"
            )
        chs = parse_www_authenticate(resp.headers.get_all("WWW-Authenticate") or [])
        detail = resp.error_detail()
        ch = next((c for c in chs if c.scheme == "bearer"), None) or next(
            (c for c in chs if c.scheme == "basic"), None
        )
        if ch is None:
            raise Unauthenticated(f"{host}: authentication required ({detail}) but no usable challenge")
        creds = self._credentials(host)
        wanted = merge_scopes(scopes) or merge_scopes([ch.scope])
        what = ", ".join(wanted) or "access"
        with self._lock:
            self._challenges[host] = ch
            self._schemes[host] = u.scheme
            if sent is not None:
                self._tokens.pop((host, wanted), None)
        if ch.scheme == "basic" and not (creds and creds.username):
            raise Unauthenticated(
                f"{host}: the registry requires a login ({detail}); "
                f"no credentials for {host}: run 'ctrstore login {host}'"
            )
        if not final:
            return
        if creds is None:
            raise Unauthenticated(
                f"{host}: {what} requires a login, or the repository does not exist ({detail}); "
                f"run 'ctrstore login {host}'"
            )
        if ch.scheme == "basic":
            raise Unauthenticated(
                f"{host}: the registry refused the credentials of user {creds.username!r} "
                f"from {creds.source or 'the credential store'} ({detail})"
            )
        who = creds.username or "<identity token>"
        if ch.error == "invalid_token":
            raise Unauthenticated(
                f"{host}: the registry rejected the token issued for {who!r} "
                f"({clean(ch.params.get('error_description') or ch.error)}; {detail})"
            )
        raise PermissionDenied(
            f"{host}: {creds.username or '<identity token>'!r} is not allowed {what}, "
            f"or the repository does not exist ({detail})"
        )


def may_send_secret(url: str, host: str, host_scheme: str) -> bool:
    """Whether the password or identity token of registry ``host`` (spoken to over
    ``host_scheme``) may be sent to ``url``, a token realm: over https always (realms on other
    hosts are normal: Docker Hub's is ``auth.docker.io``); over plain http only to the
    registry's own host name when the registry is itself spoken to over http (its clear-text
    traffic is the user's choice), or to loopback when the registry is on loopback too."""
    u = urlsplit(url)
    if u.scheme == "https":
        return True
    if u.scheme != "http" or not u.hostname:
        return False
    if is_localhost(u.netloc) and is_localhost(host):
        return True
    return host_scheme == "http" and u.hostname == (urlsplit(f"//{host}").hostname or "")


def fetch_token(
    transport: Transport,
    ch: Challenge,
    scopes: tuple[str, ...],
    creds: Credentials | None,
    host: str,
    *,
    registry_scheme: str = "https",
) -> tuple[str, float]:
    """A bearer token for ``scopes``: ``(token, seconds valid)``. ``registry_scheme`` is
    how the registry that sent ``ch`` is spoken to (see :func:`may_send_secret`)."""
    realm = ch.realm
    try:
        u = check_url(realm, f"{host}: bearer challenge realm")
    except InvalidArgument as e:
        raise Unauthenticated(str(e)) from None
    if creds and creds.secret and not may_send_secret(realm, host, registry_scheme):
        raise Unauthenticated(
            f"{host}: the registry's token server {clean(realm, 120)} is plain HTTP on another host; "
            f"ctrstore does not send the credentials of {host} ({creds.source or 'credential store'}) "
            "there in clear text (the token server must use https)"
        )
    if creds and creds.secret:
        form: dict[str, str] = {"client_id": CLIENT_ID}
        if scopes:
            form["scope"] = " ".join(scopes)
        if ch.service:
            form["service"] = ch.service
        if creds.is_identity_token:
            form.update(grant_type="refresh_token", refresh_token=creds.secret)
        else:
            form.update(grant_type="password", username=creds.username, password=creds.secret)
        resp = transport.request(
            "POST",
            realm,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            body=urlencode(form).encode(),
            confidential_body=True,
        )
        with resp:
            if resp.status == 200:
                return _token_from(resp, realm)
            fallback = resp.status in (400, 401, 404) or (resp.status == 405 and creds.username)
            if not fallback:
                raise _token_error(resp, realm, creds, host)
            resp.drain()
    params: list[tuple[str, str]] = []
    if ch.service:
        params.append(("service", ch.service))
    params += [("scope", s) for s in scopes]
    url = realm + (("&" if u.query else "?") + urlencode(params) if params else "")
    headers = {}
    if creds and creds.username:
        headers["Authorization"] = creds.basic()
    # The Basic credentials go to the realm's own host only (same_origin: no redirect to
    # another host or down to http takes them along).
    resp = transport.request("GET", url, headers=headers, trusted=same_origin(url))
    with resp:
        if resp.status == 200:
            return _token_from(resp, realm)
        raise _token_error(resp, realm, creds, host)


def _token_from(resp: Response, realm: str) -> tuple[str, float]:
    """The token and its lifetime from a token server's JSON reply, checked: the token is a
    string of visible ASCII (it goes into a header as is), the lifetime a finite number."""
    where = f"token server {clean(realm, 120)}"
    try:
        doc = loads_json(resp.read(1 << 20))
    except ValueError:
        raise Unavailable(f"{where}: reply is not JSON") from None
    except CtrstoreError as e:
        raise Unavailable(f"{where}: {e}") from None
    if not isinstance(doc, dict):
        raise Unavailable(f"{where}: reply is not a JSON object")
    tok = doc.get("token") or doc.get("access_token")
    if not tok:
        raise Unavailable(f"{where}: reply has no token")
    if not isinstance(tok, str) or len(tok) > MAX_TOKEN_LENGTH or not _TOKEN_VALUE_RE.fullmatch(tok):
        raise Unavailable(
            f"{where}: the token is not a string of at most {MAX_TOKEN_LENGTH} visible ASCII characters"
        )
    ttl = doc.get("expires_in")
    seconds = DEFAULT_TOKEN_TTL
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0:
        seconds = float(ttl)
    if not math.isfinite(seconds):
        seconds = MAX_TOKEN_TTL
    return tok, min(max(seconds, 1.0), MAX_TOKEN_TTL)


_TOKEN_VALUE_RE = re.compile(r"[\x21-\x7e]+")


def _token_error(resp: Response, realm: str, creds: Credentials | None, host: str) -> CtrstoreError:
    detail = resp.error_detail()
    realm = clean(realm, 120)
    if resp.status in (401, 403):
        if creds:
            who = creds.username or "<identity token>"
            return Unauthenticated(
                f"{host}: token server {realm} refused the credentials of {who!r} "
                f"from {creds.source or 'the credential store'} ({detail})"
            )
        return Unauthenticated(f"{host}: token server {realm} requires a login ({detail})")
    return Unavailable(f"{host}: token server {realm}: {detail}")


# -- login and logout ------------------------------------------------------------------------
def login(
    host: str,
    username: str,
    password: str,
    *,
    config: DockerConfig | None = None,
    hosts_dir: str | os.PathLike[str] | None = None,
    plain_http: bool = False,
    transport: Transport | None = None,
) -> str:
    """Check the credentials against the registry (``GET /v2/`` and its challenge), then store
    them in the Docker config (or its credential helper). Returns the key they are stored
    under. Raises Unauthenticated if the registry refuses them."""
    from ctrstore.remotes.hosts import configure_hosts
    from ctrstore.remotes.reference import _DOMAIN_RE
    from ctrstore.remotes.transport import TLSError

    if not isinstance(host, str) or not _DOMAIN_RE.fullmatch(host):
        raise InvalidArgument(f"login: invalid registry host {clean(host, 100)!r} (want host[:port])")
    if not password:
        raise InvalidArgument("login: empty password")
    config = config or DockerConfig()
    creds = Credentials(username, password, "login")
    t = transport or Transport()
    try:
        hosts = configure_hosts(host, hosts_dir=hosts_dir, plain_http=plain_http)
        h = hosts[-1]  # the registry itself (mirrors come first)
        while True:
            try:
                resp = t.request(
                    "GET",
                    h.base_url + "/",
                    headers=h.headers,
                    ssl_context=h.ssl_context(),
                    connect_timeout=h.dial_timeout,
                )
                break
            except TLSError:
                if not h.http_fallback:
                    raise
                h.scheme, h.http_fallback = "http", False
        with resp:
            if resp.status == 401 and urlsplit(resp.url).netloc != h.host:
                raise Unauthenticated(
                    f"{host}: GET /v2/ was redirected to {clean(urlsplit(resp.url).netloc, 100)}, which asks "
                    f"for authentication; ctrstore does not send the credentials of {host} to another host"
                )
            if resp.status == 401:
                chs = parse_www_authenticate(resp.headers.get_all("WWW-Authenticate") or [])
                ch = next((c for c in chs if c.scheme == "bearer"), None) or next(
                    (c for c in chs if c.scheme == "basic"), None
                )
                resp.drain()
                if ch is None:
                    raise Unauthenticated(f"{host}: the registry asks for an unsupported authentication")
                if ch.scheme == "bearer":
                    fetch_token(t, ch, (), creds, h.host, registry_scheme=urlsplit(resp.url).scheme)
                else:
                    hdrs = {**h.headers, "Authorization": creds.basic()}
                    with t.request("GET", h.base_url + "/", headers=hdrs, ssl_context=h.ssl_context()) as r2:
                        if r2.status in (401, 403):
                            raise Unauthenticated(
                                f"{host}: the registry refused the credentials of user {username!r} "
                                f"({r2.error_detail()})"
                            )
                        if r2.status != 200:
                            raise Unavailable(f"{host}: GET /v2/: {r2.error_detail()}")
                        r2.drain()
            elif resp.status != 200:
                raise Unavailable(f"{host}: GET /v2/: {resp.error_detail()}")
            else:
                resp.drain()
    finally:
        if transport is None:
            t.close()
    config.store(host, creds)
    return auth_key(host)


def logout(host: str, *, config: DockerConfig | None = None) -> None:
    """Remove a registry's credentials; NotFound if there were none."""
    config = config or DockerConfig()
    if not config.erase(host):
        raise NotFound(f"not logged in to {host} ({config.path})")
