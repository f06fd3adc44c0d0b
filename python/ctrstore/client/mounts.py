"""docker's grammars for a container's mounts, turned into :class:`ctrstore.oci.SpecMount`
values: ``-v [SOURCE:]CONTAINER[:OPTS]`` (:func:`parse_volume`), ``--mount
type=bind|volume,...`` (:func:`parse_mount`) and docker-py's ``volumes=`` argument
(:func:`volume_mounts`: ``{"name-or-path": {"bind": "/ctr", "mode": "ro"}}`` or a list of
``-v`` strings).

The CLI's ``run``/``create`` flags and the Python API's ``run(volumes=...)`` both come here,
so a spec means the same in both: a host path (``/srv``, ``./data``) is a bind mount, a
volume name (``pgdata``) a named volume, created on first use and filled from the image, a
lone container path an anonymous volume. A volume mount is a SpecMount of type ``volume``
whose source is the volume's name (``""`` for an anonymous one);
:class:`~ctrstore.client.containers.ContainerManager.create` makes it a bind mount of the
volume's data (``ctrstore.client.volumes``).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence

from ctrstore.errdefs import InvalidArgument, NotFound, from_oserror
from ctrstore.oci.spec import SpecMount
from ctrstore.volumes import validate_volume_name

__all__ = ["VolumesArg", "clean_destination", "parse_mount", "parse_volume", "volume_mounts"]

_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})


def _is_volume_name(source: str) -> bool:
    """Docker's rule: a ``-v`` source that is a valid volume name is a named volume, not a
    path (``./data`` and ``/data`` are paths)."""
    try:
        validate_volume_name(source)
    except InvalidArgument:
        return False
    return True


def clean_destination(dest: str, spec: str) -> str:
    """A mount's container path, made clean (``//a/./b/`` is ``/a/b``); InvalidArgument
    naming ``spec`` if it is missing, relative or ``/``."""
    if not dest:
        raise InvalidArgument(f"mount {spec!r}: no target (container path) given")
    if not dest.startswith("/"):
        raise InvalidArgument(f"mount {spec!r}: the target {dest!r} must be an absolute path")
    clean = posixpath.normpath(dest)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidArgument(f"mount {spec!r}: the target must not be '/'")
    return clean


def _host_source(source: str, spec: str) -> str:
    if not source:
        raise InvalidArgument(f"mount {spec!r}: no source (host path) given")
    path = os.path.abspath(source)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"mount {spec!r}: the host path {path} does not exist") from None
    except OSError as e:
        raise from_oserror(e, f"mount {spec!r}: host path {path}") from None
    return path


def _bind_options(readonly: bool, propagation: str, recursive: bool = True) -> tuple[str, ...]:
    return ("rbind" if recursive else "bind", "ro" if readonly else "rw", propagation)


def _volume_options(opt: str) -> bool:
    """Whether every comma-separated item of ``opt`` is a -v option (``/data:ro`` is an
    anonymous volume with options, as docker reads it; ``/a:/b`` a bind)."""
    return all(o in ("ro", "rw", "nocopy", "bind", "rbind") or o in _PROPAGATIONS for o in opt.split(","))


def parse_volume(spec: str) -> SpecMount:
    """Parse ``-v [SOURCE:]CONTAINER[:OPTS]``, as docker does:

    - ``-v /host/path:/ctr`` (or ``./rel:/ctr``): a bind mount of a host path (made absolute;
      one that does not exist is NotFound);
    - ``-v NAME:/ctr``: the named volume NAME (a SOURCE matching docker's volume-name rule),
      created on first use: a mount of type ``volume`` whose source is NAME;
    - ``-v /ctr`` (or ``-v /ctr:ro``): an anonymous volume, type ``volume`` with source "".

    ``OPTS`` is a comma-separated list of ``ro``/``rw``, ``bind``/``rbind``, one propagation
    mode (default ``rprivate``) and, for volumes, ``nocopy`` (do not copy the image's content
    into an empty volume). The result's options are ``[rbind, rw|ro, <propagation>]`` (plus
    ``nocopy``).
    """
    parts = spec.lstrip(":").split(":")
    if len(parts) > 3:
        raise InvalidArgument(
            f"volume {spec!r}: expected HOST_PATH:CONTAINER_PATH[:OPTIONS], NAME:CONTAINER_PATH[:OPTIONS] "
            "or CONTAINER_PATH[:OPTIONS]"
        )
    if len(parts) == 1 or (len(parts) == 2 and parts[0].startswith("/") and _volume_options(parts[1])):
        source, dest, opts = "", parts[0], parts[1:]
        kind = "volume"
    else:
        source, dest, opts = parts[0], parts[1], parts[2:]
        kind = (
            "volume" if source and not source.startswith((".", "/")) and _is_volume_name(source) else "bind"
        )
    nocopy = False
    readonly: bool | None = None
    propagation: str | None = None
    recursive: bool | None = None
    for opt in opts[0].split(",") if opts else []:
        if opt == "nocopy" and kind == "volume":
            nocopy = True
        elif opt in ("ro", "rw"):
            if readonly is not None:
                raise InvalidArgument(f"volume {spec!r}: duplicated read/write option {opt!r}")
            readonly = opt == "ro"
        elif opt in _PROPAGATIONS:
            if propagation is not None:
                raise InvalidArgument(f"volume {spec!r}: duplicated propagation option {opt!r}")
            propagation = opt
        elif opt in ("bind", "rbind"):
            if recursive is not None:
                raise InvalidArgument(f"volume {spec!r}: duplicated bind/rbind option {opt!r}")
            recursive = opt == "rbind"
        elif opt:
            raise InvalidArgument(
                f"volume {spec!r}: unknown option {opt!r} "
                "(supported: ro, rw, bind, rbind, [r]private, [r]shared, [r]slave, and nocopy for volumes)"
            )
    dest = clean_destination(dest, spec)
    options = _bind_options(bool(readonly), propagation or "rprivate", recursive is not False)
    if kind == "volume":
        return SpecMount(dest, source, "volume", options + (("nocopy",) if nocopy else ()))
    return SpecMount(dest, _host_source(source, spec), "bind", options)


def _parse_bool(key: str, value: str, spec: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise InvalidArgument(f"mount {spec!r}: invalid value for {key}: {value!r}")


def parse_mount(spec: str) -> SpecMount:
    """Parse ``--mount type=bind,source=HOST,target=CONTAINER[,readonly][,...]`` or
    ``--mount type=volume[,source=NAME],target=CONTAINER[,readonly][,volume-nocopy]``.

    Keys: ``type`` (``bind`` or ``volume``), ``source``/``src``, ``target``/``dst``/
    ``destination``, ``readonly``/``ro`` (bare or ``=true|false``), ``bind-propagation``
    (default ``rprivate``) and ``bind-nonrecursive`` for binds, ``volume-nocopy`` for volumes
    (a volume without a source is anonymous). Anything else is InvalidArgument; a missing host
    path NotFound.
    """
    typ: str | None = None
    source = dest = ""
    readonly = False
    propagation = "rprivate"
    recursive = True
    nocopy = False
    for fld in spec.split(","):
        key, sep, value = fld.partition("=")
        key = key.strip().lower()
        if not sep:
            if key in ("readonly", "ro"):
                readonly = True
                continue
            if key == "bind-nonrecursive":
                recursive = False
                continue
            if key == "volume-nocopy":
                nocopy = True
                continue
            raise InvalidArgument(f"mount {spec!r}: invalid field {fld!r}: must be a key=value pair")
        if key == "type":
            if value not in ("bind", "volume"):
                raise InvalidArgument(
                    f"mount {spec!r}: type {value!r} is not supported; only type=bind or volume is"
                )
            typ = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "dst", "destination"):
            dest = value
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(key, value, spec)
        elif key == "bind-propagation":
            if value not in _PROPAGATIONS:
                raise InvalidArgument(f"mount {spec!r}: invalid bind-propagation {value!r}")
            propagation = value
        elif key == "bind-nonrecursive":
            recursive = not _parse_bool(key, value, spec)
        elif key == "volume-nocopy":
            nocopy = _parse_bool(key, value, spec)
        else:
            raise InvalidArgument(f"mount {spec!r}: unknown key {key!r}")
    if typ is None:
        raise InvalidArgument(f"mount {spec!r}: type=bind is required (or type=volume)")
    dest = clean_destination(dest, spec)
    options = _bind_options(readonly, propagation, recursive)
    if typ == "volume":
        if source and not _is_volume_name(source):
            raise InvalidArgument(f"mount {spec!r}: {source!r} is not a valid volume name")
        return SpecMount(dest, source, "volume", options + (("nocopy",) if nocopy else ()))
    if nocopy:
        raise InvalidArgument(f"mount {spec!r}: volume-nocopy is for type=volume")
    return SpecMount(dest, _host_source(source, spec), "bind", options)


VolumesArg = Mapping[str, Mapping[str, str]] | Sequence[str]
"""docker-py's ``volumes``: ``{SOURCE: {"bind": CONTAINER, "mode": "ro"|"rw"}}`` or
``["SOURCE:CONTAINER[:OPTS]", "CONTAINER", ...]``."""


def volume_mounts(volumes: VolumesArg) -> list[SpecMount]:
    """docker-py's ``volumes`` argument as mounts. A mapping's entry ``SOURCE: {"bind":
    CONTAINER, "mode": MODE}`` is the ``-v SOURCE:CONTAINER:MODE`` it stands for (``mode``
    defaults to ``rw``; it may hold any ``-v`` options, ``"ro,nocopy"``), as docker-py
    turns it into one; a list holds ``-v`` strings. Each goes through :func:`parse_volume`, as
    the CLI's ``-v`` does."""
    if isinstance(volumes, str):
        raise InvalidArgument(f"volumes {volumes!r}: give a mapping or a list of SOURCE:CONTAINER[:OPTS]")
    if not isinstance(volumes, Mapping):
        return [parse_volume(str(v)) for v in volumes]
    out = []
    for source, bind in volumes.items():
        if not isinstance(bind, Mapping) or not isinstance(bind.get("bind"), str):
            raise InvalidArgument(f"volume {source!r}: give {{'bind': CONTAINER_PATH, 'mode': 'ro'|'rw'}}")
        if not source:
            raise InvalidArgument(f"volume {source!r}: no host path or volume name given")
        out.append(parse_volume(f"{source}:{bind['bind']}:{bind.get('mode') or 'rw'}"))
    return out
