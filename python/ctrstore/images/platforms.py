"""Platforms (``os/arch[/variant]``) and matching them as containerd's ``platforms.Only`` does."""

from __future__ import annotations

import platform as _platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ctrstore.errdefs import InvalidArgument

_ARCH = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "armv7l": "arm",
    "arm": "arm",
    "i386": "386",
    "i686": "386",
    "386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise InvalidArgument(f"invalid platform {text!r}: expected os[/arch[/variant]]")
        if len(parts) == 1:
            if parts[0] in _ARCH:
                return normalize(cls("linux", parts[0]))
            return normalize(cls(parts[0], host().architecture, host().variant))
        return normalize(cls(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))

    @classmethod
    def from_json(cls, d: Mapping[str, Any], what: str = "platform") -> Platform:
        """A descriptor's ``platform`` object; its fields must be strings (InvalidArgument
        naming ``what`` otherwise)."""
        if not isinstance(d, Mapping):
            raise InvalidArgument(f"{what}: must be an object, not {type(d).__name__}")
        fields = []
        for key in ("os", "architecture", "variant"):
            value = d.get(key) or ""
            if not isinstance(value, str):
                raise InvalidArgument(f"{what}: platform.{key} must be a string, not {type(value).__name__}")
            fields.append(value)
        return normalize(cls(*fields))


def normalize(p: Platform) -> Platform:
    arch = _ARCH.get(p.architecture, p.architecture)
    variant = p.variant
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    if arch == "arm" and variant in ("", "7"):
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(p.os, arch, variant)


def host() -> Platform:
    return normalize(Platform("linux", _platform.machine()))


def compatible(want: Platform) -> list[Platform]:
    """Platforms ``want`` can run, best first (amd64 also runs 386; arm64 runs arm v8..v5)."""
    out = [want]
    if want.architecture == "amd64":
        out.append(Platform(want.os, "386"))
    elif want.architecture == "arm64":
        out += [Platform(want.os, "arm", v) for v in ("v8", "v7", "v6", "v5")]
    elif want.architecture == "arm" and want.variant:
        order = ["v8", "v7", "v6", "v5"]
        if want.variant in order:
            out += [Platform(want.os, "arm", v) for v in order[order.index(want.variant) + 1 :]]
    return out


def rank(candidate: Mapping[str, Any] | None, want: Platform) -> int | None:
    """Position of a descriptor's platform in ``compatible(want)`` (lower is better); None if it
    does not match. A descriptor without platform matches anything (rank 0)."""
    if not candidate:
        return 0
    p = Platform.from_json(candidate)
    if p.os == "unknown" or p.architecture == "unknown":
        return None  # attestation manifests
    for i, c in enumerate(compatible(want)):
        if p == c:
            return i
    return None
