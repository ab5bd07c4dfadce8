//! External host tools: finding them, running them, and turning their
//! failures into errors that name the command and its last output lines.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A host program and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const MMDEBSTRAP: Tool = Tool { program: "mmdebstrap", package: "mmdebstrap" };
pub const DPKG_DEB: Tool = Tool { program: "dpkg-deb", package: "dpkg" };
pub const MKE2FS: Tool = Tool { program: "mke2fs", package: "e2fsprogs" };
pub const E2FSCK: Tool = Tool { program: "e2fsck", package: "e2fsprogs" };
pub const DEBUGFS: Tool = Tool { program: "debugfs", package: "e2fsprogs" };
pub const TAR: Tool = Tool { program: "tar", package: "tar" };
pub const CP: Tool = Tool { program: "cp", package: "coreutils" };
pub const TOUCH: Tool = Tool { program: "touch", package: "coreutils" };
pub const CHROOT: Tool = Tool { program: "chroot", package: "coreutils" };
pub const MOUNT: Tool = Tool { program: "mount", package: "mount" };
pub const UMOUNT: Tool = Tool { program: "umount", package: "mount" };
pub const QEMU: Tool = Tool { program: "qemu-system-x86_64", package: "qemu-system-x86" };
pub const QEMU_IMG: Tool = Tool { program: "qemu-img", package: "qemu-utils" };
pub const CARGO: Tool = Tool { program: "cargo", package: "cargo (rustup)" };

/// Every tool `applbuild image` runs on the host.
pub const IMAGE_TOOLS: &[Tool] = &[MMDEBSTRAP, DPKG_DEB, MKE2FS, E2FSCK, DEBUGFS, TAR, CP, TOUCH, CHROOT, MOUNT, UMOUNT];

/// Errors of running an external tool.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("required host programs are missing: {}", programs.join(", "))]
    Missing { programs: Vec<String>, packages: Vec<String> },
    #[error("failed to start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{command} failed with {status}{}", tail_text(.stderr_tail))]
    Failed { command: String, status: std::process::ExitStatus, stderr_tail: String },
}

fn tail_text(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n{tail}")
    }
}

impl ToolError {
    /// Missing host programs are a setup problem (exit code 2); a tool that
    /// ran and failed is a build failure (exit code 1).
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Missing { .. } => 2,
            _ => 1,
        }
    }

    /// The command that installs what is missing, when that is the problem.
    pub fn hint(&self) -> Option<String> {
        match self {
            ToolError::Missing { packages, .. } => Some(format!("install them with: apt-get install {}", packages.join(" "))),
            _ => None,
        }
    }
}

/// Finds `program` in PATH, also looking in /usr/sbin and /sbin, which are
/// not in a normal user's PATH on Debian.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.push(PathBuf::from("/sbin"));
    dirs.into_iter().map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// Checks that every tool in `tools` is installed, naming all missing ones
/// and their packages at once.
pub fn require(tools: &[Tool]) -> Result<(), ToolError> {
    let mut programs = Vec::new();
    let mut packages: Vec<String> = Vec::new();
    for tool in tools {
        if find(tool.program).is_none() {
            programs.push(tool.program.to_string());
            if !packages.iter().any(|p| p == tool.package) {
                packages.push(tool.package.to_string());
            }
        }
    }
    if programs.is_empty() {
        Ok(())
    } else {
        Err(ToolError::Missing { programs, packages })
    }
}

/// Builds a command for `tool`, resolved through `find` so sbin programs work.
pub fn command(tool: Tool) -> Command {
    match find(tool.program) {
        Some(path) => Command::new(path),
        None => Command::new(tool.program),
    }
}

/// Renders a command line for logs and error messages.
pub fn display(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&quote(arg));
    }
    text
}

fn quote(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Runs `cmd` to completion with captured output; a non-zero exit becomes
/// `ToolError::Failed` carrying the last lines of stderr.
pub fn run(cmd: &mut Command) -> Result<Output, ToolError> {
    let line = display(cmd);
    tracing::debug!(command = %line, "running");
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ToolError::Spawn { program, source })?;
    if output.status.success() {
        Ok(output)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = if stderr.trim().is_empty() { stdout } else { stderr };
        Err(ToolError::Failed { command: line, status: output.status, stderr_tail: last_lines(&text, 15) })
    }
}

/// Returns the last `count` lines of `text`.
pub fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(count);
    lines[start..].join("\n")
}
