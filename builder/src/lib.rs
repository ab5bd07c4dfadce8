//! applbuild: turns a board description into a signed, dm-verity protected,
//! IPE-enforcing Linux appliance disk image.
//!
//! Each pipeline stage is one module with typed input and output; `pipeline`
//! runs them in order for `applbuild image`. Commands that are not stages
//! (`run`, `keys`) have their own modules.
#![forbid(unsafe_code)]

pub mod bmap;
pub mod board;
pub mod config;
pub mod deb822;
pub mod debpkg;
pub mod dep5;
pub mod manifest;
pub mod size;
pub mod verity;
pub mod keys;
pub mod sign;
pub mod initramfs;
pub mod uki;
pub mod authenticode;
pub mod disk;
pub mod build_record;
pub mod cache;
pub mod cache_keys;
pub mod digest;
pub mod error;
pub mod ext4;
pub mod flash;
pub mod init_build;
pub mod kernel;
pub mod pipeline;
pub mod pkcs11;
pub mod policy;
pub mod policy_lifecycle;
pub mod policy_cmd;
pub mod progress;
pub mod rootfs;
pub mod run;
pub mod sbom;
pub mod signing;
pub mod tool;
pub mod verify;
