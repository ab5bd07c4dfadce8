//! The initramfs `/init` of applbuild images.
//!
//! It finds the root, root-verity and root-verity-sig partitions named by the
//! `roothash=` command line parameter. The kernel verifies the root hash signature
//! while the init sets up dm-verity. The init then mounts the verified root, loads
//! and activates the signed release IPE policy, and executes the root's `/sbin/init`.
//!
//! Any failure prints one line, `applbuild-init: error: <what failed>: <detail>`, on
//! the console and halts the machine. There is no fallback.

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod boot;
mod bytes;
mod cmdline;
mod disk;
mod dm;
mod errno;
mod gpt;
mod ipe;
mod sig;
mod sys;
mod verity_sb;

use std::fmt;
use std::io::Write;

/// A failed boot step, printed as one console line before the machine halts.
#[derive(Debug)]
pub struct Failure {
    what: String,
    detail: String,
}

impl Failure {
    pub fn new(what: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure { what: what.into(), detail: detail.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}: {}", self.what, self.detail)
    }
}

/// Prints `applbuild-init: <message>` on the console as one line with one write(2).
///
/// Control characters, which may come from disk contents, become `?` so that the
/// message stays on one line.
pub fn say(message: &str) {
    let clean: String = message.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    let line = format!("applbuild-init: {clean}\n");
    // Nothing can report a failed console write.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Prints the failure and halts.
fn fail(message: &str) -> ! {
    say(message);
    sys::drain_terminal(2);
    sys::halt()
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("applbuild-init: error: not running as PID 1: this is the initramfs /init; it mounts filesystems and halts the machine on failure");
        std::process::exit(2);
    }
    // A panic in PID 1 would become a kernel panic with a less clear message.
    std::panic::set_hook(Box::new(|info| fail(&format!("error: internal error: {info}"))));

    match boot::run() {
        Err(failure) => fail(&failure.to_string()),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_line_format() {
        let failure = Failure::new("boot disk not found", "no partition with PARTUUID x (root) on any disk after 30 s");
        assert_eq!(
            failure.to_string(),
            "error: boot disk not found: no partition with PARTUUID x (root) on any disk after 30 s"
        );
    }
}
