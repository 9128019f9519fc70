//! rkyv helpers: serialize a value to bytes, and validate-then-deserialize bytes that came from
//! the network.
//!
//! [`decode`] always runs bytecheck validation (bytes from the network are never trusted) and
//! copies the input into an [`AlignedVec`] when the slice is not aligned for rkyv, so callers
//! can hand it any sub-slice of a received buffer.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

/// Alignment rkyv needs for an archive root to be accessed in place.
const ARCHIVE_ALIGN: usize = 16;

/// What went wrong while encoding or decoding an rkyv value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Serialization failed.
    #[error("cannot encode {type_name}: {source}")]
    Encode {
        /// The type being encoded.
        type_name: &'static str,
        /// rkyv's error.
        source: rancor::Error,
    },
    /// The bytes are not a valid archive of the expected type.
    #[error("invalid {type_name} archive of {len} bytes: {source}")]
    Decode {
        /// The type expected.
        type_name: &'static str,
        /// Input length.
        len: usize,
        /// rkyv's (bytecheck's) error.
        source: rancor::Error,
    },
}

/// Serializes `value` with rkyv.
pub fn encode<T>(value: &T) -> Result<AlignedVec, CodecError>
where
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    rkyv::to_bytes::<rancor::Error>(value).map_err(|source| CodecError::Encode {
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Validates `bytes` as an archived `T` and deserializes it.
///
/// Misaligned input is copied into an aligned buffer first.
pub fn decode<T>(bytes: &[u8]) -> Result<T, CodecError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let result = if (bytes.as_ptr() as usize).is_multiple_of(ARCHIVE_ALIGN) {
        rkyv::from_bytes::<T, rancor::Error>(bytes)
    } else {
        let mut aligned = AlignedVec::<ARCHIVE_ALIGN>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<T, rancor::Error>(&aligned)
    };
    result.map_err(|source| CodecError::Decode {
        type_name: std::any::type_name::<T>(),
        len: bytes.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
    struct Sample {
        id: u64,
        name: String,
        data: Vec<u8>,
        maybe: Option<u32>,
    }

    fn sample() -> Sample {
        Sample {
            id: 7,
            name: "seven".into(),
            data: vec![1, 2, 3],
            maybe: Some(9),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
    }

    #[test]
    fn misaligned_input_is_copied_and_decoded() {
        let bytes = encode(&sample()).unwrap();
        let mut shifted = AlignedVec::<16>::new();
        shifted.extend_from_slice(&[0u8]);
        shifted.extend_from_slice(&bytes);
        let misaligned = &shifted[1..];
        assert!(!(misaligned.as_ptr() as usize).is_multiple_of(ARCHIVE_ALIGN));
        assert_eq!(decode::<Sample>(misaligned).unwrap(), sample());
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let err = decode::<Sample>(&[0xff; 40]).unwrap_err();
        assert!(matches!(err, CodecError::Decode { len: 40, .. }), "{err}");
        assert!(decode::<Sample>(&[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn values_round_trip(id in any::<u64>(), name in ".{0,40}", data in proptest::collection::vec(any::<u8>(), 0..200), maybe in any::<Option<u32>>()) {
            let value = Sample { id, name, data, maybe };
            let bytes = encode(&value).unwrap();
            prop_assert_eq!(decode::<Sample>(&bytes).unwrap(), value);
        }
    }
}
