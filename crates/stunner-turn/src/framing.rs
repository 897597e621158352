//! Splitting a byte stream (TCP, TLS) into STUN messages and ChannelData frames
//! (RFC 8656 §12.5): a STUN message is its 20-byte header plus the length in it; a
//! ChannelData frame is 4 bytes plus its length padded to a multiple of 4.

/// The stream does not carry STUN or ChannelData: the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingError;

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream carries neither STUN nor ChannelData")
    }
}

impl std::error::Error for FramingError {}

/// The length of the frame at the start of `buf`: `Ok(None)` when more bytes are
/// needed to tell, `Ok(Some(n))` when the first frame is `n` bytes (possibly more than
/// `buf` holds yet).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FramingError> {
    match buf.first() {
        None => Ok(None),
        Some(0x00..=0x03) => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if len % 4 != 0 {
                return Err(FramingError);
            }
            Ok(Some(20 + len))
        }
        Some(0x40..=0x7F) => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            Ok(Some(4 + len.div_ceil(4) * 4))
        }
        Some(_) => Err(FramingError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame_len(&[]), Ok(None));
        assert_eq!(frame_len(&[0x00, 0x01]), Ok(None));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x08]), Ok(Some(28)));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x07]), Err(FramingError));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x05]), Ok(Some(12)));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x08]), Ok(Some(12)));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x00]), Ok(Some(4)));
        assert_eq!(frame_len(&[0x7F, 0xFE, 0x00, 0x01]), Ok(Some(8)));
        assert_eq!(frame_len(&[0x16, 0x03]), Err(FramingError));
        assert_eq!(frame_len(&[0x80, 0x00]), Err(FramingError));
    }
}
