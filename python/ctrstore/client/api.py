"""The Python API's collections, shaped after docker-py's ``client.containers`` and
``client.images``: :class:`Containers` (``get``, ``list``, ``run``) and :class:`Images`
(``get``, ``list`` giving :class:`~ctrstore.client.objects.ImageView`\\ s), plus the mapping
from ``run``'s keyword options onto :class:`ctrstore.oci.SpecOptions` (:func:`spec_options`).

They extend what was there: ``Containers`` is a :class:`~ctrstore.client.containers.
ContainerManager` (create, start, exec, delete... by container id keep working) and
``Images`` an :class:`~ctrstore.metadata.images.ImageStore` whose ``get`` and ``list`` give
views that are still image records. ``SpecOptions`` stays the full-control path
(``run(image, spec=SpecOptions(...))``); the keywords are the everyday subset.

Housekeeping (``client.prune()``, ``client.df()``) is ``ctrstore.client.housekeeping``'s,
as the CLI's ``system prune`` and ``system df`` are.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack, overload

from ctrstore.client import networks
from ctrstore.client.containers import EXITED, UP_STATES, ContainerManager, new_id_and_name
from ctrstore.client.mounts import VolumesArg, volume_mounts
from ctrstore.client.objects import (
    Container,
    ImageSource,
    ImageView,
    RunResult,
    _argv,
    env_list,
)
from ctrstore.errdefs import (
    InvalidArgument,
    NotFound,
    Unimplemented,
)
from ctrstore.metadata.images import Image, ImageStore
from ctrstore.oci.spec import NetMode, SpecMount, SpecOptions
from ctrstore.runtime.tasks import TaskStatus

if TYPE_CHECKING:
    from ctrstore.client.client import Client
    from ctrstore.content import Provider
    from ctrstore.images.platforms import Platform
    from ctrstore.network import NetworkOptions

__all__ = ["Containers", "Images", "RunOptions", "remove_command", "run_network", "spec_options"]


# --------------------------------------------------------------------------------------------
# run's options


class RunOptions(TypedDict, total=False):
    """The keyword options of ``run`` that shape the container's spec (docker-py's names),
    each mapped onto a field of :class:`~ctrstore.oci.SpecOptions` by :func:`spec_options`:

    ==================  ====================================================================
    ``environment``     ``{"K": "V"}`` or ``["K=V", ...]`` → ``env`` (on top of the image's)
    ``volumes``         ``{"/host": {"bind": "/ctr", "mode": "ro"}}`` or ``["/host:/ctr:ro"]``
                        → ``mounts``: a host path is a bind mount (``rw`` by default), a
                        name (``{"pgdata": {"bind": "/data"}}``, ``["pgdata:/data"]``) a named
                        volume, created on first use and filled from the image, a lone
                        ``"/ctr"`` an anonymous volume — as the CLI's ``-v``
                        (``ctrstore.client.mounts``)
    ``mounts``          :class:`~ctrstore.oci.SpecMount` values → ``mounts``, as they are
    ``working_dir``     → ``cwd`` (absolute)
    ``user``            name or id, ``[:group]`` → ``user``
    ``hostname``        → ``hostname``
    ``tty``             → ``tty`` (detached runs only: a captured run has no terminal)
    ``read_only``       → ``read_only`` (the root file system)
    ``network_mode``    ``"bridge"`` (or ``"private"``; the default), ``"none"``, ``"host"``
                        → ``net``; ``run`` attaches the container as it says (a
                        ``network=`` argument of ``run`` instead: any network, as ``--network``)
    ``privileged``      → ``privileged``
    ``cap_add``         → ``cap_add`` (``"NET_ADMIN"``, ``"CAP_SYS_TIME"``, ``"ALL"``)
    ``cap_drop``        → ``cap_drop``
    ==================  ====================================================================
    """

    environment: Mapping[str, str] | Sequence[str]
    volumes: VolumesArg
    mounts: Sequence[SpecMount]
    working_dir: str
    user: str
    hostname: str
    tty: bool
    read_only: bool
    network_mode: NetMode | Literal["bridge"]
    privileged: bool
    cap_add: Sequence[str]
    cap_drop: Sequence[str]


def spec_options(command: str | Sequence[str] | None = None, **options: Unpack[RunOptions]) -> SpecOptions:
    """The :class:`~ctrstore.oci.SpecOptions` that ``run(image, command, **options)`` makes
    (see :class:`RunOptions` for each key). ``command`` is a list, or a string split as a
    shell would; None runs the image's own command."""
    unknown = set(options) - set(RunOptions.__annotations__)
    if unknown:
        raise TypeError(f"run() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    return SpecOptions(
        args=[] if command is None else _argv(command, "run"),
        env=env_list(options.get("environment")),
        cwd=options.get("working_dir"),
        user=options.get("user"),
        hostname=options.get("hostname"),
        tty=bool(options.get("tty", False)),
        read_only=bool(options.get("read_only", False)),
        net=_net_mode(options.get("network_mode", "private")),
        mounts=[*volume_mounts(options.get("volumes", [])), *options.get("mounts", [])],
        privileged=bool(options.get("privileged", False)),
        cap_add=list(options.get("cap_add", [])),
        cap_drop=list(options.get("cap_drop", [])),
    )


_NET_MODES: dict[str, NetMode] = {"bridge": "private", "private": "private", "host": "host", "none": "none"}


def _net_mode(mode: str) -> NetMode:
    if mode not in _NET_MODES:
        raise InvalidArgument(f"network_mode {mode!r}: use bridge, host or none (network= names any network)")
    return _NET_MODES[mode]


def run_network(network: str | Sequence[str] | NetworkOptions | None, net: NetMode) -> NetworkOptions:
    """The networking of a container ``run`` makes, as the CLI's ``run`` gives it:
    ``network`` read as ``--network`` is (a network's name, ``bridge``, ``host`` or ``none``,
    or a list of names; :meth:`NetworkOptions.from_flags`), or a whole
    :class:`~ctrstore.network.NetworkOptions` (published ports, ``ip``, DNS...). Without it,
    what the spec's ``net`` says: ``host``, ``none``, or (``private``, the default: a
    namespace of its own) the default network, ``bridge``."""
    from ctrstore.network import NetworkOptions

    if isinstance(network, NetworkOptions):
        return network.validate()
    if network is None:
        return NetworkOptions.from_flags([net] if net in ("host", "none") else [])
    return NetworkOptions.from_flags([network] if isinstance(network, str) else list(network))


# --------------------------------------------------------------------------------------------
# Containers


class Containers(ContainerManager):
    """The containers of one namespace: the :class:`ContainerManager` (by container id) plus
    docker-py's ``get``, ``list`` and ``run``, which hand out
    :class:`~ctrstore.client.objects.Container` objects."""

    remove_command: Callable[[str], list[str]] | None = None
    """The command the shim runs to remove a ``run(detach=True, remove=True)`` container when
    it exits (the Client sets it: :func:`remove_command` on this store)."""

    def get(self, ref: str) -> Container:
        """The container named by ``ref``: its id, its name or a unique prefix of its id.
        NotFound if there is none."""
        cid = self.resolve(ref)
        return Container(self, self.store.get(cid), self.status(cid))

    def list(self, *filters: str, all: bool = False) -> builtins.list[Container]:
        """The running, paused and restarting containers (``ps``'s), newest first; with
        ``all``, every one.
        ``filters`` are containerd's (``labels."nerdctl/name"==web``, ``image==...``)."""
        records = sorted(
            self.store.list(*filters), key=lambda c: (c.created_at is not None, c.created_at), reverse=True
        )
        out = []
        for record in records:
            c = Container(self, record, self.status(record.id))
            if all or c.status in UP_STATES:
                out.append(c)
        return out

    @overload
    def run(
        self,
        image: str | Image,
        command: str | Sequence[str] | None = None,
        *,
        detach: Literal[False] = False,
        remove: bool = False,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        snapshotter: str | None = None,
        network: str | Sequence[str] | NetworkOptions | None = None,
        publish_all: bool = False,
        spec: SpecOptions | None = None,
        **options: Unpack[RunOptions],
    ) -> RunResult: ...

    @overload
    def run(
        self,
        image: str | Image,
        command: str | Sequence[str] | None = None,
        *,
        detach: Literal[True],
        remove: bool = False,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        snapshotter: str | None = None,
        network: str | Sequence[str] | NetworkOptions | None = None,
        publish_all: bool = False,
        spec: SpecOptions | None = None,
        **options: Unpack[RunOptions],
    ) -> Container: ...

    def run(
        self,
        image: str | Image,
        command: str | Sequence[str] | None = None,
        *,
        detach: bool = False,
        remove: bool = False,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        snapshotter: str | None = None,
        network: str | Sequence[str] | NetworkOptions | None = None,
        publish_all: bool = False,
        spec: SpecOptions | None = None,
        **options: Unpack[RunOptions],
    ) -> RunResult | Container:
        """Run ``command`` (default: the image's) in a new container from ``image`` (a stored
        image: a name as stored or as a registry reference normalises, or an Image).

        Without ``detach``: wait for it to exit and return a :class:`RunResult` with its exit
        status and its stdout and stderr, captured apart. With ``detach=True``: start it under
        a shim and return the running :class:`Container` (its output goes to its log).
        ``remove`` removes the container once it has exited. ``name`` is its name and id
        (default: a random id, named after the image). ``network``: the networks it is
        attached to, as the CLI's ``--network`` (default: the default network ``bridge``,
        with an address of its own; ``"none"``: loopback only; ``"host"``: the host's; a
        network's name; a list of names; or a :class:`~ctrstore.network.NetworkOptions` for
        published ports, ``ip`` and DNS), see :func:`run_network`; ``"container:NAME"`` joins
        that running container's network namespace. ``publish_all``: as ``-P``, every port the
        image exposes is published on a free host port of every address, chosen at each start
        (``containers.ports(id)`` shows them). The other keywords are
        :class:`RunOptions`; ``spec`` instead gives the whole
        :class:`~ctrstore.oci.SpecOptions` (then neither ``command`` nor those keywords;
        without ``network``, its ``net`` decides as ``network_mode`` does).

        If the runtime cannot start the command (not found...), its error is raised. Whenever
        ``run`` raises, the container it made is removed again."""
        if spec is not None:
            if command is not None or options:
                given = sorted(options) or ["command"]
                raise InvalidArgument(f"run: give either spec or {', '.join(given)}, not both")
            opts = spec
        else:
            opts = spec_options(command, **options)
        if network is not None and "network_mode" in options:
            raise InvalidArgument("run: give either network or network_mode, not both")
        net_opts = run_network(network, opts.net)
        if publish_all:  # -P (the network's, not the spec's)
            from dataclasses import replace

            net_opts = replace(net_opts, publish_all=True).validate()
        image_name = image.name if isinstance(image, Image) else self.images.get(image).name
        cid, cname = new_id_and_name(name, image_name)
        record = self.create(
            cid, image_name, opts, snapshotter=snapshotter, labels=labels, name=cname, network=net_opts
        )
        if detach:
            return self._run_detached(record.id, remove)
        up = networks.Attacher(self.network, self.namespace, record, self._joined)
        try:
            try:
                with self.tasks.run_captured(
                    cid, record.spec, self._mounts(record), fresh=True, before_create=up
                ) as capture:
                    code, stdout, stderr = capture.collect()
            finally:
                up.undo()  # the process has exited: detach it, as run_attached does
        except BaseException:
            self.delete(cid, force=True, volumes=True)
            raise
        if remove:  # `runc run` deleted its task when the process exited
            self.delete(cid, force=True, task_gone=True, volumes=True)
        return RunResult(cid, code, stdout, stderr, removed=remove)

    def _run_detached(self, cid: str, remove: bool) -> Container:
        on_exit = None
        if remove:
            if self.remove_command is None:
                self.delete(cid, force=True, volumes=True)
                raise Unimplemented("run(detach=True, remove=True) needs a client that knows its store")
            on_exit = self.remove_command(cid)
        try:
            self.start(cid, on_exit=on_exit)
        except BaseException:
            self.delete(cid, force=True, volumes=True)
            raise
        try:
            return self.get(cid)
        except NotFound:  # it exited and removed itself already
            from ctrstore.metadata.containers import Container as ContainerRecord

            return Container(self, ContainerRecord(cid), TaskStatus(EXITED))


# --------------------------------------------------------------------------------------------
# Images


class Images(ImageStore):
    """The namespace's image store whose ``get`` and ``list`` give
    :class:`~ctrstore.client.objects.ImageView`\\ s (records with ``id``, ``tags``,
    ``config`` and ``size``); everything else is the :class:`ImageStore`'s."""

    def __init__(self, store: ImageStore, content: Provider, platform: Platform | None = None) -> None:
        super().__init__(store.db, store.namespace, lease=store.lease)
        self.source = ImageSource(content, self, platform)
        self._records = ImageStore(store.db, store.namespace, lease=store.lease)

    def get(self, name: str) -> ImageView:
        """The image a docker user means by ``name`` (docker-py's ``images.get``): its name
        as stored, the name as a registry reference normalises (``busybox`` finds
        ``docker.io/library/busybox:latest``, as a pull names it), ``repo@sha256:...``, or its
        ID, a unique prefix of the target's digest (what ``images -q`` prints); see
        :meth:`ImageStore.lookup`. NotFound if there is none."""
        return ImageView.of(self._records.lookup(name), self.source)

    def list(self, *filters: str) -> builtins.list[ImageView]:  # type: ignore[override]
        # (A list of ImageView is a list of Image to every reader; the base's return type is
        # only invariant because a list can be appended to.)
        """The images (filtered as :meth:`ImageStore.list` filters them), with their tags."""
        records = super().list(*filters)
        names = self.source.names_by_target() if records else {}
        return [ImageView.of(i, self.source, names.get(i.target.digest, [i.name])) for i in records]


# --------------------------------------------------------------------------------------------
# Removal on exit


def remove_command(client: Client, cid: str) -> list[str]:
    """The command that removes container ``cid`` of ``client``'s store and namespace with its
    anonymous volumes (``ctrstore rm --force --volumes``): what the shim runs when a container
    run with ``--rm -d`` (CLI) or ``run(detach=True, remove=True)`` (API) exits."""
    argv = [sys.executable, "-m", "ctrstore"]
    if client.config.source:
        argv += ["--config", client.config.source]
    argv += ["--root", str(client.root), "--state", str(client.state), "--namespace", client.namespace]
    return [*argv, "rm", "--force", "--volumes", cid]
