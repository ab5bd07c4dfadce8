// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The field text of IPE's audit records, as Linux 6.12's
//! `security/ipe/audit.c` writes it: 1420 (AUDIT_IPE_ACCESS), 1421
//! (AUDIT_IPE_CONFIG_CHANGE) and 1422 (AUDIT_IPE_POLICY_LOAD). The
//! `type=… msg=audit(…):` prefix is the audit subsystem's and is not written.
//!
//! Policy names are written unescaped, as the kernel does. Because the
//! output is a [`fmt::Write`], bytes of a name that are not UTF-8 are
//! written as `\xNN`, where the kernel writes the raw byte.

use core::fmt;

use crate::eval::{Decision, Source};
use crate::grammar::{Hook, Operation, UNKNOWN_OPERATION_NAME};
use crate::policy::{PolicyRef, Version};
use crate::print::{write_rule, write_untrusted, DigestStyle, Escaped, TextWriter};

/// The file an access event is about, as the audit record names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditFile<'a> {
    /// The path from `d_path`.
    pub path: &'a [u8],
    /// The superblock id (`s_id`), such as `dm-0` or `tmpfs`.
    pub device: &'a [u8],
    /// The inode number.
    pub inode: u64,
}

/// The context of an AUDIT_IPE_ACCESS record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessContext<'a> {
    /// The event's operation, `None` for an unmapped one (`UNKNOWN`).
    pub operation: Option<Operation>,
    /// The hook.
    pub hook: Hook,
    /// Whether IPE was enforcing.
    pub enforcing: bool,
    /// The thread group id of the current task.
    pub pid: i32,
    /// The task's command name.
    pub comm: &'a [u8],
    /// The file, if the event has one.
    pub file: Option<AuditFile<'a>>,
}

/// Writes the fields of an AUDIT_IPE_ACCESS (1420) record:
/// `ipe_op=… ipe_hook=… enforcing=… pid=… comm=… path=… dev=… ino=… rule="…"`.
///
/// The caller decides whether to write the record at all
/// ([`Decision::is_audited`]).
///
/// # Errors
///
/// [`fmt::Error`] when `out` fails.
pub fn write_access<W: fmt::Write>(out: &mut W, policy: &PolicyRef<'_>, context: &AccessContext<'_>, decision: &Decision) -> fmt::Result {
    let operation = context.operation.map_or(UNKNOWN_OPERATION_NAME, Operation::name);
    write!(out, "ipe_op={operation} ipe_hook={} enforcing={} pid={} comm=", context.hook.name(), u8::from(context.enforcing), context.pid)?;
    write_untrusted(&mut TextWriter(out), context.comm)?;
    match &context.file {
        Some(file) => {
            out.write_str(" path=")?;
            write_untrusted(&mut TextWriter(out), file.path)?;
            out.write_str(" dev=")?;
            write_untrusted(&mut TextWriter(out), file.device)?;
            write!(out, " ino={}", file.inode)?;
        }
        None => out.write_str(" path=? dev=? ino=?")?,
    }

    let action = decision.action.name();
    match decision.source {
        Source::Rule(index) => {
            out.write_str(" rule=\"")?;
            if let Some(rule) = policy.rule(index) {
                write_rule(&mut TextWriter(out), policy, rule, DigestStyle::Audit)?;
            }
            out.write_str("\"")
        }
        Source::OperationDefault(operation) => write!(out, " rule=\"DEFAULT op={} action={action}\"", operation.name()),
        Source::GlobalDefault | Source::UnknownOperationWithoutDefault | Source::NoActivePolicy => {
            write!(out, " rule=\"DEFAULT action={action}\"")
        }
    }
}

/// A policy as audit records identify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicySummary<'a> {
    /// `policy_name`.
    pub name: &'a [u8],
    /// `policy_version`.
    pub version: Version,
    /// SHA-256 of the signed PKCS#7 blob; of zero bytes for the boot policy.
    pub sha256: &'a [u8],
}

fn write_summary<W: fmt::Write>(out: &mut W, prefix: &str, name_field: &str, version_field: &str, summary: &PolicySummary<'_>) -> fmt::Result {
    let Version { major, minor, revision } = summary.version;
    write!(out, "{prefix}{name_field}=\"{}\" {prefix}{version_field}={major}.{minor}.{revision} ", Escaped(summary.name))?;
    write!(out, "{prefix}policy_digest=sha256:")?;
    for byte in summary.sha256 {
        write!(out, "{byte:02X}")?;
    }
    Ok(())
}

/// Writes the fields of an AUDIT_IPE_CONFIG_CHANGE (1421) record, written
/// when the active policy changes. With no previous policy the `old_*`
/// fields are `?`.
///
/// # Errors
///
/// [`fmt::Error`] when `out` fails.
pub fn write_config_change<W: fmt::Write>(out: &mut W, old: Option<&PolicySummary<'_>>, new: &PolicySummary<'_>, auid: u32, session: u32) -> fmt::Result {
    match old {
        Some(old) => write_summary(out, "old_", "active_pol_name", "active_pol_version", old)?,
        None => out.write_str("old_active_pol_name=? old_active_pol_version=? old_policy_digest=?")?,
    }
    out.write_str(" ")?;
    write_summary(out, "new_", "active_pol_name", "active_pol_version", new)?;
    write!(out, " auid={auid} ses={session} lsm=ipe res=1")
}

/// Field set of an AUDIT_IPE_POLICY_LOAD record, by kernel version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadRecordFormat {
    /// Linux 6.12 to 6.15: successful loads only, ending at `res=1`.
    Linux6_12,
    /// Later kernels: failed loads too, with an `errno=` field.
    WithErrno,
}

/// Writes the fields of an AUDIT_IPE_POLICY_LOAD (1422) record for a load
/// that succeeded (`Ok`) or failed with a positive errno (`Err`). Returns
/// whether a record is written: [`LoadRecordFormat::Linux6_12`] writes
/// nothing for a failed load.
///
/// # Errors
///
/// [`fmt::Error`] when `out` fails.
pub fn write_policy_load<W: fmt::Write>(
    out: &mut W,
    outcome: Result<&PolicySummary<'_>, i32>,
    auid: u32,
    session: u32,
    format: LoadRecordFormat,
) -> Result<bool, fmt::Error> {
    match (outcome, format) {
        (Ok(summary), LoadRecordFormat::Linux6_12) => {
            write_summary(out, "", "policy_name", "policy_version", summary)?;
            write!(out, " auid={auid} ses={session} lsm=ipe res=1")?;
        }
        (Ok(summary), LoadRecordFormat::WithErrno) => {
            write_summary(out, "", "policy_name", "policy_version", summary)?;
            write!(out, " auid={auid} ses={session} lsm=ipe res=1 errno=0")?;
        }
        (Err(_), LoadRecordFormat::Linux6_12) => return Ok(false),
        (Err(errno), LoadRecordFormat::WithErrno) => {
            out.write_str("policy_name=? policy_version=? policy_digest=?")?;
            write!(out, " auid={auid} ses={session} lsm=ipe res=0 errno={}", errno.checked_neg().unwrap_or(i32::MIN))?;
        }
    }
    Ok(true)
}
