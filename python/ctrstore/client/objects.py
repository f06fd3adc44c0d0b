"""The Python API's objects, shaped after docker-py's: a :class:`Container` to act on, an
:class:`ImageView` of an image with its config, size and tags, and the results of running
something (:class:`RunResult`, :class:`ExecResult`). They are what ``client.containers``
and ``client.images`` (``ctrstore.client.api``) hand out; docs/python-api.md shows them in
use. Tidying up (``client.prune()``, ``client.df()``) gives ``ctrstore.client.housekeeping``'s
results, the CLI's.

A :class:`Container` is a handle: its attributes (status, exit code, ...) are read when it is
got and by :meth:`Container.reload` (after ``start``, ``stop``, ``kill`` and ``wait`` it
reloads itself). Statuses are docker's words: ``created``, ``running``, ``paused``,
``exited``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, overload

from ctrstore.client.containers import ContainerStatus, container_status
from ctrstore.errdefs import FailedPrecondition, InvalidArgument
from ctrstore.images import Resolved, read_json, resolve
from ctrstore.labels import CONTAINER_NAME
from ctrstore.metadata.images import Image, ImageStore

if TYPE_CHECKING:
    from ctrstore.client.api import Containers
    from ctrstore.content import Provider
    from ctrstore.images.platforms import Platform
    from ctrstore.metadata.containers import Container as ContainerRecord
    from ctrstore.runtime.capture import Capture
    from ctrstore.runtime.tasks import TaskStatus

__all__ = [
    "Container",
    "ContainerStatus",
    "ExecResult",
    "ImageView",
    "RunResult",
    "container_status",
    "env_list",
]

# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ExecResult:
    """What ``container.exec(cmd)`` gives: the command's exit status and its output, stdout
    and stderr kept apart (docker-py's ``ExecResult`` has ``exit_code`` and ``output``)."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> bytes:
        """stdout, then stderr (how the two interleaved is not kept)."""
        return self.stdout + self.stderr


@dataclass(frozen=True)
class RunResult:
    """What ``client.run(image, cmd)`` gives (without ``detach``): the container's id, its
    exit status and what it wrote to stdout and stderr. The container is gone if it was run
    with ``remove=True``; else ``client.containers.get(result.id)`` finds it (exited)."""

    id: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    removed: bool = False


# --------------------------------------------------------------------------------------------
# Images


class ImageSource:
    """Where an :class:`ImageView` reads what it shows: the content store, the image store
    (for its other names) and the platform to resolve an index for."""

    def __init__(self, content: Provider, images: ImageStore, platform: Platform | None = None) -> None:
        self.content = content
        self.images = images
        self.platform = platform

    def names_by_target(self) -> dict[str, list[str]]:
        """Every image name of the namespace, by the digest of the target it names."""
        out: dict[str, list[str]] = {}
        for img in ImageStore.list(self.images):  # the records (``Images.list`` makes views)
            out.setdefault(img.target.digest, []).append(img.name)
        return out


@dataclass(frozen=True, eq=False)
class ImageView(Image):
    """An image record (``name``, ``target``, ``labels``, ``created_at``, ``updated_at``)
    with what docker-py's ``Image`` shows: :attr:`id` (the config's digest), :attr:`tags`,
    :attr:`config` and :attr:`size`. These are read from the content store on first use
    (so a missing blob is NotFound then, not when the view is made) and kept.

    It is an :class:`~ctrstore.metadata.images.Image`, and equal to the record it shows: its
    dataclass fields are the record's (``dataclasses.asdict`` gives the record); where it reads
    from is kept beside them (a ``dataclasses.replace`` of a view is a view that cannot read)."""

    @classmethod
    def of(cls, image: Image, source: ImageSource, tags: Sequence[str] | None = None) -> ImageView:
        """A view of ``image`` reading from ``source``; ``tags``: its names, if known."""
        view = cls(image.name, image.target, image.labels, image.created_at, image.updated_at)
        object.__setattr__(view, "_view_source", source)
        object.__setattr__(view, "_view_tags", None if tags is None else sorted(tags))
        return view

    def _source(self) -> ImageSource:
        source: ImageSource | None = getattr(self, "_view_source", None)
        if source is None:
            raise FailedPrecondition(f"image {self.name!r}: this view has no store to read from")
        return source

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        return (self.name, self.target, self.labels, self.created_at, self.updated_at) == (
            other.name,
            other.target,
            other.labels,
            other.created_at,
            other.updated_at,
        )

    @property
    def digest(self) -> str:
        """The target's digest (an index's or a manifest's): docker's ``RepoDigests`` part."""
        return self.target.digest

    @cached_property
    def resolved(self) -> Resolved:
        """The manifest for the client's platform, its config and layers."""
        src = self._source()
        return resolve(src.content, self.target, src.platform)

    @property
    def id(self) -> str:
        """The config's digest, as docker's image id."""
        return self.resolved.config.digest

    @cached_property
    def config(self) -> dict[str, Any]:
        """The image config (``architecture``, ``os``, ``config`` with ``Env``, ``Cmd``...,
        ``rootfs``, ``history``), as stored."""
        return read_json(self._source().content, self.resolved.config)

    @property
    def size(self) -> int:
        """Bytes of its config and layers (compressed, as stored; what ``images ls`` shows)."""
        r = self.resolved
        return r.config.size + sum(layer.size for layer in r.layers)

    def tag(self, name: str, *, force: bool = False) -> ImageView:
        """Give the image another name (docker-py's ``image.tag``): a new record naming the
        same target, with the same labels. AlreadyExists if the name is taken, unless
        ``force`` (which points that name here). This view's :attr:`tags` stay as they were
        read; get the image again for the new list."""
        src = self._source()
        new = Image(name, self.target, dict(self.labels))
        return ImageView.of(src.images.upsert(new) if force else src.images.create(new), src)

    @cached_property
    def tags(self) -> list[str]:
        """Every name of the namespace that names the same target, this one included, sorted."""
        known: list[str] | None = getattr(self, "_view_tags", None)
        if known is not None:
            return list(known)
        return sorted(self._source().names_by_target().get(self.target.digest, [self.name]))


# --------------------------------------------------------------------------------------------
# Containers


def env_list(environment: Mapping[str, str] | Sequence[str] | None) -> list[str]:
    """``{"K": "V"}`` or ``["K=V"]`` as the spec's ``K=V`` list (a bare ``K`` in a list
    deletes K, as in :class:`~ctrstore.oci.SpecOptions`)."""
    if environment is None:
        return []
    if isinstance(environment, str):
        raise InvalidArgument(f"environment {environment!r}: give a mapping or a list of K=V strings")
    if isinstance(environment, Mapping):
        out = []
        for k, v in environment.items():
            if not isinstance(k, str) or not k or "=" in k:
                raise InvalidArgument(f"environment: invalid variable name {k!r}")
            out.append(f"{k}={v}")
        return out
    return [str(e) for e in environment]


def _signal_name(sig: str | int) -> str:
    if isinstance(sig, int):
        return str(sig)
    name = sig.upper()
    if not (name.startswith("SIG") or name.isdigit()):
        name = f"SIG{name}"
    return name


def _argv(cmd: str | Sequence[str], what: str) -> list[str]:
    import shlex

    args = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
    if not args:
        raise InvalidArgument(f"{what}: no command given")
    return args


class Container:
    """A container of the client's namespace (docker-py's ``Container``). Its attributes are
    what they were when it was got or last reloaded; the methods act on the container and,
    where the status changes, reload it."""

    def __init__(self, manager: Containers, record: ContainerRecord, task: TaskStatus) -> None:
        self._manager = manager
        self._set(record, task)

    def _set(self, record: ContainerRecord, task: TaskStatus) -> None:
        self.record = record
        """The meta.db record (image, snapshotter, snapshot key, runtime, spec, labels)."""
        self.task = task
        """The task's status as the runtime reports it."""

    def __repr__(self) -> str:
        return f"<Container {self.id[:12]} {self.name!r} {self.status}>"

    # -- attributes ------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        """Its name (nerdctl's ``nerdctl/name`` label), else its id."""
        return self.record.labels.get(CONTAINER_NAME, self.record.id)

    @property
    def image(self) -> str:
        """The name of the image it was made from."""
        return self.record.image

    @property
    def labels(self) -> Mapping[str, str]:
        return self.record.labels

    @property
    def created_at(self) -> datetime | None:
        return self.record.created_at

    @property
    def spec(self) -> Mapping[str, Any]:
        """The OCI runtime spec it runs with (``config.json``)."""
        return self.record.spec

    @property
    def status(self) -> ContainerStatus:
        """``created``, ``running``, ``paused`` or ``exited`` (docker's words)."""
        return container_status(self.task)

    @property
    def exit_code(self) -> int | None:
        """How its process ended, once it has (255: its shim was lost, e.g. at a reboot)."""
        return self.task.exit_status

    @property
    def pid(self) -> int:
        """Its init process's pid while it runs, else 0."""
        return self.task.pid

    @property
    def finished_at(self) -> str | None:
        """When its process ended (RFC 3339), once it has."""
        return self.task.exited_at

    def reload(self) -> None:
        """Read the record and the task's status again."""
        self._set(self._manager.store.get(self.id), self._manager.status(self.id))

    # -- acting on it ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start its process detached (under a shim); returns once it runs."""
        self._manager.start(self.id)
        self.reload()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit status if it was running."""
        status = self._manager.stop(self.id, timeout)
        self.reload()
        return status

    def kill(self, signal: str | int = "SIGKILL") -> None:
        """Send ``signal`` (a name, with or without ``SIG``, or a number) to its process."""
        self._manager.kill(self.id, _signal_name(signal))
        self.reload()

    def wait(self, timeout: float | None = None) -> int:
        """Block until its process exits (Unavailable after ``timeout`` seconds); its exit
        status."""
        status = self._manager.wait(self.id, timeout)
        self.reload()
        return status

    def remove(self, *, force: bool = False) -> None:
        """Remove it: task (killed first with ``force``; else it must not run), rootfs,
        bundle, snapshot and record."""
        self._manager.delete(self.id, force=force)

    @overload
    def exec(
        self,
        cmd: str | Sequence[str],
        *,
        stream: Literal[False] = False,
        environment: Mapping[str, str] | Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> ExecResult: ...

    @overload
    def exec(
        self,
        cmd: str | Sequence[str],
        *,
        stream: Literal[True],
        environment: Mapping[str, str] | Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> Capture: ...

    def exec(
        self,
        cmd: str | Sequence[str],
        *,
        stream: bool = False,
        environment: Mapping[str, str] | Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> ExecResult | Capture:
        """Run ``cmd`` (a list, or a string split as a shell would) in the running container
        and capture its stdout and stderr apart: an :class:`ExecResult` once it has ended, or
        with ``stream=True`` a :class:`~ctrstore.runtime.capture.Capture` to iterate for
        ``(stream, bytes)`` chunks as they come (its ``exit_code`` is set at the end).

        ``environment`` adds variables (``{"K": "V"}`` or ``["K=V"]``), ``workdir`` is an
        absolute path, ``user`` a name or id (``[:group]``) of the container's
        ``/etc/passwd``. FailedPrecondition if it is not running; a command the runtime cannot
        start (not found) is raised as the runtime's error."""
        capture = self._manager.tasks.exec_captured(
            self.id,
            _argv(cmd, f"exec in container {self.id}"),
            env=env_list(environment),
            cwd=workdir,
            user=user,
        )
        if stream:
            return capture
        with capture:
            return ExecResult(*capture.collect())

    @overload
    def logs(self, *, stream: Literal[False] = False, follow: bool = False) -> bytes: ...

    @overload
    def logs(self, *, stream: Literal[True], follow: bool = False) -> Iterator[bytes]: ...

    def logs(self, *, stream: bool = False, follow: bool = False) -> bytes | Iterator[bytes]:
        """What its detached process wrote (stdout and stderr, in order): all of it as bytes,
        or with ``stream=True`` an iterator of chunks; ``follow`` keeps reading until the
        process has ended. (A run that was not detached has its output in its
        :class:`RunResult` instead.)"""
        chunks = self._manager.logs(self.id, follow=follow)
        return chunks if stream else b"".join(chunks)
