"""``WWW-Authenticate`` challenges and token scopes (containerd's ``remotes/docker/auth``
``parse.go`` and ``scope.go``): pure functions of what a registry sent."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ctrstore.remotes.transport import Response

__all__ = [
    "Challenge",
    "challenge_of",
    "merge_scopes",
    "parse_www_authenticate",
    "preferred_challenge",
    "repository_scope",
]


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


def preferred_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge ctrstore answers: the first Bearer one, else the first Basic one; None
    if there is neither."""
    chs = list(challenges)
    return next((c for c in chs if c.scheme == "bearer"), None) or next(
        (c for c in chs if c.scheme == "basic"), None
    )


def challenge_of(resp: Response) -> Challenge | None:
    """The preferred challenge of a 401 reply."""
    return preferred_challenge(parse_www_authenticate(resp.headers.get_all("WWW-Authenticate") or []))


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
