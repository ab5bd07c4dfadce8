//! Byte sizes as written in board files: `"512MiB"`, `"2GiB"` or a plain
//! number of bytes.
//!
//! Only binary units (KiB, MiB, GiB, TiB) are accepted. "M" and "MB" are
//! rejected because tools disagree on whether they mean 10^6 or 2^20 bytes,
//! and a disk image that is 4.6% smaller than expected fails late.

use std::fmt;
use std::str::FromStr;

/// One kibibyte, 2^10 bytes.
pub const KIB: u64 = 1 << 10;
/// One mebibyte, 2^20 bytes.
pub const MIB: u64 = 1 << 20;
/// One gibibyte, 2^30 bytes.
pub const GIB: u64 = 1 << 30;
/// One tebibyte, 2^40 bytes.
pub const TIB: u64 = 1 << 40;

/// Units accepted after the number, with their factor. Display picks the
/// largest unit that divides the value, so this list runs from large to small.
const UNITS: &[(&str, u64)] = &[("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)];

/// The accepted forms, for error messages.
pub const EXPECTED_FORM: &str =
    "a whole number of bytes, or a whole number followed by KiB, MiB, GiB or TiB, such as \"512MiB\"";

/// A size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Returns the size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Adds two sizes, returning `None` on overflow.
    pub fn checked_add(self, other: Bytes) -> Option<Bytes> {
        self.0.checked_add(other.0).map(Bytes)
    }

    /// Returns whether the size is a whole multiple of `unit` bytes.
    pub fn is_multiple_of(self, unit: u64) -> bool {
        unit != 0 && self.0.is_multiple_of(unit)
    }
}

/// Reason why a size string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The string is empty or has no digits before the unit.
    #[error("no number")]
    MissingNumber,
    /// The number has a sign, a fraction, an exponent or other non-digits.
    #[error("`{0}` is not a whole number")]
    InvalidNumber(String),
    /// The unit is not one of KiB, MiB, GiB or TiB.
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
    /// The unit is a decimal or ambiguous one such as "M" or "MB".
    #[error("ambiguous unit `{unit}`: write `{binary}` for 2^{exponent} bytes")]
    AmbiguousUnit {
        /// The unit as written.
        unit: String,
        /// The binary unit with the same prefix.
        binary: &'static str,
        /// The power of two that `binary` stands for.
        exponent: u32,
    },
    /// The value does not fit in 64 bits.
    #[error("the size exceeds 2^64 - 1 bytes")]
    Overflow,
}

impl FromStr for Bytes {
    type Err = SizeError;

    /// Parses a number of bytes, optionally followed by KiB, MiB, GiB or TiB,
    /// with no space in between.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        if number.is_empty() {
            return match unit.chars().next() {
                None => Err(SizeError::MissingNumber),
                Some(c) if c.is_alphabetic() => Err(SizeError::MissingNumber),
                Some(_) => Err(SizeError::InvalidNumber(text.to_owned())),
            };
        }
        if unit.starts_with(['.', ',', '_']) || is_exponent(unit) {
            return Err(SizeError::InvalidNumber(text.to_owned()));
        }
        let factor = unit_factor(unit)?;

        let value: u64 = number.parse().map_err(|_| SizeError::Overflow)?;
        value
            .checked_mul(factor)
            .map(Bytes)
            .ok_or(SizeError::Overflow)
    }
}

/// Returns whether `suffix` continues the number as an exponent, as in "1e6".
fn is_exponent(suffix: &str) -> bool {
    let mut chars = suffix.chars();
    matches!(chars.next(), Some('e' | 'E')) && matches!(chars.next(), Some('0'..='9' | '+' | '-'))
}

/// Returns the factor of a unit suffix, `1` for no suffix.
fn unit_factor(unit: &str) -> Result<u64, SizeError> {
    if unit.is_empty() {
        return Ok(1);
    }
    if let Some((_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) {
        return Ok(*factor);
    }

    // "K", "KB", "kB", "M", "MB", "Mi", "G", … : say which binary unit to write.
    let prefix = unit.chars().next().map(|c| c.to_ascii_uppercase());
    let rest = unit.get(1..).unwrap_or("");
    let binary = match prefix {
        Some('K') => Some(("KiB", 10)),
        Some('M') => Some(("MiB", 20)),
        Some('G') => Some(("GiB", 30)),
        Some('T') => Some(("TiB", 40)),
        _ => None,
    };
    match binary {
        Some((binary, exponent)) if ["", "B", "b", "i", "ib", "iB", "IB"].contains(&rest) => {
            Err(SizeError::AmbiguousUnit {
                unit: unit.to_owned(),
                binary,
                exponent,
            })
        }
        _ => Err(SizeError::UnknownUnit(unit.to_owned())),
    }
}

impl fmt::Display for Bytes {
    /// Formats the size with the largest binary unit that divides it exactly,
    /// or as a plain number of bytes, so that the output parses back to the
    /// same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            for (name, factor) in UNITS {
                if self.is_multiple_of(*factor) {
                    return write!(f, "{}{}", self.0 / factor, name);
                }
            }
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units_and_plain_bytes() {
        assert_eq!("4096".parse(), Ok(Bytes(4096)));
        assert_eq!("0".parse(), Ok(Bytes(0)));
        assert_eq!("1KiB".parse(), Ok(Bytes(1024)));
        assert_eq!("512MiB".parse(), Ok(Bytes(512 * MIB)));
        assert_eq!("2GiB".parse(), Ok(Bytes(2 * GIB)));
        assert_eq!("3TiB".parse(), Ok(Bytes(3 * TIB)));
    }

    #[test]
    fn rejects_decimal_and_ambiguous_units() {
        for text in ["2M", "2MB", "2mb", "2k", "2G", "2Gi", "1TB"] {
            assert!(
                matches!(text.parse::<Bytes>(), Err(SizeError::AmbiguousUnit { .. })),
                "{text} was not rejected as ambiguous"
            );
        }
        assert_eq!(
            "64XB".parse::<Bytes>(),
            Err(SizeError::UnknownUnit("XB".to_owned()))
        );
        assert_eq!(
            "64 MiB".parse::<Bytes>(),
            Err(SizeError::UnknownUnit(" MiB".to_owned()))
        );
    }

    #[test]
    fn rejects_malformed_numbers() {
        assert_eq!("".parse::<Bytes>(), Err(SizeError::MissingNumber));
        assert_eq!("MiB".parse::<Bytes>(), Err(SizeError::MissingNumber));
        assert_eq!(
            "-1".parse::<Bytes>(),
            Err(SizeError::InvalidNumber("-1".to_owned()))
        );
        assert_eq!(
            "+1".parse::<Bytes>(),
            Err(SizeError::InvalidNumber("+1".to_owned()))
        );
        assert_eq!(
            "1.5GiB".parse::<Bytes>(),
            Err(SizeError::InvalidNumber("1.5GiB".to_owned()))
        );
        assert_eq!(
            "1_000".parse::<Bytes>(),
            Err(SizeError::InvalidNumber("1_000".to_owned()))
        );
        assert_eq!(
            "1e6".parse::<Bytes>(),
            Err(SizeError::InvalidNumber("1e6".to_owned()))
        );
        assert_eq!("é".parse::<Bytes>(), Err(SizeError::MissingNumber));
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!("16777216TiB".parse::<Bytes>(), Err(SizeError::Overflow));
        assert_eq!(
            "99999999999999999999".parse::<Bytes>(),
            Err(SizeError::Overflow)
        );
        assert_eq!("18446744073709551615".parse(), Ok(Bytes(u64::MAX)));
    }

    #[test]
    fn display_round_trips() {
        for value in [
            0,
            1,
            4096,
            512 * MIB,
            1536 * MIB,
            2 * GIB,
            3 * TIB,
            u64::MAX,
        ] {
            let text = Bytes(value).to_string();
            assert_eq!(text.parse(), Ok(Bytes(value)), "{text}");
        }
        assert_eq!(Bytes(512 * MIB).to_string(), "512MiB");
        assert_eq!(Bytes(1536 * MIB).to_string(), "1536MiB");
        assert_eq!(Bytes(1000).to_string(), "1000");
    }
}
