// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The IPE (Integrity Policy Enforcement) policy engine of Linux 6.12, in
//! Rust: grammar, parser, evaluator, audit text, printer and lint.
//!
//! The same sources build into the kernel and into host tools, so the
//! crate is `no_std`, has no dependencies, no `unsafe` and, in the default
//! build, no allocation. Parsing takes two passes: [`measure`] counts what
//! a policy needs, the caller provides [`Storage`] of that size, and
//! [`parse_into`] fills it. The `alloc` feature adds [`Policy`], which owns
//! its storage.
//!
//! Contract:
//! - The parser accepts and rejects exactly what Linux 6.12's IPE does and
//!   returns the same errno ([`Errno`]). Every error also reports the line,
//!   column, token and expected form.
//! - [`evaluate`] decides as the kernel does (first matching rule of the
//!   operation, then its default, then the global default) but finds the
//!   rule through a digest index; [`evaluate_linear`] is the plain scan.
//! - [`print::write_policy`] writes text that parses back to an equal policy.
//! - No input makes it panic: indexing, `unwrap`, `expect`, `panic!` and
//!   unchecked arithmetic are denied by lints.
//!
//! It does not verify PKCS#7 signatures, compute policy digests, manage the
//! active policy or enforce anything; the kernel glue and the builder do.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::arithmetic_side_effects)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod audit;
pub mod error;
pub mod eval;
pub mod grammar;
pub mod lexer;
pub mod lint;
#[cfg(feature = "alloc")]
mod owned;
pub mod parser;
pub mod policy;
pub mod print;

pub use error::{Errno, ErrorKind, ParseError};
pub use eval::{evaluate, evaluate_active, evaluate_linear, Decision, DmVerity, Event, FileProperties, FsVerity, Providers, Source};
pub use grammar::{Action, Hook, Operation, PropertyKey};
#[cfg(feature = "alloc")]
pub use owned::Policy;
pub use parser::{measure, parse_into};
pub use policy::{Counts, PolicyRef, Storage};
