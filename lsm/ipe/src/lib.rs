//! Placeholder until the policy engine lands.
#![no_std]
#![forbid(unsafe_code)]
