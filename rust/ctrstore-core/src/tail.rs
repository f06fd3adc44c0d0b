//! Following an ingest while it is written: the bytes of a blob being downloaded, read back as
//! they arrive, so that a layer can be decompressed and applied while it downloads.
//!
//! An [`IngestWriter`](crate::content::IngestWriter) hands out an [`IngestWatch`]; each
//! [`IngestTail`] made from it reads the ingest's `data` file from its first byte, up to what
//! the writer has written so far, and then waits for more. The page cache is the buffer
//! between the two sides: the writer never waits for a reader (a download is never held up by
//! a slow applier, and memory use does not grow with the lag), a reader that starts late
//! replays what is already on disk first (a resumed download, or a layer whose turn to be
//! applied comes after part of it has arrived) and then keeps up, and any number of readers
//! can follow one writer.
//!
//! How a tail ends is decided by the writer:
//!
//! - a commit that verified the bytes (size and digest) *seals* the stream: a reader gets EOF
//!   after the last byte, so what was applied is exactly the verified blob;
//! - anything else breaks it, and a reader gets an [`ErrorKind::Unavailable`] error once it
//!   has read what was written: the writer was closed (the download stopped, kept for a
//!   resume), dropped, started over (truncated), or its commit failed (the bytes did not
//!   verify). [`IngestWatch::cancel`] breaks it from the reading side (an unpack given up).
//!
//! The watch opens the data file when it is made (while the writer holds it), so the writer's
//! commit, which renames the file into `blobs/`, disturbs no reader, even one made after it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, ErrorKind};

/// How the stream stands, as far as the writer has told.
#[derive(Debug, Clone)]
enum End {
    /// More may come.
    Open,
    /// Every byte is written and verified: EOF after the last one.
    Sealed,
    /// No more will come: readers fail with this error (kind and message).
    Broken(ErrorKind, String),
}

#[derive(Debug)]
struct State {
    /// Bytes of `data` written so far (a prefix of the blob).
    written: u64,
    end: End,
    /// Tails alive now.
    readers: usize,
    /// Bytes read by the furthest tail.
    read: u64,
    /// Tails waiting for the writer right now.
    waiting: usize,
}

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    /// The data file, opened for reading when the watch was made (readers use `pread`).
    file: File,
    reference: String,
}

impl Shared {
    pub(crate) fn new(data: &Path, reference: &str, written: u64) -> crate::Result<Arc<Self>> {
        let file = File::open(data).map_err(|e| Error::io(e, data.display()).with_path(data))?;
        Ok(Arc::new(Shared {
            state: Mutex::new(State {
                written,
                end: End::Open,
                readers: 0,
                read: 0,
                waiting: 0,
            }),
            cond: Condvar::new(),
            file,
            reference: reference.to_owned(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer has `written` bytes in `data` now.
    pub(crate) fn publish(&self, written: u64) {
        let mut st = self.lock();
        st.written = written;
        if st.waiting > 0 {
            self.cond.notify_all();
        }
    }

    /// The verified blob is complete at `written` bytes.
    pub(crate) fn seal(&self, written: u64) {
        let mut st = self.lock();
        if matches!(st.end, End::Open) {
            st.written = written;
            st.end = End::Sealed;
        }
        self.cond.notify_all();
    }

    /// No more bytes will come; readers fail with `kind` and `message`. The first end wins.
    pub(crate) fn break_off(&self, kind: ErrorKind, message: String) {
        let mut st = self.lock();
        if matches!(st.end, End::Open) {
            st.end = End::Broken(kind, message);
        }
        self.cond.notify_all();
    }
}

/// A handle on an ingest being written, from which readers of its bytes are made. Cheap to
/// clone; it does not keep the writer alive.
#[derive(Debug, Clone)]
pub struct IngestWatch {
    shared: Arc<Shared>,
}

/// How far a watched ingest has come (see [`IngestWatch::progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchProgress {
    /// Bytes the writer has written.
    pub written: u64,
    /// Bytes the furthest reader has read.
    pub read: u64,
    /// Readers alive.
    pub readers: usize,
    /// Readers waiting for the writer right now (they have read everything written).
    pub waiting: usize,
    /// Whether the writer is done (sealed or broken).
    pub ended: bool,
}

impl IngestWatch {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        IngestWatch { shared }
    }

    /// A reader of the ingest's bytes from the first one, following the writer.
    pub fn reader(&self) -> IngestTail {
        self.shared.lock().readers += 1;
        IngestTail {
            shared: self.shared.clone(),
            pos: 0,
        }
    }

    pub fn progress(&self) -> WatchProgress {
        let st = self.shared.lock();
        WatchProgress {
            written: st.written,
            read: st.read,
            readers: st.readers,
            waiting: st.waiting,
            ended: !matches!(st.end, End::Open),
        }
    }

    /// Make every reader fail (once it has read what is written) with `reason`, kind
    /// Aborted; the writer is not affected. Nothing happens if the writer is already done.
    pub fn cancel(&self, reason: &str) {
        self.shared.break_off(ErrorKind::Aborted, reason.to_owned());
    }

    /// The ingest's ref.
    pub fn reference(&self) -> &str {
        &self.shared.reference
    }
}

/// Reads a watched ingest from its start, blocking at the written offset until the writer
/// writes more, seals (EOF) or breaks off (an error). See the module docs.
pub struct IngestTail {
    shared: Arc<Shared>,
    pos: u64,
}

impl IngestTail {
    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl Read for IngestTail {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.shared.lock();
        loop {
            if self.pos < st.written {
                let n = (st.written - self.pos).min(buf.len() as u64) as usize;
                drop(st);
                let k = loop {
                    match self.shared.file.read_at(&mut buf[..n], self.pos) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r?,
                    }
                };
                if k == 0 {
                    // Shorter than written: only a truncation (which breaks the stream) does that.
                    let st = self.shared.lock();
                    return Err(match &st.end {
                        End::Broken(kind, msg) => io::Error::other(Error::new(*kind, msg.clone())),
                        _ => io::Error::other(Error::new(
                            ErrorKind::Internal,
                            format!(
                                "ingest {:?}: its data ends at {} bytes, {} were written",
                                self.shared.reference, self.pos, st.written
                            ),
                        )),
                    });
                }
                self.pos += k as u64;
                let mut st = self.shared.lock();
                st.read = st.read.max(self.pos);
                return Ok(k);
            }
            match &st.end {
                End::Sealed => return Ok(0),
                End::Broken(kind, msg) => {
                    return Err(io::Error::other(Error::new(*kind, msg.clone())))
                }
                End::Open => {
                    st.waiting += 1;
                    st = self.shared.cond.wait(st).unwrap_or_else(|p| p.into_inner());
                    st.waiting -= 1;
                }
            }
        }
    }
}

impl Drop for IngestTail {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.readers -= 1;
    }
}

/// The core error a tail's reader failed with, if an `io::Error` carries one (decoders pass
/// their reader's errors on as they are).
pub fn carried_error(e: io::Error) -> std::result::Result<Error, io::Error> {
    if e.get_ref().is_some_and(|r| r.is::<Error>()) {
        let inner = e.into_inner().expect("checked");
        return Ok(*inner.downcast::<Error>().expect("checked"));
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;
    use crate::archive::{apply_layer, ApplyOptions, WhiteoutMode};
    use crate::content::{blob_path, IngestWriter};
    use crate::digest::Digest;

    fn data(n: usize) -> Vec<u8> {
        (0..n as u32).map(|i| (i ^ (i >> 7)) as u8).collect()
    }

    fn read_all(mut t: IngestTail) -> std::result::Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        t.read_to_end(&mut out)
            .map_err(|e| carried_error(e).expect("a core error"))?;
        Ok(out)
    }

    /// Write `all` in `chunk`-byte pieces from another thread, pausing between them, while the
    /// test reads; then commit (verifying against `digest`) or close.
    fn writer_thread(
        mut w: IngestWriter,
        all: Vec<u8>,
        chunk: usize,
        finish: &'static str,
        digest: Digest,
    ) -> std::thread::JoinHandle<crate::Result<()>> {
        std::thread::spawn(move || {
            for c in all.chunks(chunk) {
                w.write(c)?;
                std::thread::sleep(Duration::from_millis(2));
            }
            match finish {
                "commit" => w.commit(all.len() as u64, Some(digest)).map(|_| ()),
                _ => w.close(),
            }
        })
    }

    #[test]
    fn a_tail_follows_the_writer_and_ends_at_a_verified_commit() {
        let t = tempfile::tempdir().unwrap();
        let all = data(300_000);
        let d = Digest::of_bytes(&all);
        let mut w =
            IngestWriter::open(t.path(), "r", Some(all.len() as u64), Some(d.clone())).unwrap();
        w.write(&all[..1000]).unwrap();
        let watch = w.watch().unwrap();
        let early = watch.reader();
        // Another thread writes the rest and closes the writer (a download that stopped).
        let h = writer_thread(w, all[1000..].to_vec(), 7000, "close", d.clone());
        h.join().unwrap().unwrap();
        // The close broke the stream: the reader gets the bytes written, then an error.
        let e = read_all(early).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains("stopped after 300000 bytes"), "{e}");

        // Resumed: a new writer, a new watch; a reader started now replays from byte 0.
        let mut w =
            IngestWriter::open(t.path(), "r", Some(all.len() as u64), Some(d.clone())).unwrap();
        assert_eq!(w.offset(), all.len() as u64);
        let watch = w.watch().unwrap();
        let r = watch.reader();
        assert_eq!(watch.progress().readers, 1);
        w.commit(0, None).unwrap();
        assert_eq!(read_all(r).unwrap(), all);
        assert_eq!(watch.progress().readers, 0);
        // A reader made after the commit moved the data into blobs/ reads it all the same.
        assert_eq!(read_all(watch.reader()).unwrap(), all);
        assert!(blob_path(t.path(), &d).exists());
    }

    #[test]
    fn concurrent_readers_see_every_byte_in_order() {
        let t = tempfile::tempdir().unwrap();
        let all = data(2_000_000);
        let d = Digest::of_bytes(&all);
        let mut w =
            IngestWriter::open(t.path(), "r", Some(all.len() as u64), Some(d.clone())).unwrap();
        let watch = w.watch().unwrap();
        let first = watch.reader();
        let h = std::thread::spawn({
            let all = all.clone();
            move || {
                for c in all.chunks(65_537) {
                    w.write(c).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
                w.commit(0, None).unwrap()
            }
        });
        std::thread::sleep(Duration::from_millis(10));
        let late = watch.reader();
        let a = std::thread::spawn(move || read_all(first).unwrap());
        let b = read_all(late).unwrap();
        assert_eq!(h.join().unwrap(), d);
        assert_eq!(a.join().unwrap(), all);
        assert_eq!(b, all);
        let p = watch.progress();
        assert!(
            p.ended && p.written == all.len() as u64 && p.read == all.len() as u64,
            "{p:?}"
        );
    }

    #[test]
    fn a_commit_that_does_not_verify_or_a_truncation_breaks_the_stream() {
        let t = tempfile::tempdir().unwrap();
        let mut w = IngestWriter::open(t.path(), "bad", None, None).unwrap();
        let watch = w.watch().unwrap();
        let r = watch.reader();
        w.write(b"abc").unwrap();
        let e = w.commit(3, Some(Digest::of_bytes(b"abd"))).unwrap_err();
        let got = read_all(r).unwrap_err();
        assert_eq!(got.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(got.message(), e.message());

        let mut w = IngestWriter::open(t.path(), "bad", None, None).unwrap();
        let watch = w.watch().unwrap();
        let r = watch.reader();
        w.truncate(0).unwrap();
        let got = read_all(r).unwrap_err();
        assert!(got.message().contains("started over"), "{got}");
        // A new watch after the truncation is a new stream.
        let r = w.watch().unwrap().reader();
        w.write(b"xyz").unwrap();
        w.commit(3, Some(Digest::of_bytes(b"xyz"))).unwrap();
        assert_eq!(read_all(r).unwrap(), b"xyz");

        let mut w = IngestWriter::open(t.path(), "gone", None, None).unwrap();
        let r = w.watch().unwrap().reader();
        w.write(b"12").unwrap();
        drop(w);
        assert_eq!(read_all(r).unwrap_err().kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn cancel_wakes_a_waiting_reader() {
        let t = tempfile::tempdir().unwrap();
        let mut w = IngestWriter::open(t.path(), "r", None, None).unwrap();
        let watch = w.watch().unwrap();
        let r = watch.reader();
        let h = std::thread::spawn(move || read_all(r));
        while watch.progress().waiting == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        watch.cancel("unpack given up");
        let e = h.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Aborted);
        assert_eq!(e.message(), "unpack given up");
        // The writer goes on unharmed.
        w.write(b"more").unwrap();
        w.commit(4, None).unwrap();
    }

    fn gzip_tar(files: usize) -> (Vec<u8>, Digest) {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..files {
            let body = data(1000 + i * 37);
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            h.set_cksum();
            b.append_data(&mut h, format!("d{}/f{i}", i % 7), &body[..])
                .unwrap();
        }
        let tar = b.into_inner().unwrap();
        let diff_id = Digest::of_bytes(&tar);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, &tar).unwrap();
        (e.finish().unwrap(), diff_id)
    }

    #[test]
    fn a_layer_is_applied_while_it_is_written() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let (blob, diff_id) = gzip_tar(400);
        let d = Digest::of_bytes(&blob);
        let mut w = IngestWriter::open(t.path(), "layer", Some(blob.len() as u64), Some(d.clone()))
            .unwrap();
        w.write(&blob[..100]).unwrap(); // a resumed download: these come from disk
        let watch = w.watch().unwrap();
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            ..Default::default()
        };
        let applier = {
            let target = target.clone();
            let tail = watch.reader();
            std::thread::spawn(move || apply_layer(&target, tail, &opts))
        };
        let h = writer_thread(w, blob[100..].to_vec(), 4096, "close", d.clone());
        h.join().unwrap().unwrap(); // closed: the applier fails, as a download that died
        let e = applier.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

        let mut w = IngestWriter::open(t.path(), "layer", None, None).unwrap();
        let watch = w.watch().unwrap();
        let tail = watch.reader();
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            ..Default::default()
        };
        let applier = {
            let target = target.clone();
            std::thread::spawn(move || apply_layer(&target, tail, &opts))
        };
        w.commit(0, Some(d)).unwrap();
        let stats = applier.join().unwrap().unwrap();
        assert_eq!(stats.diff_id, diff_id);
        assert_eq!(stats.compressed_bytes, blob.len() as u64);
        assert_eq!(stats.entries, 400);
        assert_eq!(
            std::fs::read(target.join("d3/f10")).unwrap(),
            data(1000 + 370)
        );
    }
}
