"""The snapshotter plugins: ``io.containerd.snapshotter.v1.{overlayfs,native,btrfs}``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ctrstore.errdefs import Unimplemented
from ctrstore.images.platforms import host
from ctrstore.plugin import SNAPSHOT, InitContext, Registration, SkipPlugin, register
from ctrstore.rootless import in_userns
from ctrstore.snapshots.btrfs import BtrfsSnapshotter, check_btrfs
from ctrstore.snapshots.native import NativeSnapshotter
from ctrstore.snapshots.overlay import (
    FUSE_OVERLAYFS,
    OverlaySnapshotter,
    check_overlay,
    probe_fuse,
    probe_userxattr,
)


def host_platform() -> str:
    """The platform plugins report (``plugin ls``): this machine's, as images are matched
    against it (``ctrstore.images.platforms.host``)."""
    return str(host())


@dataclass
class OverlayConfig:
    root_path: str = ""
    """Where to keep the snapshots instead of the plugin's own directory under root."""
    upperdir_label: bool = False
    """Report each snapshot's upper dir in the label containerd.io/snapshot/overlay.upperdir."""
    mount_options: list[str] = field(default_factory=list)
    """Extra overlay mount options (index=off is added when the kernel has the knob)."""
    mount_program: str = ""
    """Who mounts the overlays, as containers/storage's ``mount_program``: "" (the default)
    the kernel, or rootless where the kernel's overlay does not mount in the user namespace,
    fuse-overlayfs where it is installed and /dev/fuse is usable; "kernel" the kernel only; a
    FUSE program (``fuse-overlayfs``, or its absolute path) always. When the chosen way does
    not mount here the plugin is skipped (rootless: native is used); ``plugin ls`` says why."""


@dataclass
class DirConfig:
    root_path: str = ""


def _overlay(ic: InitContext) -> OverlaySnapshotter:
    cfg: OverlayConfig = ic.config
    root = Path(cfg.root_path or ic.root)
    rootless = in_userns()
    options = list(cfg.mount_options)
    program, note = "", ""
    if cfg.mount_program not in ("", "kernel"):
        # Asked for a FUSE program (fuse-overlayfs): used if its probe mount works.
        program = cfg.mount_program
        reason = probe_fuse(root, program)
        where = "rootless: " if rootless else ""
        if reason:
            raise SkipPlugin(
                f"{where}mount_program {program} does not mount here ({reason})"
                + ("; use native" if rootless else "")
            )
        note = f"{'rootless, ' if rootless else ''}{program}: mount_program = {program!r} in the config"
    else:
        no_overlay = ""
        try:
            check_overlay()
        except Unimplemented as e:
            no_overlay = str(e)
        if no_overlay and not rootless:
            raise SkipPlugin(no_overlay)
        if rootless:
            # Rootless (issue 13): overlay in a user namespace needs "userxattr" (kernel >= 5.11),
            # which keeps overlay's own xattrs in user.overlay.* (trusted.* cannot be set here);
            # else fuse-overlayfs (a FUSE daemon per mount, slower), else native.
            reason = no_overlay or probe_userxattr(root)
            if reason and cfg.mount_program == "kernel":
                raise SkipPlugin(
                    f"rootless: overlay with userxattr does not mount here ({reason}); use native"
                )
            if reason:
                fuse_reason = probe_fuse(root, FUSE_OVERLAYFS)
                if fuse_reason:
                    raise SkipPlugin(
                        f"rootless: overlay with userxattr does not mount here ({reason}), "
                        f"nor {FUSE_OVERLAYFS} ({fuse_reason}); use native"
                    )
                program = FUSE_OVERLAYFS
                note = f"rootless, {FUSE_OVERLAYFS}: overlay with userxattr does not mount here ({reason})"
            else:
                if "userxattr" not in options:
                    options.append("userxattr")
                note = "rootless, mounted with userxattr in the user namespace"
    ic.platforms.append(host_platform())
    sn = OverlaySnapshotter(
        root, mount_options=options, upperdir_label=cfg.upperdir_label, mount_program=program
    )
    sn.status_note = note
    return sn


def _native(ic: InitContext) -> NativeSnapshotter:
    cfg: DirConfig = ic.config
    ic.platforms.append(host_platform())
    return NativeSnapshotter(cfg.root_path or ic.root)


def _btrfs(ic: InitContext) -> BtrfsSnapshotter:
    cfg: DirConfig = ic.config
    root = Path(cfg.root_path) if cfg.root_path else ic.root
    try:
        check_btrfs(root)
    except Unimplemented as e:
        raise SkipPlugin(str(e)) from None
    ic.platforms.append(host_platform())
    return BtrfsSnapshotter(root)


register(Registration(SNAPSHOT, "overlayfs", _overlay, config=OverlayConfig()))
register(Registration(SNAPSHOT, "native", _native, config=DirConfig()))
register(Registration(SNAPSHOT, "btrfs", _btrfs, config=DirConfig()))
