//! The root-verity-sig partition: a JSON object padded with NUL bytes, as the
//! Discoverable Partitions Specification defines it:
//! `{"rootHash":"<hex>","signature":"<base64 DER PKCS#7>", ...}`.
//!
//! Only `rootHash` and `signature` are used. Other fields, such as
//! `certificateFingerprint`, are ignored because the specification allows later
//! revisions to add fields.

/// Largest payload of a `user` key (`user_preparse` in security/keys/user_defined.c).
pub const MAX_SIGNATURE_BYTES: usize = 32767;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureRecord {
    pub root_hash: String,
    /// DER PKCS#7, detached, over the `root_hash` text.
    pub signature: Vec<u8>,
}

/// Parses the partition contents: the JSON object, then only NUL bytes up to the end of `data`.
pub fn parse_partition(data: &[u8]) -> Result<SignatureRecord, String> {
    let text_len = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, padding) = data.split_at(text_len);
    if !crate::bytes::all_zero(padding) {
        return Err("non-NUL bytes after the JSON object's NUL padding".to_string());
    }
    let text = std::str::from_utf8(text).map_err(|_| "the JSON text is not valid UTF-8".to_string())?;

    let mut parser = Parser { text: text.as_bytes(), pos: 0 };
    let fields = parser.top_level_string_fields()?;

    let mut root_hash = None;
    let mut signature = None;
    for (key, value) in fields {
        let slot = match key.as_str() {
            "rootHash" => &mut root_hash,
            "signature" => &mut signature,
            _ => continue,
        };
        let Some(value) = value else {
            return Err(format!("JSON field {key:?} is not a string"));
        };
        if slot.is_some() {
            return Err(format!("JSON field {key:?} appears more than once"));
        }
        *slot = Some(value);
    }

    let root_hash = root_hash.ok_or_else(|| "JSON field \"rootHash\" is missing".to_string())?;
    let signature_text = signature.ok_or_else(|| "JSON field \"signature\" is missing".to_string())?;
    let signature = decode_base64(&signature_text).map_err(|e| format!("JSON field \"signature\": {e}"))?;
    if signature.is_empty() {
        return Err("JSON field \"signature\" is empty".to_string());
    }
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "the signature has {} bytes, more than the {MAX_SIGNATURE_BYTES} a user key can hold",
            signature.len()
        ));
    }
    // A DER PKCS#7 ContentInfo is a SEQUENCE. The kernel does the real check.
    if signature.first() != Some(&0x30) {
        return Err("the signature is not DER (it does not start with a SEQUENCE tag)".to_string());
    }
    Ok(SignatureRecord { root_hash, signature })
}

/// Maximum nesting of arrays and objects skipped inside the top-level object, so that
/// a crafted partition cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// A small JSON (RFC 8259) reader that returns the top-level object's members and
/// skips values other than strings.
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    /// Returns each member of the top-level object as (key, `Some(string)` or `None`
    /// for a value that is not a string).
    fn top_level_string_fields(&mut self) -> Result<Vec<(String, Option<String>)>, String> {
        self.skip_whitespace();
        self.expect(b'{')?;
        let mut fields = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_whitespace();
                let key = self.string()?;
                self.skip_whitespace();
                self.expect(b':')?;
                self.skip_whitespace();
                let value = if self.peek() == Some(b'"') {
                    Some(self.string()?)
                } else {
                    self.skip_value(0)?;
                    None
                };
                fields.push((key, value));
                self.skip_whitespace();
                match self.next() {
                    Some(b',') => continue,
                    Some(b'}') => break,
                    _ => return Err(self.error("expected ',' or '}'")),
                }
            }
        }
        self.skip_whitespace();
        if self.pos != self.text.len() {
            return Err(self.error("unexpected text after the JSON object"));
        }
        Ok(fields)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.pos)
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.next() == Some(byte) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", char::from(byte))))
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            let run = self.text.get(start..self.pos).unwrap_or_default();
            out.push_str(std::str::from_utf8(run).map_err(|_| self.error("invalid UTF-8 in a string"))?);
            match self.next() {
                Some(b'"') => return Ok(out),
                Some(b'\\') => out.push(self.escape()?),
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let c = match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let high = self.hex4()?;
                if (0xd800..0xdc00).contains(&high) {
                    if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                        return Err(self.error("unpaired UTF-16 surrogate"));
                    }
                    let low = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&low) {
                        return Err(self.error("unpaired UTF-16 surrogate"));
                    }
                    let code = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
                    char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))?
                } else {
                    char::from_u32(high).ok_or_else(|| self.error("unpaired UTF-16 surrogate"))?
                }
            }
            _ => return Err(self.error("invalid escape")),
        };
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = self
                .next()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            value = value * 16 + digit;
        }
        Ok(value)
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.skip_whitespace();
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(open @ (b'{' | b'[')) => {
                self.pos += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                self.skip_whitespace();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    if open == b'{' {
                        self.string()?;
                        self.skip_whitespace();
                        self.expect(b':')?;
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_whitespace();
                    match self.next() {
                        Some(b',') => continue,
                        Some(b) if b == close => return Ok(()),
                        _ => return Err(self.error("expected ',' or a closing bracket")),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.pos += 1;
                }
                Ok(())
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        let end = self.pos + word.len();
        if self.text.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }
}

/// Decodes standard Base64 (RFC 4648 section 4) with `=` padding, no line breaks.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let input = text.as_bytes();
    if !input.len().is_multiple_of(4) {
        return Err(format!("Base64 length {} is not a multiple of 4", input.len()));
    }
    let value = |c: u8| -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    };

    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let quad_count = input.len() / 4;
    for (index, quad) in input.chunks_exact(4).enumerate() {
        let is_last = index + 1 == quad_count;
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !is_last) {
            return Err(format!("misplaced Base64 padding in group {index}"));
        }
        let mut bits = 0u32;
        for &c in quad.iter().take(4 - padding) {
            let v = value(c).ok_or_else(|| format!("invalid Base64 character {:?}", char::from(c)))?;
            bits = (bits << 6) | v;
        }
        bits <<= 6 * padding as u32;
        let [_, b0, b1, b2] = bits.to_be_bytes();
        // Canonical encoding: the bits beyond the last full byte must be zero.
        let (bytes, unused) = match padding {
            0 => (vec![b0, b1, b2], 0),
            1 => (vec![b0, b1], b2),
            _ => (vec![b0], b1 | b2),
        };
        if unused != 0 {
            return Err(format!("non-canonical Base64 padding bits in group {index}"));
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "c46e46b6bc50ac0d37b3b14b50821bab705944fbd6f87293eb7da884e7e13f02";

    fn padded(json: &str, size: usize) -> Vec<u8> {
        let mut data = json.as_bytes().to_vec();
        data.resize(size, 0);
        data
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let cases = [("", ""), ("Zg==", "f"), ("Zm8=", "fo"), ("Zm9v", "foo"), ("Zm9vYg==", "foob"), ("Zm9vYmE=", "fooba"), ("Zm9vYmFy", "foobar")];
        for (encoded, decoded) in cases {
            assert_eq!(decode_base64(encoded).unwrap(), decoded.as_bytes(), "{encoded}");
        }
        assert_eq!(decode_base64("+/8=").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn base64_rejects_bad_input() {
        for bad in ["Zg=", "Zg=a", "Z===", "Zg==Zg==", "Zh==", "Zm9v\nYmFy", "Zm9-"] {
            assert!(decode_base64(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_systemd_repart_layout() {
        let json = format!(r#"{{"rootHash":"{HASH}","certificateFingerprint":"{}","signature":"MAEC"}}"#, "ab".repeat(32));
        let record = parse_partition(&padded(&json, 4096)).unwrap();
        assert_eq!(record.root_hash, HASH);
        assert_eq!(record.signature, [0x30, 0x01, 0x02]);
    }

    #[test]
    fn parse_skips_unknown_values() {
        let json = format!(
            r#" {{ "x": [1, -2.5e3, {{"y": null}}, true, false, "s\"\u00e9"], "rootHash" : "{HASH}", "n": {{}}, "signature": "MAEC" }} "#
        );
        let record = parse_partition(&padded(&json, 8192)).unwrap();
        assert_eq!(record.root_hash, HASH);
    }

    #[test]
    fn parse_without_padding() {
        let json = format!(r#"{{"rootHash":"{HASH}","signature":"MAEC"}}"#);
        assert!(parse_partition(json.as_bytes()).is_ok());
    }

    #[test]
    fn parse_decodes_string_escapes() {
        let json = r#"{"rootHash":"a\/b\u0041\ud83d\ude00","signature":"MAEC"}"#;
        assert_eq!(parse_partition(json.as_bytes()).unwrap().root_hash, "a/bA\u{1f600}");
    }

    #[test]
    fn parse_rejects_bad_partitions() {
        let good = format!(r#"{{"rootHash":"{HASH}","signature":"MAEC"}}"#);
        let mut garbage_after = padded(&good, 4096);
        garbage_after[4000] = b'x';
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (padded("", 4096), "expected '{'"),
            (garbage_after, "non-NUL bytes"),
            (br#"{"signature":"MAEC"}"#.to_vec(), "\"rootHash\" is missing"),
            (format!(r#"{{"rootHash":"{HASH}"}}"#).into_bytes(), "\"signature\" is missing"),
            (br#"{"rootHash":1,"signature":"MAEC"}"#.to_vec(), "not a string"),
            (format!(r#"{{"rootHash":"{HASH}","rootHash":"{HASH}","signature":"MAEC"}}"#).into_bytes(), "more than once"),
            (format!(r#"{{"rootHash":"{HASH}","signature":"QUJD"}}"#).into_bytes(), "not DER"),
            (format!(r#"{{"rootHash":"{HASH}","signature":""}}"#).into_bytes(), "is empty"),
            (format!(r#"{{"rootHash":"{HASH}","signature":"MAE"}}"#).into_bytes(), "multiple of 4"),
            (format!(r#"{{"rootHash":"{HASH}","signature":"MAEC"}} x"#).into_bytes(), "after the JSON object"),
            (format!(r#"{{"rootHash":"{HASH}" "signature":"MAEC"}}"#).into_bytes(), "expected ',' or '}'"),
            (br#"{"rootHash":"abc"#.to_vec(), "unterminated string"),
            (b"{\"rootHash\":\"a\nb\",\"signature\":\"MAEC\"}".to_vec(), "control character"),
            (br#"{"rootHash":"\ud800","signature":"MAEC"}"#.to_vec(), "surrogate"),
            (br#"{"rootHash":"\q","signature":"MAEC"}"#.to_vec(), "invalid escape"),
            (br#"{"x":tru,"signature":"MAEC"}"#.to_vec(), "invalid literal"),
            (vec![b'{', b'"', 0xff, b'"'], "UTF-8"),
        ];
        for (data, expected) in cases {
            let error = parse_partition(&data).unwrap_err();
            assert!(error.contains(expected), "expected {expected:?} in {error:?}");
        }
    }

    #[test]
    fn parse_rejects_oversized_signature() {
        let big = "MAAA".repeat(MAX_SIGNATURE_BYTES / 3 + 1);
        let json = format!(r#"{{"rootHash":"{HASH}","signature":"{big}"}}"#);
        let error = parse_partition(json.as_bytes()).unwrap_err();
        assert!(error.contains("more than the 32767"), "{error}");
    }

    #[test]
    fn parse_limits_nesting() {
        let deep = format!(r#"{{"x":{}{},"rootHash":"{HASH}","signature":"MAEC"}}"#, "[".repeat(100), "]".repeat(100));
        let error = parse_partition(deep.as_bytes()).unwrap_err();
        assert!(error.contains("nesting too deep"), "{error}");
    }
}
