//! How state is written down: postcard for values, and checksummed frames
//! around them.
//!
//! postcard is compact and binary, so every `f64` round-trips bit for bit
//! (JSON would turn a NaN into `null`). A frame is
//! `[length: u32 LE][xxh3-64 of the payload: u64 LE][payload]`, so a torn
//! or corrupted write is detected instead of decoded into garbage.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use xxhash_rust::xxh3::xxh3_64;

/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode state: {0}")]
    Encode(postcard::Error),
    #[error("cannot decode state: {0}")]
    Decode(postcard::Error),
}

/// Appends `value`, encoded, to `buf`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(value, taken).map_err(CodecError::Encode)?;
    Ok(())
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::new();
    encode_into(value, &mut buf)?;
    Ok(buf)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(CodecError::Decode)
}

/// Writes one frame around `payload`.
pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("a state record over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&xxh3_64(payload).to_le_bytes())?;
    out.write_all(payload)
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The data ends inside the frame: a write that did not finish.
    #[error("truncated")]
    Truncated,
    #[error("checksum mismatch")]
    Checksum,
}

/// Reads the frame at the start of `data`: its payload and the bytes it
/// took. `Ok(None)` at the end of the data.
pub fn read_frame(data: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    if data.is_empty() {
        return Ok(None);
    }
    let header = data.get(..FRAME_HEADER).ok_or(FrameError::Truncated)?;
    let (len, sum) = header.split_at(4);
    let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
    let sum = u64::from_le_bytes(sum.try_into().unwrap_or_default());
    let end = FRAME_HEADER + len;
    let payload = data.get(FRAME_HEADER..end).ok_or(FrameError::Truncated)?;
    if xxh3_64(payload) != sum {
        return Err(FrameError::Checksum);
    }
    Ok(Some((payload, end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        floats: Vec<f64>,
        name: String,
        maybe: Option<i64>,
    }

    #[test]
    fn every_float_round_trips_bit_for_bit() {
        let floats = vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MIN_POSITIVE / 2.0,
            f64::MAX,
            0.1 + 0.2,
        ];
        let sample = Sample {
            floats: floats.clone(),
            name: "truck-0042".into(),
            maybe: Some(-7),
        };
        let back: Sample = decode(&encode(&sample).unwrap()).unwrap();
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.floats), bits(&floats));
        assert_eq!((back.name.as_str(), back.maybe), ("truck-0042", Some(-7)));
    }

    #[test]
    fn frames_detect_torn_and_flipped_bytes() {
        let mut data = Vec::new();
        write_frame(&mut data, b"first").unwrap();
        write_frame(&mut data, b"second").unwrap();
        let (one, used) = read_frame(&data).unwrap().unwrap();
        assert_eq!(one, b"first");
        let (two, rest) = read_frame(&data[used..]).unwrap().unwrap();
        assert_eq!(two, b"second");
        assert_eq!(read_frame(&data[used + rest..]), Ok(None));
        assert_eq!(
            read_frame(&data[..data.len() - 1]),
            Ok(Some((&b"first"[..], used)))
        );
        assert_eq!(
            read_frame(&data[used..data.len() - 1]),
            Err(FrameError::Truncated)
        );
        let mut flipped = data.clone();
        flipped[FRAME_HEADER + 1] ^= 0x20;
        assert_eq!(read_frame(&flipped), Err(FrameError::Checksum));
    }
}
