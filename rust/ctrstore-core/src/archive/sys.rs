//! Thin, fd-relative wrappers over the Linux system calls the layer applier needs.
//!
//! Every function takes a directory fd and a single path component (never a path with `/`
//! in it, except where noted), so that no symlink outside the caller's control is followed.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A path component (or path) as a C string; a NUL byte inside is an invalid archive.
pub fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "name contains a NUL byte"))
}

pub fn open_path(path: &std::path::Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    loop {
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Open a directory component without following a symlink, as an `O_PATH` handle.
pub fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Re-open an `O_PATH` directory handle (or any dir fd) as a readable directory.
pub fn reopen_dir(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// Hard-link `odir/oname` (not following a symlink there) to `ndir/nname`.
pub fn linkat(
    odir: BorrowedFd<'_>,
    oname: &CStr,
    ndir: BorrowedFd<'_>,
    nname: &CStr,
) -> io::Result<()> {
    cvt(unsafe {
        libc::linkat(
            odir.as_raw_fd(),
            oname.as_ptr(),
            ndir.as_raw_fd(),
            nname.as_ptr(),
            0,
        )
    })
    .map(drop)
}

pub fn mknodat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) }).map(drop)
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

pub fn fstatat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

pub fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW)
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    fstatat(fd, c"", libc::AT_EMPTY_PATH)
}

pub fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        let len = buf.len() * 2;
        buf.resize(len, 0);
    }
}

pub fn fchownat_nofollow(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    cvt(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// chmod relative to a directory; follows a symlink, so never call it on one.
pub fn fchmodat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) }).map(drop)
}

pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// A (seconds, nanoseconds) pair.
pub type Time = (i64, i64);

fn timespecs(atime: Time, mtime: Time) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ]
}

pub fn futimens(fd: BorrowedFd<'_>, atime: Time, mtime: Time) -> io::Result<()> {
    let ts = timespecs(atime, mtime);
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) }).map(drop)
}

pub fn utimensat_nofollow(
    dir: BorrowedFd<'_>,
    name: &CStr,
    atime: Time,
    mtime: Time,
) -> io::Result<()> {
    let ts = timespecs(atime, mtime);
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fsetxattr(
    fd: BorrowedFd<'_>,
    key: &CStr,
    value: &[u8],
    flags: libc::c_int,
) -> io::Result<()> {
    cvt(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub fn lsetxattr(path: &CStr, key: &CStr, value: &[u8]) -> io::Result<()> {
    cvt(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Set an xattr on `dir/name` without following a symlink there, via `/proc/self/fd`.
pub fn setxattr_at_nofollow(
    dir: BorrowedFd<'_>,
    name: &CStr,
    key: &CStr,
    value: &[u8],
) -> io::Result<()> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    lsetxattr(&cstr(&p)?, key, value)
}

/// `/proc/self/fd/<dir>/<name>`: a path the kernel resolves to `name` inside exactly the
/// directory `dir` is, for the `l*xattr` calls that have no `*at` form.
fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    cstr(&p)
}

/// All xattr names of `dir/name`, not following a symlink there.
pub fn listxattr_at_nofollow(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<Vec<u8>>> {
    let p = proc_path(dir, name)?;
    let list = xattr_call(1024, |buf| unsafe {
        libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })?;
    Ok(xattr_names(list))
}

/// One xattr of `dir/name`, not following a symlink there; `None` if it has none.
pub fn getxattr_at_nofollow(
    dir: BorrowedFd<'_>,
    name: &CStr,
    key: &CStr,
) -> io::Result<Option<Vec<u8>>> {
    let p = proc_path(dir, name)?;
    xattr_call(256, |buf| unsafe {
        libc::lgetxattr(p.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })
}

/// All xattr names of an open file.
pub fn flistxattr(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let list = xattr_call(1024, |buf| unsafe {
        libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
    })?;
    Ok(xattr_names(list))
}

/// One xattr's value; `None` if it vanished or is unsupported.
pub fn fgetxattr(fd: BorrowedFd<'_>, key: &CStr) -> io::Result<Option<Vec<u8>>> {
    xattr_call(256, |buf| unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

/// What a `*getxattr(2)`/`*listxattr(2)` call (`call`, given the buffer) filled in, the
/// buffer (first `initial` bytes) grown while it is too small (ERANGE); `None` where the file
/// system has no xattrs (ENOTSUP) or the file not this one (ENODATA).
fn xattr_call(
    initial: usize,
    mut call: impl FnMut(&mut [u8]) -> libc::ssize_t,
) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; initial];
    loop {
        let n = call(&mut buf);
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => {
                let len = buf.len() * 4;
                buf.resize(len, 0)
            }
            Some(libc::ENOTSUP) | Some(libc::ENODATA) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// The names in a `listxattr(2)` answer (NUL-terminated); none for `None`.
fn xattr_names(list: Option<Vec<u8>>) -> Vec<Vec<u8>> {
    list.unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect()
}

/// The names in a directory (without `.` and `..`), read from a dir fd.
pub fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let fd = reopen_dir(dir)?;
    let raw = std::mem::ManuallyDrop::new(fd);
    let dirp = unsafe { libc::fdopendir(raw.as_raw_fd()) };
    if dirp.is_null() {
        let err = io::Error::last_os_error();
        drop(std::mem::ManuallyDrop::into_inner(raw));
        return Err(err);
    }
    // From here on, closedir owns the fd.
    let mut names = Vec::new();
    let result = loop {
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir64(dirp) };
        if ent.is_null() {
            let errno = unsafe { *libc::__errno_location() };
            break if errno != 0 {
                Err(io::Error::from_raw_os_error(errno))
            } else {
                Ok(())
            };
        }
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let b = name.to_bytes();
        if b != b"." && b != b".." {
            names.push(name.to_owned());
        }
    };
    unsafe { libc::closedir(dirp) };
    result.map(|()| names)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub fn errno(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(0)
}

/// Remove `dir/name` whatever it is (a directory recursively, a symlink itself); absent is fine.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match unlinkat(dir, name, 0) {
        Ok(()) => return Ok(()),
        Err(e) if errno(&e) == libc::ENOENT => return Ok(()),
        Err(e) if errno(&e) == libc::EISDIR || errno(&e) == libc::EPERM => {}
        Err(e) => return Err(e),
    }
    let sub = match open_dir_nofollow(dir, name) {
        Ok(fd) => fd,
        Err(e) if errno(&e) == libc::ENOENT => return Ok(()),
        Err(e) => return Err(e),
    };
    for child in read_dir_names(borrow(&sub))? {
        remove_all_at(borrow(&sub), &child)?;
    }
    drop(sub);
    match unlinkat(dir, name, libc::AT_REMOVEDIR) {
        Err(e) if errno(&e) == libc::ENOENT => Ok(()),
        r => r,
    }
}

pub fn borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}
