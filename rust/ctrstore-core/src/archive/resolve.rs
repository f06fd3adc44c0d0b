//! Resolving directories inside a root as if it were `/`, with fd-relative system calls only.
//!
//! A directory path is walked one component at a time with `openat(O_PATH|O_NOFOLLOW|
//! O_DIRECTORY)`; a symlink met on the way is read and its target re-walked from the root
//! (absolute targets) or from the symlink's (already resolved, symlink-free) directory, with
//! `..` clamped at the root. So nothing outside the root is ever reached, whatever the
//! symlinks say, and no path is resolved by the kernel across a component we did not check.
//!
//! Resolved directories are cached as open `O_PATH` descriptors keyed by the lexical path
//! asked for; the caller must call [`Resolver::invalidate`] whenever it removes a directory or
//! a symlink under the root.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use super::path;
use super::sys::{self, cstr, errno};

/// The most symlinks followed while resolving one path (as containerd's `fs.RootPath`).
pub const MAX_SYMLINKS: u32 = 255;

/// An open directory inside the root and its resolved path (cleaned, symlink-free, relative).
pub struct Dir {
    pub fd: OwnedFd,
    pub path: Vec<u8>,
    /// Looked up on first use: `Some(gid)` if the directory is set-group-ID.
    setgid: Cell<Option<Option<u32>>>,
}

impl Dir {
    pub fn new(fd: OwnedFd, path: Vec<u8>) -> Self {
        Dir {
            fd,
            path,
            setgid: Cell::new(None),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The group a file created here gets: the directory's if it is set-group-ID, else `egid`.
    /// (Cached: the resolver's cache must be invalidated when a directory gains S_ISGID.)
    pub fn new_file_gid(&self, egid: u32) -> io::Result<u32> {
        let sg = match self.setgid.get() {
            Some(sg) => sg,
            None => {
                let st = sys::fstat(self.fd())?;
                let sg = (st.st_mode & libc::S_ISGID != 0).then_some(st.st_gid);
                self.setgid.set(Some(sg));
                sg
            }
        };
        Ok(sg.unwrap_or(egid))
    }
}

/// Called after the resolver created a missing directory `parent/name` (whose resolved path
/// is `path`), e.g. to copy metadata from a lower layer.
pub trait OnCreate {
    fn created(&mut self, parent: &Dir, name: &std::ffi::CStr, path: &[u8]) -> io::Result<()>;
}

pub struct Resolver {
    root: Rc<Dir>,
    cache: HashMap<Vec<u8>, Rc<Dir>>,
    max_cached: usize,
}

impl Resolver {
    pub fn new(root: OwnedFd, max_cached: usize) -> Self {
        Resolver {
            root: Rc::new(Dir::new(root, Vec::new())),
            cache: HashMap::new(),
            max_cached,
        }
    }

    /// Forget every cached directory (after something under the root was removed).
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    fn remember(&mut self, key: &[u8], dir: &Rc<Dir>) {
        if self.cache.len() >= self.max_cached {
            self.cache.clear();
        }
        self.cache.insert(key.to_vec(), dir.clone());
    }

    /// Resolve the cleaned path `lex` (see [`path::clean`]) to a directory, following symlinks
    /// inside the root. With `create`, missing directories are made (0755) and reported to it.
    pub fn resolve(
        &mut self,
        lex: &[u8],
        mut create: Option<&mut dyn OnCreate>,
    ) -> io::Result<Rc<Dir>> {
        if lex.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(d) = self.cache.get(lex) {
            return Ok(d.clone());
        }
        let mut links = 0u32;
        let mut cur_lex: Vec<u8> = lex.to_vec();
        'restart: loop {
            // Start from the longest cached prefix.
            let (mut cur, mut pos) = self.longest_cached_prefix(&cur_lex);
            while pos < cur_lex.len() {
                let end = cur_lex[pos..]
                    .iter()
                    .position(|b| *b == b'/')
                    .map_or(cur_lex.len(), |i| pos + i);
                let name = &cur_lex[pos..end];
                let cname = cstr(name)?;
                let next = match sys::open_dir_nofollow(cur.fd(), &cname) {
                    Ok(fd) => Rc::new(Dir::new(fd, path::join(&cur.path, name))),
                    Err(e) if errno(&e) == libc::ENOTDIR || errno(&e) == libc::ELOOP => {
                        let st = sys::lstatat(cur.fd(), &cname)?;
                        if !sys::is_symlink(&st) {
                            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                        }
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(io::Error::from_raw_os_error(libc::ELOOP));
                        }
                        let target = sys::readlinkat(cur.fd(), &cname)?;
                        let base: &[u8] = if target.first() == Some(&b'/') {
                            b""
                        } else {
                            &cur.path
                        };
                        let mut next_lex = path::join_clean(base, &target);
                        if end < cur_lex.len() {
                            next_lex = path::join_clean(&next_lex, &cur_lex[end + 1..]);
                        }
                        cur_lex = next_lex;
                        continue 'restart;
                    }
                    Err(e) if errno(&e) == libc::ENOENT && create.is_some() => {
                        match sys::mkdirat(cur.fd(), &cname, 0o755) {
                            Ok(()) => {
                                // No umask: the mode is exactly 0755.
                                sys::fchmodat(cur.fd(), &cname, 0o755)?;
                                let p = path::join(&cur.path, name);
                                if let Some(c) = create.as_deref_mut() {
                                    c.created(&cur, &cname, &p)?;
                                }
                            }
                            Err(e) if errno(&e) == libc::EEXIST => {}
                            Err(e) => return Err(e),
                        }
                        // Re-examine what is there now (normally the directory just made).
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                self.remember(&cur_lex[..end], &next);
                cur = next;
                pos = end + 1;
            }
            if cur_lex != lex {
                self.remember(lex, &cur);
            }
            return Ok(cur);
        }
    }

    /// The longest prefix of `lex` (ending at a component boundary) that is cached, and the
    /// byte offset where the rest begins.
    fn longest_cached_prefix(&self, lex: &[u8]) -> (Rc<Dir>, usize) {
        if self.cache.is_empty() {
            return (self.root.clone(), 0);
        }
        let mut end = lex.len();
        loop {
            if let Some(d) = self.cache.get(&lex[..end]) {
                return (d.clone(), (end + 1).min(lex.len()));
            }
            match lex[..end].iter().rposition(|b| *b == b'/') {
                Some(i) => end = i,
                None => return (self.root.clone(), 0),
            }
        }
    }
}

/// Open `path` inside `root` as if `root` were `/` (containerd's `fs.RootPath`, then an
/// open): every symlink on the way — the last component's too — is followed inside the root,
/// an absolute target restarting at the root and `..` stopping at it, and every component is
/// opened with `O_NOFOLLOW` relative to the directory before it. So nothing outside the root
/// is ever reached, and a symlink swapped in meanwhile fails (ELOOP) instead of escaping.
///
/// `flags` are `open(2)`'s (`O_CLOEXEC` is always added). A missing component is ENOENT; a
/// component that is not a directory ENOTDIR; more than [`MAX_SYMLINKS`] symlinks ELOOP.
pub fn open_in_root(
    root: &std::path::Path,
    path: &[u8],
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    let root_fd = sys::open_path(root, libc::O_PATH | libc::O_DIRECTORY)?;
    let mut res = Resolver::new(root_fd, 8);
    let mut lex = path::clean(path);
    let mut links = 0u32;
    loop {
        let (parent, base) = path::split(&lex);
        let dir = res.resolve(parent, None)?;
        let name = if base.is_empty() { &b"."[..] } else { base };
        let cname = cstr(name)?;
        let symlink = match sys::openat(dir.fd(), &cname, flags | libc::O_NOFOLLOW, 0) {
            // With O_PATH, O_NOFOLLOW opens a symlink itself: follow it all the same.
            Ok(fd) if flags & libc::O_PATH != 0 && sys::is_symlink(&sys::fstat(fd.as_fd())?) => {
                true
            }
            Ok(fd) => return Ok(fd),
            Err(e)
                if errno(&e) == libc::ELOOP
                    || (errno(&e) == libc::ENOTDIR && flags & libc::O_DIRECTORY != 0) =>
            {
                // ELOOP here means the last component is a symlink, and so may ENOTDIR with
                // O_DIRECTORY, which the kernel checks on the link itself (unless it vanished
                // or was replaced meanwhile, or is a file: then the lstat below says so).
                let st = sys::lstatat(dir.fd(), &cname)?;
                if !sys::is_symlink(&st) {
                    return Err(e);
                }
                true
            }
            Err(e) => return Err(e),
        };
        debug_assert!(symlink);
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = sys::readlinkat(dir.fd(), &cname)?;
        let base: &[u8] = if target.first() == Some(&b'/') {
            b""
        } else {
            &dir.path
        };
        lex = path::join_clean(base, &target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(root: &std::path::Path, p: &str) -> io::Result<String> {
        let fd = open_in_root(root, p.as_bytes(), libc::O_RDONLY)?;
        let mut s = String::new();
        fs::File::from(fd).read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("host-passwd");
        fs::write(&outside, "host").unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("usr/lib/passwd"), "inside").unwrap();
        fs::write(root.join("host-passwd"), "root's own").unwrap();

        symlink("/usr/lib/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(read(&root, "/etc/passwd").unwrap(), "inside");
        assert_eq!(read(&root, "etc/../etc/./passwd").unwrap(), "inside");
        fs::remove_file(root.join("etc/passwd")).unwrap();
        symlink("../usr/./lib/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(read(&root, "etc/passwd").unwrap(), "inside");

        // Absolute and climbing targets resolve inside the root, never to the host's file.
        fs::remove_file(root.join("etc/passwd")).unwrap();
        symlink(&outside, root.join("etc/passwd")).unwrap();
        assert_eq!(errno(&read(&root, "etc/passwd").unwrap_err()), libc::ENOENT);
        fs::remove_file(root.join("etc/passwd")).unwrap();
        symlink("../../../../host-passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(read(&root, "etc/passwd").unwrap(), "root's own");
        assert_eq!(read(&root, "../../host-passwd").unwrap(), "root's own");

        // A directory on the way that is a symlink out of the root.
        fs::remove_dir_all(root.join("etc")).unwrap();
        symlink(t.path(), root.join("etc")).unwrap();
        assert_eq!(
            errno(&read(&root, "etc/host-passwd").unwrap_err()),
            libc::ENOENT
        );
        fs::remove_file(root.join("etc")).unwrap();

        // Loops, a file used as a directory, the root itself.
        fs::create_dir(root.join("etc")).unwrap();
        symlink("passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(errno(&read(&root, "etc/passwd").unwrap_err()), libc::ELOOP);
        assert_eq!(
            errno(&read(&root, "usr/lib/passwd/x").unwrap_err()),
            libc::ENOTDIR
        );
        let fd = open_in_root(&root, b"/", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
        assert!(sys::is_dir(&sys::fstat(fd.as_fd()).unwrap()));
        // O_PATH follows a final symlink too.
        fs::remove_file(root.join("etc/passwd")).unwrap();
        symlink("/usr/lib/passwd", root.join("etc/passwd")).unwrap();
        let fd = open_in_root(&root, b"etc/passwd", libc::O_PATH).unwrap();
        let st = sys::fstat(fd.as_fd()).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
        // ... and with O_DIRECTORY, a final symlink to a directory (the kernel says ENOTDIR
        // of the link itself); a symlink to a file stays ENOTDIR.
        symlink("/usr/lib", root.join("lib")).unwrap();
        for flags in [
            libc::O_PATH | libc::O_DIRECTORY,
            libc::O_RDONLY | libc::O_DIRECTORY,
        ] {
            let fd = open_in_root(&root, b"lib", flags).unwrap();
            assert!(sys::is_dir(&sys::fstat(fd.as_fd()).unwrap()));
            assert_eq!(
                errno(&open_in_root(&root, b"etc/passwd", flags).unwrap_err()),
                libc::ENOTDIR
            );
        }
    }
}
