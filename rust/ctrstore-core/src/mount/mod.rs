//! Performing and undoing mounts, the way containerd's `core/mount` does on Linux.
//!
//! A [`Mount`] is containerd's `{type, source, options}` triple, as snapshotters hand them out.
//! [`mount`] turns the fstab-style options into `MS_*` flags plus a data string and calls
//! mount(2):
//!
//! - `bind`/`rbind` (`MS_BIND`, `MS_BIND|MS_REC`) with `ro` need a second call,
//!   `MS_REMOUNT|MS_BIND|MS_RDONLY`: the kernel ignores `MS_RDONLY` when creating a bind mount.
//! - Propagation options (`private`, `rshared`, ...) are applied in a call of their own.
//! - An overlay whose options reach `pagesize - 512` bytes (images with many layers) is mounted
//!   from a forked child whose working directory is the lowerdirs' longest common parent, with
//!   relative lowerdirs (containerd's `compactLowerdirOption`): the kernel copies at most one
//!   page of mount data.
//!
//! [`unmount`], [`unmount_all`] and [`unmount_recursive`] mirror containerd's `Unmount`,
//! `UnmountAll` and `UnmountRecursive` (EBUSY is retried, "not a mount point" is success), and
//! [`mountinfo()`] parses `/proc/self/mountinfo`.

mod linux;
mod mountinfo;

use std::borrow::Cow;

pub use linux::{mount, unmount, unmount_all, unmount_recursive};
pub use mountinfo::{is_mountpoint, mountinfo, parse_mountinfo, MountInfo};

use crate::error::{invalid_argument, Error, ErrorKind, Result};

/// Lazy unmount: detach now, clean up when the mount is no longer busy (`umount -l`).
pub const MNT_DETACH: i32 = libc::MNT_DETACH;
/// Force an unmount (meaningful for network file systems only).
pub const MNT_FORCE: i32 = libc::MNT_FORCE;

/// One mount, as containerd describes it (`type`, `source`, `options`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Mount {
    /// The file system type (containerd's `type`): `bind`, `overlay`, `tmpfs`, ...
    pub kind: String,
    /// What to mount: a path for binds, a label such as `overlay` otherwise.
    pub source: String,
    /// fstab-style options; flags become `MS_*` bits, the rest the data string.
    pub options: Vec<String>,
}

impl Mount {
    pub fn new(
        kind: impl Into<String>,
        source: impl Into<String>,
        options: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.into_iter().map(Into::into).collect(),
        }
    }

    /// Mount onto `target` (see [`mount`]).
    pub fn mount(&self, target: &std::path::Path) -> Result<()> {
        mount(self, target)
    }
}

/// Options split into what mount(2) takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the mount call (no propagation bits).
    pub flags: libc::c_ulong,
    /// Propagation change (`MS_PRIVATE`, `MS_SHARED`, `MS_SLAVE`, `MS_UNBINDABLE`, maybe with
    /// `MS_REC`), applied by a separate call; 0 for none.
    pub propagation: libc::c_ulong,
    /// File-system specific options, joined with `,` into the data string.
    pub data: Vec<String>,
}

impl MountOptions {
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }
}

/// How an option changes the flags: set or clear these bits.
enum Flag {
    Set(libc::c_ulong),
    Clear(libc::c_ulong),
    Propagation(libc::c_ulong),
    Ignore,
}

fn flag_of(option: &str) -> Option<Flag> {
    use Flag::*;
    Some(match option {
        "async" => Clear(libc::MS_SYNCHRONOUS),
        "atime" => Clear(libc::MS_NOATIME),
        "bind" => Set(libc::MS_BIND),
        "defaults" => Ignore,
        "dev" => Clear(libc::MS_NODEV),
        "diratime" => Clear(libc::MS_NODIRATIME),
        "dirsync" => Set(libc::MS_DIRSYNC),
        "exec" => Clear(libc::MS_NOEXEC),
        "mand" => Set(libc::MS_MANDLOCK),
        "noatime" => Set(libc::MS_NOATIME),
        "nodev" => Set(libc::MS_NODEV),
        "nodiratime" => Set(libc::MS_NODIRATIME),
        "noexec" => Set(libc::MS_NOEXEC),
        "nomand" => Clear(libc::MS_MANDLOCK),
        "norelatime" => Clear(libc::MS_RELATIME),
        "nostrictatime" => Clear(libc::MS_STRICTATIME),
        "nosuid" => Set(libc::MS_NOSUID),
        "rbind" => Set(libc::MS_BIND | libc::MS_REC),
        "relatime" => Set(libc::MS_RELATIME),
        "remount" => Set(libc::MS_REMOUNT),
        "ro" => Set(libc::MS_RDONLY),
        "rw" => Clear(libc::MS_RDONLY),
        "strictatime" => Set(libc::MS_STRICTATIME),
        "suid" => Clear(libc::MS_NOSUID),
        "sync" => Set(libc::MS_SYNCHRONOUS),
        "private" => Propagation(libc::MS_PRIVATE),
        "rprivate" => Propagation(libc::MS_PRIVATE | libc::MS_REC),
        "shared" => Propagation(libc::MS_SHARED),
        "rshared" => Propagation(libc::MS_SHARED | libc::MS_REC),
        "slave" => Propagation(libc::MS_SLAVE),
        "rslave" => Propagation(libc::MS_SLAVE | libc::MS_REC),
        "unbindable" => Propagation(libc::MS_UNBINDABLE),
        "runbindable" => Propagation(libc::MS_UNBINDABLE | libc::MS_REC),
        _ => return None,
    })
}

/// Split fstab-style options into `MS_*` flags, a propagation change and the data string.
///
/// Later options win (`ro,rw` is read-write). Options that need machinery ctrstore does not
/// have (`loop`, `uidmap=`/`gidmap=`) are NotImplemented; containerd's internal
/// `X-containerd.*` options are InvalidArgument, as in containerd.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> Result<MountOptions> {
    let mut out = MountOptions::default();
    for o in options {
        let o = o.as_ref();
        if o.starts_with("X-containerd.") {
            return Err(invalid_argument(format!(
                "internal mount option {o:?} was not consumed by the mount manager"
            )));
        }
        match flag_of(o) {
            Some(Flag::Set(f)) => out.flags |= f,
            Some(Flag::Clear(f)) => out.flags &= !f,
            Some(Flag::Propagation(f)) => out.propagation = f,
            Some(Flag::Ignore) => {}
            None if o == "loop" || o.starts_with("uidmap=") || o.starts_with("gidmap=") => {
                return Err(Error::new(
                    ErrorKind::NotImplemented,
                    format!("mount option {o:?} (loop devices, idmapped mounts) is not supported"),
                ));
            }
            None => out.data.push(o.to_owned()),
        }
    }
    Ok(out)
}

/// The byte size of the options, as containerd measures it for the one-page check.
pub fn options_size<S: AsRef<str>>(options: &[S]) -> usize {
    options.iter().map(|o| o.as_ref().len()).sum()
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Whether an overlay mount with these options needs [`compact_lowerdir`].
pub fn needs_compaction<S: AsRef<str>>(kind: &str, options: &[S]) -> bool {
    kind == "overlay" && options_size(options) >= page_size() - 512
}

/// The overlay `lowerdir=` option's index and directories, if there is one.
fn find_lowerdirs<S: AsRef<str>>(options: &[S]) -> Option<(usize, Vec<&str>)> {
    options.iter().enumerate().find_map(|(i, o)| {
        o.as_ref()
            .strip_prefix("lowerdir=")
            .map(|dirs| (i, dirs.split(':').collect()))
    })
}

/// Longest common byte prefix, cut back to a char boundary.
fn longest_common_prefix<'a>(strs: &[&'a str]) -> &'a str {
    let Some((&first, rest)) = strs.split_first() else {
        return "";
    };
    let (mut min, mut max) = (first, first);
    for &s in rest {
        min = min.min(s);
        max = max.max(s);
    }
    let n = min
        .bytes()
        .zip(max.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let mut n = n.min(min.len());
    while !min.is_char_boundary(n) {
        n -= 1;
    }
    &min[..n]
}

/// containerd's `compactLowerdirOption`: the lowerdirs' common parent directory and the options
/// with `lowerdir=` rewritten relative to it (and moved to the end).
///
/// `None` when there is nothing to gain: no `lowerdir=` or only one, no common parent other
/// than `/`, or a lowerdir that is the common parent itself. As in containerd, the common
/// parent is taken one level above the common prefix, so that `snapshots/1/fs` and
/// `snapshots/12/fs` share `snapshots/`, not `snapshots/1`.
pub fn compact_lowerdir<S: AsRef<str>>(options: &[S]) -> Option<(String, Vec<String>)> {
    let (idx, dirs) = find_lowerdirs(options)?;
    if dirs.len() < 2 {
        return None;
    }
    let prefix = longest_common_prefix(&dirs);
    // path.Dir: everything before the last '/', without trailing slashes.
    let cut = prefix.rfind('/')?;
    let common = prefix[..cut].trim_end_matches('/');
    if common.is_empty() || common == "." {
        return None;
    }
    let common = format!("{common}/");
    let mut rel = Vec::with_capacity(dirs.len());
    for d in &dirs {
        match d.strip_prefix(common.as_str()) {
            Some(r) if !r.is_empty() => rel.push(r),
            _ => return None,
        }
    }
    let mut out: Vec<String> = options
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != idx)
        .map(|(_, o)| o.as_ref().to_owned())
        .collect();
    out.push(format!("lowerdir={}", rel.join(":")));
    Some((common, out))
}

fn is_volatile(option: &str) -> bool {
    option == "volatile" || option == "fsync=volatile"
}

/// `m` without overlay's `volatile` (or `fsync=volatile`), as containerd mounts temporary
/// mounts: a volatile overlay cannot be mounted again with the same upper/work dirs.
pub fn without_volatile(m: &Mount) -> Cow<'_, Mount> {
    if m.kind == "overlay" && m.options.iter().any(|o| is_volatile(o)) {
        let mut m = m.clone();
        m.options.retain(|o| !is_volatile(o));
        Cow::Owned(m)
    } else {
        Cow::Borrowed(m)
    }
}

#[cfg(test)]
mod tests;
