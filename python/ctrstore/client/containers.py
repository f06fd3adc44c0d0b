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
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from ctrstore.client import networks
from ctrstore.client.volumes import ContainerVolumes, anonymous_volumes
from ctrstore.errdefs import AlreadyExists, InvalidArgument, NotFound
from ctrstore.images import read_config, resolve
from ctrstore.labels import CONTAINER_NAME, NETWORK_EXTENSION, OPEN_STDIN, RESTART_POLICY, STOP_SIGNAL
from ctrstore.metadata.containers import Container
from ctrstore.oci.spec import SpecOptions, generate, validate_container_id
from ctrstore.runtime.runc import Runc
from ctrstore.runtime.tasks import UP_STATES, Tasks, TaskStatus

if TYPE_CHECKING:
    from ctrstore.content import Provider
    from ctrstore.images.platforms import Platform
    from ctrstore.metadata.containers import ContainerStore
    from ctrstore.metadata.images import ImageStore
    from ctrstore.mount import Mount
    from ctrstore.network import NetworkOptions, PortMapping
    from ctrstore.network.join import Joined
    from ctrstore.network.manager import NetworkManager
    from ctrstore.runtime.cgroups import CgroupStats
    from ctrstore.runtime.logs import LogEntry
    from ctrstore.snapshots import NamedSnapshotter
    from ctrstore.unpack import UnpackResult
    from ctrstore.volumes import VolumeStore

__all__ = [
    "EXITED",
    "RUNTIME_NAME",
    "UP_STATES",
    "ContainerManager",
    "ContainerStatus",
    "container_status",
    "exit_status_of",
    "new_id_and_name",
    "parse_log_time",
]

RUNTIME_NAME = "io.containerd.runc.v2"
EXITED = "exited"
"""A container whose task has ended, as docker says it (containerd's task status ``stopped``)."""

ContainerStatus = Literal["created", "running", "paused", "restarting", "exited"]
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
    if s == "restarting":
        return "restarting"
    if s in ("stopped", EXITED):
        return "exited"
    return "created"


def parse_log_time(text: str) -> int:
    """``logs --since/--until``: an RFC 3339 time, a Unix time or a duration before now, in
    nanoseconds since the epoch (``ctrstore.runtime.logs.parse_user_time``)."""
    from ctrstore.runtime.logs import parse_user_time

    return parse_user_time(text)


def exit_status_of(error: BaseException) -> int | None:
    """docker's exit status for a failed ``run``/``exec`` whose container command could not
    be run: 127 (not found) or 126 (not runnable); None for any other failure."""
    from ctrstore.errdefs import CtrstoreError
    from ctrstore.runtime.runc import command_status

    return command_status(str(error)) if isinstance(error, CtrstoreError) else None


def _signal_name(sig: str) -> str:
    """``KILL``, ``sigterm``, ``SIGTERM`` -> ``SIGKILL``, ``SIGTERM``; numbers stay."""
    name = sig.strip().upper()
    return name if name.isdigit() or name.startswith("SIG") else f"SIG{name}"


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
        unpack: Callable[[str, str, Platform | None], UnpackResult],
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
        platform: Platform | None = None,
    ) -> Container:
        """Create container ``cid`` from image ``image_name`` (unpacked first if needed) with
        the spec ``opts`` make; ``name`` is recorded as its ``nerdctl/name`` label (see
        :func:`new_id_and_name`). The image is found as users name it
        (:meth:`~ctrstore.metadata.images.ImageStore.lookup`: ``alpine``, an ID prefix...), for
        ``platform`` (default: this machine's); its StopSignal becomes the container's unless
        ``labels`` name one. ``network``: its networks, published ports, addresses, DNS and
        its own ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` (then ``opts.net``
        follows it); without it, ``opts.net`` alone decides (``host``, or a namespace with
        loopback only) and the image's own ``/etc`` files are left as they are."""
        validate_container_id(cid)
        net_opts, opts = networks.spec_options(network, opts, self._joined)
        runc = self.runc()  # fail early and clearly when no runtime is installed
        sn = self.snapshotter(snapshotter)
        sn_name = sn.name
        image = self.images.lookup(image_name)
        image_name = image.name  # as stored (not an ID or short name): what rmi and prune look for
        try:
            self.store.get(cid)
            raise AlreadyExists(f"container {cid!r} already exists")
        except NotFound:
            pass
        self.check_name_free(name or cid)
        unpacked = self.unpack(image_name, sn_name, platform)
        config = read_config(self.content, resolve(self.content, image.target, platform).config)
        labels = dict(labels or {})
        inner = config.get("config")
        stop_signal = inner.get("StopSignal") if isinstance(inner, dict) else None
        if isinstance(stop_signal, str) and stop_signal and STOP_SIGNAL not in labels:
            labels[STOP_SIGNAL] = stop_signal
        if net_opts is not None:  # -P: the image's exposed ports too
            net_opts = net_opts.with_exposed(inner.get("ExposedPorts") if isinstance(inner, dict) else None)
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
                networks.prepare(self.network, net_opts, spec, bundle, self._joined)
            bundle.write_spec(spec)
            record = self.store.create(
                Container(
                    cid,
                    image=image_name,
                    snapshotter=sn_name,
                    snapshot_key=cid,
                    runtime={"name": RUNTIME_NAME, "options": {"binary": runc.binary}},
                    spec=spec,
                    labels={**labels, **vols.labels(), **({CONTAINER_NAME: name} if name else {})},
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
    def _joined(self, ref: str) -> Joined:
        """The container ``--network container:REF`` joins (``networks.joined``)."""
        return networks.joined(self, ref)

    def network_settings(self, cid: str) -> dict[str, Any]:
        """docker's ``NetworkSettings``: the container's addresses and published ports while
        it is attached (``inspect``)."""
        return networks.settings(self.network, self.store.get(cid), self.tasks.bundle(cid))

    def ports(self, cid: str) -> list[PortMapping]:
        """The container's published ports: as set up while it is attached (free host ports
        chosen), else as asked for (host port 0: chosen at start) (``port``, ``ps``)."""
        return networks.ports(self.store.get(cid), self.tasks.bundle(cid))

    # -- names (after create) ------------------------------------------------------------
    def check_name_free(self, name: str) -> None:
        """AlreadyExists (naming the holder) if a container of the namespace has ``name`` as
        its name or id: names are unique, as docker's."""
        for c in self.store.list():
            if c.id == name or c.labels.get(CONTAINER_NAME) == name:
                raise AlreadyExists(
                    f'the container name "{name}" is already in use by container {c.id}: '
                    "remove or rename that container to use the name"
                )

    def rename(self, cid: str, new_name: str) -> Container:
        """Give the container another name (its id stays what it was)."""
        from ctrstore.metadata.db import validate_identifier

        validate_identifier("container name", new_name)
        c = self.store.get(cid)
        if self.name_of(c) == new_name:
            raise InvalidArgument(f"container {cid} is named {new_name} already")
        self.check_name_free(new_name)
        return self.store.update(
            Container(cid, labels={CONTAINER_NAME: new_name}), f"labels.{CONTAINER_NAME}"
        )

    # -- tasks -----------------------------------------------------------------------------
    @staticmethod
    def _task_options(c: Container) -> dict[str, Any]:
        return {
            "restart": c.labels.get(RESTART_POLICY),
            "open_stdin": c.labels.get(OPEN_STDIN) == "true",
        }

    def start(self, cid: str, *, on_exit: Sequence[str] | None = None, fresh: bool = False) -> TaskStatus:
        """Start the container's process detached, under a shim; returns once it runs. If
        the runtime cannot start it (no such command, ...), the error is raised and the
        container is left as it was: created, and removable. Its restart policy and open
        stdin (labels ``--restart`` and ``-i`` set) go to the shim.

        ``on_exit``: a command the shim runs once the process has exited and its status is
        recorded (``run -d --rm`` removes the container so)."""
        c = self.store.get(cid)
        return self._start(c, on_exit=on_exit, fresh=fresh)

    def _start(
        self,
        c: Container,
        *,
        on_exit: Sequence[str] | None,
        fresh: bool,
        attach_first: bool = False,
    ) -> TaskStatus:
        """Start ``c``'s task under its shim, attached to its networks just before the
        runtime creates it; a start that fails detaches it again (once started, its shim
        detaches it when the task ends for good)."""
        opts = self._task_options(c)
        up = networks.Attacher(self.network, self.namespace, c, self._joined)
        try:
            return self.tasks.start(
                c.id,
                c.spec,
                self._mounts(c),
                on_exit=on_exit,
                before_create=up,
                fresh=fresh,
                attach_first=attach_first,
                stdin_once=attach_first and opts["open_stdin"],
                **opts,
            )
        except BaseException:
            up.undo()
            raise

    def run_attached(
        self,
        cid: str,
        *,
        fresh: bool = False,
        on_exit: Sequence[str] | None = None,
        proxy_signals: bool = True,
        detach_keys: bytes | None = None,
    ) -> int | None:
        """Run the container's process with our stdio (fds 0-2) attached, as ``docker run``
        without ``-d``: its shim starts the process only once we are attached, so we see all
        its output (which is logged too), and our stdin goes to it with ``-i`` until ours
        ends. Returns its exit status, or None if we detached (Ctrl-P Ctrl-Q with ``-it``).
        ``fresh``: the container was just created, so there is no earlier task to check for
        or clean away."""
        c = self.store.get(cid)
        self._start(c, on_exit=on_exit, fresh=fresh, attach_first=True)
        return self.attach(cid, proxy_signals=proxy_signals, detach_keys=detach_keys)

    def attach(
        self,
        cid: str,
        *,
        no_stdin: bool = False,
        proxy_signals: bool = True,
        detach_keys: bytes | None = None,
    ) -> int | None:
        """Attach our stdio to the running container: its output, and our input if it was
        created with an open stdin (``-i``) and not ``no_stdin``. Its exit status, or None
        if we detached."""
        c = self.store.get(cid)
        return self.tasks.attach(
            cid,
            stdin=c.labels.get(OPEN_STDIN) == "true" and not no_stdin,
            tty=bool(c.spec.get("process", {}).get("terminal")),
            proxy_signals=proxy_signals,
            detach_keys=detach_keys,
        )

    def status(self, cid: str) -> TaskStatus:
        """The container's task status in docker's words (:func:`container_status`):
        ``created``, ``running``, ``paused``, ``restarting`` or ``exited`` (what containerd and the runtime
        call ``stopped``). ``self.tasks.status`` gives the runtime's own words.

        A process that has ended but whose shim has not recorded its exit status yet (it
        detaches the container from its networks first) is still ``running``, as docker
        shows a container until its exit is handled: ``exited`` comes with its exit code."""
        st = self.tasks.status(cid)  # (which says running until the exit is recorded)
        return replace(st, status=container_status(st))

    def stop_signal(self, cid: str) -> str:
        """The signal ``stop`` sends first: ``--stop-signal``, the image's StopSignal, or
        SIGTERM."""
        return _signal_name(self.store.get(cid).labels.get(STOP_SIGNAL) or "SIGTERM")

    def kill(self, cid: str, signal: str = "SIGTERM", *, all_processes: bool = False) -> None:
        """Signal the container's process; SIGKILL and its stop signal also keep its restart
        policy from starting it again (as docker kill)."""
        sig = _signal_name(signal)
        final = sig in ("SIGKILL", "9", self.stop_signal(cid))
        self.tasks.kill(cid, sig, all_processes=all_processes, final=final)

    def wait(self, cid: str, timeout: float | None = None) -> int:
        """Block until the task stops; its exit status."""
        self.store.get(cid)
        return self.tasks.wait(cid, timeout)

    def stop(self, cid: str, timeout: float = 10.0) -> int | None:
        """The container's stop signal (SIGTERM unless ``--stop-signal`` or the image says
        otherwise) to its init, then SIGKILL to all its processes after ``timeout`` seconds
        (as docker stop); the exit status if it was running."""
        return self.tasks.stop(cid, timeout, self.stop_signal(cid))

    def restart(self, cid: str, timeout: float = 10.0) -> TaskStatus:
        """Stop the container (if it runs) and start it again, detached."""
        self.stop(cid, timeout)
        return self.start(cid)

    def pause(self, cid: str) -> None:
        self.store.get(cid)
        self.tasks.pause(cid)

    def unpause(self, cid: str) -> None:
        self.store.get(cid)
        self.tasks.resume(cid)

    def pids(self, cid: str) -> list[int]:
        """The host pids of the container's processes (``top``)."""
        self.store.get(cid)
        return self.tasks.pids(cid)

    def stats(self, cid: str) -> CgroupStats:
        """What the container's cgroups say now (:mod:`ctrstore.runtime.cgroups`)."""
        from ctrstore.runtime.cgroups import Cgroups, CgroupStats, cgroups_path_of

        path = cgroups_path_of(self.store.get(cid).spec)
        if path is None or self.status(cid).status not in ("running", "paused"):
            return CgroupStats()
        return Cgroups(path).stats()

    def _root_for_copy(self, cid: str) -> Path:
        """The container's root as its processes see it — volumes and tmpfs mounts included —
        while it runs (``/proc/<init>/root``); its rootfs mount otherwise (mounted again if
        needed)."""
        c = self.store.get(cid)
        st = self.status(cid)
        if st.status in ("running", "paused") and st.pid:
            return Path(f"/proc/{st.pid}/root")
        return self.tasks.ensure_bundle(cid, c.spec, self._mounts(c)).rootfs

    def copy_from(self, cid: str, src: str, dest: str | BinaryIO, *, follow_link: bool = False) -> None:
        """``cp CONTAINER:SRC DEST``: copy a file or directory out of the container, to a
        host path or, as a tar stream, to a binary file (see :mod:`ctrstore.runtime.copy`)."""
        from ctrstore.runtime.copy import copy_out

        copy_out(self._root_for_copy(cid), src, dest, follow_link=follow_link)

    def copy_to(self, cid: str, src: str | BinaryIO, dest: str, *, archive: bool = False) -> None:
        """``cp SRC CONTAINER:DEST``: copy a host file or directory (or a tar stream from a
        binary file) into the container; owned by root unless ``archive`` keeps the owners."""
        from ctrstore.runtime.copy import copy_in

        copy_in(self._root_for_copy(cid), src, dest, archive=archive)

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

    def log_entries(
        self,
        cid: str,
        *,
        follow: bool = False,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> Iterator[LogEntry]:
        """The container's log lines with stream and time (see ``Tasks.log_entries``)."""
        self.store.get(cid)
        return self.tasks.log_entries(cid, follow=follow, since_ns=since_ns, until_ns=until_ns, tail=tail)

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
