//! rkyv helpers: every decode copies into an aligned buffer and validates.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

/// Largest payload (request, query, response, stored record) decoded, in bytes.
pub const MAX_ENCODED_BYTES: usize = 8 * 1024 * 1024;

/// Serializes `value`. Serializing owned strings, vectors and integers into memory cannot
/// fail; should it ever, the empty vector is returned and refused by every decoder.
pub(crate) fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    match rkyv::to_bytes::<rancor::Error>(value) {
        Ok(bytes) => bytes.into_vec(),
        Err(error) => {
            tracing::error!(%error, "rkyv serialization failed");
            Vec::new()
        }
    }
}

/// Validates and deserializes `bytes` (any alignment).
pub(crate) fn decode<T>(bytes: &[u8]) -> Result<T, String>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(format!(
            "{} bytes exceed the limit of {MAX_ENCODED_BYTES}",
            bytes.len()
        ));
    }
    if bytes.is_empty() {
        return Err("empty payload".to_string());
    }
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| e.to_string())
}
