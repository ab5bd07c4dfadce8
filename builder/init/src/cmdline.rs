//! The kernel command line keys of the boot contract.
//!
//! | key | required | value |
//! | --- | --- | --- |
//! | `roothash=` | yes | 64 lower-case hex digits: the sha256 dm-verity root hash |
//! | `applbuild.policy=` | yes | name of the IPE policy in `/policy.p7s` to activate |
//! | `root=PARTUUID=` | no | must equal the UUID derived from the first half of the root hash |
//! | `applbuild.verity=PARTUUID=` | no | must equal the UUID derived from the second half |
//! | `applbuild.timeout=` | no | seconds to wait for the disk, 1 to 3600, default 30 |
//!
//! Each of these keys may appear at most once, so that no later word can override a
//! value that the UKI's command line fixed. Words after a lone `--` are arguments for
//! init, not kernel parameters, and are ignored.

use crate::bytes;
use crate::gpt::{Guid, WantedUuids};

pub const DEFAULT_TIMEOUT_SECS: u32 = 30;
pub const MAX_TIMEOUT_SECS: u32 = 3600;
/// Maximum length of a securityfs directory entry name, in bytes.
const MAX_POLICY_NAME_LEN: usize = 255;

/// A sha256 dm-verity root hash and its lower-case hex text, which is the exact string
/// the root hash signature covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootHash {
    pub bytes: [u8; 32],
    pub hex: String,
}

impl RootHash {
    pub fn parse(text: &str) -> Result<RootHash, String> {
        if text.len() != 64 {
            return Err(format!("expected 64 hex digits, got {} characters", text.len()));
        }
        let decoded = bytes::from_lower_hex(text)
            .ok_or_else(|| "expected lower-case hex digits (0-9, a-f) only".to_string())?;
        let bytes: [u8; 32] = decoded
            .try_into()
            .map_err(|_| "expected 32 bytes".to_string())?;
        Ok(RootHash { bytes, hex: text.to_string() })
    }

    /// The first 12 hex digits, for progress messages.
    pub fn short(&self) -> &str {
        self.hex.get(..12).unwrap_or(&self.hex)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootParams {
    pub root_hash: RootHash,
    pub policy_name: String,
    pub uuids: WantedUuids,
    pub timeout_secs: u32,
}

/// Splits the command line into words as the kernel's `next_arg` does: whitespace
/// separates words, and double quotes group spaces into a word and are removed.
pub fn split_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            c if c.is_ascii_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut current));
                    has_word = false;
                }
            }
            c => {
                current.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(current);
    }
    words
}

/// Parses and checks the boot contract keys of `/proc/cmdline`.
pub fn parse(cmdline: &str) -> Result<BootParams, String> {
    let mut root_hash = None;
    let mut policy_name = None;
    let mut root_partuuid = None;
    let mut verity_partuuid = None;
    let mut timeout = None;

    for word in split_words(cmdline) {
        if word == "--" {
            break;
        }
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let slot = match key {
            "roothash" => &mut root_hash,
            "applbuild.policy" => &mut policy_name,
            "root" => &mut root_partuuid,
            "applbuild.verity" => &mut verity_partuuid,
            "applbuild.timeout" => &mut timeout,
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("{key}= appears more than once"));
        }
        *slot = Some(value.to_string());
    }

    let root_hash_text = root_hash.ok_or_else(|| "roothash= is missing".to_string())?;
    let root_hash = RootHash::parse(&root_hash_text).map_err(|e| format!("invalid roothash={root_hash_text}: {e}"))?;
    let uuids = WantedUuids::from_root_hash(&root_hash.bytes);

    let policy_name = policy_name.ok_or_else(|| "applbuild.policy= is missing".to_string())?;
    validate_policy_name(&policy_name).map_err(|e| format!("invalid applbuild.policy={policy_name}: {e}"))?;

    if let Some(value) = root_partuuid {
        check_partuuid("root", &value, uuids.root)?;
    }
    if let Some(value) = verity_partuuid {
        check_partuuid("applbuild.verity", &value, uuids.verity)?;
    }

    let timeout_secs = match timeout {
        None => DEFAULT_TIMEOUT_SECS,
        Some(value) => match value.parse::<u32>() {
            Ok(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) => secs,
            _ => {
                return Err(format!(
                    "invalid applbuild.timeout={value}: expected whole seconds from 1 to {MAX_TIMEOUT_SECS}"
                ))
            }
        },
    };

    Ok(BootParams { root_hash, policy_name, uuids, timeout_secs })
}

/// Checks a `PARTUUID=<uuid>` value against the UUID derived from the root hash.
fn check_partuuid(key: &str, value: &str, derived: Guid) -> Result<(), String> {
    let Some(text) = value.strip_prefix("PARTUUID=") else {
        return Err(format!("{key}={value} is not of the form PARTUUID=<uuid>"));
    };
    let given = Guid::parse(text).ok_or_else(|| format!("{key}=PARTUUID={text} is not a valid UUID"))?;
    if given != derived {
        return Err(format!(
            "{key}=PARTUUID={text} does not match the UUID {derived} derived from roothash"
        ));
    }
    Ok(())
}

/// Rejects names that cannot be a directory under `/sys/kernel/security/ipe/policies/`.
fn validate_policy_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if name.len() > MAX_POLICY_NAME_LEN {
        return Err(format!("the name is longer than {MAX_POLICY_NAME_LEN} bytes"));
    }
    if name == "." || name == ".." || name.contains('/') {
        return Err("the name cannot be a securityfs directory (\"/\", \".\" or \"..\")".to_string());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("the name contains a control character".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "c46e46b6bc50ac0d37b3b14b50821bab705944fbd6f87293eb7da884e7e13f02";

    fn line(extra: &str) -> String {
        format!("console=ttyS0 roothash={HASH} applbuild.policy=release_1_0_0 ipe.enforce=1 {extra}")
    }

    #[test]
    fn split_handles_quotes_and_newline() {
        let words = split_words("a=1  b=\"x y\" \"c=z w\"\n");
        assert_eq!(words, ["a=1", "b=x y", "c=z w"]);
    }

    #[test]
    fn parse_minimal_line() {
        let params = parse(&line("")).unwrap();
        assert_eq!(params.root_hash.hex, HASH);
        assert_eq!(params.root_hash.short(), "c46e46b6bc50");
        assert_eq!(params.policy_name, "release_1_0_0");
        assert_eq!(params.timeout_secs, DEFAULT_TIMEOUT_SECS);
        assert_eq!(params.uuids.root.to_string(), "c46e46b6-bc50-ac0d-37b3-b14b50821bab");
        assert_eq!(params.uuids.verity.to_string(), "705944fb-d6f8-7293-eb7d-a884e7e13f02");
    }

    #[test]
    fn parse_accepts_matching_partuuids() {
        let extra = "root=PARTUUID=c46e46b6-bc50-ac0d-37b3-b14b50821bab \
                     applbuild.verity=PARTUUID=705944FB-D6F8-7293-EB7D-A884E7E13F02 applbuild.timeout=5";
        let params = parse(&line(extra)).unwrap();
        assert_eq!(params.timeout_secs, 5);
    }

    #[test]
    fn parse_rejects_mismatched_root_partuuid() {
        let error = parse(&line("root=PARTUUID=705944fb-d6f8-7293-eb7d-a884e7e13f02")).unwrap_err();
        assert!(error.contains("does not match the UUID c46e46b6-bc50-ac0d-37b3-b14b50821bab"), "{error}");
    }

    #[test]
    fn parse_rejects_mismatched_verity_partuuid() {
        let error = parse(&line("applbuild.verity=PARTUUID=c46e46b6-bc50-ac0d-37b3-b14b50821bab")).unwrap_err();
        assert!(error.starts_with("applbuild.verity=PARTUUID="), "{error}");
    }

    #[test]
    fn parse_rejects_root_device_path() {
        let error = parse(&line("root=/dev/vda2")).unwrap_err();
        assert!(error.contains("not of the form PARTUUID="), "{error}");
    }

    #[test]
    fn parse_rejects_missing_keys() {
        assert_eq!(parse("console=ttyS0 applbuild.policy=p").unwrap_err(), "roothash= is missing");
        let error = parse(&format!("roothash={HASH}")).unwrap_err();
        assert_eq!(error, "applbuild.policy= is missing");
    }

    #[test]
    fn parse_rejects_bad_root_hashes() {
        let upper = HASH.to_ascii_uppercase();
        for bad in [&HASH[..62], upper.as_str(), &format!("{}zz", &HASH[..62])] {
            let error = parse(&format!("roothash={bad} applbuild.policy=p")).unwrap_err();
            assert!(error.starts_with("invalid roothash="), "{bad}: {error}");
        }
    }

    #[test]
    fn parse_ignores_words_after_double_dash() {
        let params = parse(&line("-- applbuild.timeout=5 roothash=00")).unwrap();
        assert_eq!(params.timeout_secs, DEFAULT_TIMEOUT_SECS);
        let error = parse(&format!("applbuild.policy=p -- roothash={HASH}")).unwrap_err();
        assert_eq!(error, "roothash= is missing");
    }

    #[test]
    fn parse_rejects_duplicate_keys() {
        let error = parse(&line(&format!("roothash={HASH}"))).unwrap_err();
        assert_eq!(error, "roothash= appears more than once");
    }

    #[test]
    fn parse_rejects_bad_timeouts() {
        for bad in ["0", "-1", "3601", "ten", ""] {
            let error = parse(&line(&format!("applbuild.timeout={bad}"))).unwrap_err();
            assert!(error.starts_with("invalid applbuild.timeout="), "{bad}: {error}");
        }
    }

    #[test]
    fn parse_rejects_bad_policy_names() {
        for bad in ["", ".", "..", "a/b"] {
            let error = parse(&format!("roothash={HASH} applbuild.policy={bad}")).unwrap_err();
            assert!(error.starts_with("invalid applbuild.policy="), "{bad:?}: {error}");
        }
    }
}
