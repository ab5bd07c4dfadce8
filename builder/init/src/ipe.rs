//! Loading and activating the signed release IPE policy through securityfs.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::errno;
use crate::Failure;

pub const SECURITYFS_IPE: &str = "/sys/kernel/security/ipe";

/// Loads the attached-PKCS#7 policy at `policy_file` and activates the policy `name`.
///
/// The kernel verifies the signature against its trusted keyrings and parses the
/// policy; this function only passes bytes and reports the errno.
pub fn load_and_activate(policy_file: &str, name: &str) -> Result<(), Failure> {
    if !Path::new(SECURITYFS_IPE).is_dir() {
        return Err(Failure::new(
            "IPE is not available",
            format!("{SECURITYFS_IPE} does not exist: the kernel lacks IPE or \"ipe\" is missing from its LSM list"),
        ));
    }
    let policy = fs::read(policy_file)
        .map_err(|e| Failure::new("cannot read the release policy", format!("{policy_file}: {}", errno::describe(&e))))?;
    if policy.is_empty() {
        return Err(Failure::new("cannot read the release policy", format!("{policy_file} is empty")));
    }

    let new_policy = format!("{SECURITYFS_IPE}/new_policy");
    write_once(&new_policy, &policy).map_err(|e| {
        Failure::new(
            "the kernel rejected the release IPE policy",
            format!("writing {policy_file} ({} bytes) to {new_policy}: {}{}", policy.len(), errno::describe(&e), new_policy_hint(&e)),
        )
    })?;

    let policy_dir = format!("{SECURITYFS_IPE}/policies/{name}");
    if !Path::new(&policy_dir).is_dir() {
        return Err(Failure::new(
            "the release IPE policy has another name",
            format!("the kernel loaded {policy_file} but {policy_dir} does not exist: the policy_name in the signed policy differs from applbuild.policy={name}"),
        ));
    }
    let active = format!("{policy_dir}/active");
    write_once(&active, b"1").map_err(|e| {
        Failure::new(
            "the kernel refused to activate the release IPE policy",
            format!("writing 1 to {active}: {}{}", errno::describe(&e), activate_hint(&e)),
        )
    })
}

/// Writes `data` in a single write(2), because IPE parses each write to its
/// securityfs files as a complete message.
fn write_once(path: &str, data: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    let written = file.write(data)?;
    if written != data.len() {
        return Err(io::Error::other(format!("short write of {written} of {} bytes", data.len())));
    }
    Ok(())
}

/// Explains the errors of a write to `new_policy` (IPE in Linux 6.12).
fn new_policy_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EBADMSG) => " (the file is not a signed PKCS#7 message or the policy text does not parse)",
        Some(libc::ENOKEY) => " (no key in the kernel's trusted keyrings signed the policy)",
        Some(libc::EKEYREJECTED) => " (the policy signature does not verify)",
        Some(libc::EEXIST) => " (a policy with the same name is already loaded)",
        Some(libc::ERANGE | libc::EINVAL) => " (the policy version is invalid)",
        Some(libc::EPERM) => " (the process lacks CAP_MAC_ADMIN)",
        _ => "",
    }
}

/// Explains the errors of a write to `policies/<name>/active`.
fn activate_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EINVAL) => " (the active policy has a higher version)",
        Some(libc::ESTALE) => " (the policy version is not newer than the active one)",
        Some(libc::EPERM) => " (the process lacks CAP_MAC_ADMIN)",
        Some(libc::ENOENT) => " (the policy was deleted)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_cause() {
        let hint = |code| new_policy_hint(&io::Error::from_raw_os_error(code));
        assert!(hint(libc::EBADMSG).contains("not a signed PKCS#7"));
        assert!(hint(libc::ENOKEY).contains("trusted keyrings"));
        assert!(hint(libc::EEXIST).contains("already loaded"));
        assert_eq!(hint(libc::EIO), "");
        let hint = activate_hint(&io::Error::from_raw_os_error(libc::EINVAL));
        assert!(hint.contains("higher version"));
    }

    #[test]
    fn write_once_writes_whole_buffer() {
        let path = std::env::temp_dir().join(format!("applbuild-init-ipe-{}", std::process::id()));
        fs::write(&path, b"").unwrap();
        write_once(path.to_str().unwrap(), b"0123456789").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"0123456789");
        fs::remove_file(&path).unwrap();
    }
}
