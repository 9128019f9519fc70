//! On-disk format of segment files: the header and the record frames.
//!
//! # Segment file
//! A segment is named by the index of its first entry, `{first_index:020}.seg`, and has a fixed
//! size (preallocated with zeros). It opens with a [`HEADER_BYTES`]-byte header:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `SHOALWAL` |
//! | 8..12 | format version (u32 LE) |
//! | 12..16 | header length (u32 LE, = 64) |
//! | 16..24 | first index (u64 LE) |
//! | 24..32 | salt (u64 LE, random per segment) |
//! | 32..60 | reserved, zero |
//! | 60..64 | crc32 of bytes 0..60 |
//!
//! # Record frame
//! Frames follow the header back to back, each starting at an 8-byte-aligned offset:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | length word (u32 LE): bit 31 set for a truncation marker, bits 0..31 the payload length |
//! | 4..8 | crc32, seeded with the segment's seed, over the length word, the payload and the padding |
//! | 8.. | payload: an rkyv-archived [`Entry`], or for a marker the u64 LE index it truncates after |
//! | .. | zero padding to the next multiple of 8 |
//!
//! The seed mixes the segment's random salt with its first index, so bytes left from another
//! segment (or another life of this file name) never verify. A zero length word ends the data.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use rkyv::rancor;

use crate::entry::{ArchivedEntry, Entry};

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SHOALWAL";
/// The segment format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of a segment header in bytes.
pub const HEADER_BYTES: usize = 64;
/// Size of a record frame's header (length word + crc) in bytes.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Frames start at multiples of this many bytes (rkyv needs the payload 8-byte aligned).
pub const FRAME_ALIGN: usize = 8;
/// Bit 31 of the length word marks a truncation marker.
pub const MARKER_FLAG: u32 = 1 << 31;
/// Largest payload a frame can carry.
pub const MAX_PAYLOAD_BYTES: usize = (MARKER_FLAG - 1) as usize;
/// Payload length of a truncation marker.
pub const MARKER_PAYLOAD_BYTES: usize = 8;
/// File-name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// The parsed header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Index of the first entry this segment holds.
    pub first_index: u64,
    /// Random salt chosen when the segment was created.
    pub salt: u64,
}

impl SegmentHeader {
    /// A header for a new segment starting at `first_index`, with a fresh random salt.
    pub fn new(first_index: u64) -> Self {
        Self {
            first_index,
            salt: random_u64(first_index),
        }
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        bytes[16..24].copy_from_slice(&self.first_index.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parses and verifies a header; the error says what failed.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEADER_BYTES {
            return Err(format!(
                "segment is {} bytes, shorter than its {HEADER_BYTES}-byte header",
                bytes.len()
            ));
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".to_string());
        }
        let stored_crc = read_u32(bytes, 60);
        let crc = crc32fast::hash(&bytes[0..60]);
        if stored_crc != crc {
            return Err(format!(
                "segment header checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
            ));
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "unsupported segment format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        let header_len = read_u32(bytes, 12);
        if header_len as usize != HEADER_BYTES {
            return Err(format!("unexpected segment header length {header_len}"));
        }
        let first_index = read_u64(bytes, 16);
        if first_index == 0 {
            return Err("segment first index is 0".to_string());
        }
        Ok(Self {
            first_index,
            salt: read_u64(bytes, 24),
        })
    }

    /// The crc seed of this segment's records.
    pub fn seed(&self) -> u32 {
        let mixed = self.salt ^ self.first_index.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
        (mixed as u32) ^ ((mixed >> 32) as u32)
    }
}

/// The file name of the segment whose first index is `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// The first index a segment file name encodes, if it is a segment's name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `len` rounded up to the frame alignment.
pub fn padded(len: usize) -> usize {
    len.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// The crc of a frame: seeded, over the length word and the padded body.
pub fn frame_crc(seed: u32, len_word: u32, padded_body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&len_word.to_le_bytes());
    hasher.update(padded_body);
    hasher.finalize()
}

/// Appends `entry` as one frame to `buf` (whose length must be a multiple of 8) and returns
/// the frame's length in bytes.
pub fn encode_entry(buf: &mut Vec<u8>, seed: u32, entry: &Entry) -> Result<usize, String> {
    debug_assert_eq!(buf.len() % FRAME_ALIGN, 0);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    let payload_start = buf.len();
    if let Err(error) = rkyv::api::high::to_bytes_in::<_, rancor::Error>(entry, &mut *buf) {
        buf.truncate(start);
        return Err(format!("cannot encode entry {}: {error}", entry.index));
    }
    let payload_len = buf.len() - payload_start;
    if payload_len > MAX_PAYLOAD_BYTES {
        buf.truncate(start);
        return Err(format!(
            "entry {} encodes to {payload_len} bytes, above the limit of {MAX_PAYLOAD_BYTES}",
            entry.index
        ));
    }
    finish_frame(buf, start, seed, payload_len as u32);
    Ok(buf.len() - start)
}

/// Appends a truncation marker ("every entry after `after` is discarded") to `buf`.
pub fn encode_marker(buf: &mut Vec<u8>, seed: u32, after: u64) -> usize {
    debug_assert_eq!(buf.len() % FRAME_ALIGN, 0);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    buf.extend_from_slice(&after.to_le_bytes());
    finish_frame(buf, start, seed, MARKER_FLAG | MARKER_PAYLOAD_BYTES as u32);
    buf.len() - start
}

fn finish_frame(buf: &mut Vec<u8>, start: usize, seed: u32, len_word: u32) {
    let payload_len = (len_word & !MARKER_FLAG) as usize;
    let body_start = start + FRAME_HEADER_BYTES;
    buf.resize(body_start + padded(payload_len), 0);
    let crc = frame_crc(seed, len_word, &buf[body_start..]);
    buf[start..start + 4].copy_from_slice(&len_word.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One verified record of a segment.
#[derive(Debug)]
pub enum Record<'a> {
    /// A log entry, validated by rkyv.
    Entry(&'a ArchivedEntry),
    /// A truncation marker: every entry after `after` is discarded.
    Marker {
        /// The last index kept.
        after: u64,
    },
}

/// What sits at a frame position.
#[derive(Debug)]
pub enum FrameRead<'a> {
    /// A zero length word: no more data here.
    End,
    /// A record that verified, and its frame length.
    Record(Record<'a>, usize),
    /// Bytes that do not form a valid frame, and why.
    Bad(String),
}

/// Reads the frame at `pos` of `bytes` (a whole segment, or any buffer holding the frame at
/// an offset with the same alignment as in the segment) and verifies it with `seed`.
///
/// The slice must be 8-byte aligned in memory at `pos` for rkyv validation to succeed.
pub fn read_frame(bytes: &[u8], pos: usize, seed: u32) -> FrameRead<'_> {
    debug_assert_eq!(pos % FRAME_ALIGN, 0);
    if pos + FRAME_HEADER_BYTES > bytes.len() {
        return if bytes[pos.min(bytes.len())..].iter().all(|b| *b == 0) {
            FrameRead::End
        } else {
            FrameRead::Bad("partial frame header at the end of the file".to_string())
        };
    }
    let len_word = read_u32(bytes, pos);
    let stored_crc = read_u32(bytes, pos + 4);
    if len_word == 0 {
        return if stored_crc == 0 {
            FrameRead::End
        } else {
            FrameRead::Bad("zero length with a non-zero checksum".to_string())
        };
    }
    let payload_len = (len_word & !MARKER_FLAG) as usize;
    let is_marker = len_word & MARKER_FLAG != 0;
    if payload_len == 0 {
        return FrameRead::Bad("empty payload".to_string());
    }
    let body_start = pos + FRAME_HEADER_BYTES;
    let body_end = body_start + padded(payload_len);
    if body_end > bytes.len() {
        return FrameRead::Bad(format!(
            "frame length {payload_len} runs past the end of the file"
        ));
    }
    let crc = frame_crc(seed, len_word, &bytes[body_start..body_end]);
    if crc != stored_crc {
        return FrameRead::Bad(format!(
            "checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
        ));
    }
    let payload = &bytes[body_start..body_start + payload_len];
    let frame_len = body_end - pos;
    if is_marker {
        if payload_len != MARKER_PAYLOAD_BYTES {
            return FrameRead::Bad(format!("truncation marker of {payload_len} bytes"));
        }
        return FrameRead::Record(
            Record::Marker {
                after: read_u64(payload, 0),
            },
            frame_len,
        );
    }
    match rkyv::access::<ArchivedEntry, rancor::Error>(payload) {
        Ok(entry) => FrameRead::Record(Record::Entry(entry), frame_len),
        Err(error) => FrameRead::Bad(format!("entry fails validation: {error}")),
    }
}

/// Whether any frame at an aligned offset in `from..` verifies with `seed`: used to tell a torn
/// tail (nothing valid follows the bad bytes) from corruption (valid records follow).
pub fn first_valid_frame_after(bytes: &[u8], from: usize, seed: u32) -> Option<usize> {
    let mut pos = padded(from);
    while pos + FRAME_HEADER_BYTES <= bytes.len() {
        // Fast path over zero-filled space.
        if read_u32(bytes, pos) != 0
            && let FrameRead::Record(..) = read_frame(bytes, pos, seed)
        {
            return Some(pos);
        }
        pos += FRAME_ALIGN;
    }
    None
}

/// Reads a little-endian u32 at `pos`; the caller guarantees the bounds.
pub fn read_u32(bytes: &[u8], pos: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[pos..pos + 4]);
    u32::from_le_bytes(word)
}

/// Reads a little-endian u64 at `pos`; the caller guarantees the bounds.
pub fn read_u64(bytes: &[u8], pos: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[pos..pos + 8]);
    u64::from_le_bytes(word)
}

/// A random-enough u64 without an RNG dependency: std's randomly keyed hasher over the time,
/// a process-wide counter and a caller value.
pub fn random_u64(mix: u64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(mix);
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryKind;

    fn aligned(bytes: &[u8]) -> rkyv::util::AlignedVec<16> {
        let mut v = rkyv::util::AlignedVec::<16>::new();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn header_round_trip_and_corruption() {
        let header = SegmentHeader::new(42);
        let mut bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        bytes[17] ^= 1;
        assert!(SegmentHeader::decode(&bytes).is_err());
    }

    #[test]
    fn frame_round_trip_and_seed() {
        let entry = Entry {
            index: 7,
            term: 3,
            kind: EntryKind::Normal,
            data: vec![9; 100],
        };
        let mut buf = Vec::new();
        let len = encode_entry(&mut buf, 11, &entry).unwrap();
        let marker_len = encode_marker(&mut buf, 11, 6);
        assert_eq!(len % 8, 0);
        let bytes = aligned(&buf);
        match read_frame(&bytes, 0, 11) {
            FrameRead::Record(Record::Entry(e), l) => {
                assert_eq!(l, len);
                assert_eq!(e.index, 7);
                assert_eq!(e.data.as_slice(), &[9; 100][..]);
            }
            other => panic!("{other:?}"),
        }
        match read_frame(&bytes, len, 11) {
            FrameRead::Record(Record::Marker { after: 6 }, l) => assert_eq!(l, marker_len),
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_frame(&bytes, 0, 12), FrameRead::Bad(_)));
        assert!(matches!(
            read_frame(&bytes, len + marker_len, 11),
            FrameRead::End
        ));
        assert_eq!(parse_segment_file_name(&segment_file_name(5)), Some(5));
        assert_eq!(parse_segment_file_name("5.seg"), None);
    }
}
