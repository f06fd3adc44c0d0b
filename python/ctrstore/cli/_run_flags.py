"""What ``run`` and ``create`` flags mean, as nerdctl parses them: ``-v``, ``--mount`` and
``-e``, turned into :class:`ctrstore.oci.SpecOptions` parts. Only the command line has
this grammar; the Python API takes :class:`ctrstore.oci.SpecMount` values directly."""

from __future__ import annotations

__all__ = ["expand_env", "parse_mount", "parse_volume"]

import os
import posixpath
import re

from ctrstore.errdefs import InvalidArgument, NotFound, from_oserror
from ctrstore.oci.spec import SpecMount

_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
# Docker's volume-name rule: a -v source matching it is a named volume, not a path.
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def _clean_destination(dest: str, spec: str) -> str:
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
            "volume"
            if source and not source.startswith((".", "/")) and _VOLUME_NAME.match(source)
            else "bind"
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
    dest = _clean_destination(dest, spec)
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
    dest = _clean_destination(dest, spec)
    options = _bind_options(readonly, propagation, recursive)
    if typ == "volume":
        if source and not _VOLUME_NAME.match(source):
            raise InvalidArgument(f"mount {spec!r}: {source!r} is not a valid volume name")
        return SpecMount(dest, source, "volume", options + (("nocopy",) if nocopy else ()))
    if nocopy:
        raise InvalidArgument(f"mount {spec!r}: volume-nocopy is for type=volume")
    return SpecMount(dest, _host_source(source, spec), "bind", options)


# --------------------------------------------------------------------------------------------
# -e (the network flags are ctrstore.cli.network's)


def expand_env(items: tuple[str, ...] | list[str]) -> list[str]:
    """``-e KEY`` takes KEY from our environment (as docker does); ``-e KEY=V`` sets it."""
    out = []
    for e in items:
        if "=" in e:
            out.append(e)
        elif e in os.environ:
            out.append(f"{e}={os.environ[e]}")
    return out
