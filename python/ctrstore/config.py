"""``config.toml``, as containerd's: ``root``, ``state``, ``disabled_plugins`` and one
``[plugins."<type>.<id>"]`` table per plugin.

Where values come from, later winning: built-in defaults, the config file (``--config``, else
``$CTRSTORE_CONFIG``, else ``/etc/ctrstore/config.toml`` if it exists), the environment
(``CTRSTORE_ROOT``, ``CTRSTORE_STATE``), then command-line flags.

For an ordinary user (not root) the built-in defaults follow XDG, as podman's: root
``$XDG_DATA_HOME/ctrstore`` (``~/.local/share/ctrstore``), state ``$XDG_RUNTIME_DIR/ctrstore``
(or a private ``/tmp/ctrstore-<uid>`` when it is unset) and the config file
``$XDG_CONFIG_HOME/ctrstore/config.toml`` (``~/.config/ctrstore``). Root keeps
``/var/lib/ctrstore``, ``/run/ctrstore`` and ``/etc/ctrstore``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrstore.errdefs import InvalidArgument
from ctrstore.plugin import Registry, decode_config, registry

__all__ = ["DEFAULT_CONFIG_PATH", "Config", "load", "rootless_defaults", "user_defaults"]

DEFAULT_CONFIG_PATH = Path("/etc/ctrstore/config.toml")
DEFAULT_ROOT = "/var/lib/ctrstore"
DEFAULT_STATE = "/run/ctrstore"
VERSION = 1
DEFAULT_SNAPSHOTTER = "overlayfs"
DEFAULT_RUNTIME = "runc"
DEFAULT_MAX_LAYERS = 500
"""The most layers an image may have (pull, import, unpack): overlayfs stacks at most 500."""


@dataclass(frozen=True)
class UserDefaults:
    """Where an ordinary user's store lives by default (XDG, as podman)."""

    root: str
    state: str
    config_dir: str

    @property
    def config_path(self) -> Path:
        return Path(self.config_dir) / "config.toml"


def rootless_defaults() -> bool:
    """Whether the built-in defaults are a user's (XDG) rather than root's: the real user is
    not root. Inside ctrstore's user namespace the uid is 0 but the defaults stay the user's,
    so the re-entered command finds the same store (``_CTRSTORE_ROOTLESS_UID`` says whose)."""
    return os.getuid() != 0 or "_CTRSTORE_ROOTLESS_UID" in os.environ


def user_defaults(env: Mapping[str, str] | None = None) -> UserDefaults:
    """The XDG defaults for the user running this (``HOME``, ``XDG_*`` from ``env``)."""
    env = os.environ if env is None else env
    uid = env.get("_CTRSTORE_ROOTLESS_UID") or str(os.getuid())
    home = env.get("HOME") or os.path.expanduser("~")
    data = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    conf = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    runtime = env.get("XDG_RUNTIME_DIR")
    state = os.path.join(runtime, "ctrstore") if runtime else f"/tmp/ctrstore-{uid}"
    return UserDefaults(
        root=os.path.join(data, "ctrstore"), state=state, config_dir=os.path.join(conf, "ctrstore")
    )


def private_dir(path: str) -> None:
    """Make ``path`` (a user's state dir under /tmp) a 0700 directory that this user owns, or
    refuse: another user could have made it first to watch or change our state."""
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = p.lstat()
    except OSError as e:
        raise InvalidArgument(f"state directory {p} cannot be made: {e.strerror}") from None
    import stat as _stat

    if not _stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise InvalidArgument(
            f"state directory {p} is not a private directory of this user (uid {os.getuid()}, mode 0700): "
            "remove it or set XDG_RUNTIME_DIR or --state"
        )


@dataclass
class Config:
    version: int = VERSION
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    disabled_plugins: list[str] = field(default_factory=list)
    snapshotter: str = DEFAULT_SNAPSHOTTER
    """The snapshotter unpack, run and ``snapshots`` commands use unless told otherwise."""
    runtime: str = DEFAULT_RUNTIME
    """The OCI runtime binary that runs containers (runc or crun), looked up on PATH."""
    max_layers: int = DEFAULT_MAX_LAYERS
    """The most layers an image may have; pull, import and unpack refuse images with more."""
    external_plugins: bool = False
    """Load plugins advertised by installed packages under the ``ctrstore.plugins`` entry points."""
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None
    """The file this config was read from, if any (not written back)."""

    def to_toml(self, reg: Registry | None = None, *, effective: bool = True) -> str:
        """The config as TOML. With ``effective``, every registered plugin's table is filled
        in with its defaults, so the output shows every knob."""
        doc: dict[str, Any] = {
            "version": self.version,
            "root": self.root,
            "state": self.state,
            "disabled_plugins": list(self.disabled_plugins),
            "snapshotter": self.snapshotter,
            "runtime": self.runtime,
            "max_layers": self.max_layers,
            "external_plugins": self.external_plugins,
        }
        tables: dict[str, dict[str, Any]] = {}
        for r in reg if reg is not None else registry:
            if not effective or r.config is None:
                continue
            merged = decode_config(r.config, self.plugins.get(r.uri), r.uri)
            tables[r.uri] = dataclasses.asdict(merged)  # type: ignore[call-overload]
        for uri, table in self.plugins.items():
            tables.setdefault(uri, dict(table))
        if tables:
            doc["plugins"] = dict(sorted(tables.items()))
        import tomli_w  # only ``ctrstore config`` writes TOML

        return tomli_w.dumps(doc)


_TOP_KEYS = {
    "version",
    "root",
    "state",
    "disabled_plugins",
    "snapshotter",
    "runtime",
    "max_layers",
    "external_plugins",
    "plugins",
}


def parse(text: str, source: str = "<string>") -> Config:
    import tomllib  # here: most commands run without a config file

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"config {source}: not valid TOML: {e}") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise InvalidArgument(f"config {source}: unknown key(s) {', '.join(unknown)}")
    cfg = Config(source=source)
    version = raw.get("version", VERSION)
    if version != VERSION:
        raise InvalidArgument(f"config {source}: version {version!r} is not supported (expected {VERSION})")
    for key in ("root", "state", "snapshotter", "runtime"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, str) or not value:
                raise InvalidArgument(f"config {source}: {key} must be a non-empty string")
            setattr(cfg, key, value)
    max_layers = raw.get("max_layers", DEFAULT_MAX_LAYERS)
    if isinstance(max_layers, bool) or not isinstance(max_layers, int) or not 1 <= max_layers <= 1_000_000:
        raise InvalidArgument(f"config {source}: max_layers must be an integer from 1 to 1000000")
    cfg.max_layers = max_layers
    external = raw.get("external_plugins", False)
    if not isinstance(external, bool):
        raise InvalidArgument(f"config {source}: external_plugins must be true or false")
    cfg.external_plugins = external
    disabled = raw.get("disabled_plugins", [])
    if not isinstance(disabled, list) or not all(isinstance(x, str) for x in disabled):
        raise InvalidArgument(f"config {source}: disabled_plugins must be a list of plugin names")
    cfg.disabled_plugins = disabled
    plugins = raw.get("plugins", {})
    if not isinstance(plugins, dict) or not all(isinstance(v, dict) for v in plugins.values()):
        raise InvalidArgument(f'config {source}: plugins must be tables [plugins."<type>.<id>"]')
    cfg.plugins = plugins
    return cfg


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    root: str | None = None,
    state: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config (see the module docstring for precedence)."""
    env = os.environ if env is None else env
    chosen = path if path is not None else env.get("CTRSTORE_CONFIG")
    if chosen is not None:
        p = Path(chosen)
        try:
            cfg = parse(p.read_text(), str(p))
        except FileNotFoundError:
            raise InvalidArgument(f"config file {p} does not exist") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"config file {p} cannot be read: {e}") from None
    elif rootless_defaults():
        user = user_defaults(env)
        cfg = (
            parse(user.config_path.read_text(), str(user.config_path))
            if user.config_path.is_file()
            else Config()
        )
        # A user's file may name root/state; what it leaves out is the user's default.
        if cfg.root == DEFAULT_ROOT:
            cfg.root = user.root
        if cfg.state == DEFAULT_STATE:
            cfg.state = user.state
    elif DEFAULT_CONFIG_PATH.is_file():
        cfg = parse(DEFAULT_CONFIG_PATH.read_text(), str(DEFAULT_CONFIG_PATH))
    else:
        cfg = Config()
    # An empty value is an error, not "use the default": a script whose $DIR came out empty
    # must not silently work on /var/lib/ctrstore (or, as a relative path, the current dir).
    for value, name, key in (
        (env.get("CTRSTORE_ROOT"), "CTRSTORE_ROOT", "root"),
        (env.get("CTRSTORE_STATE"), "CTRSTORE_STATE", "state"),
        (root, "root (--root)", "root"),
        (state, "state (--state)", "state"),
    ):
        if value is not None:
            setattr(cfg, key, check_dir_option(name, value))
    return cfg


def check_dir_option(name: str, value: str) -> str:
    """``value`` of a root/state option or variable, which must not be empty or blank."""
    if not value.strip():
        raise InvalidArgument(f"{name} is empty: give a directory (or leave it unset for the default)")
    return value
