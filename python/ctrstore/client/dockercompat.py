"""Docker's objects for ctrstore's containers and images, as nerdctl's ``dockercompat`` makes
them: what ``docker inspect`` prints (``container_inspect``, ``image_inspect``), what the API's
``/containers/json`` and ``/images/json`` list (``container_summary``, ``image_summaries``),
and docker's ``--filter`` rules for both. The CLI prints these (``ctrstore inspect``, ``ps``,
``images``); docker-py style code can read them too.

Field names, nesting and value types are docker's (``Id``, ``State.Status``,
``Config.Env``, ``RepoTags``...), so that a script written against ``docker inspect`` reads
ctrstore's unchanged. What ctrstore has no notion of is there with docker's empty value
(``ExecIDs: null``). A container's state is docker's word: ``created``, ``restarting``,
``running``, ``paused``, ``exited``.

Each section of a container is made by one function (``_state``, ``_host_config``,
``_mounts``, ``_network_settings``, ``_config``): a feature that records more about a
container (networks, ports, volumes, a restart policy) fills in its own section there.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ctrstore._timeutil import format_rfc3339, now, parse_rfc3339
from ctrstore.client import networks
from ctrstore.client.networks import network_options
from ctrstore.errdefs import CtrstoreError, InvalidArgument, NotFound
from ctrstore.images import chain_ids, read_config, read_json, resolve
from ctrstore.images import mediatypes as mt
from ctrstore.images.platforms import Platform, host, normalize
from ctrstore.labels import CONTAINER_NAME, RESTART_POLICY
from ctrstore.oci.spec import default_mounts

if TYPE_CHECKING:
    from ctrstore.client.client import Client
    from ctrstore.content import Descriptor
    from ctrstore.metadata.containers import Container
    from ctrstore.metadata.images import Image
    from ctrstore.runtime.tasks import TaskStatus

__all__ = [
    "ZERO_TIME",
    "ContainerFilter",
    "ImageFilter",
    "PlatformImage",
    "container_inspect",
    "container_status_text",
    "container_summary",
    "familiar",
    "go_time",
    "human_duration",
    "human_size",
    "image_inspect",
    "image_platforms",
    "repo_tag",
]

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time, which docker prints for a time that never was (``FinishedAt`` of a running
container)."""

_STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


# -- docker's units -----------------------------------------------------------------------------
def human_duration(seconds: float) -> str:
    """``units.HumanDuration`` of docker/go-units: ``Less than a second``, ``About a minute``,
    ``3 minutes``, ``About an hour``, ``5 hours``, ``2 days``..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 4) -> str:
    """``units.HumanSizeWithPrecision``: decimal units, ``precision`` significant digits
    (``HumanSize`` is precision 4: ``4.26MB``, ``0B``, ``1.5kB``)."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{_DECIMAL_UNITS[i]}"


def _ago(when: datetime | str | None) -> str:
    if when is None or when == ZERO_TIME:
        return ""
    t = parse_rfc3339(when) if isinstance(when, str) else when
    return human_duration(max((now() - t).total_seconds(), 0)) + " ago"


def go_time(t: datetime | str | None) -> str:
    """Go's ``time.Time.String()`` in local time, as docker's ``CreatedAt`` columns print it:
    ``2024-05-01 12:00:00 +0000 UTC``."""
    if t is None:
        return ""
    dt = parse_rfc3339(t) if isinstance(t, str) else t
    local = dt.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %z ") + (local.tzname() or local.strftime("%z"))


def _rfc3339(t: datetime | str | None) -> str:
    """docker's times in inspect: RFC 3339 in UTC with nanoseconds, or the zero time."""
    if t is None:
        return ZERO_TIME
    return format_rfc3339(parse_rfc3339(t) if isinstance(t, str) else t)


# -- names ----------------------------------------------------------------------------------------
def _split_name(name: str) -> tuple[str, str | None]:
    """``(repository, tag)`` of an image name, as the reference grammar cuts it (a ``:``
    after the last ``/`` starts the tag; a digest is dropped)."""
    rest = name.partition("@")[0]
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        return rest[:colon], rest[colon + 1 :]
    return rest, None


def _familiar_repo(repo: str) -> str:
    """distribution/reference's ``FamiliarName``: Docker Hub's ``docker.io/`` and, for a
    one-component path, ``library/`` are left out."""
    for hub in ("docker.io/", "index.docker.io/"):
        if repo.startswith(hub):
            path = repo[len(hub) :]
            if path.startswith("library/") and path.count("/") == 1:
                path = path[len("library/") :]
            return path
    return repo


def repo_tag(name: str) -> tuple[str, str]:
    """``(REPOSITORY, TAG)`` of an image name as docker and nerdctl show it: the familiar
    repository (``busybox``, ``127.0.0.1:5000/team/app``) and the tag, ``<none>`` for what is
    missing (nerdctl's ``ParseRepoTag``)."""
    repo, tag = _split_name(name)
    return _familiar_repo(repo) or "<none>", tag or "<none>"


def familiar(name: str) -> str:
    """The short form docker shows of an image name: ``busybox:latest`` for
    ``docker.io/library/busybox:latest`` (distribution/reference's ``FamiliarString``)."""
    repo, tag = _split_name(name)
    digest = name.partition("@")[2]
    return _familiar_repo(repo) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# -- images ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlatformImage:
    """One platform's part of an image that the content store holds."""

    platform: Platform
    manifest: Descriptor
    config_desc: Descriptor
    config: dict[str, Any]
    layers: list[Descriptor]
    blob_size: int
    """Manifest, config and layers as stored (compressed)."""
    size: int
    """The unpacked layers in the snapshotter (0 while not unpacked), as nerdctl's SIZE."""


def _platform_of(config: Mapping[str, Any]) -> Platform:
    return normalize(
        Platform(
            str(config.get("os") or "linux"),
            str(config.get("architecture") or host().architecture),
            str(config.get("variant") or ""),
        )
    )


def _unpacked_size(client: Client, config: Mapping[str, Any], snapshotter: str | None) -> int:
    diff_ids = config.get("rootfs", {}).get("diff_ids", []) if isinstance(config.get("rootfs"), dict) else []
    if not diff_ids or not all(isinstance(d, str) for d in diff_ids):
        return 0
    sn = client.snapshotter(snapshotter)
    total = 0
    try:
        for cid in chain_ids(diff_ids):
            total += sn.usage(cid).size
    except CtrstoreError:
        return 0
    return total


def _one_platform(client: Client, desc: Descriptor, snapshotter: str | None) -> PlatformImage:
    content = client.content
    r = resolve(content, desc)
    config = read_config(content, r.config)
    blob = r.manifest.size + r.config.size + sum(x.size for x in r.layers)
    return PlatformImage(
        _platform_of(config),
        r.manifest,
        r.config,
        config,
        r.layers,
        blob,
        _unpacked_size(client, config, snapshotter),
    )


def image_platforms(client: Client, image: Image, *, snapshotter: str | None = None) -> list[PlatformImage]:
    """Every platform of ``image`` whose manifest and config the store holds (an index's
    other platforms are not shown, as nerdctl does; attestation manifests are skipped)."""
    content = client.content
    target = image.target
    if mt.is_manifest(target.media_type):
        return [_one_platform(client, target, snapshotter)]
    if not mt.is_index(target.media_type):
        raise InvalidArgument(f"image {image.name}: {target.media_type} is not a manifest or index")
    from ctrstore.images import children

    out: list[PlatformImage] = []
    for m in children(content, target):
        if m.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        if not (mt.is_manifest(m.media_type) or mt.is_index(m.media_type)):
            continue
        try:
            out.append(_one_platform(client, m, snapshotter))
        except CtrstoreError:
            continue
    return out


def _docker_config(cfg: Mapping[str, Any] | None, *, image: str = "") -> dict[str, Any]:
    """docker's ``Config`` from an image config's ``config`` object (the same keys, docker's
    order, docker's empty values)."""
    c = dict(cfg or {})
    out: dict[str, Any] = {
        "Hostname": "",
        "Domainname": "",
        "User": c.get("User", ""),
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
    }
    if c.get("ExposedPorts"):
        out["ExposedPorts"] = c["ExposedPorts"]
    out |= {
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": c.get("Env"),
        "Cmd": c.get("Cmd"),
        "Image": image,
        "Volumes": c.get("Volumes"),
        "WorkingDir": c.get("WorkingDir", ""),
        "Entrypoint": c.get("Entrypoint"),
        "OnBuild": c.get("OnBuild"),
        "Labels": c.get("Labels"),
    }
    if c.get("StopSignal"):
        out["StopSignal"] = c["StopSignal"]
    return out


def _repo_tags_and_digests(images: Iterable[Image], digest: str) -> tuple[list[str], list[str]]:
    tags: list[str] = []
    repos: list[str] = []
    for img in images:
        if img.target.digest != digest:
            continue
        repo, tag = repo_tag(img.name)
        if repo == "<none>":
            continue
        if tag != "<none>":
            tags.append(f"{repo}:{tag}")
        if f"{repo}@{digest}" not in repos:
            repos.append(f"{repo}@{digest}")
    return sorted(tags), sorted(repos)


def image_inspect(client: Client, image: Image, *, snapshotter: str | None = None) -> dict[str, Any]:
    """``docker image inspect``'s object for this machine's platform of ``image``. ``Id`` is
    the image's target digest (as docker's containerd image store and nerdctl's ``images``
    show it); ``RepoTags``/``RepoDigests`` list every name of the namespace pointing there."""
    content = client.content
    r = resolve(content, image.target)
    config = read_config(content, r.config)
    tags, digests = _repo_tags_and_digests(client.images.list(), image.target.digest)
    platform = _platform_of(config)
    history = config.get("history") if isinstance(config.get("history"), list) else []
    comment = next((h.get("comment", "") for h in reversed(history or []) if isinstance(h, dict)), "")
    rootfs = config.get("rootfs") if isinstance(config.get("rootfs"), dict) else {}
    out: dict[str, Any] = {
        "Id": image.target.digest,
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": comment if isinstance(comment, str) else "",
        "Created": config.get("created") or ZERO_TIME,
        "DockerVersion": "",
        "Author": config.get("author", ""),
        "Config": _docker_config(config.get("config")),
        "Architecture": platform.architecture,
    }
    if platform.variant:
        out["Variant"] = platform.variant
    out |= {
        "Os": platform.os,
        "Size": _unpacked_size(client, config, snapshotter),
        "GraphDriver": {"Data": None, "Name": snapshotter or client.config.snapshotter},
        "RootFS": {
            "Type": (rootfs or {}).get("type", "layers"),
            "Layers": list((rootfs or {}).get("diff_ids", [])),
        },
        "Metadata": {"LastTagTime": _rfc3339(image.updated_at or image.created_at)},
        "Descriptor": image.target.to_json(),
        "ManifestDescriptor": r.manifest.to_json(),
        "ConfigDescriptor": r.config.to_json(),
        "Labels": dict(image.labels),
    }
    return out


def _image_labels(client: Client, image: Image) -> dict[str, str]:
    try:
        r = resolve(client.content, image.target)
        cfg = read_json(client.content, r.config).get("config") or {}
    except CtrstoreError:
        return {}
    labels = cfg.get("Labels") if isinstance(cfg, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


@dataclass
class ImageFilter:
    """``images --filter``, as nerdctl: ``reference=PATTERN`` (a glob on the familiar name
    with or without tag, or a regular expression searched in the full name),
    ``before=IMAGE``, ``since=IMAGE`` (created before/after that image), ``label=KEY[=VALUE]``
    (the image config's labels), ``dangling=true|false`` (no tag). Several filters must all
    match; several ``reference`` patterns too."""

    reference: list[str]
    before: list[str]
    since: list[str]
    labels: dict[str, str]
    dangling: bool | None

    @classmethod
    def parse(cls, filters: Sequence[str]) -> ImageFilter:
        f = cls([], [], [], {}, None)
        for item in filters:
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidArgument(f"invalid filter {item!r}: expected KEY=VALUE")
            if key == "reference":
                f.reference.append(value)
            elif key == "before":
                f.before.append(value)
            elif key == "since":
                f.since.append(value)
            elif key == "label":
                k, _, v = value.partition("=")
                f.labels[k] = v
            elif key == "dangling":
                if value not in ("true", "false"):
                    raise InvalidArgument(f"invalid filter {item!r}: dangling is true or false")
                f.dangling = value == "true"
            else:
                raise InvalidArgument(
                    f"invalid filter {item!r}: images filter on reference, before, since, label or dangling"
                )
        return f

    def apply(self, client: Client, images: Sequence[Image]) -> list[Image]:
        out = list(images)
        if self.dangling is not None:
            out = [i for i in out if (repo_tag(i.name)[1] == "<none>") == self.dangling]
        if self.reference:
            out = [i for i in out if all(_reference_matches(i.name, p) for p in self.reference)]
        if self.labels:
            out = [i for i in out if _labels_match(_image_labels(client, i), self.labels)]
        lo: datetime | None = None
        hi: datetime | None = None
        for ref in self.before:
            t = client.images.lookup(ref).created_at
            hi = t if hi is None or (t is not None and t > hi) else hi
        for ref in self.since:
            t = client.images.lookup(ref).created_at
            lo = t if lo is None or (t is not None and t < lo) else lo
        if lo is not None or hi is not None:
            out = [
                i
                for i in out
                if i.created_at is not None
                and (lo is None or i.created_at > lo)
                and (hi is None or i.created_at < hi)
            ]
        return out


def _reference_matches(name: str, pattern: str) -> bool:
    repo, tag = repo_tag(name)
    familiar = [repo, f"{repo}:{tag}"] if tag != "<none>" else [repo]
    if any(fnmatch.fnmatchcase(f, pattern) for f in familiar):
        return True
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _labels_match(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(k in have and (v == "" or have[k] == v) for k, v in want.items())


# -- containers -----------------------------------------------------------------------------------
def _seconds_since(t: str | None) -> float:
    if not t or t == ZERO_TIME:
        return 0.0
    return max((now() - parse_rfc3339(t)).total_seconds(), 0.0)


def container_status_text(state: Mapping[str, Any]) -> str:
    """docker's STATUS column from a ``State`` object: ``Up 3 minutes``, ``Up 2 hours
    (Paused)``, ``Exited (0) 2 minutes ago``, ``Created``."""
    status = state.get("Status")
    if status in ("running", "paused"):
        up = "Up " + human_duration(_seconds_since(state.get("StartedAt")))
        return up + " (Paused)" if status == "paused" else up
    if status == "exited":
        ago = _ago(state.get("FinishedAt"))
        return f"Exited ({state.get('ExitCode', 0)})" + (f" {ago}" if ago else "")
    if status == "restarting":  # the exit its restart policy answers, and when
        ago = _ago(state.get("FinishedAt"))
        return f"Restarting ({state.get('ExitCode', 0)})" + (f" {ago}" if ago else "")
    if status == "dead":
        return "Dead"
    if status == "created":
        return "Created"
    return str(status or "unknown").capitalize()


def _restart_policy(c: Container) -> dict[str, Any]:
    """docker's ``HostConfig.RestartPolicy`` from the container's ``--restart`` label."""
    from ctrstore.runtime.restart import RestartPolicy

    try:
        policy = RestartPolicy.parse(c.labels.get(RESTART_POLICY))
    except CtrstoreError:
        policy = RestartPolicy()
    return {"Name": policy.name, "MaximumRetryCount": policy.max_retries}


def _state(st: TaskStatus) -> dict[str, Any]:
    """docker's ``State``."""
    return {
        "Status": st.status,
        "Running": st.status in ("running", "paused", "restarting"),
        "Paused": st.status == "paused",
        "Restarting": st.status == "restarting",
        "OOMKilled": st.oom_killed,
        "Dead": False,
        "Pid": st.pid,
        "ExitCode": st.exit_status or 0,
        "Error": "",
        "StartedAt": _rfc3339(st.started_at),
        "FinishedAt": _rfc3339(st.exited_at) if st.status in ("exited", "restarting") else ZERO_TIME,
    }


_NOT_USER_MOUNTS = {m["destination"] for m in default_mounts()} | {
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/hostname",
}


def _mounts(c: Container) -> list[dict[str, Any]]:
    """docker's ``Mounts``: the binds the user asked for (``-v``, ``--mount``)."""
    out = []
    for m in c.spec.get("mounts", []) or []:
        if not isinstance(m, dict) or m.get("destination") in _NOT_USER_MOUNTS:
            continue
        opts = [str(o) for o in m.get("options", []) or []]
        if m.get("type") != "bind" and "bind" not in opts and "rbind" not in opts:
            continue
        prop = next(
            (o for o in opts if o in ("rprivate", "private", "rshared", "shared", "rslave", "slave")), ""
        )
        out.append(
            {
                "Type": "bind",
                "Source": m.get("source", ""),
                "Destination": m.get("destination", ""),
                "Mode": "ro" if "ro" in opts else "",
                "RW": "ro" not in opts,
                "Propagation": prop or "rprivate",
            }
        )
    return out


def _namespaces(c: Container) -> dict[str, str | None]:
    """The spec's namespaces: type -> path (None: a new one)."""
    linux = c.spec.get("linux", {}) or {}
    return {
        str(n.get("type")): n.get("path") for n in linux.get("namespaces", []) or [] if isinstance(n, dict)
    }


def _network_mode(c: Container) -> str:
    """docker's ``HostConfig.NetworkMode``: the first network the container was created on
    (``bridge``, a network's name, ``host``, ``none``); for a record made without network
    options, what its spec says."""
    opts = network_options(c)
    if opts is not None:
        return opts.networks[0]
    ns = _namespaces(c)
    if "network" not in ns:
        return "host"
    return "none" if ns["network"] is None else "container"


def _network_settings(client: Client, c: Container, st: TaskStatus) -> dict[str, Any]:
    """docker's ``NetworkSettings``; ``Ports`` as docker's ``{"80/tcp": [{"HostIp": "0.0.0.0",
    "HostPort": "8080"}]}`` (``ps`` shows them as ``0.0.0.0:8080->80/tcp``). Addresses,
    ports and networks come from the container's CNI attachment (``client.containers
    .network_settings``), as long as it is attached."""
    has_netns = "network" in _namespaces(c)
    base = {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": f"/proc/{st.pid}/ns/net" if has_netns and st.pid else "",
        "Ports": {},
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
        "Networks": {},
    }
    mgr = client.containers
    try:
        return base | networks.settings(mgr.network, c, mgr.tasks.bundle(c.id))
    except NotFound:
        return base  # removed meanwhile (a --rm container's shim): as it was


def _host_config(c: Container, mounts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """docker's ``HostConfig``, for what the spec says."""
    linux = c.spec.get("linux", {}) or {}
    res = linux.get("resources", {}) or {}
    memory = (res.get("memory") or {}).get("limit") or 0
    cpu = res.get("cpu") or {}
    pids = (res.get("pids") or {}).get("limit") or 0
    ns = _namespaces(c)
    return {
        "Binds": [f"{m['Source']}:{m['Destination']}" + (":ro" if not m["RW"] else "") for m in mounts]
        or None,
        "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": _network_mode(c),
        "PortBindings": {},
        "PublishAllPorts": bool((opts := network_options(c)) and opts.publish_all),
        "RestartPolicy": _restart_policy(c),
        "AutoRemove": False,
        "CapAdd": None,
        "CapDrop": None,
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "GroupAdd": None,
        "IpcMode": "private" if "ipc" in ns else "host",
        "PidMode": "" if "pid" in ns else "host",
        "Privileged": False,
        "ReadonlyRootfs": bool((c.spec.get("root") or {}).get("readonly")),
        "UTSMode": "" if "uts" in ns else "host",
        "Runtime": str(c.runtime.get("name", "")),
        "Memory": memory,
        "CpuShares": cpu.get("shares") or 0,
        "CpuQuota": cpu.get("quota") or 0,
        "CpuPeriod": cpu.get("period") or 0,
        "CpusetCpus": cpu.get("cpus") or "",
        "CpusetMems": cpu.get("mems") or "",
        "PidsLimit": pids,
    }


def _split_command(
    args: Sequence[str], entrypoint: Sequence[str] | None
) -> tuple[list[str] | None, list[str]]:
    """``(Entrypoint, Cmd)``: the image's entrypoint when the process starts with it."""
    ep = list(entrypoint or [])
    if ep and list(args[: len(ep)]) == ep:
        return ep, list(args[len(ep) :])
    return None, list(args)


def _config(c: Container, image_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """docker's ``Config`` of a container: its process as the spec has it."""
    proc = c.spec.get("process", {}) or {}
    args = [str(a) for a in proc.get("args", []) or []]
    entrypoint, cmd = _split_command(args, (image_config or {}).get("Entrypoint"))
    user = proc.get("user", {}) or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    out = _docker_config(image_config, image=c.image)
    out |= {
        "Hostname": str(c.spec.get("hostname", "")),
        "User": f"{uid}:{gid}" if (uid, gid) != (0, 0) else out["User"],
        "Tty": bool(proc.get("terminal")),
        "Env": list(proc.get("env", []) or []),
        "Cmd": cmd,
        "WorkingDir": str(proc.get("cwd", "")),
        "Entrypoint": entrypoint,
        "Labels": dict(c.labels),
        "MacAddress": ((opts := network_options(c)) and opts.mac_address) or "",  # (--mac-address)
    }
    out.pop("StopSignal", None)
    return out


def _graph_driver(client: Client, c: Container, rootfs: str) -> dict[str, Any]:
    data: dict[str, str] = {}
    if c.snapshot_key:
        try:
            mounts = client.snapshotter(c.snapshotter).mounts(c.snapshot_key)
        except CtrstoreError:
            mounts = []
        for m in mounts:
            if m.is_overlay:
                opts = dict(o.split("=", 1) for o in m.options if "=" in o)
                data |= {
                    "LowerDir": opts.get("lowerdir", ""),
                    "UpperDir": opts.get("upperdir", ""),
                    "WorkDir": opts.get("workdir", ""),
                }
            else:
                data["Dir"] = m.source
    data["MergedDir"] = rootfs
    return {"Data": data, "Name": c.snapshotter}


def _size(client: Client, c: Container) -> tuple[int, int]:
    """``(SizeRw, SizeRootFs)``: the container's own snapshot, and that with its image's."""
    if not c.snapshot_key:
        return 0, 0
    sn = client.snapshotter(c.snapshotter)
    try:
        rw = sn.usage(c.snapshot_key).size
        total = rw
        parent = sn.stat(c.snapshot_key).parent
        for _ in range(1000):
            if not parent:
                break
            total += sn.usage(parent).size
            parent = sn.stat(parent).parent
    except CtrstoreError:
        return 0, 0
    return rw, total


def _image_id(client: Client, name: str) -> str:
    try:
        return client.images.get(name).target.digest
    except CtrstoreError:
        return ""


def container_inspect(client: Client, cid: str, *, size: bool = False) -> dict[str, Any]:
    """``docker container inspect``'s object for container ``cid`` (an id, not a name)."""
    mgr = client.containers
    c = mgr.store.get(cid)
    st = mgr.status(cid)
    bundle = mgr.tasks.bundle(cid)
    image_config: dict[str, Any] | None = None
    with contextlib.suppress(CtrstoreError):
        img = client.images.get(c.image)
        image_config = read_config(client.content, resolve(client.content, img.target).config).get("config")
    proc = c.spec.get("process", {}) or {}
    args = [str(a) for a in proc.get("args", []) or []]
    mounts = _mounts(c)
    out: dict[str, Any] = {
        "Id": c.id,
        "Created": _rfc3339(c.created_at),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": _state(st),
        "Image": _image_id(client, c.image),
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": str(bundle.log),
        "Name": "/" + mgr.name_of(c),
        "RestartCount": st.restarts,
        "Driver": c.snapshotter,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": str(proc.get("apparmorProfile", "")),
        "ExecIDs": None,
        "HostConfig": _host_config(c, mounts),
        "GraphDriver": _graph_driver(client, c, str(bundle.rootfs)),
    }
    if size:
        out["SizeRw"], out["SizeRootFs"] = _size(client, c)
    out |= {
        "Mounts": mounts,
        "Config": _config(c, image_config),
        "NetworkSettings": _network_settings(client, c, st),
    }
    return out


def _summary_ports(ports: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, bindings in sorted(ports.items()):
        port, _, proto = key.partition("/")
        if not port.isdigit():
            continue
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in bindings:
            hp = str(b.get("HostPort", ""))
            out.append(
                {
                    "IP": b.get("HostIp", ""),
                    "PrivatePort": int(port),
                    "PublicPort": int(hp) if hp.isdigit() else 0,
                    "Type": proto or "tcp",
                }
            )
    return out


def container_summary(client: Client, c: Container, st: TaskStatus, *, size: bool = False) -> dict[str, Any]:
    """The API's ``/containers/json`` entry (``ContainerSummary``) for ``c`` in state
    ``st`` (from ``ContainerManager.status``): what ``docker ps`` lists."""
    proc = c.spec.get("process", {}) or {}
    args = [str(a) for a in proc.get("args", []) or []]
    mounts = _mounts(c)
    state = _state(st)
    net = _network_settings(client, c, st)
    out: dict[str, Any] = {
        "Id": c.id,
        "Names": ["/" + (c.labels.get(CONTAINER_NAME) or c.id)],
        "Image": c.image,
        "ImageID": _image_id(client, c.image),
        "Command": " ".join(args),
        "Created": int(c.created_at.timestamp()) if c.created_at else 0,
        "Ports": _summary_ports(net["Ports"]),
        "Labels": dict(c.labels),
        "State": st.status,
        "Status": container_status_text(state),
        "HostConfig": {"NetworkMode": _network_mode(c)},
        "NetworkSettings": {"Networks": net["Networks"]},
        "Mounts": mounts,
        # not docker's: what STATUS is made from, and the raw ports for ps's PORTS column
        "StartedAt": state["StartedAt"],
        "FinishedAt": state["FinishedAt"],
        "ExitCode": state["ExitCode"],
        "PortBindings": net["Ports"],
    }
    if size:
        out["SizeRw"], out["SizeRootFs"] = _size(client, c)
    return out


@dataclass
class ContainerFilter:
    """``ps --filter``, as docker: ``id=``, ``name=`` (a regular expression searched in the
    name), ``label=KEY[=VALUE]``, ``exited=CODE``, ``status=`` (created, restarting,
    running, removing, paused, exited, dead), ``ancestor=IMAGE`` (name or ID),
    ``before=``/``since=CONTAINER``, ``volume=`` (source or destination of a mount),
    ``network=``. Values of one key are alternatives; different keys must all match."""

    by_key: dict[str, list[str]]

    _KEYS = ("id", "name", "label", "exited", "status", "ancestor", "before", "since", "volume", "network")

    @classmethod
    def parse(cls, filters: Sequence[str]) -> ContainerFilter:
        by_key: dict[str, list[str]] = {}
        for item in filters:
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidArgument(f"invalid filter {item!r}: expected KEY=VALUE")
            if key not in cls._KEYS:
                raise InvalidArgument(f"invalid filter {item!r}: ps filters on {', '.join(cls._KEYS)}")
            if key == "status" and value not in _STATES:
                raise InvalidArgument(f"invalid filter {item!r}: status is one of {', '.join(_STATES)}")
            if key == "exited" and not re.fullmatch(r"-?\d+", value):
                raise InvalidArgument(f"invalid filter {item!r}: exited is an exit code")
            by_key.setdefault(key, []).append(value)
        return cls(by_key)

    def needs_all(self) -> bool:
        """Whether the filter asks about stopped containers (docker then lists them without -a)."""
        return any(v != "running" for v in self.by_key.get("status", [])) or "exited" in self.by_key

    def matcher(
        self, client: Client, created: Mapping[str, datetime | None]
    ) -> Callable[[Mapping[str, Any]], bool]:
        """A predicate on ``container_summary`` objects; ``created``: every container's id ->
        creation time (what before/since compare)."""
        f = self.by_key
        ancestors: set[str] = set()
        for ref in f.get("ancestor", []):
            ancestors.add(ref)
            with contextlib.suppress(CtrstoreError):
                ancestors.add(client.images.lookup(ref).target.digest)
        mgr = client.containers
        lo = [created.get(mgr.resolve(r)) for r in f.get("since", [])]
        hi = [created.get(mgr.resolve(r)) for r in f.get("before", [])]

        def ok(s: Mapping[str, Any]) -> bool:
            name = s["Names"][0].lstrip("/")
            labels: Mapping[str, str] = s["Labels"]
            when = created.get(s["Id"])
            checks: list[tuple[str, Callable[[str], bool]]] = [
                ("id", lambda v: s["Id"].startswith(v)),
                ("name", lambda v: _search(v, name)),
                ("label", lambda v: _labels_match(labels, {v.partition("=")[0]: v.partition("=")[2]})),
                ("exited", lambda v: s["State"] == "exited" and s["ExitCode"] == int(v)),
                ("status", lambda v: s["State"] == v),
                (
                    "ancestor",
                    lambda v: (
                        s["Image"] in ancestors or s["ImageID"] in ancestors or _same_repo(s["Image"], v)
                    ),
                ),
                (
                    "volume",
                    lambda v: any(v in (m.get("Name"), m["Source"], m["Destination"]) for m in s["Mounts"]),
                ),
                (
                    "network",
                    lambda v: v in s["NetworkSettings"]["Networks"] or s["HostConfig"]["NetworkMode"] == v,
                ),
            ]
            for key, pred in checks:
                if key in f and not any(pred(v) for v in f[key]):
                    return False
            if lo and not all(t is not None and when is not None and when > t for t in lo):
                return False
            return not (hi and not all(t is not None and when is not None and when < t for t in hi))

        return ok


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _same_repo(image: str, ref: str) -> bool:
    """``ancestor=busybox`` matches a container of ``busybox:latest`` (docker resolves the
    name the same way)."""
    from ctrstore.remotes.reference import parse as parse_reference

    try:
        return str(parse_reference(image)) == str(parse_reference(ref))
    except CtrstoreError:
        return False
