//! The top-level error of every command: wraps each module's error and maps
//! it to an exit code (1: build or verification failure, 2: usage or
//! configuration error) and an optional hint.

use std::path::{Path, PathBuf};

/// Any failure of an applbuild command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Ext4(#[from] crate::ext4::Ext4Error),
    #[error(transparent)]
    Verity(#[from] crate::verity::VerityError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Sign(#[from] crate::sign::SignError),
    #[error(transparent)]
    Pkcs11(#[from] crate::pkcs11::Pkcs11Error),
    #[error("Secure Boot signing of the UKI failed: {0}")]
    Authenticode(#[from] crate::authenticode::AuthenticodeError),
    #[error("generated release policy is invalid at {0}; please report this bug")]
    Policy(crate::policy::PolicyError),
    #[error("{}:{source}", path.display())]
    PolicyFile { path: PathBuf, source: crate::policy::PolicyError },
    #[error("the kernel would reject {count} of the policy files")]
    PolicyRejected { count: usize },
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
    #[error(transparent)]
    Uki(#[from] crate::uki::UkiError),
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    #[error(transparent)]
    Fat(#[from] crate::disk::FatError),
    #[error(transparent)]
    FatRead(#[from] crate::disk::FatReadError),
    #[error(transparent)]
    Gpt(#[from] crate::disk::GptError),
    #[error(transparent)]
    Cpio(#[from] crate::initramfs::CpioError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Flash(#[from] crate::flash::FlashError),
    #[error(transparent)]
    Bmap(#[from] crate::bmap::BmapError),
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{failed} of {total} checks failed for {subject}")]
    ChecksFailed { subject: String, failed: usize, total: usize },
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },
    #[error("internal error: {0}; please report this bug")]
    Internal(String),
}

impl Error {
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io { action, path: path.to_path_buf(), source }
    }

    /// 0 success, 1 build or verification failure, 2 usage or configuration error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage { .. } => 2,
            Error::Tool(err) => err.exit_code(),
            Error::Rootfs(err) => err.exit_code(),
            Error::Ext4(err) => err.exit_code(),
            Error::Kernel(err) => err.exit_code(),
            // Key problems (missing files, loose modes, a key that does not
            // match its certificate) are fixed in the setup, not the build.
            Error::Key(_) => 2,
            Error::Run(err) => err.exit_code(),
            Error::Flash(err) => err.exit_code(),
            Error::Bmap(err) => err.exit_code(),
            Error::Pkcs11(err) => err.exit_code(),
            _ => 1,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Tool(err) => err.hint(),
            Error::Rootfs(err) => err.hint(),
            Error::Ext4(err) => err.hint(),
            Error::Kernel(err) => err.hint(),
            Error::Flash(err) => err.hint(),
            Error::Usage { hint, .. } => hint.clone(),
            Error::Run(err) => err.hint(),
            Error::Key(err) => err.hint(),
            _ => None,
        }
    }
}
