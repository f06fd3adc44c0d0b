"""Containers, with no daemon: the seed's ``run``, as containerd's ``client.NewContainer``
and ``Container`` (the orchestration above the runtime plugin).

Creating a container prepares one more, writable snapshot keyed by the container id on top of
the image's chainID, makes its bundle (:mod:`ctrstore.runtime.bundle`) with that snapshot's
overlay mounted on ``rootfs/`` (lowerdir = the image's layers newest first, upperdir/workdir
= the container's snapshot), generates the OCI spec (:mod:`ctrstore.oci`) and records the
container in meta.db. Its task is then run by the runtime plugin
(:mod:`ctrstore.runtime.tasks`): attached (``runc run``) or detached, under the shim. Whatever
the container writes lands in its snapshot's ``fs``.

Every step is undone if a later one fails: no mount, snapshot, bundle or record is left
behind. After a reboot or a killed shim, the container shows as exited (exit status 255)
and ``delete`` still cleans up; ``start`` mounts the rootfs again (and makes the bundle again
from the record if /run was emptied).

Containers have names as nerdctl gives them (the ``nerdctl/name`` label), and a user may
name one by its id, its name or a unique prefix of its id (:meth:`ContainerManager.resolve`).

Networking (:mod:`ctrstore.network`) is asked for with :class:`~ctrstore.network.NetworkOptions`
(recorded in the ``ctrstore.io/network`` extension of the record): ``create`` points the spec
at the container's namespace and ``/etc`` files, every start attaches the container to its
CNI networks just before the task is created, and the shim (or ``run_attached``, or
``delete``) detaches it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ctrstore.client import networks
from ctrstore.client.volumes import ContainerVolumes, anonymous_volumes
from ctrstore.errdefs import AlreadyExists, InvalidArgument, NotFound
from ctrstore.images import read_config, resolve
from ctrstore.labels import CONTAINER_NAME, NETWORK_EXTENSION
from ctrstore.metadata.containers import Container
from ctrstore.oci.spec import SpecOptions, generate, validate_container_id
from ctrstore.runtime.runc import Runc
from ctrstore.runtime.tasks import Tasks, TaskStatus

if TYPE_CHECKING:
    from ctrstore.content import Provider
    from ctrstore.metadata.containers import ContainerStore
    from ctrstore.metadata.images import ImageStore
    from ctrstore.mount import Mount
    from ctrstore.network import NetworkOptions, PortMapping
    from ctrstore.network.manager import NetworkManager
    from ctrstore.snapshots import NamedSnapshotter
    from ctrstore.unpack import UnpackResult
    from ctrstore.volumes import VolumeStore

__all__ = [
    "EXITED",
    "RUNTIME_NAME",
    "ContainerManager",
    "ContainerStatus",
    "container_status",
    "new_id_and_name",
]

RUNTIME_NAME = "io.containerd.runc.v2"
EXITED = "exited"
"""A container whose task has ended, as docker says it (containerd's task status ``stopped``)."""

ContainerStatus = Literal["created", "running", "paused", "exited"]
"""A container's status in docker's words."""


def container_status(task: TaskStatus) -> ContainerStatus:
    """Docker's word for a task's status: ``stopped`` is ``exited``; ``creating`` and
    ``unknown`` (no bundle and no exit record: /run was emptied by a reboot before the task
    ever ran) are ``created``, as the container can be started."""
    s = task.status
    if s == "running":
        return "running"
    if s == "paused":
        return "paused"
    if s in ("stopped", EXITED):
        return "exited"
    return "created"


def new_id_and_name(name: str | None, image: str) -> tuple[str, str]:
    """A new container's id and name, as nerdctl makes them: ``name`` is also the id
    (containerd ids and names follow the same rules); without one, a random 64-hex id and
    ``<image base name>-<id[:5]>``."""
    if name:
        return name, name
    cid = secrets.token_hex(32)
    base = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0] or "container"
    return cid, f"{base}-{cid[:5]}"


class ContainerManager:
    """The containers of one namespace: their records (meta.db), snapshots and bundles, with
    their tasks run by ``tasks``. It takes the roles it uses, not a whole client: the
    container, image and content stores, the snapshotters (by name; None is the default
    one), how to unpack an image, and the namespace's tasks."""

    def __init__(
        self,
        *,
        store: ContainerStore,
        images: ImageStore,
        content: Provider,
        snapshotter: Callable[[str | None], NamedSnapshotter],
        unpack: Callable[[str, str], UnpackResult],
        tasks: Tasks,
        volumes: VolumeStore | None = None,
        network: Callable[[], NetworkManager] | None = None,
    ) -> None:
        self.store = store
        self.images = images
        self.content = content
        self.snapshotter = snapshotter
        self.unpack = unpack
        self.tasks = tasks
        self.volumes = volumes
        """Named volumes (``-v NAME:/path``, anonymous ones, ``rm -v``): ``ctrstore.volumes``."""
        self.network = network
        """The network plugin (asked for only by containers that use networking)."""
        self.namespace = store.namespace

    # -- places ----------------------------------------------------------------------------
    def bundle(self, cid: str) -> Path:
        return self.tasks.bundle(cid).path

    def work(self, cid: str) -> Path:
        return self.tasks.bundle(cid).work

    def runc(self) -> Runc:
        return self.tasks.runc()

    # -- names -----------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """A container id from what a user types: the id, the name (``nerdctl/name``), or a
        unique id prefix. NotFound if nothing matches; InvalidArgument if a prefix is
        ambiguous."""
        try:
            return self.store.get(ref).id
        except NotFound:
            pass
        all_ = self.store.list()
        named = [c.id for c in all_ if c.labels.get(CONTAINER_NAME) == ref]
        if len(named) == 1:
            return named[0]
        prefixed = [c.id for c in all_ if c.id.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise InvalidArgument(f"{len(prefixed)} containers match {ref!r}: give more of the id")
        raise NotFound(f"no such container: {ref}")

    @staticmethod
    def name_of(c: Container) -> str:
        """The container's name: its ``nerdctl/name`` label, else its id."""
        return c.labels.get(CONTAINER_NAME, c.id)

    # -- create ----------------------------------------------------------------------------
    def create(
        self,
        cid: str,
        image_name: str,
        opts: SpecOptions,
        *,
        snapshotter: str | None = None,
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        network: NetworkOptions | None = None,
    ) -> Container:
        """Create container ``cid`` from image ``image_name`` (unpacked first if needed) with
        the spec ``opts`` make; ``name`` is recorded as its ``nerdctl/name`` label (see
        :func:`new_id_and_name`). ``network``: its networks, published ports, addresses, DNS
        and its own ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` (then
        ``opts.net`` follows it); without it, ``opts.net`` alone decides (``host``, or a
        namespace with loopback only) and the image's own ``/etc`` files are left as they are."""
        validate_container_id(cid)
        net_opts, opts = networks.spec_options(network, opts)
        runc = self.runc()  # fail early and clearly when no runtime is installed
        sn = self.snapshotter(snapshotter)
        sn_name = sn.name
        image = self.images.get(image_name)
        image_name = image.name  # as stored (not an ID or short name): what rmi and prune look for
        try:
            self.store.get(cid)
            raise AlreadyExists(f"container {cid!r} already exists")
        except NotFound:
            pass
        unpacked = self.unpack(image_name, sn_name)
        config = read_config(self.content, resolve(self.content, image.target).config)
        bundle = self.tasks.bundle(cid)
        vols = ContainerVolumes(self.volumes)
        with ExitStack() as undo:
            opts = vols.prepare(opts, config)
            undo.callback(vols.undo)
            try:
                # Writable even for a read-only rootfs (nerdctl's --read-only; the spec's
                # root.readonly has runc remount it read-only once the mount points for
                # -v and the default mounts are made, which a view could not hold).
                mounts = sn.prepare(cid, unpacked.chain_id)
            except AlreadyExists:
                raise AlreadyExists(
                    f"container {cid}: a {sn_name} snapshot {cid!r} exists already (left over? "
                    f"remove it with: ctrstore snapshots --snapshotter {sn_name} rm {cid})"
                ) from None
            undo.callback(sn.remove, cid)
            # The snapshot key is ours now: a bundle without a record is a leftover.
            bundle.remove()
            undo.callback(bundle.remove)
            rootfs = bundle.create()
            from ctrstore.mount import mount_all

            mount_all(mounts, rootfs)
            vols.copy_up(rootfs)
            spec = generate(cid, self.namespace, config, opts, rootfs)
            if net_opts is not None:
                self._network().prepare(net_opts, spec, bundle)
            bundle.write_spec(spec)
            record = self.store.create(
                Container(
                    cid,
                    image=image_name,
                    snapshotter=sn_name,
                    snapshot_key=cid,
                    runtime={"name": RUNTIME_NAME, "options": {"binary": runc.binary}},
                    spec=spec,
                    labels={**(labels or {}), **vols.labels(), **({CONTAINER_NAME: name} if name else {})},
                    extensions={NETWORK_EXTENSION: net_opts.to_json()} if net_opts else {},
                )
            )
            undo.callback(self.store.delete, cid)
            vols.confirm()
            undo.pop_all()
        return record

    def _mounts(self, c: Container) -> Callable[[], Sequence[Mount]]:
        return lambda: self.snapshotter(c.snapshotter).mounts(c.snapshot_key)

    # -- networking (ctrstore.client.networks) -----------------------------------------------
    def _network(self) -> NetworkManager:
        return networks.plugin(self.network)

    def network_settings(self, cid: str) -> dict[str, Any]:
        """docker's ``NetworkSettings``: the container's addresses and published ports while
        it is attached (``inspect``)."""
        return networks.settings(self.network, self.store.get(cid), self.tasks.bundle(cid))

    def ports(self, cid: str) -> list[PortMapping]:
        """The container's published ports: as set up while it is attached (free host ports
        chosen), else as asked for (host port 0: chosen at start) (``port``, ``ps``)."""
        return networks.ports(self.store.get(cid), self.tasks.bundle(cid))

    # -- tasks -----------------------------------------------------------------------------
    def start(self, cid: str, *, on_exit: Sequence[str] | None = None) -> TaskStatus:
        """Start the container's process detached, under a shim; returns once it runs. If
        the runtime cannot start it (no such command, ...), the error is raised and the
        container is left as it was: created, and removable.

        ``on_exit``: a command the shim runs once the process has exited and its status is
        recorded (``run -d --rm`` removes the container so)."""
        c = self.store.get(cid)
        up = networks.Attacher(self.network, self.namespace, c)
        try:
            return self.tasks.start(cid, c.spec, self._mounts(c), on_exit=on_exit, before_create=up)
        except BaseException:
            up.undo()
            raise

    def run_attached(self, cid: str, *, fresh: bool = False) -> int:
        """Run the container's process attached to our terminal; returns its exit status.
        ``fresh``: the container was just created, so there is no earlier task to check for
        or clean away (saves two runtime calls on ``run``)."""
        c = self.store.get(cid)
        up = networks.Attacher(self.network, self.namespace, c)
        try:
            return self.tasks.run_attached(cid, c.spec, self._mounts(c), fresh=fresh, before_create=up)
        finally:
            up.undo()  # the process has exited: detach it (a crashed run leaves it to rm, gc)

    def status(self, cid: str) -> TaskStatus:
        """The container's task status in docker's words (:func:`container_status`):
        ``created``, ``running``, ``paused`` or ``exited`` (what containerd and the runtime
        call ``stopped``). ``self.tasks.status`` gives the runtime's own words.

        A process that has ended but whose shim has not recorded its exit status yet (it
        detaches the container from its networks first) is still ``running``, as docker
        shows a container until its exit is handled: ``exited`` comes with its exit code."""
        st = self.tasks.status(cid)
        if st.status == "stopped" and st.exit_status is None:
            return replace(st, status="running")
        return replace(st, status=container_status(st))

    def kill(self, cid: str, signal: str = "SIGTERM", *, all_processes: bool = False) -> None:
        self.store.get(cid)
        self.tasks.kill(cid, signal, all_processes=all_processes)

    def wait(self, cid: str, timeout: float | None = None) -> int:
        """Block until the task stops; its exit status."""
        self.store.get(cid)
        return self.tasks.wait(cid, timeout)

    def stop(self, cid: str, timeout: float = 10.0) -> int | None:
        """SIGTERM to the container's init, then SIGKILL to all its processes after
        ``timeout`` seconds (as nerdctl stop); the exit status if it was running."""
        self.store.get(cid)
        return self.tasks.stop(cid, timeout)

    def exec(
        self,
        cid: str,
        args: list[str],
        *,
        tty: bool = False,
        env: list[str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        detach: bool = False,
    ) -> int:
        """Run ``args`` in the running container (``runc exec``); its exit status. ``user``
        is a name or id, ``[:group]``, resolved in the container's ``/etc/passwd``."""
        self.store.get(cid)
        return self.tasks.exec(cid, args, tty=tty, env=env, cwd=cwd, user=user, detach=detach)

    def logs(self, cid: str, *, follow: bool = False) -> Iterator[bytes]:
        self.store.get(cid)
        return self.tasks.logs(cid, follow=follow)

    def delete(
        self, cid: str, *, force: bool = False, task_gone: bool = False, volumes: bool = False
    ) -> list[str]:
        """Remove the container: its task (killed first with ``force``), rootfs mount, bundle,
        snapshot and record. Works after a killed shim or a reboot too. ``task_gone``: the
        caller knows the runtime has no task left (an attached ``runc run`` returned), so the
        runtime is not asked. ``volumes``: also remove the anonymous volumes made for it that
        no other container uses (``rm -v``; named volumes stay). Returns the volumes removed."""
        c = self.store.get(cid)
        self.tasks.delete(
            cid, c.spec, force=force, task_gone=task_gone, before_remove=networks.Detacher(self.network)
        )
        if c.snapshot_key:
            try:
                self.snapshotter(c.snapshotter).remove(c.snapshot_key)
            except NotFound:
                pass
        self.store.delete(cid)
        if volumes and self.volumes is not None:
            return self.volumes.remove_many(anonymous_volumes(c.labels), if_unused=True)
        return []
