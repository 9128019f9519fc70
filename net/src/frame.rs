//! Frames on the wire: `u32 length (LE) + u32 crc32 (LE) + payload`.
//!
//! Every stream Shoal opens — peer streams and client request streams — carries a sequence of
//! frames. A decoder checks the length against a configured maximum *before* it allocates or
//! reads the payload, and checks the crc32 before anything looks inside the payload, so bytes
//! from the network are never interpreted unchecked.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of frame header: a little-endian `u32` payload length, then a little-endian `u32`
/// crc32 of the payload.
pub const FRAME_HEADER_LEN: usize = 8;

/// Default bound on one frame's payload: 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// What went wrong while encoding or decoding a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The payload is larger than the configured maximum frame size.
    #[error("frame payload of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Declared (decode) or actual (encode) payload length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The crc32 stored in the header does not match the payload.
    #[error(
        "frame checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x} ({len} bytes)"
    )]
    Checksum {
        /// crc32 from the header.
        expected: u32,
        /// crc32 computed over the received payload.
        actual: u32,
        /// Payload length.
        len: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {got} of {needed} bytes read")]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        got: usize,
        /// Bytes the frame needed.
        needed: usize,
    },
    /// Bytes followed the one frame a stream carries.
    #[error("bytes follow the stream's only frame")]
    Trailing,
    /// Reading from or writing to the stream failed.
    #[error("frame i/o failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A frame header parsed from its 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// crc32 of the payload.
    pub crc: u32,
}

impl FrameHeader {
    /// Parses a header and checks the length against `max_frame_bytes`.
    pub fn parse(
        bytes: [u8; FRAME_HEADER_LEN],
        max_frame_bytes: usize,
    ) -> Result<Self, FrameError> {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len as usize > max_frame_bytes {
            return Err(FrameError::TooLarge {
                len: u64::from(len),
                max: max_frame_bytes,
            });
        }
        Ok(Self { len, crc })
    }

    /// Checks `payload` against this header's checksum.
    pub fn verify(&self, payload: &[u8]) -> Result<(), FrameError> {
        let actual = crc32fast::hash(payload);
        if actual != self.crc {
            return Err(FrameError::Checksum {
                expected: self.crc,
                actual,
                len: payload.len(),
            });
        }
        Ok(())
    }
}

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(
    payload: &[u8],
    max_frame_bytes: usize,
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    let len = check_len(payload.len(), max_frame_bytes)?;
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.put_u32_le(len);
    out.put_u32_le(crc32fast::hash(payload));
    out.put_slice(payload);
    Ok(())
}

/// Returns one frame holding `payload` as a fresh buffer.
pub fn frame_bytes(payload: &[u8], max_frame_bytes: usize) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + payload.len());
    encode_frame(payload, max_frame_bytes, &mut out)?;
    Ok(out.freeze())
}

fn check_len(len: usize, max_frame_bytes: usize) -> Result<u32, FrameError> {
    let too_large = FrameError::TooLarge {
        len: len as u64,
        max: max_frame_bytes,
    };
    if len > max_frame_bytes {
        return Err(too_large);
    }
    u32::try_from(len).map_err(|_| too_large)
}

/// Decodes the first frame of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call again), or
/// `Ok(Some((payload, consumed)))` where `consumed` counts header and payload. The length is
/// checked against `max_frame_bytes` as soon as the header is complete, so an oversized frame
/// is refused before its payload arrives.
pub fn decode_frame(
    buf: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(header_bytes) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    let header = FrameHeader::parse(*header_bytes, max_frame_bytes)?;
    let end = FRAME_HEADER_LEN + header.len as usize;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..end) else {
        return Ok(None);
    };
    header.verify(payload)?;
    Ok(Some((payload, end)))
}

/// Reads one frame from `reader`.
///
/// Returns `Ok(None)` on a clean end of stream at a frame boundary. The payload buffer is
/// allocated only after the length passed its bound.
pub async fn read_frame<R>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError>
where
    R: AsyncRead + Unpin,
{
    match read_frame_header(reader, max_frame_bytes).await? {
        Some(header) => read_frame_payload(reader, header).await.map(Some),
        None => Ok(None),
    }
}

/// Reads and checks one frame header from `reader` (the first half of [`read_frame`], for a
/// caller that must account for the payload's size before it is read).
///
/// Returns `Ok(None)` on a clean end of stream at a frame boundary.
pub async fn read_frame_header<R>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Option<FrameHeader>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < FRAME_HEADER_LEN {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                got,
                needed: FRAME_HEADER_LEN,
            });
        }
        got += n;
    }
    FrameHeader::parse(header, max_frame_bytes).map(Some)
}

/// Reads the payload announced by `header` and checks its crc32 (the second half of
/// [`read_frame`]).
pub async fn read_frame_payload<R>(reader: &mut R, header: FrameHeader) -> Result<Bytes, FrameError>
where
    R: AsyncRead + Unpin,
{
    let len = header.len as usize;
    let mut payload = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = reader.read(&mut payload[filled..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                got: FRAME_HEADER_LEN + filled,
                needed: FRAME_HEADER_LEN + len,
            });
        }
        filled += n;
    }
    header.verify(&payload)?;
    Ok(Bytes::from(payload))
}

/// Reads the end of a stream that carries one frame, once that frame is read.
///
/// Every request and answer of the client protocol is a stream of exactly one frame. Reading
/// its end, rather than dropping the stream before the end arrived, also spares the peer a
/// STOP_SENDING packet (quinn sends one for a stream dropped unfinished): one tiny datagram per
/// request each way, most of the datagrams of a busy cluster.
pub async fn read_end<R>(reader: &mut R) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut byte = [0u8; 1];
    match reader.read(&mut byte).await? {
        0 => Ok(()),
        _ => Err(FrameError::Trailing),
    }
}

/// Writes one frame holding `payload` to `writer` (one `write_all` of header and payload).
pub async fn write_frame<W>(
    writer: &mut W,
    payload: &[u8],
    max_frame_bytes: usize,
) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
{
    let frame = frame_bytes(payload, max_frame_bytes)?;
    writer.write_all(&frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_one_frame() {
        let mut out = BytesMut::new();
        encode_frame(b"hello", 64, &mut out).unwrap();
        let (payload, used) = decode_frame(&out, 64).unwrap().unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(used, FRAME_HEADER_LEN + 5);
    }

    #[test]
    fn oversized_is_refused_from_header_alone() {
        let mut header = Vec::new();
        header.extend_from_slice(&(1u32 << 30).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        match decode_frame(&header, 1024) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, 1 << 30);
                assert_eq!(max, 1024);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(matches!(
            encode_frame(&[0u8; 10], 9, &mut BytesMut::new()),
            Err(FrameError::TooLarge { len: 10, max: 9 })
        ));
    }

    #[test]
    fn flipped_bit_fails_checksum() {
        let mut out = BytesMut::new();
        encode_frame(b"payload bytes", 64, &mut out).unwrap();
        let last = out.len() - 1;
        out[last] ^= 0x01;
        assert!(matches!(
            decode_frame(&out, 64),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let frame = frame_bytes(b"abcdef", 64).unwrap();
        for cut in 0..frame.len() {
            assert!(
                decode_frame(&frame[..cut], 64).unwrap().is_none(),
                "cut at {cut}"
            );
        }
    }

    #[tokio::test]
    async fn async_read_reports_truncation_and_clean_eof() {
        let frame = frame_bytes(b"abcdef", 64).unwrap();
        let mut whole: &[u8] = &frame;
        assert_eq!(
            read_frame(&mut whole, 64).await.unwrap().unwrap(),
            &b"abcdef"[..]
        );
        assert!(read_frame(&mut whole, 64).await.unwrap().is_none());
        let mut cut: &[u8] = &frame[..frame.len() - 2];
        assert!(matches!(
            read_frame(&mut cut, 64).await,
            Err(FrameError::Truncated {
                got: 12,
                needed: 14
            })
        ));
        let mut cut_header: &[u8] = &frame[..3];
        assert!(matches!(
            read_frame(&mut cut_header, 64).await,
            Err(FrameError::Truncated { got: 3, needed: 8 })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes never panic the decoder, and whatever it accepts is a real frame.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..4096) {
            if let Ok(Some((payload, used))) = decode_frame(&bytes, max) {
                prop_assert!(payload.len() <= max);
                prop_assert_eq!(used, FRAME_HEADER_LEN + payload.len());
                prop_assert_eq!(crc32fast::hash(payload), u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
            }
        }

        /// The async reader agrees: arbitrary bytes give frames or typed errors, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic_async_reader(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut reader: &[u8] = &bytes;
                for _ in 0..bytes.len() + 1 {
                    match read_frame(&mut reader, 256).await {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
            });
        }

        /// A sequence of frames decodes back to the same payloads, in order.
        #[test]
        fn frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut out = BytesMut::new();
            for payload in &payloads {
                encode_frame(payload, 300, &mut out).unwrap();
            }
            let mut rest: &[u8] = &out;
            let mut decoded = Vec::new();
            while let Some((payload, used)) = decode_frame(rest, 300).unwrap() {
                decoded.push(payload.to_vec());
                rest = &rest[used..];
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(decoded, payloads);
        }

        /// Any single corrupted byte of a frame is detected (as a length or checksum error),
        /// or, when it hits the length field, the frame no longer parses as the original.
        #[test]
        fn single_byte_corruption_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..200), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut frame = frame_bytes(&payload, 1024).unwrap().to_vec();
            let i = index.index(frame.len());
            frame[i] ^= flip;
            if let Ok(Some((decoded, _))) = decode_frame(&frame, 1024) {
                prop_assert_ne!(decoded, &payload[..]);
            }
        }
    }
}
