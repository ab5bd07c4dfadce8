//! Bounds-checked little-endian readers and hex conversion shared by the on-disk parsers.

/// Returns `len` bytes at `offset`, or `None` when the range is outside `buf`.
pub fn slice(buf: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    buf.get(offset..offset.checked_add(len)?)
}

pub fn array<const N: usize>(buf: &[u8], offset: usize) -> Option<[u8; N]> {
    slice(buf, offset, N)?.try_into().ok()
}

pub fn le_u16(buf: &[u8], offset: usize) -> Option<u16> {
    array(buf, offset).map(u16::from_le_bytes)
}

pub fn le_u32(buf: &[u8], offset: usize) -> Option<u32> {
    array(buf, offset).map(u32::from_le_bytes)
}

pub fn le_u64(buf: &[u8], offset: usize) -> Option<u64> {
    array(buf, offset).map(u64::from_le_bytes)
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Decodes lower-case hex. Upper case is rejected because the root hash signature covers
/// the literal lower-case string, so a differently cased hash would fail later and less clearly.
pub fn from_lower_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

/// Returns whether every byte of `buf` is zero.
pub fn all_zero(buf: &[u8]) -> bool {
    buf.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = [0x00, 0x01, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_lower_hex("0001abff"), Some(bytes.to_vec()));
    }

    #[test]
    fn hex_rejects_bad_input() {
        assert_eq!(from_lower_hex("0001ABFF"), None);
        assert_eq!(from_lower_hex("abc"), None);
        assert_eq!(from_lower_hex("zz"), None);
    }

    #[test]
    fn readers_check_bounds() {
        let buf = [1, 0, 0, 0, 2];
        assert_eq!(le_u32(&buf, 0), Some(1));
        assert_eq!(le_u32(&buf, 2), None);
        assert_eq!(le_u16(&buf, usize::MAX), None);
        assert_eq!(le_u64(&buf, 0), None);
    }
}
