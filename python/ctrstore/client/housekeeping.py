"""Housekeeping, as docker users know it: ``system df``, the prune commands, ``rmi`` that
frees its space at once.

Everything here takes a :class:`~ctrstore.client.Client` and returns typed results (the CLI
prints them; ``Client.prune``/``Client.df`` of the Python API return them):

- :func:`disk_usage` — ``system df``: images, containers, volumes and the rest of the store
  (leases, gc roots, ingests, other namespaces, garbage), each with a total, what is in use
  and what a prune (or gc) would give back. The numbers come from one reading of the gc graph
  (``ctrstore.metadata.gc.Reachability``) and the files' sizes (``ctrstore.metadata.usage``):
  every blob, snapshot, ingest and volume on disk is counted exactly once, so the four sizes
  add up to what ``du`` says of the store's data (less a few KiB of directories per snapshot
  and volume).
- :func:`remove_images` (``rmi``), :func:`prune_images`, :func:`prune_containers`,
  :func:`prune_volumes`, :func:`system_prune` — remove records, then run gc
  (:func:`collect`) and report the bytes it freed: what the removals released, measured
  before gc removes it. gc is mark-and-sweep from every root (images, containers, leases,
  ``gc.root`` labels, live ingests, in every namespace), so what anything else still holds
  stays.

The reclaimable space ``system df`` reports is what the matching prune returns: images
unused by any container (``image prune -a``), stopped containers (``container prune``),
unused volumes (``volume prune -a``), and garbage (``gc``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from ctrstore._timeutil import parse_rfc3339
from ctrstore.errdefs import CtrstoreError, FailedPrecondition, InvalidArgument, NotFound
from ctrstore.metadata.gc import Node, Reachability, reachability
from ctrstore.metadata.usage import Unit, blob_size, ingest_size, snapshot_size, units
from ctrstore.volumes import disk_usage as tree_usage

if TYPE_CHECKING:
    from ctrstore.client.client import Client
    from ctrstore.metadata.containers import Container
    from ctrstore.metadata.gc import GCResult
    from ctrstore.metadata.images import Image

__all__ = [
    "DiskUsage",
    "PruneFilter",
    "PruneReport",
    "RemoveReport",
    "SystemPruneReport",
    "UsageSummary",
    "collect",
    "dangling",
    "disk_usage",
    "image_names",
    "images_in_use",
    "prune_containers",
    "prune_images",
    "prune_volumes",
    "remove_images",
    "system_prune",
]


# --------------------------------------------------------------------------------------------
# gc, measured


def collect(client: Client) -> tuple[GCResult, int]:
    """Run gc and return its result with the bytes it freed: every blob, snapshot and ingest
    a dry run lists is measured first, and those the real run removed are summed. (A unit
    that became garbage between the two runs is removed but not counted.)"""
    md = client.metadata
    dry = md.gc(dry_run=True)
    sizes: dict[tuple[str, str], int] = {}
    for d in dry.blobs:
        sizes[("blob", d)] = blob_size(md.content_backend, d)
    for name, keys in dry.snapshots.items():
        backend = md.snapshotters.get(name)
        for k in keys:
            sizes[("snapshot", f"{name}/{k}")] = snapshot_size(backend, k) if backend is not None else 0
    if dry.ingests:
        for entry in md.content_backend.list_ingests():
            ref = entry.reference or entry.name
            if ref in dry.ingests:
                sizes[("ingest", ref)] = ingest_size(entry.path)
    result = md.gc()
    freed = sum(sizes.get(("blob", d), 0) for d in result.blobs)
    freed += sum(sizes.get(("snapshot", f"{n}/{k}"), 0) for n, keys in result.snapshots.items() for k in keys)
    freed += sum(sizes.get(("ingest", r), 0) for r in result.ingests)
    return result, freed


# --------------------------------------------------------------------------------------------
# Filters (docker's --filter until=, label=)

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_until(value: str) -> datetime:
    """docker's ``until``: a Go duration (``24h``, ``1h30m``) before now, an RFC 3339 time or
    date, or Unix seconds."""
    v = value.strip()
    if _DURATION.match(v):
        secs = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(v))
        return datetime.fromtimestamp(time.time() - secs, UTC)
    try:
        return datetime.fromtimestamp(float(v), UTC)
    except ValueError:
        pass
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            return datetime.fromisoformat(v).replace(tzinfo=UTC)
        return parse_rfc3339(v)
    except ValueError:
        raise InvalidArgument(
            f"filter until={value!r}: expected a duration (24h, 1h30m), an RFC 3339 time or Unix seconds"
        ) from None


@dataclass(frozen=True)
class PruneFilter:
    """docker's prune filters: ``until=<time>`` (created before), ``label=<k>[=<v>]`` (has
    the label), ``label!=<k>[=<v>]`` (has not)."""

    until: datetime | None = None
    labels: tuple[tuple[str, str | None], ...] = ()
    not_labels: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, filters: Iterable[str]) -> PruneFilter:
        until = None
        labels: list[tuple[str, str | None]] = []
        not_labels: list[tuple[str, str | None]] = []
        for f in filters:
            if f.startswith("label!="):
                k, sep, v = f[len("label!=") :].partition("=")
                not_labels.append((k, v if sep else None))
            elif f.startswith("label="):
                k, sep, v = f[len("label=") :].partition("=")
                labels.append((k, v if sep else None))
            elif f.startswith("until="):
                until = _parse_until(f[len("until=") :])
            else:
                raise InvalidArgument(f"prune filter {f!r}: expected until=, label= or label!=")
        return cls(until, tuple(labels), tuple(not_labels))

    def match(self, created_at: datetime | None, labels: Mapping[str, str]) -> bool:
        if self.until is not None and created_at is not None and created_at >= self.until:
            return False

        def has(k: str, v: str | None) -> bool:
            return k in labels and (v is None or labels[k] == v)

        return all(has(k, v) for k, v in self.labels) and not any(has(k, v) for k, v in self.not_labels)


# --------------------------------------------------------------------------------------------
# Removal and prune


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed (names or ids) and the bytes it gave back."""

    kind: Literal["containers", "images", "volumes", "networks"]
    deleted: list[str] = field(default_factory=list)
    space_reclaimed: int = 0

    def to_json(self) -> dict[str, Any]:
        """docker's prune answer (``ContainersDeleted``, ``ImagesDeleted``, ...)."""
        if self.kind == "images":
            return {
                "ImagesDeleted": [{"Untagged": n} for n in self.deleted] or None,
                "SpaceReclaimed": self.space_reclaimed,
            }
        key = {"containers": "ContainersDeleted", "volumes": "VolumesDeleted", "networks": "NetworksDeleted"}
        return {key[self.kind]: self.deleted or None, "SpaceReclaimed": self.space_reclaimed}


@dataclass(frozen=True)
class RemoveReport:
    """What ``rmi`` removed: the names, and the bytes gc freed after them (0 with ``prune``
    off)."""

    untagged: list[str]
    space_reclaimed: int = 0
    gc: GCResult | None = None


def images_in_use(client: Client) -> dict[str, list[str]]:
    """Image name -> the containers (ids) of this namespace made from it, running or not."""
    out: dict[str, list[str]] = {}
    for c in client.containers.store.list():
        if c.image:
            out.setdefault(c.image, []).append(c.id)
    return out


def _names(client: Client, ids: Sequence[str]) -> str:
    from ctrstore.client.containers import ContainerManager

    store = client.containers.store
    out = []
    for cid in ids:
        try:
            out.append(ContainerManager.name_of(store.get(cid)))
        except NotFound:
            out.append(cid[:12])
    return ", ".join(out)


def _by_id(ref: str, image: Image) -> bool:
    """Whether ``ref`` named ``image`` by its ID (a prefix of its target's digest, as ``images
    -q`` prints it), not by one of its names."""
    hexpart = ref.removeprefix("sha256:")
    return (
        ref != image.name
        and re.fullmatch(r"[0-9a-f]{1,64}", hexpart) is not None
        and image.target.digest.startswith("sha256:" + hexpart)
    )


def image_names(client: Client, refs: Sequence[str], *, force: bool = False) -> list[str]:
    """The names ``rmi REF...`` removes: each REF as a docker user gives it (a name, the name
    as a registry reference normalises, ``repo@sha256:...``, or an image ID: what ``images
    -q`` prints; see :meth:`~ctrstore.metadata.images.ImageStore.lookup`). An ID removes every
    name of the image, which docker asks ``force`` for when there are several
    (FailedPrecondition naming them). NotFound for a REF that names nothing."""
    store = client.images
    out: dict[str, None] = {}
    for ref in refs:
        img = store.lookup(ref)
        if not _by_id(ref, img):
            out[img.name] = None
            continue
        same = sorted(i.name for i in store.list() if i.target.digest == img.target.digest)
        if len(same) > 1 and not force:
            raise FailedPrecondition(
                f"image {ref} has {len(same)} names ({', '.join(same)}): remove them by name, "
                "or force with rmi -f to remove them all"
            )
        out.update(dict.fromkeys(same))
    return list(out)


def remove_images(
    client: Client, names: Sequence[str], *, force: bool = False, prune: bool = True
) -> RemoveReport:
    """``rmi``: remove images (each as :func:`image_names` finds it: by name or ID), then
    (``prune``) run gc so the space they held comes back at once. An image a container of
    this namespace was made from is refused (FailedPrecondition naming the containers) unless
    ``force`` — the container keeps its snapshots either way, so only the image's blobs and
    the layers no one else uses go. Every name is checked before any is removed: one missing
    or in use removes none."""
    store = client.images
    wanted = image_names(client, names, force=force)
    if not force:
        users = images_in_use(client)
        for n in wanted:
            if users.get(n):
                state = _names(client, users[n])
                raise FailedPrecondition(
                    f"image {n} is in use by container {state}: remove the container first, "
                    "or force with rmi -f (the container keeps its layers)"
                )
    removed = []
    for n in wanted:
        try:
            store.delete(n)
        except NotFound:
            continue  # removed meanwhile
        removed.append(n)
    if not prune:
        return RemoveReport(removed)
    result, freed = collect(client)
    return RemoveReport(removed, freed, result)


def dangling(image: Image) -> bool:
    """An image whose name is no tag: a digest reference (``repo@sha256:…``) or a bare digest,
    what docker lists as ``<none>:<none>``."""
    return "@" in image.name or image.name.startswith("sha256:")


def prune_images(client: Client, *, all: bool = False, filters: Iterable[str] = ()) -> PruneReport:
    """``image prune``: remove dangling images (``all``: every image) no container of this
    namespace was made from, then gc; returns what went and the bytes freed."""
    flt = PruneFilter.parse(filters)
    used = images_in_use(client)
    store = client.images
    deleted = []
    for img in store.list():
        if img.name in used or not (all or dangling(img)) or not flt.match(img.created_at, img.labels):
            continue
        try:
            store.delete(img.name)
        except NotFound:
            continue
        deleted.append(img.name)
    _, freed = collect(client)
    return PruneReport("images", deleted, freed)


def _stopped(client: Client, containers: Iterable[Container]) -> list[Container]:
    tasks = client.containers.tasks
    return [c for c in containers if not tasks.active(c.id)]


def prune_containers(client: Client, *, filters: Iterable[str] = ()) -> PruneReport:
    """``container prune``: remove every container of this namespace that is not running
    (or paused, or starting), then gc; returns their ids and the bytes freed (their writable
    layers, and layers of images removed meanwhile that only they held)."""
    flt = PruneFilter.parse(filters)
    mgr = client.containers
    deleted = []
    layers = 0
    for c in _stopped(client, mgr.store.list()):
        if not flt.match(c.created_at, c.labels):
            continue
        size = _rw_size(client, c)  # delete removes the writable layer itself, gc never sees it
        try:
            mgr.delete(c.id)
        except (NotFound, FailedPrecondition):
            continue  # removed, or started, meanwhile
        deleted.append(c.id)
        layers += size
    _, freed = collect(client)
    return PruneReport("containers", deleted, layers + freed)


def _rw_size(client: Client, c: Container) -> int:
    """The bytes of a container's writable layer (its own snapshot), 0 if it has none."""
    if not (c.snapshotter and c.snapshot_key):
        return 0
    try:
        return client.snapshotter(c.snapshotter).usage(c.snapshot_key).size
    except (NotFound, FileNotFoundError):
        return 0


def prune_volumes(client: Client, *, all: bool = False, filters: Iterable[str] = ()) -> PruneReport:
    """``volume prune``: remove the anonymous volumes (``all``: every volume) of this
    namespace no container uses; returns their names and the bytes their data took. Directories
    left by a create or remove cut short go too."""
    flt = PruneFilter.parse(filters)
    vols = client.volumes
    users = vols.users()
    doomed = [
        v
        for v in vols.list()
        if not users.get(v.name) and (all or v.anonymous) and flt.match(v.created_at, v.labels)
    ]
    sizes = {v.name: vols.usage(v.name) for v in doomed}
    removed = vols.remove_many([v.name for v in doomed], if_unused=True)
    freed = sum(sizes[n] for n in removed)
    for p in vols.strays():
        freed += tree_usage(p)
    vols.cleanup()
    return PruneReport("volumes", removed, freed)


@dataclass(frozen=True)
class SystemPruneReport:
    """What ``system prune`` (``Client.prune``) removed: one :class:`PruneReport` per kind
    (``volumes`` and ``networks`` None when they were not pruned)."""

    containers: PruneReport
    images: PruneReport
    volumes: PruneReport | None = None
    networks: PruneReport | None = None

    @property
    def space_reclaimed(self) -> int:
        """The bytes every step gave back, together."""
        return sum(
            r.space_reclaimed for r in (self.containers, self.images, self.volumes, self.networks) if r
        )


def networking_works(client: Client) -> bool:
    """Whether this machine's networking loaded (the CNI network plugin): what a prune of
    networks needs."""
    try:
        client.network_plugin()
    except CtrstoreError:
        return False
    return True


def prune_networks(client: Client) -> PruneReport:
    """``network prune``: every network ctrstore made that no container is on (not the
    default network). Networks hold no bytes of the store: nothing is reclaimed."""
    return PruneReport("networks", client.networks.prune())


def system_prune(
    client: Client,
    *,
    all: bool = False,
    volumes: bool = False,
    filters: Iterable[str] = (),
    networks: bool = False,
) -> SystemPruneReport:
    """``system prune``: stopped containers, then (``networks``, where networking works here)
    unused networks, then dangling images (``all``: every unused image), then (``volumes``)
    unused anonymous volumes; gc runs once at the end of each step, and the bytes each freed
    are reported."""
    flt = list(filters)
    containers = prune_containers(client, filters=flt)
    nets = prune_networks(client) if networks and networking_works(client) else None
    images = prune_images(client, all=all, filters=flt)
    vols = prune_volumes(client, filters=flt) if volumes else None
    return SystemPruneReport(containers, images, vols, nets)


# --------------------------------------------------------------------------------------------
# system df


@dataclass(frozen=True)
class UsageSummary:
    """One row of ``system df``."""

    type: str
    total: int
    active: int
    size: int
    reclaimable: int

    def to_json(self) -> dict[str, Any]:
        """docker's ``system df`` row fields (sizes in bytes)."""
        return {
            "Type": self.type,
            "TotalCount": self.total,
            "Active": self.active,
            "Size": self.size,
            "Reclaimable": self.reclaimable,
        }


@dataclass
class DiskUsage:
    """``system df``: four rows whose sizes add up to the store's data on disk, and (with
    ``verbose``) one row per image, container, volume and kind of other data."""

    images: UsageSummary
    containers: UsageSummary
    volumes: UsageSummary
    other: UsageSummary
    image_rows: list[dict[str, Any]] = field(default_factory=list)
    """``Repository``, ``Tag``, ``Name``, ``ID`` (target digest), ``CreatedAt``, ``Size``,
    ``SharedSize``, ``UniqueSize``, ``Containers``."""
    container_rows: list[dict[str, Any]] = field(default_factory=list)
    """``ID``, ``Image``, ``Command``, ``LocalVolumes``, ``Size``, ``CreatedAt``, ``State``,
    ``Names``."""
    volume_rows: list[dict[str, Any]] = field(default_factory=list)
    """``Name``, ``Links`` (containers using it), ``Size``, ``Anonymous``."""
    other_rows: list[dict[str, Any]] = field(default_factory=list)
    """``Kind`` (leases, gc roots, ingests, other namespaces, garbage), ``Count``, ``Size``."""

    @property
    def rows(self) -> list[UsageSummary]:
        return [self.images, self.containers, self.volumes, self.other]

    @property
    def total(self) -> int:
        return sum(r.size for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        """docker's ``system df -v`` shape, sizes in bytes (``Other`` instead of
        ``BuildCache``: ctrstore has no builder)."""
        return {
            "Summary": [r.to_json() for r in self.rows],
            "Images": self.image_rows,
            "Containers": self.container_rows,
            "Volumes": self.volume_rows,
            "Other": self.other_rows,
        }


def _sum(us: Iterable[Unit]) -> int:
    return sum(u.size for u in us)


def disk_usage(client: Client, *, verbose: bool = False) -> DiskUsage:
    """``system df`` for this client's namespace (see the module's docstring). Each blob,
    snapshot and ingest on disk is counted in one row: Images if an image of this namespace
    holds it, else Containers if a container of this namespace does, else Other (with what
    holds it, if anything: leases, ``gc.root`` labels, live ingests, other namespaces' images
    and containers; what nothing holds is garbage, which gc removes). Volumes of this namespace
    are their own row; other namespaces' volumes, and directories a volume removal left, are
    Other."""
    ns = client.namespace
    md = client.metadata
    reach = reachability(md.db)
    all_units = units(md.db, md.content_backend, md.snapshotters)
    images = client.images.list()
    mgr = client.containers
    containers = mgr.store.list()
    used = images_in_use(client)
    active_ctrs = {c.id for c in containers if mgr.tasks.active(c.id)}
    unused_images = {i.name for i in images if i.name not in used}

    def kind_in_ns(kind: str) -> Callable[[Node], bool]:
        return lambda n: n[0] == kind and n[1] == ns

    held = reach.mark()
    by_images = reach.mark(kind_in_ns("image"))
    by_ctrs = reach.mark(kind_in_ns("container"))
    keep_if_images_pruned = reach.mark(
        lambda n: not (n[0] == "image" and n[1] == ns and n[2] in unused_images)
    )
    keep_if_ctrs_pruned = reach.mark(
        lambda n: not (n[0] == "container" and n[1] == ns and n[2] not in active_ctrs)
    )

    img_units, ctr_units, other_units = [], [], []
    for u in all_units:
        if u.nodes & by_images:
            img_units.append(u)
        elif u.nodes & by_ctrs:
            ctr_units.append(u)
        else:
            other_units.append(u)

    img_row = UsageSummary(
        "Images",
        len(images),
        len(images) - len(unused_images),
        _sum(img_units),
        _sum(u for u in img_units if not u.nodes & keep_if_images_pruned),
    )
    ctr_row = UsageSummary(
        "Containers",
        len(containers),
        len(active_ctrs),
        _sum(ctr_units),
        _sum(u for u in ctr_units if not u.nodes & keep_if_ctrs_pruned),
    )

    vol_rows: list[dict[str, Any]] = []
    vol_size = vol_reclaim = vol_active = 0
    other_volume_bytes = 0
    volumes = client._volumes_or_none()
    vol_list = []
    if volumes is not None:
        users = volumes.users()
        vol_list = volumes.list()
        for v in vol_list:
            size = volumes.usage(v.name)
            links = len(users.get(v.name, ()))
            vol_size += size
            if links:
                vol_active += 1
            else:
                vol_reclaim += size
            vol_rows.append({"Name": v.name, "Links": links, "Size": size, "Anonymous": v.anonymous})
        # Other namespaces' volumes, and directories a cut-short create or remove left.
        root = volumes.root.parent
        ours = {v.name for v in vol_list}
        for nsdir in sorted(root.iterdir()) if root.is_dir() else []:
            for p in sorted(nsdir.iterdir()) if nsdir.is_dir() else []:
                if nsdir.name == ns and p.name in ours:
                    continue
                other_volume_bytes += tree_usage(p)
    vol_row = UsageSummary("Local Volumes", len(vol_list), vol_active, vol_size, vol_reclaim)

    garbage = [u for u in other_units if not u.nodes & held]
    other_row = UsageSummary(
        "Other",
        len(other_units),
        len(other_units) - len(garbage),
        _sum(other_units) + other_volume_bytes,
        _sum(garbage),
    )
    du = DiskUsage(img_row, ctr_row, vol_row, other_row, volume_rows=vol_rows)
    if verbose:
        _verbose(du, client, reach, images, containers, used, all_units, other_units, garbage)
        if other_volume_bytes:
            du.other_rows.append({"Kind": "other volumes", "Count": 0, "Size": other_volume_bytes})
    return du


def _verbose(
    du: DiskUsage,
    client: Client,
    reach: Reachability,
    images: Sequence[Image],
    containers: list[Container],
    used: Mapping[str, list[str]],
    all_units: list[Unit],
    other_units: list[Unit],
    garbage: list[Unit],
) -> None:
    from ctrstore.client.dockercompat import repo_tag

    ns = client.namespace
    mgr = client.containers
    per_image: dict[str, list[Unit]] = {}
    count: dict[Unit, int] = {}
    for img in images:
        marked = reach.mark(lambda n, name=img.name: n == ("image", ns, name))  # type: ignore[misc]
        mine = [u for u in all_units if u.nodes & marked]
        per_image[img.name] = mine
        for u in mine:
            count[u] = count.get(u, 0) + 1
    for img in images:
        mine = per_image[img.name]
        shared = _sum(u for u in mine if count[u] > 1)
        repo, tag = repo_tag(img.name)
        du.image_rows.append(
            {
                "Repository": repo,
                "Tag": tag,
                "Name": img.name,
                "ID": img.target.digest,
                "CreatedAt": img.created_at.isoformat() if img.created_at else None,
                "Size": _sum(mine),
                "SharedSize": shared,
                "UniqueSize": _sum(mine) - shared,
                "Containers": len(used.get(img.name, ())),
            }
        )
    by_snapshot = {u.key: u for u in all_units if u.kind == "snapshot"}
    for c in containers:
        size = 0
        if c.snapshotter and c.snapshot_key:
            sn = client.snapshotter(c.snapshotter)
            try:
                unit = by_snapshot.get(f"{c.snapshotter}/{sn.backend_key(c.snapshot_key)}")
            except NotFound:
                unit = None
            size = unit.size if unit is not None else 0
        vols = [
            m
            for m in c.spec.get("mounts", [])
            if isinstance(m, dict) and "/_data" in str(m.get("source", ""))
        ]
        args = c.spec.get("process", {}).get("args", [])
        du.container_rows.append(
            {
                "ID": c.id,
                "Image": c.image,
                "Command": " ".join(str(a) for a in args) if isinstance(args, list) else "",
                "LocalVolumes": len(vols),
                "Size": size,
                "CreatedAt": c.created_at.isoformat() if c.created_at else None,
                "State": mgr.status(c.id).status,
                "Names": mgr.name_of(c),
            }
        )
    # Other: what holds each unit, first match wins.
    classes: list[tuple[str, Callable[[Node], bool]]] = [
        ("other namespaces", lambda n: n[0] in ("image", "container") and n[1] != ns),
        ("leases", lambda n: n[0] == "lease"),
        ("ingests", lambda n: n[0] == "ingest"),
        ("gc roots", lambda n: n[0] in ("content", "snapshot")),
    ]
    trash = set(garbage)
    left = [u for u in other_units if u not in trash]
    for label, pred in classes:
        marked = reach.mark(pred)
        mine = [u for u in left if u.nodes & marked]
        if mine:
            du.other_rows.append({"Kind": label, "Count": len(mine), "Size": _sum(mine)})
        left = [u for u in left if not u.nodes & marked]
    if left:
        du.other_rows.append({"Kind": "held", "Count": len(left), "Size": _sum(left)})
    if garbage:
        du.other_rows.append({"Kind": "garbage", "Count": len(garbage), "Size": _sum(garbage)})
