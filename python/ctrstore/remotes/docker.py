"""The Docker registry HTTP API v2 (OCI distribution): resolving references, fetching blobs and
manifests, pushing them. containerd's ``core/remotes/docker``, in Python.

::

    with Resolver() as r:
        name, desc = r.resolve("redis:alpine")
        stream, start = r.fetcher(name).fetch(desc)
        r.pusher("localhost:5000/redis:alpine").push(desc, data)
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Iterable, Sequence
from typing import IO, Any
from urllib.parse import urljoin

from ctrstore._core import sha256_bytes
from ctrstore.content import Descriptor
from ctrstore.errdefs import (
    CtrstoreError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from ctrstore.images import mediatypes as mt
from ctrstore.remotes.auth.authorizer import Authorizer
from ctrstore.remotes.auth.challenge import repository_scope
from ctrstore.remotes.auth.credentials import CredentialsFunc, DockerConfig
from ctrstore.remotes.endpoint import Endpoint
from ctrstore.remotes.hosts import RegistryHost, configure_hosts
from ctrstore.remotes.reference import Reference, parse
from ctrstore.remotes.transport import (
    MAX_SIZE,
    Body,
    Response,
    RetryPolicy,
    Transport,
    clean,
    loads_json,
    resolve_url,
    with_query,
)

__all__ = ["MAX_MANIFEST_SIZE", "BlobReader", "Fetcher", "Pusher", "Resolver"]

#: containerd's limit for a manifest or index (``remotes/docker``'s ``MaxManifestSize``,
#: 4 * 1048 * 1048 as written there): a larger one is refused, whether a HEAD announces its
#: size or a GET sends it.
MAX_MANIFEST_SIZE = 4 * 1048 * 1048
MANIFEST_ACCEPT = ", ".join(mt.MANIFEST_ACCEPT)
_CONTENT_RANGE_RE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}")


def _check_digest(value: str, what: str) -> str:
    """A digest a registry sent (``Docker-Content-Digest``) or a descriptor names; it goes
    into URLs, so anything but ``algorithm:hex`` is InvalidArgument."""
    if not _DIGEST_RE.fullmatch(value):
        raise InvalidArgument(f"{what}: invalid digest {clean(value, 140)!r} (want sha256:<64 hex>)")
    return value


def _check_manifest_size(size: int | None, what: str) -> None:
    """InvalidArgument if ``size`` (stated by ``what``) is over MAX_MANIFEST_SIZE."""
    if size is not None and size > MAX_MANIFEST_SIZE:
        raise InvalidArgument(
            f"{what} a manifest of {size} bytes; ctrstore (as containerd) accepts at most {MAX_MANIFEST_SIZE}"
        )


def _fetch_headers(desc: Descriptor, offset: int) -> dict[str, str]:
    """The headers of a GET for ``desc``'s bytes from ``offset`` on."""
    headers = {"Accept": f"{desc.media_type}, */*" if desc.media_type else "*/*"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return headers


def _is_manifest_type(media_type: str) -> bool:
    return (
        media_type in mt.MANIFESTS
        or media_type in mt.INDEXES
        or media_type
        in (
            mt.DOCKER_SCHEMA1,
            mt.DOCKER_SCHEMA1_PLAIN,
        )
    )


def sniff_manifest(body: bytes) -> str | None:
    """The media type of a manifest or index from its JSON, when the server did not say."""
    try:
        doc = loads_json(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    declared = doc.get("mediaType")
    if isinstance(declared, str) and _is_manifest_type(declared):
        return declared
    if doc.get("schemaVersion") == 1 and "fsLayers" in doc:
        return mt.DOCKER_SCHEMA1 if "signatures" in doc else mt.DOCKER_SCHEMA1_PLAIN
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc and "layers" in doc:
        cfg = doc.get("config")
        if isinstance(cfg, dict) and cfg.get("mediaType") == mt.DOCKER_CONFIG:
            return mt.DOCKER_MANIFEST
        return mt.OCI_MANIFEST
    return None


def _error(resp: Response, what: str) -> CtrstoreError:
    """The errdefs error for a failed reply (the body is read for the registry's message)."""
    detail = resp.error_detail()
    status = resp.status
    if status == 404:
        return NotFound(f"{what}: not found ({detail})")
    if status == 401:
        return Unauthenticated(f"{what}: {detail}")
    if status == 403:
        return PermissionDenied(f"{what}: access denied ({detail})")
    if status in (400, 405, 411, 413, 414, 415, 416, 422):
        return InvalidArgument(f"{what}: the registry rejected the request ({detail})")
    return Unavailable(f"{what}: {detail}")


class _Session:
    """Requests to one repository's hosts, with authentication (and HTTP fallback, through
    each host's Endpoint)."""

    def __init__(self, resolver: Resolver, ref: Reference) -> None:
        self.resolver = resolver
        self.ref = ref
        self.repo = ref.path
        self.endpoints = resolver.endpoints(ref.domain)
        self.transport = resolver.transport
        self.authorizer = resolver.authorizer

    def hosts_with(self, capability: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.host.can(capability)]

    def url(self, ep: Endpoint, rel: str, query: dict[str, str] | None = None) -> str:
        q = dict(query or {})
        if ep.host.is_mirror:
            q["ns"] = ep.host.registry
        return with_query(f"{ep.base_url}/{self.repo}/{rel}", q)

    def do(
        self,
        ep: Endpoint,
        method: str,
        target: str,
        *,
        scopes: Sequence[str],
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: Body = None,
        retry: bool = True,
    ) -> Response:
        """``target`` is a path below ``/v2/<repo>/`` or an absolute URL (upload locations)."""
        if target.startswith(("http://", "https://")):
            url = target
        elif target.startswith("/"):
            url = urljoin(ep.origin, target)
        else:
            url = self.url(ep, target, query)
        return ep.request(
            method,
            url,
            authorizer=self.authorizer,
            scopes=scopes,
            what=self.ref.domain,
            headers={**ep.host.headers, **self.resolver.headers, **(headers or {})},
            body=body,
            retry=retry,
        )


class Resolver:
    """Resolves references and makes fetchers and pushers, sharing connections, host
    configuration and tokens. Thread-safe; close it when done."""

    def __init__(
        self,
        *,
        hosts_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        plain_http: bool = False,
        credentials: CredentialsFunc | None = None,
        docker_config: DockerConfig | str | os.PathLike[str] | None = None,
        headers: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        transport: Transport | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.hosts_dir = hosts_dir
        self.plain_http = plain_http
        self.headers = dict(headers or {})
        self._own_transport = transport is None
        self.transport = transport or Transport(retry=retry or RetryPolicy(), timeout=timeout)
        if authorizer is None:
            if credentials is None:
                cfg = (
                    docker_config if isinstance(docker_config, DockerConfig) else DockerConfig(docker_config)
                )
                credentials = cfg.credentials
            authorizer = Authorizer(self.transport, credentials)
        self.authorizer = authorizer
        self._endpoints: dict[str, list[Endpoint]] = {}
        self._lock = threading.Lock()
        self._failed: set[str] = set()

    def close(self) -> None:
        if self._own_transport:
            self.transport.close()

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def endpoints(self, registry: str) -> list[Endpoint]:
        """The endpoints of a registry, in the order to try them (hosts.toml read once per
        resolver; each host's fallback state and TLS context shared by all its requests)."""
        with self._lock:
            eps = self._endpoints.get(registry)
        if eps is None:
            hosts = configure_hosts(registry, hosts_dir=self.hosts_dir, plain_http=self.plain_http)
            with self._lock:
                eps = self._endpoints.setdefault(registry, [Endpoint(h, self.transport) for h in hosts])
        return eps

    def failed(self, host: str, *, mark: bool = False) -> bool:
        """Whether ``host`` (``host[:port]``), a mirror, failed a request of this resolver: it
        is then passed over by the later ones (a dead peer costs one timeout per pull, not
        one per blob). ``mark``: it just did. Not found (404) is no failure."""
        with self._lock:
            if mark:
                self._failed.add(host)
            return host in self._failed

    def hosts(self, registry: str) -> list[RegistryHost]:
        """The configured hosts of a registry (read once per resolver)."""
        return [e.host for e in self.endpoints(registry)]

    def _session(self, ref: str | Reference) -> _Session:
        return _Session(self, parse(ref) if isinstance(ref, str) else ref)

    def resolve(self, ref: str | Reference) -> tuple[str, Descriptor]:
        """``(normalised name, descriptor of the root manifest or index)``. NotFound if no
        host has it."""
        s = self._session(ref)
        r = s.ref
        scopes = [repository_scope(s.repo)]
        if r.digest:
            hosts, paths = s.hosts_with("pull"), [f"manifests/{r.digest}", f"blobs/{r.digest}"]
        else:
            hosts, paths = s.hosts_with("resolve"), [f"manifests/{r.tag}"]
        if not hosts:
            raise FailedPrecondition(
                f"{r}: no host of {r.domain} may resolve (check hosts.toml capabilities)"
            )
        misses: list[str] = []
        skipped: list[str] = []
        first_err: CtrstoreError | None = None
        for i, ep in enumerate(hosts):
            last = i == len(hosts) - 1
            if not last and self.failed(ep.host.host):
                continue
            for path in paths:
                try:
                    desc = self._resolve_at(s, ep, path, scopes, retry=last)
                except CtrstoreError as e:
                    if not last:
                        # A mirror that fails is passed over (once, without retries): the next
                        # host, and the registry itself last, may still answer.
                        self.failed(ep.host.host, mark=True)
                        skipped.append(str(e))
                        misses.append(ep.host.host)
                        break
                    if not isinstance(e, (Unavailable, InvalidArgument, FailedPrecondition)):
                        raise _noting(e, skipped) from None
                    # As containerd: remember the first failure, try the next path.
                    first_err = first_err or e
                    continue
                if desc is not None:
                    return str(r), desc
                misses.append(ep.host.host)
        if first_err is not None:
            raise _noting(first_err, skipped) from None
        where = ", ".join(dict.fromkeys(misses))
        raise _noting(NotFound(f"{r}: not found (asked {where})"), skipped)

    def _resolve_at(
        self, s: _Session, ep: Endpoint, path: str, scopes: list[str], *, retry: bool = True
    ) -> Descriptor | None:
        r = s.ref
        is_manifest_path = path.startswith("manifests/")
        headers = {"Accept": MANIFEST_ACCEPT}
        what = f"{r}: {ep.host.host}"
        resp = s.do(ep, "HEAD", path, scopes=scopes, headers=headers, retry=retry)
        if resp.status == 200:
            media = resp.media_type
            dgst = resp.header("Docker-Content-Digest")
            try:
                size = resp.content_length
                if dgst is not None:
                    _check_digest(dgst, f"{what}: Docker-Content-Digest")
            finally:
                resp.drain()
            _check_manifest_size(size, f"{what}: the registry announces")
            if dgst and size is not None and (_is_manifest_type(media) or not is_manifest_path):
                if r.digest and dgst != r.digest:
                    raise FailedPrecondition(f"{what}: the registry answered for {dgst}, not {r.digest}")
                return Descriptor(media or mt.OCTET_STREAM, dgst, size)
            # No digest, no length or an odd content type: read the manifest itself.
            resp = s.do(ep, "GET", path, scopes=scopes, headers=headers, retry=retry)
        elif resp.status in (400, 405, 501):  # HEAD not supported
            resp.drain()
            resp = s.do(ep, "GET", path, scopes=scopes, headers=headers, retry=retry)
        with resp:
            if resp.status == 404:
                resp.drain()
                return None
            if resp.status != 200:
                raise _error(resp, what)
            _check_manifest_size(resp.content_length, f"{what}: the registry sends")
            body = resp.read(MAX_MANIFEST_SIZE)
        digest = sha256_bytes(body)
        if r.digest and digest != r.digest:
            if r.digest.startswith("sha256:"):
                raise FailedPrecondition(
                    f"{what}: the registry sent content with digest {digest}, not {r.digest}"
                )
            digest = r.digest  # only sha256 is hashed here; trust the address
        media = resp.media_type
        if is_manifest_path and not _is_manifest_type(media):
            sniffed = sniff_manifest(body)
            if sniffed is None:
                raise FailedPrecondition(
                    f"{what}: the registry sent {media or 'no content type'!r}, "
                    "which is not a manifest or index"
                )
            media = sniffed
        return Descriptor(media or mt.OCTET_STREAM, digest, len(body))

    def fetcher(self, ref: str | Reference) -> Fetcher:
        return Fetcher(self._session(ref))

    def pusher(self, ref: str | Reference) -> Pusher:
        return Pusher(self._session(ref))


class Fetcher:
    """Downloads the blobs of one repository (``ctrstore.images.pull.Fetcher``) from its pull
    hosts in order: mirrors (other nodes' ``ctrstore serve``) first, the registry last. A host
    that has not got a blob, fails, or breaks off in the middle of one is passed over for the
    next, which continues the blob where it stopped (``Range``); the caller verifies the
    digest of the whole as before, and :meth:`distrust` sends a blob whose mixed bytes did not
    verify back to the registry alone. Thread-safe."""

    def __init__(self, session: _Session) -> None:
        self._s = session
        self._lock = threading.Lock()
        self._sources: dict[str, list[tuple[str, int]]] = {}
        self._origin_only: set[str] = set()

    @property
    def ref(self) -> Reference:
        return self._s.ref

    def fetch(self, desc: Descriptor, offset: int = 0) -> tuple[IO[bytes], int]:
        """The blob's bytes from ``offset`` on if the server could resume there, and the
        offset the stream really starts at: ``offset``, or 0 when the server sent everything
        (the caller then starts over). The stream's ``source`` says where its bytes come
        from. Close the stream when done."""
        if offset < 0:
            raise InvalidArgument(f"{desc.digest}: negative offset {offset}")
        s = self._s
        _check_digest(desc.digest, f"{s.ref.name}: descriptor")
        if not 0 <= desc.size <= MAX_SIZE:
            raise InvalidArgument(f"{s.ref.name}@{desc.digest}: invalid size {desc.size} in the descriptor")
        is_manifest = desc.media_type in mt.MANIFESTS or desc.media_type in mt.INDEXES
        if is_manifest:
            _check_manifest_size(desc.size, f"{s.ref.name}@{desc.digest}:")
        errors: list[str] = []
        for url in desc.urls:
            try:
                return self._fetch_url(url, desc, offset)
            except (NotFound, Unavailable, PermissionDenied, InvalidArgument) as e:
                errors.append(str(e))
        hosts = s.hosts_with("pull")
        if not hosts:
            raise FailedPrecondition(
                f"{s.ref}: no host of {s.ref.domain} may pull (check hosts.toml capabilities)"
            )
        with self._lock:
            if desc.digest in self._origin_only:
                hosts = hosts[-1:]
        stream = _BlobStream(self, desc, "manifests" if is_manifest else "blobs", hosts, errors)
        start = stream.begin(offset)
        with self._lock:
            self._sources[desc.digest] = stream.sources
        return BlobReader(stream), start

    def distrust(self, desc: Descriptor) -> bool:
        """The bytes last fetched for ``desc`` failed verification. If some came from a host
        other than the registry itself (the last pull host: a mirror, or several hosts mixed
        by a failover) or from before this fetcher (a resumed download), every later fetch of
        ``desc`` goes to the registry alone and True is returned: fetch it again from 0.
        False when they all came from the registry (or it was asked alone already): the
        registry itself serves bad content."""
        hosts = self._s.hosts_with("pull")
        origin = hosts[-1].host.host if hosts else ""
        with self._lock:
            if desc.digest in self._origin_only:
                return False
            got = self._sources.get(desc.digest) or []
            mixed = not got or got[0][1] > 0 or any(h != origin for h, _ in got)
            if mixed:
                self._origin_only.add(desc.digest)
            return mixed

    def _open(
        self, ep: Endpoint, desc: Descriptor, kind: str, offset: int, *, retry: bool
    ) -> tuple[Response, int] | None:
        """GET the blob from ``ep`` (``Range`` from ``offset``): its reply and where its bytes
        start, or None if the host has not got it. The host's errors are raised."""
        s = self._s
        what = f"{s.ref.name}@{desc.digest}: {ep.host.host}"
        headers = _fetch_headers(desc, offset)
        resp = s.do(
            ep,
            "GET",
            f"{kind}/{desc.digest}",
            scopes=[repository_scope(s.repo)],
            headers=headers,
            retry=retry,
        )
        if resp.status == 404:
            resp.drain()
            return None
        if resp.status == 416 and offset:
            resp.drain()
            return self._open(ep, desc, kind, 0, retry=retry)  # offset 0: no second restart
        got = self._accept(resp, what, offset, desc.size)
        return got if got is not None else self._open(ep, desc, kind, 0, retry=retry)

    def _accept(self, resp: Response, what: str, offset: int, size: int) -> tuple[Response, int] | None:
        """A 200 or 206 reply and where its bytes start; None to start over from 0 (only when
        ``offset`` > 0, so a restart never restarts again). The sizes the server states
        (Content-Length, Content-Range) must be this blob's."""
        if resp.status not in (200, 206):
            with resp:
                raise _error(resp, what)
        try:
            length = resp.content_length
            start = 0
            if resp.status == 206:
                raw = resp.header("Content-Range") or ""
                m = _CONTENT_RANGE_RE.fullmatch(raw.strip())
                if not m:
                    raise InvalidArgument(f"{what}: invalid Content-Range {clean(raw, 80)!r}")
                first, last, total = int(m.group(1)), int(m.group(2)), m.group(3)
                if first != offset and offset > 0:
                    resp.close()
                    return None  # a range we did not ask for: start over without one
                if (
                    first != offset
                    or last < first
                    or (total != "*" and (int(total) != size or last != size - 1))
                ):
                    raise InvalidArgument(
                        f"{what}: Content-Range {clean(raw, 80)!r} is not bytes {offset}-{size - 1}/{size}"
                    )
                start = offset
            if length is not None and length != size - start:
                raise InvalidArgument(
                    f"{what}: the registry announces {length} bytes from offset {start} of a blob of {size}"
                )
        except BaseException:
            resp.close()
            raise
        return resp, start

    def _fetch_url(self, url: str, desc: Descriptor, offset: int) -> tuple[IO[bytes], int]:
        resp = self._s.transport.request("GET", url, headers=_fetch_headers(desc, offset))
        if resp.status == 416 and offset:
            resp.drain()
            return self._fetch_url(url, desc, 0)
        got = self._accept(resp, f"{desc.digest}: {clean(url, 120)}", offset, desc.size)
        if got is None:
            return self._fetch_url(url, desc, 0)
        return got[0].stream(), got[1]


def _noting(e: CtrstoreError, skipped: Sequence[str]) -> CtrstoreError:
    """``e``, or one of its class whose message adds why the hosts before were passed over."""
    if not skipped:
        return e
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return type(e)(f"{e} (passed over first: {'; '.join(skipped[:3])}{more})")


class _BlobStream(io.RawIOBase):
    """The bytes of one blob, from the first of ``hosts`` that serves it. When that host's
    stream breaks or ends before the blob does, the next host is asked for the rest
    (``Range: bytes=<where it stopped>-``; one that sends the whole blob instead has its first
    bytes skipped), and so on; only the last host's failure is raised. Reads end at the
    descriptor's size. ``sources`` lists each host used and the offset of its first byte."""

    def __init__(
        self, fetcher: Fetcher, desc: Descriptor, kind: str, hosts: list[Endpoint], skipped: list[str]
    ) -> None:
        super().__init__()
        self._f = fetcher
        self.desc = desc
        self._kind = kind
        self._todo = list(hosts)
        self._resp: Response | None = None
        self._host = ""
        self._skip = 0
        self.pos = 0
        self.sources: list[tuple[str, int]] = []
        self.skipped = skipped
        """Why hosts were passed over (``host: reason``)."""

    def readable(self) -> bool:
        return True

    def begin(self, offset: int) -> int:
        """Open the first host that has the blob; returns where its bytes start."""
        self.pos = self._open_next(offset)
        return self.pos

    def _open_next(self, offset: int) -> int:
        """Open the next host that has the blob, asking from ``offset``; where its bytes start
        (``offset`` or 0). The last host's error is raised (NotFound if nobody has it)."""
        s = self._f._s
        resolver = s.resolver
        while self._todo:
            ep = self._todo.pop(0)
            last = not self._todo
            if not last and resolver.failed(ep.host.host):
                continue
            try:
                got = self._f._open(ep, self.desc, self._kind, offset, retry=last)
            except CtrstoreError as e:
                if last:
                    raise _noting(e, self.skipped) from None
                resolver.failed(ep.host.host, mark=True)
                self.skipped.append(str(e))
                continue
            if got is None:
                self.skipped.append(f"{ep.host.host}: not found")
                continue
            self._resp, start = got
            self._host = ep.host.host
            self.sources.append((self._host, offset if start == offset else 0))
            return start
        raise NotFound(f"{s.ref.name}@{self.desc.digest}: blob not found ({'; '.join(self.skipped)})")

    def _fail_over(self, err: CtrstoreError | None) -> None:
        """The current host stopped at ``pos``: continue from the next one (or raise)."""
        why = str(err) if err is not None else f"{self._host}: the stream ended"
        self._close_resp()
        if not self._todo:
            if err is not None:
                raise err
            return  # the caller sees the blob end early, as from a single host
        self._f._s.resolver.failed(self._host, mark=True)
        self.skipped.append(f"{why} (at byte {self.pos} of {self.desc.size})")
        if self.sources and self.sources[-1][1] == self.pos:
            self.sources.pop()  # it sent nothing of this blob
        start = self._open_next(self.pos)
        self._skip = self.pos - start
        if self.sources and start != self.pos:
            self.sources[-1] = (self._host, self.pos)

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        while True:
            resp = self._resp
            want = min(len(mv), self.desc.size - self.pos)
            if resp is None or want <= 0:
                self._close_resp()
                return 0
            try:
                data = resp.read_chunk(min(self._skip, 1 << 16) if self._skip else want)
                err: CtrstoreError | None = None
            except CtrstoreError as e:
                data, err = b"", e
            if not data:
                self._fail_over(err)
                if self._resp is None:
                    return 0
                continue
            if self._skip:
                self._skip -= len(data)  # a host that ignored Range: drop what we had
                continue
            n = len(data)
            mv[:n] = data
            self.pos += n
            return n

    @property
    def source(self) -> str:
        """``host``, or ``host, host from byte N, ...`` when the blob moved on mid-way."""
        return ", ".join(h if i == 0 else f"{h} from byte {at}" for i, (h, at) in enumerate(self.sources))

    def _close_resp(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def close(self) -> None:
        self._close_resp()
        super().close()


class BlobReader(io.BufferedReader):
    """What :meth:`Fetcher.fetch` returns: a buffered stream with the hosts its bytes come
    from (``source`` for people, ``sources`` as ``(host, first offset)`` pairs)."""

    def __init__(self, raw: _BlobStream) -> None:
        super().__init__(raw, buffer_size=1 << 16)
        self._blob = raw

    @property
    def source(self) -> str:
        return self._blob.source

    @property
    def sources(self) -> list[tuple[str, int]]:
        return list(self._blob.sources)


class Pusher:
    """Uploads blobs and manifests to one repository (the first host with ``push``)."""

    def __init__(
        self,
        session: _Session,
        *,
        chunked_threshold: int = 64 << 20,
        chunk_size: int = 16 << 20,
    ) -> None:
        self._s = session
        hosts = session.hosts_with("push")
        if not hosts:
            raise FailedPrecondition(
                f"{session.ref}: no host of {session.ref.domain} may push (check hosts.toml capabilities)"
            )
        self.endpoint = hosts[0]
        self.chunked_threshold = chunked_threshold
        self.chunk_size = chunk_size

    @property
    def host(self) -> RegistryHost:
        """The host pushed to."""
        return self.endpoint.host

    @property
    def ref(self) -> Reference:
        return self._s.ref

    def _scopes(self, extra: Iterable[str] = ()) -> list[str]:
        return [repository_scope(self._s.repo, push=True), *extra]

    def exists(self, desc: Descriptor) -> bool:
        """Whether the repository has the blob or manifest already."""
        kind = "manifests" if _is_manifest_type(desc.media_type) else "blobs"
        headers = {"Accept": MANIFEST_ACCEPT} if kind == "manifests" else {}
        resp = self._s.do(
            self.endpoint, "HEAD", f"{kind}/{desc.digest}", scopes=self._scopes(), headers=headers
        )
        with resp:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            raise _error(resp, f"{self.ref.name}@{desc.digest}")

    def push(
        self,
        desc: Descriptor,
        data: bytes | IO[bytes],
        *,
        tag: str | None = None,
        mount_from: Sequence[str] = (),
    ) -> str:
        """Upload a blob, or a manifest/index (by ``tag`` if given, else by digest).
        ``mount_from`` names other repositories of the same registry that may have the blob.
        Returns ``exists``, ``mounted`` or ``uploaded``."""
        if _is_manifest_type(desc.media_type):
            return self.push_manifest(desc, data if isinstance(data, bytes) else data.read(), tag=tag)
        return self.push_blob(desc, data, mount_from=mount_from)

    def push_manifest(self, desc: Descriptor, data: bytes, *, tag: str | None = None) -> str:
        what = f"{self.ref.name}@{desc.digest}"
        if len(data) != desc.size:
            raise InvalidArgument(f"{what}: {len(data)} bytes given, the descriptor says {desc.size}")
        if tag is None and self.exists(desc):
            return "exists"
        target = tag or desc.digest
        resp = self._s.do(
            self.endpoint,
            "PUT",
            f"manifests/{target}",
            scopes=self._scopes(),
            headers={"Content-Type": desc.media_type},
            body=data,
        )
        with resp:
            if resp.status not in (200, 201, 202):
                raise _error(resp, f"{self.ref.name}{'@' if target == desc.digest else ':'}{target}")
            got = resp.header("Docker-Content-Digest")
            resp.drain()
        if got and got != desc.digest:
            raise FailedPrecondition(f"{what}: the registry stored the manifest as {clean(got, 140)!r}")
        return "uploaded"

    def push_blob(self, desc: Descriptor, data: bytes | IO[bytes], *, mount_from: Sequence[str] = ()) -> str:
        s = self._s
        what = f"{self.ref.name}@{desc.digest}"
        stream: IO[bytes] = io.BytesIO(data) if isinstance(data, bytes) else data
        if self.exists(desc):
            return "exists"
        location: str | None = None
        for src in mount_from:
            if src == s.repo:
                continue
            resp = s.do(
                self.endpoint,
                "POST",
                "blobs/uploads/",
                scopes=self._scopes([f"repository:{src}:pull"]),
                query={"mount": desc.digest, "from": src},
            )
            with resp:
                if resp.status == 201:
                    resp.drain()
                    return "mounted"
                if resp.status == 202:
                    location = resp.header("Location")
                    resp.drain()
                    break
                raise _error(resp, f"{what}: mount from {src}")
        if location is None:
            resp = s.do(self.endpoint, "POST", "blobs/uploads/", scopes=self._scopes())
            with resp:
                if resp.status != 202:
                    raise _error(resp, f"{what}: start upload")
                location = resp.header("Location")
                resp.drain()
        if not location:
            raise Unavailable(f"{what}: the registry started an upload without a Location")
        location = resolve_url(self.endpoint.origin, location, f"{what}: upload: Location")
        if desc.size > self.chunked_threshold:
            location = self._patch_chunks(location, stream, desc, what)
            body: Body = None
        else:
            start = stream.tell()
            have = stream.seek(0, io.SEEK_END) - start
            stream.seek(start)
            if have != desc.size:
                raise InvalidArgument(f"{what}: {have} bytes given, the descriptor says {desc.size}")
            body = stream
        resp = s.do(
            self.endpoint,
            "PUT",
            with_query(location, {"digest": desc.digest}),
            scopes=self._scopes(),
            headers={"Content-Type": "application/octet-stream"},
            body=body,
        )
        with resp:
            if resp.status not in (201, 204):
                raise _error(resp, f"{what}: finish upload")
            resp.drain()
        return "uploaded"

    def _patch_chunks(self, location: str, stream: IO[bytes], desc: Descriptor, what: str) -> str:
        sent = 0
        while sent < desc.size:
            chunk = stream.read(min(self.chunk_size, desc.size - sent))
            if not chunk:
                raise InvalidArgument(f"{what}: the data ended after {sent} of {desc.size} bytes")
            resp = self._s.do(
                self.endpoint,
                "PATCH",
                location,
                scopes=self._scopes(),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{sent}-{sent + len(chunk) - 1}",
                },
                body=chunk,
                retry=False,
            )
            with resp:
                if resp.status != 202:
                    raise _error(resp, f"{what}: upload bytes {sent}-{sent + len(chunk) - 1}")
                nxt = resp.header("Location")
                resp.drain()
            sent += len(chunk)
            if nxt:
                location = resolve_url(location, nxt, f"{what}: upload: Location")
        return location
