//! The write-ahead log: numbered segment files of checksummed records. Every accepted change
//! is appended here before it is applied; a snapshot starts a new segment so the older ones
//! can be deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::frame::{self, BadFrame, Frame, FrameReader};
use super::sync::{Mutex, Rank};

/// The last byte is the record format: 2 since calls carry their routing segment and arm.
const MAGIC: &[u8; 8] = b"LSWAL\0\0\x02";

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before every acknowledgement: nothing acknowledged is lost even if the machine fails.
    /// Syncs before acknowledging (group commit: writes that arrive while one sync runs share
    /// the next one, which also writes them to the file, in one write).
    Always,
    /// Once per interval in the background (like Redis `everysec`): a process crash loses
    /// nothing, a machine failure at most one interval.
    Interval,
    /// Left to the operating system.
    Never,
}

/// What the log holds: each record appends its payload to the write buffer itself.
pub trait Record {
    fn write_payload(&self, out: &mut Vec<u8>);
}

impl Record for [u8] {
    fn write_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("wal-{segment:020}.log"))
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log"))
            && let Ok(n) = n.parse()
        {
            segments.push(n);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// What recovery found wrong with a segment, with enough detail to find it.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: not a log segment (bad magic)")]
    Magic { path: PathBuf },
    #[error(
        "{path}: log format {found}; this build reads format {reads} (start from a fresh data directory or the build that wrote it)"
    )]
    Format { path: PathBuf, found: u8, reads: u8 },
    #[error("{path}: corrupt record at byte {offset} ({cause}) followed by intact records; refusing to start")]
    Corrupt { path: PathBuf, offset: u64, cause: BadFrame },
    #[error("{path}: record at byte {offset} has sequence number {lsn}, not above {previous}")]
    OutOfOrder { path: PathBuf, offset: u64, lsn: u64, previous: u64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// How a scanned segment ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    Clean {
        len: u64,
    },
    /// A torn last record: the segment is valid up to `valid_len`.
    Torn {
        valid_len: u64,
        cause: BadFrame,
    },
}

/// Reads every record of a segment in order, handing each to `apply`. A bad record with no
/// intact record after it is a torn tail (reported, not an error); a bad record with intact
/// records after it is corruption.
pub fn scan_segment(
    path: &Path,
    mut last_lsn: u64,
    mut apply: impl FnMut(Frame) -> Result<(), String>,
) -> Result<(SegmentEnd, u64), ScanError> {
    let io_err = |source| ScanError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    if reader.read_exact(&mut magic).is_err() || magic[..7] != MAGIC[..7] {
        return Err(ScanError::Magic { path: path.to_owned() });
    }
    if magic[7] != MAGIC[7] {
        return Err(ScanError::Format { path: path.to_owned(), found: magic[7], reads: MAGIC[7] });
    }
    let mut frames = FrameReader::new(reader, MAGIC.len() as u64);
    loop {
        match frames.next_frame().map_err(io_err)? {
            Ok(Some(frame)) => {
                if frame.lsn <= last_lsn {
                    return Err(ScanError::OutOfOrder {
                        path: path.to_owned(),
                        offset: frame.offset,
                        lsn: frame.lsn,
                        previous: last_lsn,
                    });
                }
                last_lsn = frame.lsn;
                let offset = frame.offset;
                apply(frame).map_err(|cause| ScanError::Io {
                    path: path.to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidData, format!("record at byte {offset}: {cause}")),
                })?;
            }
            Ok(None) => {
                return Ok((SegmentEnd::Clean { len: frames.offset() }, last_lsn));
            }
            Err(cause) => {
                let offset = frames.offset();
                let mut rest = Vec::new();
                let mut file = File::open(path).map_err(io_err)?;
                file.seek(SeekFrom::Start(offset + 1)).map_err(io_err)?;
                file.read_to_end(&mut rest).map_err(io_err)?;
                if frame::any_intact_frame(&rest) {
                    return Err(ScanError::Corrupt { path: path.to_owned(), offset, cause });
                }
                return Ok((SegmentEnd::Torn { valid_len: offset, cause }, last_lsn));
            }
        }
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment: u64,
    /// Shared with whoever syncs it outside the writer's lock.
    file: Arc<Segment>,
    /// Records wait in memory for the next sync rather than being written one call at a time
    /// (fsync `always`, where every write waits for a sync anyway).
    deferred: bool,
    /// Bytes in the current segment, written or waiting.
    len: u64,
    /// Bytes in all live segments, to decide when a snapshot is due.
    total_len: u64,
    /// Records were written since the last sync.
    dirty: bool,
    buf: Vec<u8>,
}

/// A segment file and the records waiting to be written to it. Under fsync `always` the sync
/// writes them, so that the writers one sync serves share one write too, and the write leaves
/// the thread that serves calls for the one that syncs.
#[derive(Debug)]
pub struct Segment {
    file: File,
    /// Encoded records not yet written, in order.
    waiting: Mutex<Vec<u8>>,
    /// Held while a write runs, so that writes reach the file in order; the buffer written.
    writing: Mutex<Vec<u8>>,
    /// A write failed: what it held is lost, so no later sync may succeed and acknowledge
    /// records after the gap.
    failed: AtomicBool,
}

impl Segment {
    fn new(file: File) -> Self {
        Self {
            file,
            waiting: Mutex::new(Rank::LogWaiting, Vec::new()),
            writing: Mutex::new(Rank::LogWriting, Vec::new()),
            failed: AtomicBool::new(false),
        }
    }

    /// Writes the records waiting, in order. A failed write is a failed sync, now and at every
    /// later sync of the segment: the store stops the process, whose memory is then ahead of
    /// the log.
    fn write_waiting(&self) -> io::Result<()> {
        let mut out = self.writing.lock();
        if self.failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("an earlier write to this log segment failed"));
        }
        std::mem::swap(&mut *self.waiting.lock(), &mut *out);
        let written = (&self.file).write_all(&out);
        out.clear();
        self.failed.store(written.is_err(), Ordering::Relaxed);
        written
    }

    /// Writes the records waiting and syncs the file.
    pub fn sync(&self) -> io::Result<()> {
        self.write_waiting()?;
        self.file.sync_data()
    }
}

impl Wal {
    /// Opens `segment` for appending at `len` (cutting off anything after it, such as a torn
    /// tail), or creates it when it does not exist. `deferred`: records wait for the next sync
    /// to be written.
    pub fn open(dir: &Path, segment: u64, len: Option<u64>, total_len: u64, deferred: bool) -> io::Result<Self> {
        let path = segment_path(dir, segment);
        let (file, len) = match len {
            Some(len) => {
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(len)?;
                file.sync_all()?;
                (file, len)
            }
            None => (create_segment(dir, &path)?, MAGIC.len() as u64),
        };
        (&file).seek(SeekFrom::Start(len))?;
        let file = Arc::new(Segment::new(file));
        let mut wal =
            Self { dir: dir.to_owned(), segment, file, deferred, len, total_len, dirty: false, buf: Vec::new() };
        wal.total_len = wal.total_len.max(wal.len);
        Ok(wal)
    }

    pub fn segment(&self) -> u64 {
        self.segment
    }

    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Appends records numbered from `first_lsn` on, in one write: all of them or, on failure,
    /// none. The segment is then cut back to where it was, so a failed write never leaves a
    /// half record in the middle of the log. Nothing is synced here: under `always` the store
    /// syncs after releasing its writer lock (`handle`), so that writers share syncs; deferred,
    /// the records wait for that sync to be written.
    pub fn append_all<'r, R: Record + ?Sized + 'r>(
        &mut self,
        first_lsn: u64,
        records: impl IntoIterator<Item = &'r R>,
    ) -> io::Result<()> {
        let appended = if self.deferred {
            let mut waiting = self.file.waiting.lock();
            let before = waiting.len();
            encode(first_lsn, records, &mut waiting);
            waiting.len() - before
        } else {
            self.buf.clear();
            encode(first_lsn, records, &mut self.buf);
            if let Err(err) = (&self.file.file).write_all(&self.buf) {
                self.file.file.set_len(self.len)?;
                (&self.file.file).seek(SeekFrom::Start(self.len))?;
                return Err(err);
            }
            self.buf.len()
        };
        self.len += appended as u64;
        self.total_len += appended as u64;
        self.dirty = true;
        Ok(())
    }

    /// The segment being written, to sync outside the writer's lock: everything logged so far
    /// is in it or in older segments, which `rotate` synced.
    pub fn handle(&self) -> Arc<Segment> {
        self.file.clone()
    }

    /// A handle to sync outside the writer's lock, if anything was written since the last one.
    pub fn take_dirty(&mut self) -> Option<Arc<Segment>> {
        std::mem::take(&mut self.dirty).then(|| self.file.clone())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.dirty = false;
        self.file.sync()
    }

    /// Closes the current segment and starts the next; returns the new segment's number.
    pub fn rotate(&mut self) -> io::Result<u64> {
        self.file.sync()?;
        let next = self.segment + 1;
        self.file = Arc::new(Segment::new(create_segment(&self.dir, &segment_path(&self.dir, next))?));
        self.segment = next;
        self.len = MAGIC.len() as u64;
        self.total_len += self.len;
        self.dirty = false;
        Ok(next)
    }

    /// Deletes the segments before `segment`, once a snapshot covers them.
    pub fn remove_before(&mut self, segment: u64) -> io::Result<u64> {
        let mut freed = 0;
        for old in list_segments(&self.dir)?.into_iter().filter(|s| *s < segment) {
            let path = segment_path(&self.dir, old);
            freed += fs::metadata(&path)?.len();
            fs::remove_file(path)?;
        }
        sync_dir(&self.dir)?;
        self.total_len = self.total_len.saturating_sub(freed);
        Ok(freed)
    }
}

fn encode<'r, R: Record + ?Sized + 'r>(first_lsn: u64, records: impl IntoIterator<Item = &'r R>, out: &mut Vec<u8>) {
    for (lsn, record) in (first_lsn..).zip(records) {
        frame::encode_with(lsn, out, |out| record.write_payload(out));
    }
}

fn create_segment(dir: &Path, path: &Path) -> io::Result<File> {
    let mut file = super::private::options().write(true).create_new(true).open(path)?;
    file.write_all(MAGIC)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes a file creation, rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(dir: &Path, n: u64) -> PathBuf {
        let mut wal = Wal::open(dir, 1, None, 0, false).unwrap();
        for lsn in 1..=n {
            wal.append_all(lsn, [format!("record {lsn}").as_bytes()]).unwrap();
        }
        segment_path(dir, 1)
    }

    fn scan(path: &Path) -> Result<(SegmentEnd, Vec<u64>), ScanError> {
        let mut seen = Vec::new();
        let (end, _) = scan_segment(path, 0, |f| {
            seen.push(f.lsn);
            Ok(())
        })?;
        Ok((end, seen))
    }

    #[test]
    fn scans_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 3);
        let (end, seen) = scan(&path).unwrap();
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(end, SegmentEnd::Clean { len: fs::metadata(&path).unwrap().len() });
    }

    #[test]
    fn deferred_records_reach_the_file_with_the_sync_in_order_and_before_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1, None, 0, true).unwrap();
        let path = segment_path(dir.path(), 1);
        wal.append_all(1, [&b"one"[..], b"two"]).unwrap();
        assert_eq!(scan(&path).unwrap().1, Vec::<u64>::new(), "written before any sync");
        // A sync taken before later appends still writes them: they wait in the same segment.
        let syncer = wal.take_dirty().expect("appended since the last sync");
        wal.append_all(3, [&b"three"[..]]).unwrap();
        syncer.sync().unwrap();
        let (end, seen) = scan(&path).unwrap();
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(end, SegmentEnd::Clean { len: wal.len });
        wal.append_all(4, [&b"four"[..]]).unwrap();
        assert_eq!(wal.rotate().unwrap(), 2);
        assert_eq!(scan(&path).unwrap().1, [1, 2, 3, 4], "a rotation writes what waits to the old segment");
        wal.append_all(5, [&b"five"[..]]).unwrap();
        wal.sync().unwrap();
        assert_eq!(scan(&segment_path(dir.path(), 2)).unwrap().1, [5]);
        assert_eq!(scan(&path).unwrap().1, [1, 2, 3, 4]);
    }

    #[test]
    fn a_failed_write_fails_every_later_sync_of_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 1);
        // Read-only: every write fails.
        let segment = Segment::new(File::open(&path).unwrap());
        segment.waiting.lock().extend_from_slice(b"a record");
        assert!(segment.sync().is_err());
        assert!(segment.waiting.lock().is_empty(), "the records written are gone from memory");
        assert!(segment.sync().is_err(), "a later sync would acknowledge records after the lost ones");
    }

    #[test]
    fn a_torn_tail_is_reported_with_the_valid_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 3);
        let full = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(full - 3).unwrap();
        let (end, seen) = scan(&path).unwrap();
        assert_eq!(seen, [1, 2]);
        let record_len = (frame::HEADER_LEN + "record 3".len()) as u64;
        assert!(matches!(end, SegmentEnd::Torn { valid_len, .. } if valid_len == full - record_len));
    }

    #[test]
    fn a_segment_of_another_format_is_refused_with_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[7] = 1;
        fs::write(&path, bytes).unwrap();
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, ScanError::Format { found: 1, reads: 2, .. }), "{err:?}");
        assert!(err.to_string().contains("log format 1; this build reads format 2"), "{err}");
    }

    #[test]
    fn corruption_in_the_middle_names_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 3);
        let mut bytes = fs::read(&path).unwrap();
        let second = MAGIC.len() + frame::HEADER_LEN + "record 1".len();
        bytes[second + frame::HEADER_LEN] ^= 0xFF;
        fs::write(&path, bytes).unwrap();
        match scan(&path) {
            Err(ScanError::Corrupt { offset, cause: BadFrame::Checksum, .. }) => assert_eq!(offset, second as u64),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
