//! Length-prefixed framing and four-letter-word detection.
//!
//! Every frame is a 4-byte big-endian length and that many bytes. The length is
//! checked against `jute.maxbuffer` before anything is buffered for it, as
//! ZooKeeper does (it closes the connection on a bad length).

use thiserror::Error;

pub const LENGTH_PREFIX: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame length {len} is negative or over jute.maxbuffer {max}")]
    BadLength { len: i32, max: usize },
}

/// Finds the first complete frame in `buf`. Returns the payload and the number
/// of bytes it occupies (prefix included), or `None` if more bytes are needed.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(*prefix);
    let payload_len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(FrameError::BadLength { len, max })?;
    let total = LENGTH_PREFIX + payload_len;
    Ok(buf
        .get(LENGTH_PREFIX..total)
        .map(|payload| (payload, total)))
}

/// Appends one frame whose payload is produced by `write`.
pub fn write_frame(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX]);
    write(out);
    let len = i32::try_from(out.len() - start - LENGTH_PREFIX).expect("frame over i32::MAX");
    out[start..start + LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// ZooKeeper's four-letter words. A new connection whose first four bytes spell
/// one of these is an admin command, not a session.
pub const FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro", "mntr", "ruok", "srst",
    "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
];

/// The four-letter word spelled by the first bytes of a connection, if any.
pub fn four_letter_word(first: &[u8; 4]) -> Option<&'static str> {
    FOUR_LETTER_WORDS
        .iter()
        .copied()
        .find(|w| w.as_bytes() == first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_frames_wait_for_more_bytes() {
        let mut out = Vec::new();
        write_frame(&mut out, |b| b.extend_from_slice(b"abc"));
        assert_eq!(split_frame(&out[..2], 100), Ok(None));
        assert_eq!(split_frame(&out[..6], 100), Ok(None));
        assert_eq!(split_frame(&out, 100), Ok(Some((&b"abc"[..], 7))));
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused_before_buffering() {
        assert!(split_frame(&101i32.to_be_bytes(), 100).is_err());
        assert!(split_frame(&(-5i32).to_be_bytes(), 100).is_err());
        assert_eq!(split_frame(&100i32.to_be_bytes(), 100), Ok(None));
    }

    #[test]
    fn four_letter_words_are_recognised_only_exactly() {
        assert_eq!(four_letter_word(b"ruok"), Some("ruok"));
        assert_eq!(four_letter_word(b"RUOK"), None);
        assert_eq!(four_letter_word(&[0, 0, 0, 44]), None);
    }
}
