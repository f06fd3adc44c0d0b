"""Image references, parsed and normalised as Docker and containerd do.

``redis:alpine3.13`` is ``docker.io/library/redis:alpine3.13``; ``redis`` is
``docker.io/library/redis:latest``; ``host:5000/team/app@sha256:...`` keeps its registry.

The grammar is distribution/reference's::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]          host: DNS name, IPv4 or "[" IPv6 "]"
    path-comp  := [a-z0-9]+ ((  "." | "_" | "__" | "-"+ ) [a-z0-9]+)*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex

The first component is a registry if it contains ``.`` or ``:``, is ``localhost``, or has
upper-case letters; otherwise the name is on Docker Hub (``docker.io``), where one-component
names live under ``library/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ctrstore.errdefs import InvalidArgument

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "Reference",
    "normalize",
    "parse",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?")
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX64_RE = re.compile(r"[a-f0-9]{64}")
_KNOWN_DIGESTS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A normalised reference. ``tag`` is ``latest`` when neither tag nor digest was given."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path``, the repository's full name."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What the registry is asked for: the digest if there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def host(self) -> str:
        """The registry's name as credentials and hosts.toml know it (same as ``domain``)."""
        return self.domain

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def familiar(self) -> str:
        """The short form Docker shows: ``redis:alpine``, ``user/app:1``, ``quay.io/x/y:2``."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    def with_tag(self, tag: str) -> Reference:
        _check_tag(tag, tag)
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        _check_digest(digest, digest)
        return Reference(self.domain, self.path, None, digest)

    def docker_ref(self) -> Reference:
        """containerd's ``ParseDockerRef``: a reference with both tag and digest keeps only
        the digest."""
        if self.tag and self.digest:
            return Reference(self.domain, self.path, None, self.digest)
        return self


def _check_tag(tag: str, ref: str) -> None:
    if not _TAG_RE.fullmatch(tag):
        raise InvalidArgument(
            f"invalid reference {ref!r}: invalid tag {tag!r} (letters, digits, '_', '.', '-'; "
            "must not start with '.' or '-'; at most 128 characters)"
        )


def _check_digest(digest: str, ref: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidArgument(f"invalid reference {ref!r}: invalid digest {digest!r} (want algorithm:hex)")
    algo, _, hexpart = digest.partition(":")
    want = _KNOWN_DIGESTS.get(algo)
    if want is None:
        raise InvalidArgument(f"invalid reference {ref!r}: unsupported digest algorithm {algo!r}")
    if len(hexpart) != want or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidArgument(
            f"invalid reference {ref!r}: invalid {algo} digest {hexpart!r} "
            f"(want {want} lower-case hex characters)"
        )


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, rest = DEFAULT_DOMAIN, name
    else:
        domain, rest = first, name[i + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_REPO_PREFIX + rest
    return domain, rest


def parse(s: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise a reference; raises InvalidArgument naming the part that is wrong.

    Without a tag or digest the tag is ``latest`` (unless ``default_tag`` is false)."""
    if not isinstance(s, str) or not s:
        raise InvalidArgument("invalid reference: empty")
    if s != s.strip() or any(c.isspace() for c in s):
        raise InvalidArgument(f"invalid reference {s!r}: contains white space")
    if _HEX64_RE.fullmatch(s):
        raise InvalidArgument(
            f"invalid reference {s!r}: cannot specify 64-byte hexadecimal strings as a repository name"
        )
    rest = s
    digest: str | None = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if "@" in digest:
            raise InvalidArgument(f"invalid reference {s!r}: more than one '@'")
        _check_digest(digest, s)
    tag: str | None = None
    # A ':' after the last '/' starts the tag (a ':' before it is a registry port).
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        _check_tag(tag, s)
    if not rest:
        raise InvalidArgument(f"invalid reference {s!r}: no repository name")
    domain, path = _split_domain(rest)
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgument(f"invalid reference {s!r}: invalid registry host {domain!r}")
    if not path:
        raise InvalidArgument(f"invalid reference {s!r}: no repository path after the registry {domain!r}")
    for comp in path.split("/"):
        if _PATH_COMPONENT_RE.fullmatch(comp):
            continue
        if _PATH_COMPONENT_RE.fullmatch(comp.lower()):
            raise InvalidArgument(f"invalid reference {s!r}: repository name must be lowercase ({comp!r})")
        if not comp:
            raise InvalidArgument(f"invalid reference {s!r}: empty path component in {path!r}")
        raise InvalidArgument(
            f"invalid reference {s!r}: invalid repository path component {comp!r} "
            "(lower-case letters and digits, separated by '.', '_', '__' or '-')"
        )
    if len(f"{domain}/{path}") > NAME_MAX:
        raise InvalidArgument(f"invalid reference {s!r}: repository name longer than {NAME_MAX} characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def normalize(s: str) -> str:
    """containerd's normalised image name: ``parse`` + ``docker_ref`` as a string."""
    return str(parse(s).docker_ref())
