//! The mount(2)/umount2(2) calls behind [`super::mount`] and the unmount functions.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::mountinfo::mountinfo;
use super::{compact_lowerdir, needs_compaction, page_size, parse_options, Mount};
use crate::error::{invalid_argument, Error, ErrorKind, Result};

const PROPAGATION: libc::c_ulong =
    libc::MS_SHARED | libc::MS_PRIVATE | libc::MS_SLAVE | libc::MS_UNBINDABLE;

/// How often and how long to wait when an unmount says EBUSY (containerd: 50 x 50ms).
const BUSY_RETRIES: u32 = 50;
const BUSY_WAIT: Duration = Duration::from_millis(50);

fn cstring(what: &str, s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| invalid_argument(format!("{what} contains a NUL byte")))
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// One mount(2) call.
fn sys_mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

const STEP_DONE: i32 = 0;
const STEP_CHDIR: i32 = 1;
const STEP_MOUNT: i32 = 2;

/// Which step of the forked mount failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Chdir,
    Mount,
}

/// mount(2) with `dir` as the working directory, in a forked child, so that relative paths in
/// the data string resolve against it without touching this (multi-threaded) process's cwd.
///
/// Between fork and `_exit` the child makes only async-signal-safe calls (chdir, mount, write,
/// _exit) on memory prepared before the fork. It reports `(step, errno)` through a pipe, so
/// the outcome is known even if SIGCHLD is ignored and the wait status is lost.
fn mount_in_dir(
    dir: &CStr,
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<std::result::Result<(), (Step, io::Error)>> {
    let (src, tgt, fst, dat) = (
        opt_ptr(source),
        target.as_ptr(),
        opt_ptr(fstype),
        opt_ptr(data),
    );
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io(
            io::Error::last_os_error(),
            "pipe for the mount child",
        ));
    }
    let [rd, wr] = fds;
    // SAFETY: the child only calls async-signal-safe functions and leaves through _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY (child): plain syscalls on pointers prepared before the fork; no allocation,
        // no locks, no destructors.
        unsafe {
            let step: i32 = if libc::chdir(dir.as_ptr()) != 0 {
                STEP_CHDIR
            } else if libc::mount(src, tgt, fst, flags, dat.cast()) != 0 {
                STEP_MOUNT
            } else {
                STEP_DONE
            };
            let errno = if step == STEP_DONE {
                0
            } else {
                *libc::__errno_location()
            };
            let report = [step, errno];
            let n = libc::write(wr, report.as_ptr().cast(), std::mem::size_of_val(&report));
            libc::_exit(if n == 8 { 0 } else { 1 })
        }
    }
    let fork_err = (pid < 0).then(io::Error::last_os_error);
    // SAFETY: wr is ours and no longer needed in the parent.
    unsafe { libc::close(wr) };
    if let Some(e) = fork_err {
        // SAFETY: rd is ours.
        unsafe { libc::close(rd) };
        return Err(Error::io(e, "fork for the mount child"));
    }
    // The report arrives before the child exits; EOF means it died without one.
    let mut report = [0i32; 2];
    let n = loop {
        // SAFETY: report has room for size_of_val(&report) bytes; rd is ours.
        let n = unsafe {
            libc::read(
                rd,
                report.as_mut_ptr().cast(),
                std::mem::size_of_val(&report),
            )
        };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break n;
        }
    };
    // SAFETY: rd is ours.
    unsafe { libc::close(rd) };
    // Reap the child. ECHILD (SIGCHLD ignored: already reaped) is fine, the report decides.
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer; pid is our child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            status = -1;
            break;
        }
    }
    if n == std::mem::size_of_val(&report) as isize {
        return Ok(match report {
            [STEP_DONE, _] => Ok(()),
            [STEP_CHDIR, errno] => Err((Step::Chdir, io::Error::from_raw_os_error(errno))),
            [_, errno] => Err((Step::Mount, io::Error::from_raw_os_error(errno))),
        });
    }
    Err(Error::new(
        ErrorKind::Internal,
        format!("the mount child ended without a report (wait status {status:#x})"),
    ))
}

/// At most `max` chars of `s`, saying how much was left out.
fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}... ({} bytes)", &s[..i], s.len())),
    }
}

fn mount_error(
    err: io::Error,
    m: &Mount,
    target: &Path,
    flags: libc::c_ulong,
    data: &str,
    chdir: Option<&str>,
) -> Error {
    let mut what = format!(
        "mount {} {:?} on {} (flags {flags:#x}, data {:?}",
        m.kind,
        m.source,
        target.display(),
        shorten(data, 300)
    );
    if let Some(dir) = chdir {
        what.push_str(&format!(", relative to {dir}"));
    }
    what.push(')');
    match err.raw_os_error() {
        Some(libc::ENODEV) => Error::new(
            ErrorKind::NotImplemented,
            format!(
                "{what}: unknown or unsupported file system type {:?}: {err}",
                m.kind
            ),
        ),
        Some(libc::EINVAL) if m.kind == "overlay" => {
            Error::io(err, format!("{what} (the kernel log says which option)"))
        }
        _ => Error::io(err, what),
    }
}

/// Mount `m` onto `target`, as containerd's `Mount.Mount` does on Linux.
///
/// Errors name the type, source, target, flags and data, and carry the kernel's errno text.
/// ENODEV (no such file system type) is NotImplemented; other errnos map as everywhere else
/// (ENOENT NotFound, EPERM/EACCES PermissionDenied, EINVAL InvalidArgument, ...).
pub fn mount(m: &Mount, target: &Path) -> Result<()> {
    let (chdir, options): (Option<String>, Cow<'_, [String]>) =
        match needs_compaction(&m.kind, &m.options)
            .then(|| compact_lowerdir(&m.options))
            .flatten()
        {
            Some((dir, opts)) => (Some(dir), Cow::Owned(opts)),
            None => (None, Cow::Borrowed(&m.options[..])),
        };
    let opt = parse_options(&options)?;
    let data = opt.data_string();
    if data.len() >= page_size() {
        return Err(invalid_argument(format!(
            "mount {} on {}: mount options are too long ({} bytes; the kernel takes less than {})",
            m.kind,
            target.display(),
            data.len(),
            page_size()
        )));
    }

    // With a changed working directory a relative target would resolve elsewhere.
    let target_abs: Cow<'_, Path> = if chdir.is_some() && target.is_relative() {
        Cow::Owned(std::path::absolute(target).map_err(|e| Error::io(e, target.display()))?)
    } else {
        Cow::Borrowed(target)
    };
    let c_target = cstring("mount target", target_abs.as_os_str().as_bytes())?;
    let c_source = cstring("mount source", m.source.as_bytes())?;
    let c_type = cstring("mount type", m.kind.as_bytes())?;
    let c_data = if data.is_empty() {
        None
    } else {
        Some(cstring("mount options", data.as_bytes())?)
    };
    let flags = opt.flags & !PROPAGATION;
    let err = |e: io::Error, flags| mount_error(e, m, &target_abs, flags, &data, chdir.as_deref());

    if flags & libc::MS_REMOUNT != 0 && c_data.is_none() {
        // A remount that only changes flags: one call (for a bind, per-mount flags).
        sys_mount(None, &c_target, None, flags, None).map_err(|e| err(e, flags))?;
    } else {
        match &chdir {
            None => sys_mount(
                Some(&c_source),
                &c_target,
                Some(&c_type),
                flags,
                c_data.as_deref(),
            )
            .map_err(|e| err(e, flags))?,
            Some(dir) => {
                let c_dir = cstring("mount directory", dir.as_bytes())?;
                let res = mount_in_dir(
                    &c_dir,
                    Some(&c_source),
                    &c_target,
                    Some(&c_type),
                    flags,
                    c_data.as_deref(),
                )?;
                match res {
                    Ok(()) => {}
                    Err((Step::Chdir, e)) => {
                        return Err(Error::io(e, format!("mount {}: chdir to {dir}", m.kind)))
                    }
                    Err((Step::Mount, e)) => return Err(err(e, flags)),
                }
            }
        }
        // MS_RDONLY is ignored when a bind mount is made; it takes a remount.
        const BIND_RO: libc::c_ulong = libc::MS_BIND | libc::MS_RDONLY;
        if flags & BIND_RO == BIND_RO && flags & libc::MS_REMOUNT == 0 {
            let f = flags | libc::MS_REMOUNT;
            if let Err(e) = sys_mount(None, &c_target, None, f, None) {
                let e = err(e, f).context("making the bind mount read-only");
                // Do not leave a writable bind behind.
                let _ = umount_retry(&c_target, libc::MNT_DETACH);
                return Err(e);
            }
        }
    }

    if opt.propagation != 0 {
        let f = opt.propagation | libc::MS_SILENT;
        sys_mount(None, &c_target, None, f, None)
            .map_err(|e| err(e, f).context("changing mount propagation"))?;
    }
    Ok(())
}

/// umount2(2), retrying EBUSY like containerd does.
fn umount_retry(target: &CStr, flags: i32) -> io::Result<()> {
    for attempt in 0..BUSY_RETRIES {
        // SAFETY: target is NUL-terminated.
        if unsafe { libc::umount2(target.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) || attempt + 1 == BUSY_RETRIES {
            return Err(e);
        }
        std::thread::sleep(BUSY_WAIT);
    }
    unreachable!("the last attempt returns")
}

fn target_cstring(target: &Path) -> Result<CString> {
    cstring("unmount target", target.as_os_str().as_bytes())
}

fn unmount_error(e: io::Error, target: &Path) -> Error {
    Error::io(e, format!("unmount {}", target.display()))
}

/// Unmount `target` once (`flags`: 0, [`super::MNT_DETACH`], ...). EBUSY is retried for a
/// while; a target that is not a mount point (EINVAL) is success, as in containerd.
pub fn unmount(target: &Path, flags: i32) -> Result<()> {
    match umount_retry(&target_cstring(target)?, flags) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => Err(unmount_error(e, target)),
        _ => Ok(()),
    }
}

/// Unmount `target` until it is no longer a mount point (undoes stacked mounts). A target that
/// does not exist is success.
pub fn unmount_all(target: &Path, flags: i32) -> Result<()> {
    if let Err(e) = std::fs::symlink_metadata(target) {
        return match e.kind() {
            io::ErrorKind::NotFound => Ok(()),
            _ => Err(Error::io(e, target.display())),
        };
    }
    let c = target_cstring(target)?;
    loop {
        match umount_retry(&c, flags) {
            Ok(()) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(unmount_error(e, target)),
        }
    }
}

/// Unmount `target` and every mount below it, deepest first (containerd's `UnmountRecursive`).
///
/// The target is resolved (symlinks followed) first; one that does not exist is success.
/// As in containerd, failures below the target are passed over and only the last (outermost)
/// unmount's failure is returned: it fails too if something below is still mounted.
pub fn unmount_recursive(target: &Path, flags: i32) -> Result<()> {
    let target = match std::fs::canonicalize(target) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(e, target.display())),
    };
    let mut points: Vec<PathBuf> = mountinfo()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&target))
        .collect();
    points.sort_by(|a, b| b.as_os_str().len().cmp(&a.as_os_str().len()).then(a.cmp(b)));
    points.dedup();
    let last = points.len().saturating_sub(1);
    for (i, p) in points.iter().enumerate() {
        if let Err(e) = unmount_all(p, flags) {
            if i == last {
                return Err(e);
            }
        }
    }
    Ok(())
}
