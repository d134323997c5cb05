//! The framing shared by the log and snapshots: every record is
//! `[payload length u32][crc32 u32][lsn u64][payload]`, little-endian, the checksum covering the
//! sequence number and the payload.

use std::io::{self, BufRead, Read};

pub const HEADER_LEN: usize = 16;
/// A bound on one record, far above any valid one (message limits keep batches smaller), so
/// that a corrupted length is recognised rather than believed.
pub const MAX_PAYLOAD: usize = 256 << 20;

pub fn encode(lsn: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode_with(lsn, out, |out| out.extend_from_slice(payload));
}

/// Frames the payload `write` appends to `out`, in place: no buffer of its own to allocate.
pub fn encode_with(lsn: u64, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&lsn.to_le_bytes());
    write(out);
    let len = (out.len() - start - HEADER_LEN) as u32;
    // The sequence number and the payload are contiguous, so one pass covers both.
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    #[error("record is cut short: {0} of {1} bytes present")]
    Short(usize, usize),
    #[error("record length {0} exceeds the {MAX_PAYLOAD}-byte limit")]
    Length(usize),
    #[error("checksum mismatch")]
    Checksum,
}

/// A frame read from a stream: where it started, its sequence number and payload.
#[derive(Debug)]
pub struct Frame {
    pub offset: u64,
    pub lsn: u64,
    pub payload: Vec<u8>,
}

/// Reads frames one after another, tracking byte offsets for error reports.
pub struct FrameReader<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> FrameReader<R> {
    pub fn new(inner: R, offset: u64) -> Self {
        Self { inner, offset }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame, `None` at a clean end, or why the frame at `offset()` is bad.
    pub fn next_frame(&mut self) -> io::Result<Result<Option<Frame>, BadFrame>> {
        let mut header = [0u8; HEADER_LEN];
        let got = read_up_to(&mut self.inner, &mut header)?;
        if got == 0 {
            return Ok(Ok(None));
        }
        if got < HEADER_LEN {
            return Ok(Err(BadFrame::Short(got, HEADER_LEN)));
        }
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
        let lsn = u64::from_le_bytes(header[8..16].try_into().unwrap());
        if len > MAX_PAYLOAD {
            return Ok(Err(BadFrame::Length(len)));
        }
        let mut payload = vec![0u8; len];
        let got = read_up_to(&mut self.inner, &mut payload)?;
        if got < len {
            return Ok(Err(BadFrame::Short(HEADER_LEN + got, HEADER_LEN + len)));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[8..16]);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            return Ok(Err(BadFrame::Checksum));
        }
        let offset = self.offset;
        self.offset += (HEADER_LEN + len) as u64;
        Ok(Ok(Some(Frame { offset, lsn, payload })))
    }
}

/// Whether any intact frame starts anywhere in `bytes`: tells corruption in the middle of a
/// log (good records follow the bad one) from a torn tail (nothing good follows).
pub fn any_intact_frame(bytes: &[u8]) -> bool {
    (0..bytes.len()).any(|start| {
        let mut reader = FrameReader::new(&bytes[start..], 0);
        matches!(reader.next_frame(), Ok(Ok(Some(frame))) if frame.lsn > 0)
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offset, lsn and payload of one frame.
    type Read = (u64, u64, Vec<u8>);

    fn frames(bytes: &[u8]) -> (Vec<Read>, Option<BadFrame>) {
        let mut reader = FrameReader::new(bytes, 0);
        let mut out = Vec::new();
        loop {
            match reader.next_frame().unwrap() {
                Ok(Some(f)) => out.push((f.offset, f.lsn, f.payload)),
                Ok(None) => return (out, None),
                Err(bad) => return (out, Some(bad)),
            }
        }
    }

    #[test]
    fn round_trips_frames_with_offsets() {
        let mut buf = Vec::new();
        encode(1, b"hello", &mut buf);
        encode(2, b"", &mut buf);
        let (read, bad) = frames(&buf);
        assert_eq!(bad, None);
        assert_eq!(read, vec![(0, 1, b"hello".to_vec()), (21, 2, vec![])]);
    }

    #[test]
    fn detects_short_and_flipped_frames() {
        let mut buf = Vec::new();
        encode(1, b"hello", &mut buf);
        let (_, bad) = frames(&buf[..buf.len() - 1]);
        assert_eq!(bad, Some(BadFrame::Short(20, 21)));
        let mut flipped = buf.clone();
        flipped[18] ^= 1;
        assert_eq!(frames(&flipped).1, Some(BadFrame::Checksum));
    }

    #[test]
    fn finds_intact_frames_after_garbage() {
        let mut buf = vec![0xAB; 7];
        assert!(!any_intact_frame(&buf));
        encode(9, b"x", &mut buf);
        assert!(any_intact_frame(&buf));
    }
}
