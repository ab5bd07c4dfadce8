//! Release policy lifecycle without rebuilding the image: `applbuild policy
//! generate`, `sign`, `diff` and `deploy`.
//!
//! `generate` writes the same policy text the image pipeline writes
//! ([`policy::generate`]). The root hashes come from built releases or from
//! the command line. The last generated version is kept in
//! `OUT/<board>/policy-state.json`, so that it never goes backwards. The kernel rejects an update whose `policy_version` is lower
//! than the loaded one with ESTALE, so a lower version could never be
//! deployed anyway.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::board::{self, Release};
use crate::error::Error;
use crate::signing::write_replacing;
use crate::{keys, policy, sign};

/// Name of the state file under `OUT/<board>/`.
pub const STATE_FILE: &str = "policy-state.json";
/// securityfs folder of IPE on the appliance.
pub const IPE_SECURITYFS: &str = "/sys/kernel/security/ipe";

/// Arguments of `applbuild policy generate`.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub board: PathBuf,
    /// Output root, as for `applbuild image`.
    pub out: PathBuf,
    /// Release to generate for; the board's release when absent.
    pub release: Option<String>,
    /// Allow the root hashes of this many earlier built releases (found
    /// under `OUT/<board>/`) besides this one. When absent, the board's
    /// `ipe.previous_releases` are allowed, as in `applbuild image`.
    pub keep_previous: Option<usize>,
    /// Root hashes to allow, this release first, instead of reading built outputs.
    pub root_hashes: Vec<String>,
    /// Output policy file; `OUT/<board>/policy-<release>.pol` when absent.
    pub output: Option<PathBuf>,
}

/// Result of `generate`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateOutcome {
    pub policy: PathBuf,
    pub name: String,
    pub version: String,
    pub root_hashes: Vec<String>,
    pub state: PathBuf,
}

/// Contents of `policy-state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PolicyState {
    policy_name: String,
    last_version: String,
    root_hashes: Vec<String>,
    policy_sha256: String,
}

/// Generates the release policy for a board and records its version.
///
/// # Errors
///
/// A usage error when the release is not `X.Y.Z`, is lower than the last
/// generated version, a root hash is not 64 lower-case hex digits, or this
/// release has no built `roothash` and none was given.
pub fn generate(request: &GenerateRequest) -> Result<GenerateOutcome, Error> {
    let board = board::load(&request.board)?;
    let release_text = request.release.clone().unwrap_or_else(|| board.release.to_string());
    let release = Release::parse(&release_text).ok_or_else(|| usage(format!("invalid release {release_text:?}: expected X.Y.Z with parts from 0 to 65535"), None))?;
    let board_out = request.out.join(&board.name);
    let state_path = board_out.join(STATE_FILE);
    let state = read_state(&state_path)?;
    if let Some(state) = &state {
        let last = Release::parse(&state.last_version).ok_or_else(|| usage(format!("{}: invalid last_version {:?}", state_path.display(), state.last_version), None))?;
        // NOTE: an equal version is allowed, so a release's policy can be regenerated. Whether
        // the kernel accepts an update of the same version is not tested here.
        if release < last {
            return Err(usage(
                format!("release {release} is lower than the last generated policy version {last} ({}): the kernel rejects a lower policy_version", state_path.display()),
                Some(format!("use release {last} or later, or delete {} if the older policies were never deployed", state_path.display())),
            ));
        }
    }

    let mut root_hashes = if request.root_hashes.is_empty() {
        built_root_hashes(&board_out, release, request.keep_previous, &board.ipe.previous_releases)?
    } else {
        request.root_hashes.clone()
    };
    for hash in &root_hashes {
        check_root_hash(hash)?;
    }
    let mut seen = std::collections::HashSet::new();
    root_hashes.retain(|hash| seen.insert(hash.clone()));

    let name = format!("applbuild-{}", board.name);
    let version = release.to_string();
    let text = policy::generate(&policy::PolicyInput { name: &name, version: &version, root_hashes: root_hashes.clone(), require_signature: board.ipe.require_signature });
    policy::check(text.as_bytes()).map_err(Error::Policy)?;

    let output = request.output.clone().unwrap_or_else(|| board_out.join(format!("policy-{version}.pol")));
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| Error::io("create", parent, source))?;
    }
    write_replacing(&output, text.as_bytes())?;
    let new_state = PolicyState { policy_name: name.clone(), last_version: version.clone(), root_hashes: root_hashes.clone(), policy_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())) };
    let state_text = serde_json::to_string_pretty(&new_state).map_err(|err| Error::Internal(format!("serialising the policy state: {err}")))?;
    write_replacing(&state_path, state_text.as_bytes())?;
    Ok(GenerateOutcome { policy: output, name, version, root_hashes, state: state_path })
}

fn read_state(path: &Path) -> Result<Option<PolicyState>, Error> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| usage(format!("{}: invalid policy state: {err}", path.display()), Some("fix or delete the file".into()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::io("read", path, source)),
    }
}

/// This release's built root hash, then the earlier releases' ones.
fn built_root_hashes(board_out: &Path, release: Release, keep_previous: Option<usize>, board_previous: &[String]) -> Result<Vec<String>, Error> {
    let current_path = board_out.join(release.to_string()).join("roothash");
    let current = fs::read_to_string(&current_path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => usage(format!("{} not found: release {release} has no built image", current_path.display()), Some("build it with applbuild image, or pass the root hashes with --roothash".into())),
        _ => Error::io("read", &current_path, source),
    })?;
    let mut hashes = vec![current.trim().to_string()];
    let Some(keep) = keep_previous else {
        hashes.extend(board_previous.iter().cloned());
        return Ok(hashes);
    };

    let mut earlier: Vec<(Release, PathBuf)> = Vec::new();
    let entries = fs::read_dir(board_out).map_err(|source| Error::io("read", board_out, source))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let roothash = entry.path().join("roothash");
        if let Some(version) = Release::parse(&name).filter(|version| *version < release) {
            if roothash.is_file() {
                earlier.push((version, roothash));
            }
        }
    }
    earlier.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    for (_, path) in earlier.into_iter().take(keep) {
        let hash = fs::read_to_string(&path).map_err(|source| Error::io("read", &path, source))?;
        hashes.push(hash.trim().to_string());
    }
    Ok(hashes)
}

fn check_root_hash(hash: &str) -> Result<(), Error> {
    let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(())
    } else {
        Err(usage(format!("invalid root hash {hash:?}: expected 64 lower-case hex digits (the roothash file of a build)"), None))
    }
}

/// Signs the policy text file `policy_path` with the key folder `key_dir`
/// (attached PKCS#7, the form IPE loads) and writes `<policy_path>.p7s`.
/// Rejects a policy the kernel would not parse.
pub fn sign_policy(policy_path: &Path, key_dir: &Path) -> Result<PathBuf, Error> {
    let text = fs::read(policy_path).map_err(|source| Error::io("read", policy_path, source))?;
    policy::check(&text).map_err(|err| usage(format!("{}: {err}", policy_path.display()), Some("fix the policy; applbuild policy lint shows every problem".into())))?;
    let key = keys::load(key_dir)?;
    let signature = sign::sign_attached(&key, &text)?;
    let mut output = policy_path.as_os_str().to_owned();
    output.push(".p7s");
    let output = PathBuf::from(output);
    write_replacing(&output, &signature)?;
    Ok(output)
}

/// A policy split into the parts `diff` compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyParts {
    /// `policy_name`, `policy_version` and any other header key.
    pub header: BTreeMap<String, String>,
    /// Default action by scope: `*` for the global default, else the operation.
    pub defaults: BTreeMap<String, String>,
    /// Rules in order, with whitespace normalised to single spaces.
    pub rules: Vec<String>,
}

/// Splits policy text into header, defaults and rules. Comments and blank
/// lines are dropped. The text is not validated; use `policy lint` for that.
pub fn parse_parts(text: &str) -> PolicyParts {
    let mut parts = PolicyParts::default();
    let mut header_seen = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if !header_seen {
            header_seen = true;
            for word in &words {
                let (key, value) = word.split_once('=').unwrap_or((word, ""));
                parts.header.insert(key.to_string(), value.to_string());
            }
            continue;
        }
        if words[0] == "DEFAULT" {
            let value_of = |key: &str| words.iter().find_map(|w| w.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')));
            let scope = value_of("op").unwrap_or("*").to_string();
            parts.defaults.insert(scope, value_of("action").unwrap_or_default().to_string());
            continue;
        }
        parts.rules.push(words.join(" "));
    }
    parts
}

/// Differences between two policies, from OLD to NEW.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyDiff {
    /// Header keys whose value changed: (key, old, new); a missing key is empty.
    pub header: Vec<(String, String, String)>,
    /// Defaults that changed: (scope, old, new); `*` is the global default.
    pub defaults: Vec<(String, String, String)>,
    pub rules_added: Vec<String>,
    pub rules_removed: Vec<String>,
    /// Whether the rules common to both appear in a different order, which
    /// matters because IPE applies the first matching rule.
    pub order_changed: bool,
}

impl PolicyDiff {
    /// Reports whether the policies have no differences.
    pub fn is_empty(&self) -> bool {
        self.header.is_empty() && self.defaults.is_empty() && self.rules_added.is_empty() && self.rules_removed.is_empty() && !self.order_changed
    }

    /// Formats the differences, one per line: `~` changed, `+` added, `-` removed.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (key, old, new) in &self.header {
            lines.push(format!("~ {key}: {old} -> {new}"));
        }
        for (scope, old, new) in &self.defaults {
            let label = if scope == "*" { "DEFAULT".to_string() } else { format!("DEFAULT op={scope}") };
            lines.push(format!("~ {label} action: {} -> {}", or_none(old), or_none(new)));
        }
        lines.extend(self.rules_removed.iter().map(|rule| format!("- {rule}")));
        lines.extend(self.rules_added.iter().map(|rule| format!("+ {rule}")));
        if self.order_changed {
            lines.push("~ the rules both policies share are in a different order (IPE applies the first match)".into());
        }
        lines
    }
}

fn or_none(value: &str) -> &str {
    if value.is_empty() { "(none)" } else { value }
}

/// Compares two policies.
pub fn diff(old: &PolicyParts, new: &PolicyParts) -> PolicyDiff {
    let mut result = PolicyDiff::default();
    let changed = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter_map(|key| {
                let (old, new) = (a.get(key).cloned().unwrap_or_default(), b.get(key).cloned().unwrap_or_default());
                (old != new).then(|| (key.clone(), old, new))
            })
            .collect::<Vec<_>>()
    };
    result.header = changed(&old.header, &new.header);
    result.defaults = changed(&old.defaults, &new.defaults);
    result.rules_removed = old.rules.iter().filter(|rule| !new.rules.contains(rule)).cloned().collect();
    result.rules_added = new.rules.iter().filter(|rule| !old.rules.contains(rule)).cloned().collect();
    let common_old: Vec<&String> = old.rules.iter().filter(|rule| new.rules.contains(rule)).collect();
    let common_new: Vec<&String> = new.rules.iter().filter(|rule| old.rules.contains(rule)).collect();
    result.order_changed = common_old != common_new;
    result
}

/// Reads a policy as text: a text file as it is, or the content of an
/// attached PKCS#7 signature (`.p7s`, DER), which is not verified here.
pub fn read_policy_text(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|source| Error::io("read", path, source))?;
    // DER SEQUENCE tag: a signed policy. Policy text starts with a letter or '#'.
    let text = if bytes.first() == Some(&0x30) { sign::unverified_content(&bytes)? } else { bytes };
    String::from_utf8(text).map_err(|_| usage(format!("{}: the policy is not UTF-8 text", path.display()), None))
}

/// The commands that load a signed policy on a running appliance.
#[derive(Debug, Clone, Serialize)]
pub struct DeployPlan {
    pub policy_name: String,
    pub policy_version: String,
    /// Size of the signed policy in bytes; `dd` writes it in one block.
    pub size: u64,
    /// Shell commands for a policy already copied to `remote_path`.
    pub commands: Vec<String>,
}

/// Plans loading the signed policy `signed_path` (attached PKCS#7) through
/// IPE's securityfs. When `cert` is given, the signature is checked with it
/// first. The file must reach the kernel in one `write()`: IPE parses each
/// write to `new_policy` or `update` as a whole policy.
pub fn deploy_plan(signed_path: &Path, cert: Option<&Path>, remote_path: &str) -> Result<DeployPlan, Error> {
    let signed = fs::read(signed_path).map_err(|source| Error::io("read", signed_path, source))?;
    let text = match cert {
        Some(cert) => sign::verify_attached(&signed, &keys::load_certificate(cert)?)?,
        None => sign::unverified_content(&signed)?,
    };
    let parts = parse_parts(&String::from_utf8_lossy(&text));
    let name = parts.header.get("policy_name").cloned().ok_or_else(|| usage(format!("{}: the signed policy has no policy_name", signed_path.display()), None))?;
    let version = parts.header.get("policy_version").cloned().unwrap_or_default();
    let size = signed.len() as u64;
    let dir = format!("{IPE_SECURITYFS}/policies/{name}");
    let commands = vec![
        format!("if [ -d {dir} ]; then target={dir}/update; else target={IPE_SECURITYFS}/new_policy; fi"),
        format!("dd if={remote_path} of=\"$target\" bs={size} count=1"),
        format!("echo 1 > {dir}/active"),
        format!("cat {dir}/version"),
    ];
    Ok(DeployPlan { policy_name: name, policy_version: version, size, commands })
}

/// Renders a self-contained shell script that carries the signed policy
/// (Base64) and loads and activates it. Run it as root on the appliance,
/// for example with `ssh root@appliance sh -s < deploy.sh`. It needs
/// `base64`, `dd` and `mktemp`, which BusyBox provides. It writes the
/// policy to a temporary file under /run.
pub fn deploy_script(plan: &DeployPlan, signed: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(signed);
    let mut wrapped = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        wrapped.push_str(&String::from_utf8_lossy(chunk));
        wrapped.push('\n');
    }
    let dir = format!("{IPE_SECURITYFS}/policies/{}", plan.policy_name);
    format!(
        "#!/bin/sh\n\
         # Loads IPE policy {name} version {version} ({size} bytes, signed) and activates it.\n\
         # Run as root on the appliance: ssh root@APPLIANCE sh -s < this-script\n\
         set -eu\n\
         policy=$(mktemp /run/ipe-policy.XXXXXX)\n\
         trap 'rm -f \"$policy\"' EXIT\n\
         base64 -d > \"$policy\" <<'END_OF_POLICY'\n\
         {wrapped}END_OF_POLICY\n\
         [ \"$(wc -c < \"$policy\")\" -eq {size} ] || {{ echo \"deploy: the policy arrived damaged\" >&2; exit 1; }}\n\
         if [ -d {dir} ]; then target={dir}/update; else target={ipe}/new_policy; fi\n\
         # IPE parses each write as a whole policy, so dd writes the file in one block.\n\
         dd if=\"$policy\" of=\"$target\" bs={size} count=1 2>/dev/null\n\
         echo 1 > {dir}/active\n\
         echo \"active: {name} version $(cat {dir}/version)\"\n",
        name = plan.policy_name,
        version = plan.policy_version,
        size = plan.size,
        ipe = IPE_SECURITYFS,
    )
}

fn usage(message: String, hint: Option<String>) -> Error {
    Error::Usage { message, hint }
}
