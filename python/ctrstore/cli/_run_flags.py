"""What ``run`` and ``create`` flags mean, as nerdctl parses them: ``-v``, ``--mount``, ``-e``,
and docker's daily flags (``-m``, ``--cpus``, ``--restart``, ``--tmpfs``, ``--device``,
``--ulimit``, ``--env-file``, ...: :data:`RUN_FLAG_OPTIONS`), turned into
:class:`ctrstore.oci.SpecOptions` parts and container labels (the network flags are
:mod:`ctrstore.cli.network`'s). ``-v`` and ``--mount`` are parsed in
``ctrstore.client.mounts``, which the Python API's ``run(volumes=...)`` uses too; the API
takes :class:`ctrstore.oci.SpecMount` values directly as well."""

from __future__ import annotations

__all__ = [
    "RUN_FLAG_OPTIONS",
    "apply_run_flags",
    "expand_env",
    "parse_detach_keys",
    "parse_device",
    "parse_mount",
    "parse_size",
    "parse_tmpfs",
    "parse_ulimit",
    "parse_volume",
    "read_env_file",
    "run_flag_options",
]

import os
import re
from collections.abc import Callable
from typing import Any

import click

from ctrstore.client.mounts import clean_destination, parse_mount, parse_volume
from ctrstore.errdefs import InvalidArgument, NotFound, from_oserror
from ctrstore.oci.resources import DeviceMapping, Ulimit
from ctrstore.oci.spec import SpecMount, SpecOptions
from ctrstore.runtime.restart import RestartPolicy

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


# --------------------------------------------------------------------------------------------
# docker's daily run flags: sizes, limits, --tmpfs, --device, --ulimit, --env-file, labels,
# restart policies, and the exit statuses of run (125, 126, 127)

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgtp]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str, flag: str) -> int:
    """docker's ``RAMInBytes``: ``64m``, ``1g``, ``512k``, ``1.5g``, ``100`` (bytes); units are
    binary (``k`` = 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r}: give a size such as 64m, 1g or 512k", param_hint=flag)
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_memory_swap(text: str) -> int:
    """``--memory-swap``: a size, or ``-1`` for unlimited swap."""
    return -1 if text.strip() == "-1" else parse_size(text, "--memory-swap")


def parse_tmpfs(spec: str) -> SpecMount:
    """``--tmpfs PATH[:OPTIONS]``: a tmpfs at PATH, ``noexec,nosuid,nodev`` unless OPTIONS say
    ``exec``/``suid``/``dev`` (docker's defaults), plus OPTIONS (``size=64m``, ``mode=1777``...)."""
    dest, _, opts = spec.partition(":")
    dest = clean_destination(dest, spec)
    options = ["noexec", "nosuid", "nodev"]
    for o in (x.strip() for x in opts.split(",") if x.strip()):
        if o in ("exec", "suid", "dev"):
            options = [x for x in options if x != f"no{o}"]
        elif o in ("noexec", "nosuid", "nodev"):
            if o not in options:
                options.append(o)
        else:
            options.append(o)
    return SpecMount(dest, "tmpfs", "tmpfs", tuple(options))


def parse_device(spec: str) -> DeviceMapping:
    """``--device HOST[:CONTAINER][:PERMISSIONS]`` (permissions: some of ``rwm``)."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidArgument(f"device {spec!r}: expected HOST_PATH[:CONTAINER_PATH][:PERMISSIONS]")
    host = parts[0]
    container, perms = "", "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm") and not parts[1].startswith("/"):
            perms = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, perms = parts[1], parts[2]
    return DeviceMapping(host, container, perms)


def parse_ulimit(spec: str) -> Ulimit:
    """``--ulimit NAME=SOFT[:HARD]`` (``-1``: unlimited)."""
    name, sep, values = spec.partition("=")
    if not sep:
        raise InvalidArgument(f"ulimit {spec!r}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    soft_s, _, hard_s = values.partition(":")

    def num(v: str) -> int:
        v = v.strip()
        if v == "-1":
            return (1 << 64) - 1  # RLIM_INFINITY
        if not v.isdigit():
            raise InvalidArgument(f"ulimit {spec!r}: {v!r} is not a number")
        return int(v)

    soft = num(soft_s)
    return Ulimit(name.strip().lower(), soft, num(hard_s) if hard_s else soft)


def read_env_file(path: str) -> list[str]:
    """``--env-file``: ``KEY=VALUE`` lines (``#`` comments and blank lines skipped); a bare
    ``KEY`` takes its value from our environment, as docker does."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise NotFound(f"env file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        if isinstance(e, OSError):
            raise from_oserror(e, f"reading env file {path}") from None
        raise InvalidArgument(f"env file {path} is not UTF-8 text") from None
    out: list[str] = []
    for n, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key = stripped.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"env file {path}, line {n}: variable {key!r} contains white space")
        out.append(stripped)
    return expand_env(out)


def parse_labels(items: tuple[str, ...]) -> dict[str, str]:
    """``--label KEY=VALUE`` (``KEY`` alone: an empty value)."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"label {item!r}: the key is empty")
        out[key] = value
    return out


def signal_name(text: str, flag: str = "--stop-signal") -> str:
    """A signal as docker takes it (``SIGTERM``, ``TERM``, ``15``), as its ``SIG`` name."""
    import signal

    v = text.strip().upper()
    if v.isdigit():
        try:
            return signal.Signals(int(v)).name
        except ValueError:
            raise click.BadParameter(f"{text!r}: no such signal", param_hint=flag) from None
    name = v if v.startswith("SIG") else f"SIG{v}"
    if name not in signal.Signals.__members__:
        raise click.BadParameter(f"{text!r}: no such signal", param_hint=flag)
    return name


RUN_FLAG_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--entrypoint",
        metavar="CMD",
        help="Run CMD instead of the image's ENTRYPOINT (the image's CMD is then not used; "
        "'' runs COMMAND alone).",
    ),
    click.option(
        "--env-file",
        "env_files",
        multiple=True,
        metavar="FILE",
        help="Read KEY=VALUE lines into the environment.",
    ),
    click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Label the container."),
    click.option("--privileged", is_flag=True, help="Every capability and host device, no masked paths."),
    click.option("--cap-add", multiple=True, metavar="CAP", help="Add a Linux capability (ALL for all)."),
    click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a Linux capability (ALL for all)."),
    click.option(
        "--tmpfs",
        multiple=True,
        metavar="PATH[:OPTS]",
        help="Mount a tmpfs (noexec,nosuid,nodev; size=64m...).",
    ),
    click.option(
        "--device",
        "devices",
        multiple=True,
        metavar="HOST[:CTR][:rwm]",
        help="Give the container a host device.",
    ),
    click.option(
        "--init", "use_init", is_flag=True, help="Run COMMAND under an init (tini) that reaps zombies."
    ),
    click.option(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="The image's platform (default: this machine's)."
    ),
    click.option(
        "--ulimit",
        "ulimits",
        multiple=True,
        metavar="NAME=SOFT[:HARD]",
        help="Set a ulimit (nofile=1024:2048).",
    ),
    click.option(
        "--memory", "-m", metavar="SIZE", help="Memory limit (64m, 1g); the OOM killer ends it beyond."
    ),
    click.option(
        "--memory-swap", metavar="SIZE", help="Memory plus swap (default 2 x --memory; -1: unlimited)."
    ),
    click.option("--memory-reservation", metavar="SIZE", help="Memory soft limit."),
    click.option("--cpus", type=float, metavar="N", help="CPUs it may use (1.5: one and a half)."),
    click.option("--cpu-shares", "-c", type=int, metavar="N", help="Relative CPU weight (default 1024)."),
    click.option("--cpuset-cpus", metavar="LIST", help="CPUs it may run on (0-1, 0,2)."),
    click.option("--pids-limit", type=int, metavar="N", help="Most processes at once (-1: unlimited)."),
    click.option("--shm-size", metavar="SIZE", help="Size of /dev/shm (default 64m)."),
    click.option(
        "--stop-signal", metavar="SIGNAL", help="Signal stop sends first (default: the image's, or SIGTERM)."
    ),
    click.option(
        "--restart",
        default="no",
        show_default=True,
        metavar="POLICY",
        help="no, on-failure[:N], always or unless-stopped: the container's shim starts it again.",
    ),
    click.option(
        "--pull",
        type=click.Choice(["missing", "always", "never"]),
        default="missing",
        show_default=True,
        help="Pull the image before creating the container.",
    ),
    click.option("--quiet", "-q", is_flag=True, help="Do not show the pull's progress."),
    click.option("--plain-http", is_flag=True, help="Pull over HTTP, not HTTPS."),
    click.option(
        "--hosts-dir", metavar="DIR", help="certs.d directory with <host>/hosts.toml, for the pull."
    ),
]
"""The options of :data:`RUN_FLAG_OPTIONS` go to :func:`apply_run_flags`."""

RUN_FLAG_NAMES = (
    "entrypoint",
    "env_files",
    "labels",
    "privileged",
    "cap_add",
    "cap_drop",
    "tmpfs",
    "devices",
    "use_init",
    "platform",
    "ulimits",
    "memory",
    "memory_swap",
    "memory_reservation",
    "cpus",
    "cpu_shares",
    "cpuset_cpus",
    "pids_limit",
    "shm_size",
    "stop_signal",
    "restart",
    "pull",
    "quiet",
    "plain_http",
    "hosts_dir",
)


def run_flag_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(RUN_FLAG_OPTIONS):
        f = opt(f)
    return f


def apply_run_flags(opts: SpecOptions, flags: dict[str, Any]) -> dict[str, str]:
    """Put the run flags of :data:`RUN_FLAG_OPTIONS` into ``opts``; returns the container's
    labels (``--label``, ``--restart``, ``--stop-signal``). Pull flags are left to the caller."""
    from ctrstore.labels import RESTART_POLICY, STOP_SIGNAL
    from ctrstore.oci.resources import Resources, find_init

    if flags.get("entrypoint") is not None:
        opts.entrypoint = [flags["entrypoint"]] if flags["entrypoint"] else []
    env_files = [e for f in flags.get("env_files", ()) for e in read_env_file(f)]
    opts.env = [*env_files, *opts.env]  # -e wins over --env-file, as docker
    opts.privileged = bool(flags.get("privileged"))
    opts.cap_add = list(flags.get("cap_add", ()))
    opts.cap_drop = list(flags.get("cap_drop", ()))
    opts.mounts = [*opts.mounts, *(parse_tmpfs(t) for t in flags.get("tmpfs", ()))]
    opts.devices = [parse_device(d) for d in flags.get("devices", ())]
    opts.ulimits = [parse_ulimit(u) for u in flags.get("ulimits", ())]
    if flags.get("use_init"):
        opts.init = find_init()
    if flags.get("shm_size"):
        opts.shm_size = parse_size(flags["shm_size"], "--shm-size")
    res = Resources(
        memory=parse_size(flags["memory"], "--memory") if flags.get("memory") else None,
        memory_swap=parse_memory_swap(flags["memory_swap"]) if flags.get("memory_swap") else None,
        memory_reservation=parse_size(flags["memory_reservation"], "--memory-reservation")
        if flags.get("memory_reservation")
        else None,
        cpus=flags.get("cpus"),
        cpu_shares=flags.get("cpu_shares"),
        cpuset_cpus=flags.get("cpuset_cpus"),
        pids_limit=flags.get("pids_limit"),
    )
    if res != Resources():
        res.validate()
        opts.resources = res
    labels = parse_labels(tuple(flags.get("labels", ())))
    policy = RestartPolicy.parse(flags.get("restart"))
    if policy.restarts:
        labels[RESTART_POLICY] = str(policy)
    if flags.get("stop_signal"):
        labels[STOP_SIGNAL] = signal_name(flags["stop_signal"])
    return labels


def parse_detach_keys(text: str) -> bytes:
    """docker's ``--detach-keys``: ``ctrl-p,ctrl-q`` (``ctrl-<letter>``, ``ctrl-@``,
    ``ctrl-[`` ... or a single character each)."""
    out = bytearray()
    for key in text.split(","):
        k = key.strip().lower()
        if k.startswith("ctrl-") and len(k) == 6:
            c = k[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            specials = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if c in specials:
                out.append(specials[c])
                continue
        if len(key) == 1:
            out += key.encode()
            continue
        raise InvalidArgument(f"invalid detach key {key!r}: use ctrl-<letter> or a single character")
    return bytes(out)


class DockerExitCommand(click.Command):
    """A command whose failures exit as ``docker run``'s do: ``failure_status`` (125) when
    ctrstore itself fails — a bad flag, no such image, a limit the kernel refuses — and 126 or
    127 when the container's command cannot be run or does not exist. The error is one
    ``ctrstore: <kind>: ...`` line, as every command's."""

    failure_status = 125

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            e.exit_code = self.failure_status  # type: ignore[misc]  # (a ClassVar in the stubs)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        import sys
        import traceback

        from ctrstore.cli._common import printable
        from ctrstore.cli._errors import debug_enabled, describe
        from ctrstore.client.containers import exit_status_of

        try:
            return super().invoke(ctx)
        except (
            click.exceptions.Exit,
            click.exceptions.Abort,
            SystemExit,
            KeyboardInterrupt,
            BrokenPipeError,
        ):
            raise
        except click.ClickException as e:
            e.exit_code = self.failure_status  # type: ignore[misc]  # (a ClassVar in the stubs)
            raise
        except Exception as e:
            if debug_enabled():
                traceback.print_exc()
            click.echo(f"ctrstore: {printable(describe(e))}", err=True)
            sys.exit(exit_status_of(e) or self.failure_status)


class ExecExitCommand(DockerExitCommand):
    """``exec``: 126/127 for a command that cannot be run, 1 for any other failure (docker's)."""

    failure_status = 1
