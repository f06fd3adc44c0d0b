"""The OCI distribution API over one namespace of the store, without the HTTP: what
``ctrstore serve`` answers, as calls on the content store and the image store.

How stored images become repositories
-------------------------------------
An image record's name is a full reference, ``<registry host>/<repository>:<tag>``. A request
names a repository and a tag of *some* registry:

- With ``?ns=<host>`` (containerd's mirror convention: the client says which registry it
  wanted), ``GET /v2/team/app/manifests/1?ns=127.0.0.1:5000`` is the image
  ``127.0.0.1:5000/team/app:1``, and ``?ns=docker.io`` with ``library/alpine`` is
  ``docker.io/library/alpine:...``. One node so serves the images of any upstream registry.
- Without ``ns`` the request is for this server as a registry of its own: the host is the name
  the client gave it (the ``Host`` header, e.g. ``127.0.0.1:5000``; the address it listens on
  if there is none), and then the *upstream* (``--upstream``, default ``docker.io``, which is
  what docker's ``registry-mirrors`` asks for without saying so). A repository is the union
  of both; where both have a tag, the server's own image wins. Pushes without ``ns`` name
  images with the server's own name, so what a client pushes as ``HOST/team/app:1`` it pulls
  back under that very name.

Blobs, and manifests by digest, are served to any repository name of the namespace: the
content store is one pool per namespace, as in containerd, and a digest names verified bytes.
A manifest by digest is one only if its bytes are a manifest or an index (its ``mediaType``,
else its shape). Only committed blobs are served, never an ingest.

Uploads (``--push``) go into ingests of the namespace (``serve-upload-<uuid>``) and are
committed only when the digest the client names matches the bytes; a mismatch commits nothing
and drops the upload. Committed blobs and manifests are held by a lease of the server
(``ctrstore.io/serve``, expiring after 24 h) until an image names them, so a gc between a
layer upload and the manifest that uses it keeps the layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO

from ctrstore.content import Descriptor
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ctrstore.images import gc_child_labels, parse_children
from ctrstore.images import mediatypes as mt
from ctrstore.labels import SERVE_LEASE
from ctrstore.metadata.content import ContentStore, Writer
from ctrstore.metadata.images import Image, ImageStore
from ctrstore.metadata.leases import LeaseManager, Resource
from ctrstore.server.errors import ApiError

__all__ = [
    "DIGEST_RE",
    "HOST_RE",
    "MAX_MANIFEST_SIZE",
    "NAME_RE",
    "SERVE_LEASE_LABEL",
    "TAG_RE",
    "Blob",
    "Manifest",
    "Registry",
]

#: containerd's limit on a manifest or index (``MaxManifestSize``), for what is served and
#: what is accepted.
MAX_MANIFEST_SIZE = 4 * 1048 * 1048

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
#: A repository name (the distribution spec's grammar).
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
#: A registry host as references name it: DNS name, IPv4 or [IPv6], optional port.
HOST_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]{{1,5}})?"
)
MAX_NAME = 255

SERVE_LEASE_LABEL = SERVE_LEASE
LEASE_EXPIRY = timedelta(hours=24)
LEASE_RENEW_SECONDS = 3600.0
UPLOAD_PREFIX = "serve-upload-"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as served: its type, digest and bytes."""

    media_type: str
    digest: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Blob:
    """An open blob (the caller closes ``file``); ``size`` is the open file's."""

    digest: str
    size: int
    file: BinaryIO


def check_repository(repo: str) -> str:
    if len(repo) > MAX_NAME or not NAME_RE.fullmatch(repo):
        raise ApiError(
            400,
            "NAME_INVALID",
            f"invalid repository name {repo[:300]!r}: lower-case letters and digits, separated by "
            "'.', '_', '__', '-' or '/'",
        )
    return repo


def check_host(host: str, what: str) -> str:
    if len(host) > MAX_NAME or not HOST_RE.fullmatch(host):
        raise ApiError(400, "NAME_INVALID", f"invalid registry host in {what}: {host[:300]!r}")
    return host


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise ApiError(
            400,
            "TAG_INVALID",
            f"invalid tag {tag[:200]!r}: letters, digits, '_', '.', '-', at most 128, "
            "not starting with '.' or '-'",
        )
    return tag


def check_digest(digest: str) -> str:
    if not digest.startswith("sha256:") or not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
        raise ApiError(
            400, "DIGEST_INVALID", f"invalid digest {digest[:200]!r}: this server stores sha256:<64 hex> only"
        )
    return digest


def sniff_media_type(doc: dict[str, Any]) -> str | None:
    """What a manifest's JSON says it is: its ``mediaType``, else its shape (an OCI index lists
    ``manifests``, an OCI manifest has ``config`` and ``layers``); None if it is neither."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and (mt.is_manifest(declared) or mt.is_index(declared)):
        return declared
    if declared not in (None, ""):
        return None
    if doc.get("schemaVersion") != 2:
        return None
    if isinstance(doc.get("manifests"), list):
        return mt.OCI_INDEX
    if isinstance(doc.get("config"), dict) and isinstance(doc.get("layers"), list):
        return mt.OCI_MANIFEST
    return None


def _split_name(name: str) -> tuple[str, str, str | None] | None:
    """``(host, repository, tag)`` of an image name (tag None for ``repo@digest``); None for a
    name that is no ``host/repo[:tag][@digest]``."""
    host, sep, rest = name.partition("/")
    if not sep:
        return None
    rest, _, digest = rest.partition("@")
    tag: str | None = None
    repo, colon, t = rest.rpartition(":")
    if colon and "/" not in t:
        tag = t
    else:
        repo = rest
    if not NAME_RE.fullmatch(repo) or (tag is not None and not TAG_RE.fullmatch(tag)):
        return None
    if tag is None and not digest:
        return None
    return host, repo, tag


class _Lease:
    """The lease that holds what the server commits until an image names it: one at a time,
    a new one every hour (each expires 24 h after it was made)."""

    def __init__(self, leases: LeaseManager) -> None:
        self._leases = leases
        self._lock = threading.Lock()
        self._id: str | None = None
        self._made = 0.0

    def current(self) -> str:
        with self._lock:
            fresh = self._id is not None and time.monotonic() - self._made < LEASE_RENEW_SECONDS
            if fresh and self._leases.list(f"id=={self._id}"):
                assert self._id is not None
                return self._id
            lease = self._leases.create(labels={SERVE_LEASE_LABEL: "push"}, expire=LEASE_EXPIRY)
            self._id, self._made = lease.id, time.monotonic()
            return lease.id

    def hold(self, digest: str) -> None:
        """Hold a blob the namespace has (a mounted one) until an image names it."""
        self._leases.add_resource(self.current(), Resource("content", digest))


class Registry:
    """The distribution API over one namespace: ``content`` and ``images`` are that namespace's
    stores; ``leases`` (its lease manager) is needed only with ``push``."""

    def __init__(
        self,
        content: ContentStore,
        images: ImageStore,
        leases: LeaseManager | None = None,
        *,
        upstream: str = "docker.io",
        push: bool = False,
    ) -> None:
        if push and leases is None:
            raise InvalidArgument("a registry that accepts pushes needs the namespace's lease manager")
        self.content = content
        self.images = images
        self.upstream = upstream
        self.push = push
        self._lease = _Lease(leases) if leases is not None else None
        self._types: OrderedDict[str, str | None] = OrderedDict()
        self._types_lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return self.content.namespace

    # -- names -----------------------------------------------------------------------------
    def hosts(self, ns: str | None, own: str) -> list[str]:
        """The registry hosts whose images a request is answered from, first wins."""
        if ns:
            return [ns]
        return list(dict.fromkeys([own, self.upstream]))

    def namespace_exists(self) -> bool:
        try:
            self.images.list()
        except NotFound:
            return False
        return True

    def _images(self) -> list[Image]:
        try:
            return self.images.list()
        except NotFound:
            return []  # the namespace does not exist (yet): it has no images

    def repositories(self, ns: str | None, own: str) -> list[str]:
        hosts = set(self.hosts(ns, own))
        repos = set()
        for img in self._images():
            parts = _split_name(img.name)
            if parts is not None and parts[0] in hosts:
                repos.add(parts[1])
        return sorted(repos)

    def tags(self, repo: str, ns: str | None, own: str) -> list[str]:
        hosts = set(self.hosts(ns, own))
        tags: set[str] = set()
        known = False
        for img in self._images():
            parts = _split_name(img.name)
            if parts is not None and parts[0] in hosts and parts[1] == repo:
                known = True
                if parts[2] is not None:
                    tags.add(parts[2])
        if not known:
            raise ApiError(
                404,
                "NAME_UNKNOWN",
                f"repository {repo!r} is not known to namespace {self.namespace!r} "
                f"(looked for images named {' or '.join(f'{h}/{repo}:*' for h in self.hosts(ns, own))})",
            )
        return sorted(tags)

    # -- reading ---------------------------------------------------------------------------
    def manifest(self, repo: str, reference: str, ns: str | None, own: str) -> Manifest:
        """The manifest or index ``reference`` (a tag or a digest) of ``repo``."""
        if ":" in reference:
            return self._manifest_by_digest(check_digest(reference))
        check_tag(reference)
        for host in self.hosts(ns, own):
            name = f"{host}/{repo}:{reference}"
            try:
                img = self.images.get(name)
            except NotFound:
                continue
            try:
                data = self.content.read_bytes(img.target.digest)
            except NotFound:
                raise ApiError(
                    404,
                    "MANIFEST_UNKNOWN",
                    f"image {name} names {img.target.digest}, which is not in the content store",
                ) from None
            return Manifest(img.target.media_type, img.target.digest, data)
        names = " or ".join(f"{h}/{repo}:{reference}" for h in self.hosts(ns, own))
        raise ApiError(
            404, "MANIFEST_UNKNOWN", f"manifest unknown: no image {names} in namespace {self.namespace!r}"
        )

    def _manifest_by_digest(self, digest: str) -> Manifest:
        unknown = ApiError(
            404, "MANIFEST_UNKNOWN", f"manifest unknown: {digest} is no manifest or index of namespace "
            f"{self.namespace!r}",
        )  # fmt: skip
        try:
            info = self.content.info(digest)
        except NotFound:
            raise unknown from None
        if info.size > MAX_MANIFEST_SIZE or self._cached_type(digest) is None:
            raise unknown
        try:
            data = self.content.read_bytes(digest)
        except NotFound:
            raise unknown from None
        media_type = self._cached_type(digest)
        if media_type == "":
            media_type = self._media_type_of(data)
            self._remember(digest, media_type)
        if media_type is None:
            raise unknown
        return Manifest(media_type, digest, data)

    def _cached_type(self, digest: str) -> str | None:
        """The cached media type; "" when not known yet, None for a blob that is none."""
        with self._types_lock:
            if digest not in self._types:
                return ""
            self._types.move_to_end(digest)
            return self._types[digest]

    def _remember(self, digest: str, media_type: str | None) -> None:
        with self._types_lock:
            self._types[digest] = media_type
            while len(self._types) > 4096:
                self._types.popitem(last=False)

    @staticmethod
    def _media_type_of(data: bytes) -> str | None:
        if data.lstrip()[:1] != b"{":
            return None
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return None
        return sniff_media_type(doc) if isinstance(doc, dict) else None

    def blob(self, digest: str) -> Blob:
        """Open a committed blob of the namespace (BLOB_UNKNOWN if it holds none)."""
        check_digest(digest)
        try:
            f = self.content.open(digest)
        except NotFound:
            raise ApiError(
                404, "BLOB_UNKNOWN", f"blob unknown: {digest} is not in namespace {self.namespace!r}"
            ) from None
        return Blob(digest, os.fstat(f.fileno()).st_size, f)

    # -- pushing ---------------------------------------------------------------------------
    def require_push(self) -> None:
        """405 UNSUPPORTED unless the registry accepts pushes."""
        self._writable()

    def _writable(self) -> ContentStore:
        if not self.push or self._lease is None:
            raise ApiError(
                405,
                "UNSUPPORTED",
                "this registry is read-only (start `ctrstore serve` with --push to accept uploads)",
            )
        return self.content.with_lease(self._lease.current())

    @staticmethod
    def _ref(upload: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{32}", upload):
            raise ApiError(404, "BLOB_UPLOAD_UNKNOWN", f"blob upload unknown: {upload[:100]!r}")
        return UPLOAD_PREFIX + upload

    def start_upload(self) -> tuple[str, int]:
        """A new upload: ``(uuid, offset 0)``."""
        content = self._writable()
        upload = uuid.uuid4().hex
        with content.writer(self._ref(upload)):
            pass
        return upload, 0

    def upload_offset(self, upload: str) -> int:
        """How many bytes the upload has."""
        self._writable()
        try:
            return self.content.status(self._ref(upload)).offset
        except NotFound:
            raise ApiError(404, "BLOB_UPLOAD_UNKNOWN", f"blob upload unknown: {upload}") from None

    def append(self, upload: str, chunks: Iterable[bytes], start: int | None = None) -> int:
        """Add bytes to an upload; ``start`` (a PATCH's Content-Range) must be its offset.
        Returns the new offset."""
        self.upload_offset(upload)  # it must exist: a writer would start a new one
        with self._open(self._writable(), upload) as w:
            if start is not None and start != w.offset:
                raise _range_error(
                    upload, w.offset, f"the chunk starts at {start}, the upload has {w.offset} bytes"
                )
            for chunk in chunks:
                w.write(chunk)
            return w.offset

    @staticmethod
    def _open(content: ContentStore, upload: str) -> Writer:
        try:
            return content.writer(UPLOAD_PREFIX + upload)
        except Unavailable:
            raise ApiError(
                409, "BLOB_UPLOAD_INVALID", f"blob upload {upload} is being written by another request"
            ) from None

    def finish(self, upload: str, digest: str, chunks: Iterable[bytes]) -> str:
        """Add the last bytes and commit the upload as ``digest``; a mismatch commits nothing
        and drops the upload (DIGEST_INVALID)."""
        check_digest(digest)
        self.upload_offset(upload)
        content = self._writable()
        ref = self._ref(upload)
        mismatch: str | None = None
        with self._open(content, upload) as w:
            for chunk in chunks:
                w.write(chunk)
            try:
                w.commit(0, digest)
            except AlreadyExists:
                pass  # the namespace had it already; the lease holds it all the same
            except FailedPrecondition as e:
                mismatch = str(e)
        if mismatch is not None:
            try:
                content.abort(ref)
            except NotFound:
                pass
            raise ApiError(
                400, "DIGEST_INVALID", f"upload {upload} is not {digest}: {mismatch}; nothing was stored"
            )
        return digest

    def upload(self, digest: str, chunks: Iterable[bytes]) -> str:
        """A monolithic upload (POST with ``?digest=``)."""
        check_digest(digest)
        upload, _ = self.start_upload()
        return self.finish(upload, digest, chunks)

    def cancel(self, upload: str) -> None:
        self._writable()
        try:
            self.content.abort(self._ref(upload))
        except NotFound:
            raise ApiError(404, "BLOB_UPLOAD_UNKNOWN", f"blob upload unknown: {upload}") from None

    def mount(self, digest: str) -> bool:
        """A cross-repository mount: True if the namespace holds ``digest`` (the server's
        lease then holds it too, until an image names it)."""
        check_digest(digest)
        self._writable()
        if not self.content.exists(digest):
            return False
        assert self._lease is not None
        self._lease.hold(digest)
        return True

    def put_manifest(
        self, repo: str, reference: str, content_type: str, data: bytes, ns: str | None, own: str
    ) -> str:
        """Store a manifest or index and, for a tag, name it ``<host>/<repo>:<tag>``."""
        content = self._writable()
        if len(data) > MAX_MANIFEST_SIZE:
            raise ApiError(413, "SIZE_INVALID", f"manifest of {len(data)} bytes; at most {MAX_MANIFEST_SIZE}")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ApiError(400, "MANIFEST_INVALID", f"manifest is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "MANIFEST_INVALID", "manifest is not a JSON object")
        media_type = self._put_media_type(content_type, doc)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        tag: str | None = None
        if ":" in reference:
            if check_digest(reference) != digest:
                raise ApiError(
                    400,
                    "DIGEST_INVALID",
                    f"manifest PUT as {reference}, but its bytes are {digest}; nothing was stored",
                )
        else:
            tag = check_tag(reference)
        desc = Descriptor(media_type, digest, len(data))
        try:
            kids = parse_children(desc, doc)
        except InvalidArgument as e:
            raise ApiError(400, "MANIFEST_INVALID", str(e)) from None
        if mt.is_manifest(media_type):
            missing = [
                k.digest
                for k in kids
                if not (k.media_type in mt.NON_DISTRIBUTABLE or self.content.exists(k.digest))
            ]
            if missing:
                raise ApiError(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    f"manifest {digest} names blobs this registry does not have: {', '.join(missing)}",
                    detail=[{"digest": d} for d in missing],
                )
        content.ingest(
            f"serve-manifest-{digest}",
            data,
            expected=digest,
            size=len(data),
            labels=gc_child_labels(desc, kids),
        )
        self._remember(digest, media_type)
        if tag is not None:
            host = (self.hosts(ns, own))[0]
            name = f"{host}/{repo}:{tag}"
            if len(name) > MAX_NAME + 130:
                raise ApiError(400, "NAME_INVALID", f"image name {name[:300]!r} is too long")
            self.images.upsert(Image(name, desc))
        return digest

    @staticmethod
    def _put_media_type(content_type: str, doc: dict[str, Any]) -> str:
        ct = content_type.split(";", 1)[0].strip()
        declared = doc.get("mediaType")
        if ct in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_PLAIN) or doc.get("schemaVersion") == 1:
            raise ApiError(400, "MANIFEST_INVALID", "Docker schema 1 manifests are not supported")
        if mt.is_manifest(ct) or mt.is_index(ct):
            if isinstance(declared, str) and declared and declared != ct:
                raise ApiError(
                    400,
                    "MANIFEST_INVALID",
                    f"the manifest's mediaType is {declared[:200]!r} but it was sent as {ct!r}",
                )
            return ct
        sniffed = sniff_media_type(doc)
        if sniffed is None:
            raise ApiError(
                400,
                "MANIFEST_INVALID",
                f"not a manifest or index (Content-Type {ct[:200]!r}, mediaType {str(declared)[:200]!r})",
            )
        return sniffed


def _range_error(upload: str, offset: int, why: str) -> ApiError:
    return ApiError(
        416,
        "BLOB_UPLOAD_INVALID",
        f"blob upload {upload}: {why}",
        headers={"Range": f"0-{max(offset - 1, 0)}", "Docker-Upload-UUID": upload},
    )
