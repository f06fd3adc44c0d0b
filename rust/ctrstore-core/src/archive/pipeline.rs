//! Decompress on one thread, apply on another: the decoded stream is handed over in bounded
//! chunks (at most `DEPTH` x `CHUNK` = 32 MiB in flight), and hashing is shared between the two
//! threads.
//!
//! Chunks are hashed strictly in order by whichever thread gets to the next one: the applying
//! thread hashes each chunk it receives unless that was done already, and the reading thread
//! hashes queued chunks whenever the queue is full (it would otherwise just wait). So the
//! hashing lands on whichever side has time to spare: the reader's when applying is slow
//! (many small files, a slow disk), the applier's when decoding is slow (gzip).

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::digest::Sha256;

pub const CHUNK: usize = 256 * 1024;
pub const DEPTH: usize = 128;

/// A chunk of the decoded stream and its sequence number; or the reader's error.
pub type Chunk = io::Result<(u64, Arc<Vec<u8>>)>;

/// The hash of the stream so far and the sequence number of the next chunk to hash.
pub struct HashState {
    hasher: Sha256,
    next: u64,
}

pub type SharedHash = Arc<Mutex<HashState>>;

pub fn shared_hash() -> SharedHash {
    Arc::new(Mutex::new(HashState {
        hasher: Sha256::new(),
        next: 0,
    }))
}

fn lock(h: &SharedHash) -> MutexGuard<'_, HashState> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hash chunk `seq` if it is the next one due.
fn hash_if_next(h: &SharedHash, seq: u64, data: &[u8]) {
    let mut st = lock(h);
    if st.next == seq {
        st.hasher.update(data);
        st.next += 1;
    }
}

/// Reads the chunks a producer sends; EOF when the producer hangs up.
pub struct ChunkReader {
    rx: Receiver<Chunk>,
    hash: SharedHash,
    cur: Arc<Vec<u8>>,
    pos: usize,
    eof: bool,
}

impl ChunkReader {
    pub fn new(rx: Receiver<Chunk>, hash: SharedHash) -> Self {
        ChunkReader {
            rx,
            hash,
            cur: Arc::new(Vec::new()),
            pos: 0,
            eof: false,
        }
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.cur.len() && !self.eof {
            match self.rx.recv() {
                Ok(Ok((seq, buf))) => {
                    hash_if_next(&self.hash, seq, &buf);
                    self.cur = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => self.eof = true,
            }
        }
        Ok(&self.cur[self.pos.min(self.cur.len())..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The reading side's bookkeeping: chunks sent but maybe not hashed yet, and spare buffers.
struct Producer {
    pending: VecDeque<(u64, Arc<Vec<u8>>)>,
    spare: Vec<Vec<u8>>,
}

impl Producer {
    /// Forget pending chunks already hashed (recycling their buffers when the applier is done
    /// with them too); then hash the next due chunk if we have it. Returns whether it hashed.
    fn help(&mut self, hash: &SharedHash, do_hash: bool) -> bool {
        let mut st = lock(hash);
        while let Some((seq, _)) = self.pending.front() {
            if *seq >= st.next {
                break;
            }
            let (_, buf) = self.pending.pop_front().expect("front");
            if let Ok(v) = Arc::try_unwrap(buf) {
                if self.spare.len() < 4 {
                    self.spare.push(v);
                }
            }
        }
        if !do_hash {
            return false;
        }
        match self.pending.front() {
            Some((seq, buf)) if *seq == st.next => {
                st.hasher.update(buf);
                st.next += 1;
                true
            }
            _ => false,
        }
    }
}

/// Read `src` to EOF and send it on in chunks, hashing when the applier is behind. Returns
/// the final hash once every chunk is hashed (after the applier hung up or finished); a read
/// error is passed on to the consumer and returned.
pub fn produce<R: Read>(src: &mut R, tx: SyncSender<Chunk>, hash: &SharedHash) -> io::Result<()> {
    let mut p = Producer {
        pending: VecDeque::new(),
        spare: Vec::new(),
    };
    let mut seq = 0u64;
    loop {
        p.help(hash, false);
        let mut buf = p.spare.pop().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut n = 0;
        while n < CHUNK {
            match src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let buf = Arc::new(buf);
        p.pending.push_back((seq, buf.clone()));
        let mut item = (seq, buf);
        loop {
            match tx.try_send(Ok(item)) {
                Ok(()) => break,
                Err(TrySendError::Full(Ok(back))) => {
                    item = back;
                    // The applier is behind: hash instead of waiting, or wait if nothing is due.
                    if !p.help(hash, true) {
                        match tx.send(Ok(item)) {
                            Ok(()) => break,
                            Err(_) => return finish(p, hash),
                        }
                    }
                }
                Err(_) => return finish(p, hash),
            }
        }
        seq += 1;
    }
    drop(tx);
    finish(p, hash)
}

/// Hash whatever is still pending, in order (the applier may have skipped nothing, or may
/// have stopped early on an error; either way the pending chunks are the stream's tail).
fn finish(mut p: Producer, hash: &SharedHash) -> io::Result<()> {
    while p.help(hash, true) {}
    Ok(())
}

/// The final digest state once both sides are done.
pub fn into_hasher(hash: SharedHash) -> Sha256 {
    let st = lock(&hash);
    st.hasher.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8], slow_consumer: bool) -> String {
        let (tx, rx) = std::sync::mpsc::sync_channel(DEPTH);
        let hash = shared_hash();
        let consumer_hash = hash.clone();
        let want_len = data.len();
        let consumer = std::thread::spawn(move || {
            let mut r = ChunkReader::new(rx, consumer_hash);
            let mut total = 0;
            let mut buf = vec![0u8; 100_000];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                if slow_consumer && total % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
            total
        });
        let mut src = data;
        produce(&mut src, tx, &hash).unwrap();
        assert_eq!(consumer.join().unwrap(), want_len);
        let h = into_hasher(hash);
        assert_eq!(h.len(), want_len as u64);
        h.finish().to_string()
    }

    #[test]
    fn shared_hashing_matches_whatever_the_pace() {
        // More chunks than the queue holds, so the reading side gets to hash too.
        let data: Vec<u8> = (0..(CHUNK * (DEPTH + 40) + 12345) as u32)
            .map(|i| (i ^ (i >> 9)) as u8)
            .collect();
        let want = crate::digest::Digest::of_bytes(&data).to_string();
        assert_eq!(run(&data, false), want);
        assert_eq!(run(&data, true), want);
        assert_eq!(
            run(b"", false),
            crate::digest::Digest::of_bytes(b"").to_string()
        );
    }
}
