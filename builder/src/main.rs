//! The `applbuild` command line: a thin layer over the library's stages.

use applbuild::cache::Cache;
use applbuild::error::Error;
use applbuild::pipeline::{self, ImageOptions};
use applbuild::policy_cmd::{self, ExplainRequest};
use applbuild::run::{self, Accel, RunOptions};
use applbuild::{board, flash, keys, policy_lifecycle, signing, verify};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Build signed, dm-verity protected, IPE-enforcing Linux appliance images.
#[derive(Parser)]
#[command(name = "applbuild", version, about, long_about = None)]
struct Cli {
    /// More log output: -v for debug (every external command line), -vv for trace. RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Print a machine-readable JSON summary on stdout (logs stay on stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the board's disk image into OUT/<board>/<release>/.
    ///
    /// The first run makes a Debian build root (about 1 minute, 2 GB) and builds the kernel
    /// (about 6 minutes on an idle 2-core machine). Both are cached under ~/.cache/applbuild
    /// ($APPLBUILD_CACHE overrides) and reused while their inputs are unchanged.
    Image {
        /// The board file, e.g. boards/qemu-x86_64.toml.
        board: PathBuf,
        /// Output root folder.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Timestamp (seconds since 1970) given to every file in the image. Default: 0 when unset.
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
        source_date_epoch: u64,
        /// Use a random 32-byte dm-verity salt instead of one derived from the inputs (the image is then not reproducible).
        #[arg(long)]
        random_salt: bool,
        /// Rebuild the cached build root and kernel even when their inputs are unchanged.
        #[arg(long)]
        no_cache: bool,
        /// Key folder to sign with, instead of the board's [keys] dir: key.pem and cert.pem, plus db.key.pem and db.cert.pem when the board has [secure_boot] sign = true.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// A prebuilt static init binary for the initramfs. Default: build builder/init from this source tree.
        #[arg(long, value_name = "FILE")]
        init: Option<PathBuf>,
        /// Build without the private key (only cert.pem is read) and leave the signatures to `applbuild sign`.
        #[arg(long)]
        unsigned: bool,
        /// Also write disk.qcow2 (qemu-img convert of disk.raw, needs qemu-utils) for QEMU and cloud hosts.
        #[arg(long)]
        qcow2: bool,
    },
    /// Write a disk image to a block device: only the blocks its bmap maps, then read them back.
    ///
    /// Refuses (exit 2, nothing written) a target that is mounted, used as swap, held by
    /// device-mapper or md, holds the running system's root file system, is smaller than the
    /// image, or is not a block device (unless --force-file, for a regular file). On a larger device the backup GPT is moved to the
    /// device's end, as `sgdisk -e` does. Every written range is read back and its SHA-256
    /// compared; a mismatch exits 1 naming the byte offset. See docs/flash.md.
    Flash {
        /// The disk image, e.g. out/<board>/<release>/disk.raw. Its bmap is read from the same path with the extension .bmap (disk.bmap).
        image: PathBuf,
        /// The block device to overwrite, e.g. /dev/sdb (the whole disk, not a partition).
        device: PathBuf,
        /// Read the block map from FILE instead of the one beside the image (bmap 2.0 with sha256 checksums, as bmaptool create writes).
        #[arg(long, value_name = "FILE", conflicts_with = "no_bmap")]
        bmap: Option<PathBuf>,
        /// Write every block of the image, without a bmap (slower: unmapped space is written as zeros too).
        #[arg(long)]
        no_bmap: bool,
        /// Allow DEVICE to be a regular file: it is created if missing and extended to the image size if shorter.
        #[arg(long)]
        force_file: bool,
        /// Do not ask for confirmation. Without it, flash prompts on the terminal and fails when standard input is not one.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Sign an image built with `image --unsigned`: the result is byte-identical to a one-step signed build.
    Sign {
        /// The unsigned build's output folder, OUT/<board>/<release>.
        outdir: PathBuf,
        /// Key folder (key.pem, cert.pem), or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…). Its certificate must be the one the unsigned build used.
        #[arg(long, value_name = "DIR|URI")]
        key: String,
        /// For boards with [secure_boot] sign = true: the Secure Boot db key, as a key folder with db.key.pem or a PKCS#11 URI. Default: db.key.pem in the --key folder.
        #[arg(long, value_name = "DIR|URI")]
        db_key: Option<String>,
    },
    /// Boot an image in QEMU under OVMF (UEFI), serial console on this terminal (quit: Ctrl-A X).
    Run {
        /// A board file (boots OUT/<board>/<release>/disk.raw) or a disk image, raw or qcow2.
        target: PathBuf,
        /// Output root folder used to find a board's image.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Wait for the appliance's ready line, print it, power off and exit 0; exit 1 with the last console lines on failure or timeout.
        #[arg(long)]
        test: bool,
        /// Seconds `--test` waits for the ready line. Default: the board's [qemu] timeout_secs (600 without a board).
        #[arg(long)]
        timeout: Option<u64>,
        /// Accelerator: auto tries KVM and falls back to TCG.
        #[arg(long, value_enum, default_value_t = Accel::Auto)]
        accel: Accel,
        /// Guest memory in MiB. Default: the board's qemu.memory (512 without a board).
        #[arg(long)]
        memory: Option<u64>,
        /// Attach another raw disk image (read-only snapshot); may be repeated.
        #[arg(long = "disk", value_name = "IMAGE")]
        disks: Vec<PathBuf>,
        /// Connect a network card to UDP sockets on 127.0.0.1 instead of QEMU's user-mode network: QEMU receives on LOCAL and sends to REMOTE, one Ethernet frame per datagram. Repeat for more cards; they replace the board's [qemu] nics, in order (card N gets MAC 52:54:00:12:34:5N).
        #[arg(long = "nic-udp", value_name = "LOCAL:REMOTE", value_parser = parse_port_pair)]
        nic_udp: Vec<(u16, u16)>,
        /// Enforce UEFI Secure Boot: OVMF's Secure Boot firmware with a throwaway variable store whose db holds only the db certificate (needs virt-fw-vars from PyPI virt-firmware). The firmware refuses a UKI that this certificate's key did not sign.
        #[arg(long)]
        secure_boot: bool,
        /// The certificate to enroll in db with --secure-boot (PEM or DER). Default: db.cert.pem in the board's [keys] dir.
        #[arg(long, value_name = "CERT", requires = "secure_boot")]
        db_cert: Option<PathBuf>,
    },
    /// Build (or take from the cache) only the board's kernel.
    Kernel {
        /// The board file, e.g. boards/qemu-x86_64.toml.
        board: PathBuf,
        /// Key folder whose cert.pem goes into the kernel's trusted keyring, instead of the board's [keys] dir.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// Rebuild even when the cache has a kernel for these inputs.
        #[arg(long)]
        no_cache: bool,
        /// Print the kernel cache key and entry, and whether it is cached, without building. Boards with the same kernel source, fragments, certificate, LSM and enforce setting print the same key and share one build.
        #[arg(long, conflicts_with = "no_cache")]
        print_key: bool,
    },
    /// Print the names of the board's cache entries without building: the Debian build root, the kernel and the package downloads.
    ///
    /// Prints `name=value` lines (board, release, toolchain, kernel-inputs, kernel, kernel-cached, debs), or JSON with --json,
    /// for CI caches keyed by their inputs. `kernel` needs the build root's kernel source version and is left out until the
    /// build root exists; `kernel-inputs` covers every other kernel input. Reads only the certificate of the key folder.
    CacheKey {
        /// The board file, e.g. boards/qemu-x86_64.toml.
        board: PathBuf,
        /// Key folder (or certificate file) whose certificate the kernel trusts, instead of the board's [keys] dir.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Create and inspect signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check a built image offline (no root, loop devices or boot): GPT, partitions, verity tree, signatures, ESP, UKI and policy.
    ///
    /// Prints one `ok:` or `FAILED:` line per check and exits 1 when any check fails.
    Verify {
        /// A disk image, or an output folder (OUT/<board>/<release>) that has a disk.raw.
        image: PathBuf,
        /// The trusted release certificate (PEM or DER, or a key folder with cert.pem). Without it, the certificate embedded in the image's policy signature is used, which proves consistency but not who signed.
        #[arg(long, value_name = "CERT")]
        cert: Option<PathBuf>,
        /// The Secure Boot db certificate (PEM or DER, e.g. KEYS/db.cert.pem): also check the Authenticode signature of EFI/BOOT/BOOTX64.EFI with it, as firmware with it in db does. Without it that signature is not checked.
        #[arg(long, value_name = "CERT")]
        db_cert: Option<PathBuf>,
    },
    /// Generate, sign, compare, deploy and check IPE policies, and show which rule decides an access.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Regenerate the board's release policy from built outputs or root hashes, without rebuilding; never below the last generated version.
    Generate {
        /// The board file, e.g. boards/qemu-x86_64.toml.
        board: PathBuf,
        /// Output root folder with the builds (OUT/<board>/<release>/roothash) and policy-state.json.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Release X.Y.Z, which becomes policy_version. Default: the board's release.
        #[arg(long)]
        release: Option<String>,
        /// Also allow the root hashes of the N newest earlier releases built under OUT/<board>/. Default: the board's ipe.previous_releases.
        #[arg(long, value_name = "N")]
        keep_previous: Option<usize>,
        /// Allow these root hashes (this release first) instead of reading built outputs.
        #[arg(long = "roothash", value_name = "HEX", num_args = 1..)]
        root_hashes: Vec<String>,
        /// Policy file to write. Default: OUT/<board>/policy-<release>.pol.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Sign POLICY (attached PKCS#7, the form IPE loads) and write POLICY.p7s.
    Sign {
        policy: PathBuf,
        /// Key folder (key.pem, cert.pem).
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
    },
    /// Show the header values, defaults and rules that differ from OLD to NEW (text or signed .p7s).
    Diff { old: PathBuf, new: PathBuf },
    /// Print the commands, or write a script (--script), that load a signed policy on a running appliance through securityfs.
    Deploy {
        /// The signed policy (.p7s).
        signed: PathBuf,
        /// Check the signature with this certificate first.
        #[arg(long, value_name = "CERT")]
        cert: Option<PathBuf>,
        /// Write a self-contained script (policy embedded) to FILE instead of printing commands.
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Where the printed commands expect the .p7s on the appliance.
        #[arg(long, value_name = "PATH", default_value = "/run/policy.p7s")]
        remote_path: String,
    },
    /// Parse each FILE as Linux 6.12's IPE does and print errors and lint warnings; exit 1 when the kernel would reject a file.
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The files are boot policies, so boot_verified=TRUE is expected and not a warning.
        #[arg(long)]
        boot_policy: bool,
    },
    /// Print the rule or default of POLICY that decides an access, with its line, and the decision.
    Explain {
        policy: PathBuf,
        /// The operation: EXECUTE, FIRMWARE, KMODULE, KEXEC_IMAGE, KEXEC_INITRAMFS, POLICY, X509_CERT, or UNKNOWN.
        #[arg(long = "op", value_name = "OPERATION")]
        operation: String,
        /// The dm-verity root hash of the file's device, as ALG:HEX (e.g. sha256:3a7b…).
        #[arg(long, value_name = "ALG:HEX")]
        roothash: Option<String>,
        /// The kernel verified the dm-verity root hash signature.
        #[arg(long)]
        signed: bool,
        /// The file's fs-verity digest, as ALG:HEX.
        #[arg(long, value_name = "ALG:HEX")]
        fsverity: Option<String>,
        /// The file has a verified fs-verity built-in signature.
        #[arg(long)]
        fsverity_signed: bool,
        /// The file is on the initramfs (boot_verified).
        #[arg(long)]
        boot_verified: bool,
        /// The access has no file (anonymous memory, init_module, kexec_load).
        #[arg(long)]
        no_file: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create DIR with two new RSA key pairs, each a private key (mode 0600) and a self-signed certificate valid for 30 years.
    ///
    /// The release key (key.pem, cert.pem) signs the verity root hash and the IPE policy; the kernel trusts cert.pem.
    /// The Secure Boot db key (db.key.pem, db.cert.pem) signs the UKI for boards with [secure_boot] sign = true;
    /// enroll db.cert.pem in the firmware's db. Existing files are never overwritten: the command fails before it
    /// creates anything.
    Init {
        /// Folder for the new keys; created if missing.
        dir: PathBuf,
        /// RSA key size in bits, for both keys.
        #[arg(long, default_value_t = keys::DEFAULT_BITS)]
        bits: usize,
        /// Common name of the release certificate's subject.
        #[arg(long, default_value = "applbuild release key")]
        name: String,
        /// Common name of the Secure Boot db certificate's subject.
        #[arg(long, default_value = "applbuild Secure Boot db key")]
        db_name: String,
        /// Create only the Secure Boot db key pair, in a folder that already holds a release key.
        #[arg(long)]
        db_only: bool,
    },
    /// Print each certificate's subject, key size, fingerprint and validity (the db key's too, when DIR has one).
    Show { dir: PathBuf },
    /// Check DIR for signing and the kernel keyring: key file mode, key size, certificate, key match, self-signature, validity dates. The Secure Boot db key pair is checked too when DIR has one of its files. Exits 1 when a check fails.
    Check { dir: PathBuf },
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let code = match dispatch(&cli) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("applbuild: error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            err.exit_code()
        }
    };
    std::process::exit(code);
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal, so logs captured by CI or a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).with_writer(std::io::stderr).init();
}

/// Prints to stdout, ignoring a closed pipe so `applbuild … | head` exits quietly.
fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Internal(format!("serialising the summary: {e}")))?;
    print_stdout(&text);
    Ok(())
}

fn dispatch(cli: &Cli) -> Result<(), Error> {
    match &cli.command {
        Command::Sign { outdir, key, db_key } => {
            let db_key = db_key.as_deref().map(signing::KeySource::from_argument);
            let summary = signing::sign_output(outdir, &signing::KeySource::from_argument(key), db_key.as_ref())?;
            if cli.json {
                print_json(&summary)?;
            } else {
                print_stdout(&format!("{}", summary.output.join("disk.raw").display()));
            }
            Ok(())
        }
        Command::Image { board, out, source_date_epoch, random_salt, no_cache, keys, init, unsigned, qcow2 } => {
            let options = ImageOptions {
                out: out.clone(),
                epoch: *source_date_epoch,
                random_salt: *random_salt,
                no_cache: *no_cache,
                keys_dir: keys.clone(),
                init: init.clone(),
                cache: Cache::locate(),
                unsigned: *unsigned,
                qcow2: *qcow2,
            };
            let summary = pipeline::image(board, &options)?;
            if cli.json {
                print_json(&summary)?;
            } else {
                print_stdout(&format!("{}", summary.disk.display()));
            }
            Ok(())
        }
        Command::Flash { image, device, bmap, no_bmap, force_file, yes } => {
            let options = flash::FlashOptions { image: image.clone(), target: device.clone(), bmap: bmap.clone(), no_bmap: *no_bmap, force_file: *force_file, yes: *yes };
            let summary = flash::flash(&options)?;
            if cli.json {
                print_json(&summary)?;
            } else {
                print_stdout(&format!("wrote and verified {} in {} ranges on {} ({:.1} s){}", flash::human_size(summary.written_bytes), summary.ranges, summary.target.display(), summary.seconds, if summary.relocated_gpt { "; moved the backup GPT to its end" } else { "" }));
            }
            Ok(())
        }
        Command::Run { target, out, test, timeout, accel, memory, disks, nic_udp, secure_boot, db_cert } => {
            let request = RunRequest {
                target,
                out,
                test: *test,
                timeout: *timeout,
                accel: *accel,
                memory: *memory,
                disks,
                nic_udp,
                secure_boot: *secure_boot,
                db_cert: db_cert.as_deref(),
            };
            run_command(cli, &request)
        }
        Command::Kernel { board, keys, no_cache, print_key } => {
            let board = board::load_with_keys(board, keys.as_deref())?;
            let dir = keys.clone().unwrap_or_else(|| board.keys.dir.clone());
            // The kernel only needs the certificate, so a folder without key.pem will do.
            let cert_pem = keys::certificate_pem(&dir)?;
            if *print_key {
                let keys = applbuild::kernel::plan(&board, cert_pem.as_bytes(), &Cache::locate())?;
                let (Some(key), Some(name)) = (keys.key, keys.entry) else {
                    return Err(Error::Usage { message: "the kernel build root is incomplete, so the kernel key is unknown".into(), hint: Some("run `applbuild kernel BOARD` to make it".into()) });
                };
                let entry = Cache::locate().dir("kernel").join(name);
                if cli.json {
                    return print_json(&serde_json::json!({ "key": key, "entry": entry, "cached": keys.cached }));
                }
                let state = if keys.cached { "cached" } else { "not built" };
                print_stdout(&format!("{key} {} {state}", entry.display()));
                return Ok(());
            }
            let output = applbuild::kernel::build(&board, cert_pem.as_bytes(), &Cache::locate(), *no_cache)?;
            print_stdout(&format!("{}", output.bzimage.display()));
            Ok(())
        }
        Command::CacheKey { board, keys } => {
            let cache_keys = applbuild::cache_keys::cache_keys(board, keys.as_deref(), &Cache::locate())?;
            if cli.json {
                print_json(&cache_keys)
            } else {
                print_stdout(&cache_keys.lines().join("\n"));
                Ok(())
            }
        }
        Command::Keys { command } => match command {
            KeysCommand::Init { dir, bits, name, db_name, db_only } => {
                if *db_only {
                    keys::init_pair(dir, keys::SECURE_BOOT_DB, *bits, db_name)?;
                } else {
                    keys::check_absent(dir, &[keys::RELEASE, keys::SECURE_BOOT_DB])?;
                    keys::init(dir, *bits, name)?;
                    keys::init_pair(dir, keys::SECURE_BOOT_DB, *bits, db_name)?;
                }
                print_stdout(&describe_keys(dir)?);
                Ok(())
            }
            KeysCommand::Show { dir } => {
                print_stdout(&describe_keys(dir)?);
                Ok(())
            }
            KeysCommand::Check { dir } => {
                let checks = keys::check(dir, std::time::SystemTime::now());
                if cli.json {
                    print_json(&serde_json::json!({ "directory": dir, "ok": checks.iter().all(|c| c.ok), "checks": checks }))?;
                } else {
                    for check in &checks {
                        let name = if check.key == keys::RELEASE.label { check.name.to_string() } else { format!("{} {}", check.key, check.name) };
                        print_stdout(&format!("{}: {name}: {}", if check.ok { "ok" } else { "FAILED" }, check.message));
                    }
                }
                checks_outcome(dir.display().to_string(), checks.iter().filter(|c| !c.ok).count(), checks.len())
            }
        },
        Command::Verify { image, cert, db_cert } => {
            let report = verify::verify_with(image, cert.as_deref(), db_cert.as_deref())?;
            if cli.json {
                print_json(&serde_json::json!({ "ok": report.passed(), "report": report }))?;
            } else {
                for line in report.lines() {
                    print_stdout(&line);
                }
            }
            checks_outcome(report.image.display().to_string(), report.checks.iter().filter(|c| !c.ok).count(), report.checks.len())
        }
        Command::Policy { command } => match command {
            PolicyCommand::Generate { board, out, release, keep_previous, root_hashes, output } => {
                let request = policy_lifecycle::GenerateRequest { board: board.clone(), out: out.clone(), release: release.clone(), keep_previous: *keep_previous, root_hashes: root_hashes.clone(), output: output.clone() };
                let outcome = policy_lifecycle::generate(&request)?;
                if cli.json {
                    print_json(&outcome)?;
                } else {
                    print_stdout(&format!("{}", outcome.policy.display()));
                }
                Ok(())
            }
            PolicyCommand::Sign { policy, key } => {
                let signed = policy_lifecycle::sign_policy(policy, key)?;
                print_stdout(&format!("{}", signed.display()));
                Ok(())
            }
            PolicyCommand::Diff { old, new } => {
                let old_parts = policy_lifecycle::parse_parts(&policy_lifecycle::read_policy_text(old)?);
                let new_parts = policy_lifecycle::parse_parts(&policy_lifecycle::read_policy_text(new)?);
                let difference = policy_lifecycle::diff(&old_parts, &new_parts);
                if cli.json {
                    print_json(&difference)?;
                } else if difference.is_empty() {
                    print_stdout("no differences");
                } else {
                    print_stdout(&difference.lines().join("\n"));
                }
                Ok(())
            }
            PolicyCommand::Deploy { signed, cert, script, remote_path } => {
                let plan = policy_lifecycle::deploy_plan(signed, cert.as_deref(), remote_path)?;
                match script {
                    Some(path) => {
                        let bytes = std::fs::read(signed).map_err(|source| Error::io("read", signed, source))?;
                        signing::write_replacing(path, policy_lifecycle::deploy_script(&plan, &bytes).as_bytes())?;
                        print_stdout(&format!("{}", path.display()));
                    }
                    None if cli.json => print_json(&plan)?,
                    None => {
                        print_stdout(&format!("# Copy {} to the appliance as {remote_path}, then run as root there:", signed.display()));
                        print_stdout(&plan.commands.join("\n"));
                    }
                }
                Ok(())
            }
            PolicyCommand::Lint { files, boot_policy } => {
                let report = policy_cmd::lint_files(files, ipe::lint::LintOptions { after_boot: !boot_policy })?;
                print_stdout(report.output.trim_end());
                match report.rejected {
                    0 => Ok(()),
                    count => Err(Error::PolicyRejected { count }),
                }
            }
            PolicyCommand::Explain { policy, operation, roothash, signed, fsverity, fsverity_signed, boot_verified, no_file } => {
                let request = ExplainRequest {
                    operation: operation.clone(),
                    roothash: roothash.clone(),
                    signed: *signed,
                    fsverity: fsverity.clone(),
                    fsverity_signed: *fsverity_signed,
                    boot_verified: *boot_verified,
                    no_file: *no_file,
                };
                print_stdout(&policy_cmd::explain(policy, &request)?);
                Ok(())
            }
        },
    }
}

/// Describes the key pairs in `dir`: the release key, then the db key when present.
fn describe_keys(dir: &Path) -> Result<String, Error> {
    let mut text = String::new();
    if !keys::has_pair(dir, keys::SECURE_BOOT_DB) || keys::has_pair(dir, keys::RELEASE) {
        text.push_str(&keys::describe(dir)?);
    }
    if keys::has_pair(dir, keys::SECURE_BOOT_DB) {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&keys::describe_pair(dir, keys::SECURE_BOOT_DB)?);
    }
    Ok(text)
}

/// Maps a count of failed checks to the command's result (exit 1 on any failure).
fn checks_outcome(subject: String, failed: usize, total: usize) -> Result<(), Error> {
    match failed {
        0 => Ok(()),
        failed => Err(Error::ChecksFailed { subject, failed, total }),
    }
}

/// The arguments of `applbuild run`.
struct RunRequest<'a> {
    target: &'a Path,
    out: &'a Path,
    test: bool,
    timeout: Option<u64>,
    accel: Accel,
    memory: Option<u64>,
    disks: &'a [PathBuf],
    nic_udp: &'a [(u16, u16)],
    secure_boot: bool,
    db_cert: Option<&'a Path>,
}

fn run_command(cli: &Cli, request: &RunRequest<'_>) -> Result<(), Error> {
    let target = request.target;
    let is_board = target.extension().map(|e| e == "toml").unwrap_or(false);
    let (mut options, board_keys) = if is_board {
        // With --db-cert the board's own key folder is not read, so it need not exist.
        let board = board::load_with_keys(target, request.db_cert.and_then(Path::parent))?;
        let disk = request.out.join(&board.name).join(board.release.to_string()).join("disk.raw");
        let mut options = RunOptions::new(disk);
        options.memory_mib = board.qemu.memory.0 >> 20;
        options.cpus = board.qemu.cpus;
        options.timeout = Duration::from_secs(board.qemu.timeout_secs);
        options.disk_bus = board.qemu.disk_bus;
        options.nic_model = board.qemu.nic_model;
        options.nics = board.qemu.nics;
        (options, Some(board.keys.dir))
    } else {
        (RunOptions::new(target.to_path_buf()), None)
    };
    options.secure_boot = match (request.secure_boot, request.db_cert, board_keys) {
        (false, _, _) => None,
        (true, Some(cert), _) => Some(cert.to_path_buf()),
        (true, None, Some(dir)) => Some(dir.join(keys::DB_CERT_FILE)),
        (true, None, None) => {
            return Err(Error::Usage { message: "--secure-boot with a disk image needs the db certificate to enroll".into(), hint: Some("pass --db-cert KEYS/db.cert.pem, or a board file instead of the disk image".into()) });
        }
    };
    if let Some(memory) = request.memory {
        options.memory_mib = memory;
    }
    if let Some(timeout) = request.timeout {
        options.timeout = Duration::from_secs(timeout);
    }
    options.accel = request.accel;
    options.test = request.test;
    options.extra_disks = request.disks.to_vec();
    options.nic_udp = request.nic_udp.to_vec();
    if let Some(outcome) = run::run(&options)? {
        if cli.json {
            print_json(&serde_json::json!({ "ready_line": outcome.ready_line, "accel": outcome.accel, "seconds": outcome.seconds }))?;
        } else {
            print_stdout(&outcome.ready_line);
        }
    }
    Ok(())
}

/// Parses `LOCAL:REMOTE`, two UDP ports from 1 to 65535.
fn parse_port_pair(text: &str) -> Result<(u16, u16), String> {
    let port = |part: &str| match part.parse::<u16>() {
        Ok(port) if port > 0 && !part.starts_with('+') => Ok(port),
        _ => Err(format!("`{part}` is not a port from 1 to 65535")),
    };
    let (local, remote) = text.split_once(':').ok_or_else(|| format!("`{text}` is not LOCAL:REMOTE, for example 10000:10001"))?;
    Ok((port(local)?, port(remote)?))
}
