//! `applbuild run`: boots a built image in QEMU under OVMF (UEFI from the
//! disk's ESP) with the serial console on the terminal.
//!
//! KVM is used when it works, else TCG. On some hosts `/dev/kvm` exists but
//! QEMU fails on it, so KVM is detected by starting a short paused QEMU with
//! `-accel kvm`, not by looking for the device node.
//!
//! With Secure Boot ([`RunOptions::secure_boot`]) the firmware is OVMF's
//! Secure Boot build, which needs SMM (`-machine q35,smm=on` and a secure
//! pflash). Its variable store is made in the run's temporary folder from
//! OVMF's empty template with `virt-fw-vars` (PyPI `virt-firmware`): a
//! throwaway platform key and KEK, the given certificate as the only `db`
//! entry, no Microsoft keys, and Secure Boot enabled. The firmware then
//! starts only UKIs signed by that certificate's key; it refuses others
//! with `BdsDxe: failed to load … Access Denied`, which ends a `--test`
//! run at once.

use crate::tool::{self, ToolError};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// OVMF firmware code and variable store templates (Debian package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF built with Secure Boot and SMM (Debian package `ovmf`).
pub const OVMF_CODE_SECURE_BOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// The program that writes the enrolled variable store (PyPI `virt-firmware`).
pub const VIRT_FW_VARS: &str = "virt-fw-vars";
/// Owner GUID of the `db` entry that `--secure-boot` enrolls; any fixed GUID will do.
const DB_OWNER_GUID: &str = "6f3a1c52-8b1e-4d5a-9c7e-2a4b6d8e0f13";
/// Common name of the throwaway platform key and KEK of a Secure Boot run.
const THROWAWAY_PK_NAME: &str = "applbuild run throwaway platform key";
/// The parts of the line that OVMF's boot manager prints when Secure Boot
/// rejects a boot loader: `BdsDxe: failed to load Boot0002 "…" from …: Access Denied`.
pub const FIRMWARE_REFUSAL: [&str; 2] = ["BdsDxe: failed to load", "Access Denied"];
/// The line the appliance prints when it is up.
pub const READY_PREFIX: &str = "appliance ready:";
/// Lines that mean the boot has failed for good.
const FAILURE_MARKERS: &[&str] = &["applbuild-init: error:", "Kernel panic", "appliance: error:"];
/// How many console lines a failure report shows.
const TAIL_LINES: usize = 40;

/// Errors of `applbuild run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("disk image {0} not found; build it first with `applbuild image BOARD`")]
    NoImage(PathBuf),
    #[error("UEFI firmware {0} not found")]
    NoFirmware(PathBuf),
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("no ready line within {seconds} s; the last console lines:\n{tail}")]
    Timeout { seconds: u64, tail: String },
    #[error("the boot failed: {line}\nthe last console lines:\n{tail}")]
    BootFailed { line: String, tail: String },
    #[error("QEMU exited ({status}) before the ready line; the last console lines:\n{tail}")]
    Exited { status: String, tail: String },
    #[error("the firmware refused to start the UKI: {line}\nthe UKI is unsigned, was changed after signing, or was signed by a key whose certificate is not in db; the last console lines:\n{tail}")]
    FirmwareRefused { line: String, tail: String },
    #[error("{VIRT_FW_VARS} not found, which --secure-boot needs to enroll the db certificate")]
    NoVirtFwVars,
    #[error("Secure Boot db certificate {0} not found")]
    NoDbCertificate(PathBuf),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Tool(err) => err.exit_code(),
            RunError::NoImage(_) | RunError::NoFirmware(_) | RunError::NoVirtFwVars | RunError::NoDbCertificate(_) => 2,
            _ => 1,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            RunError::Tool(err) => err.hint(),
            RunError::NoFirmware(_) => Some("install it with: apt-get install ovmf".into()),
            RunError::NoVirtFwVars => Some("install it with `pip install virt-firmware` (.ci/run installs ci/python-tools.txt into /opt/applbuild-tools; put its bin/ on PATH)".into()),
            RunError::NoDbCertificate(_) => Some("pass --db-cert FILE, or create the db key pair with `applbuild keys init --db-only KEYDIR`".into()),
            _ => None,
        }
    }
}

/// Which QEMU accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when a probe succeeds, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Settings of one QEMU run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub disk: PathBuf,
    pub memory_mib: u64,
    pub cpus: u32,
    pub accel: Accel,
    /// Wait for the ready line, then stop; fail on timeout.
    pub test: bool,
    pub timeout: Duration,
    /// Extra kernel command line is not possible with a UKI (the command
    /// line is signed into it), so runs only choose devices.
    pub extra_disks: Vec<PathBuf>,
    /// Disk bus: `virtio`, `nvme` or `ahci`.
    pub disk_bus: &'static str,
    /// QEMU network card model.
    pub nic_model: &'static str,
    /// Number of cards on user-mode networks, when `nic_udp` is empty.
    pub nics: u32,
    /// Cards connected to UDP sockets on 127.0.0.1 instead, as (local port,
    /// remote port): each datagram carries one Ethernet frame.
    pub nic_udp: Vec<(u16, u16)>,
    /// Boot with Secure Boot enforced and this certificate (PEM or DER) as
    /// the only entry of the firmware's `db`.
    pub secure_boot: Option<PathBuf>,
}

impl RunOptions {
    /// Options for `disk` with the defaults of a board's `[qemu]` table.
    pub fn new(disk: PathBuf) -> RunOptions {
        RunOptions {
            disk,
            memory_mib: 512,
            cpus: 2,
            accel: Accel::Auto,
            test: false,
            timeout: Duration::from_secs(600),
            extra_disks: Vec::new(),
            disk_bus: "virtio",
            nic_model: "virtio-net-pci",
            nics: 1,
            nic_udp: Vec::new(),
            secure_boot: None,
        }
    }
}

/// Adds the boot disk and the extra disks on `bus`. `snapshot=on` keeps the
/// images unchanged by the guest.
fn add_disks(cmd: &mut Command, options: &RunOptions) {
    let disks = std::iter::once(&options.disk).chain(&options.extra_disks);
    if options.disk_bus == "ahci" {
        // q35 has an AHCI controller built in; if=ide puts the disks on it.
        for disk in disks {
            cmd.arg("-drive").arg(format!("if=ide,format={},snapshot=on,file={}", disk_format(disk), disk.display()));
        }
        return;
    }
    for (index, disk) in disks.enumerate() {
        match options.disk_bus {
            "nvme" => {
                cmd.arg("-drive").arg(format!("if=none,id=disk{index},format={},snapshot=on,file={}", disk_format(disk), disk.display()));
                cmd.arg("-device").arg(format!("nvme,drive=disk{index},serial=applbuild{index}"));
            }
            _ => {
                cmd.arg("-drive").arg(format!("if=virtio,format={},snapshot=on,file={}", disk_format(disk), disk.display()));
            }
        }
    }
}

/// Adds the network cards: card N gets MAC 52:54:00:12:34:5N.
fn add_nics(cmd: &mut Command, options: &RunOptions) {
    let mut add = |index: usize, netdev: String| {
        cmd.arg("-netdev").arg(format!("{netdev},id=net{index}"));
        cmd.arg("-device").arg(format!("{},netdev=net{index},mac=52:54:00:12:34:5{index}", options.nic_model));
    };
    if options.nic_udp.is_empty() {
        for index in 0..options.nics as usize {
            add(index, "user".to_owned());
        }
    } else {
        for (index, (local, remote)) in options.nic_udp.iter().enumerate() {
            add(
                index,
                format!("dgram,local.type=inet,local.host=127.0.0.1,local.port={local},remote.type=inet,remote.host=127.0.0.1,remote.port={remote}"),
            );
        }
    }
}

/// Outcome of a `--test` run.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub ready_line: String,
    pub accel: &'static str,
    pub seconds: f64,
}

/// Probes whether QEMU can use KVM here: starts it paused with `-accel kvm`
/// and treats an exit within two seconds as failure.
pub fn kvm_usable() -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let Some(qemu) = tool::find(tool::QEMU.program) else { return false };
    let child = Command::new(qemu)
        .args(["-accel", "kvm", "-machine", "q35", "-cpu", "host", "-display", "none", "-nodefaults", "-monitor", "none", "-serial", "none", "-m", "128"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            tracing::debug!(stderr = %stderr.trim(), "run: KVM probe failed; using TCG");
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

fn qemu_command(options: &RunOptions, vars: &Path, kvm: bool) -> Command {
    let mut cmd = tool::command(tool::QEMU);
    let code = match options.secure_boot {
        // The Secure Boot build keeps its variables in SMM, which only a secure pflash protects.
        Some(_) => {
            cmd.args(["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]);
            OVMF_CODE_SECURE_BOOT
        }
        None => {
            cmd.args(["-machine", "q35"]);
            OVMF_CODE
        }
    };
    cmd.arg("-m").arg(options.memory_mib.to_string()).arg("-smp").arg(options.cpus.to_string());
    if kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
    }
    cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"));
    cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
    add_disks(&mut cmd, options);
    add_nics(&mut cmd, options);
    cmd.args(["-device", "virtio-rng-pci", "-no-reboot"]);
    if options.test {
        cmd.args(["-display", "none", "-monitor", "none", "-serial", "stdio"]);
    } else {
        cmd.arg("-nographic");
    }
    cmd
}

/// Magic bytes at the start of a qcow2 image ("QFI" 0xFB).
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Returns `qcow2` for a file that starts with the qcow2 magic, else `raw`.
pub fn disk_format(path: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let is_qcow2 = std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut magic)).is_ok() && magic == QCOW2_MAGIC;
    if is_qcow2 { "qcow2" } else { "raw" }
}

/// Boots the image. Interactive runs return when QEMU exits; `--test` runs
/// return the ready line or an error with the last console lines.
pub fn run(options: &RunOptions) -> Result<Option<TestOutcome>, RunError> {
    if !options.disk.is_file() {
        return Err(RunError::NoImage(options.disk.clone()));
    }
    let code = if options.secure_boot.is_some() { OVMF_CODE_SECURE_BOOT } else { OVMF_CODE };
    for firmware in [code, OVMF_VARS] {
        if !Path::new(firmware).is_file() {
            return Err(RunError::NoFirmware(PathBuf::from(firmware)));
        }
    }
    tool::require(&[tool::QEMU])?;
    if let Some(db_cert) = &options.secure_boot {
        if !db_cert.is_file() {
            return Err(RunError::NoDbCertificate(db_cert.clone()));
        }
        if tool::find(VIRT_FW_VARS).is_none() {
            return Err(RunError::NoVirtFwVars);
        }
    }
    let kvm = match options.accel {
        Accel::Auto => kvm_usable(),
        Accel::Kvm => true,
        Accel::Tcg => false,
    };
    let accel = if kvm { "kvm" } else { "tcg" };
    tracing::info!(accel, "run: booting {}", options.disk.display());

    let temp = tempfile::tempdir().map_err(|source| RunError::Io { action: "create a temporary folder in", path: std::env::temp_dir(), source })?;
    let vars = temp.path().join("OVMF_VARS.fd");
    match &options.secure_boot {
        Some(db_cert) => enrolled_vars(db_cert, &vars)?,
        None => {
            std::fs::copy(OVMF_VARS, &vars).map_err(|source| RunError::Io { action: "copy", path: PathBuf::from(OVMF_VARS), source })?;
        }
    }
    let mut cmd = qemu_command(options, &vars, kvm);
    tracing::debug!(command = %tool::display(&cmd), "running");

    if !options.test {
        let status = cmd.status().map_err(|source| ToolError::Spawn { program: tool::QEMU.program.into(), source })?;
        tracing::info!(%status, "run: QEMU exited");
        return Ok(None);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Spawn { program: tool::QEMU.program.into(), source })?;
    watch_console(child, options.timeout, accel).map(Some)
}

/// Writes an OVMF variable store to `vars` with Secure Boot enabled and
/// `db_cert` as the only `db` entry. `--enroll-generate` makes a new
/// platform key and KEK for this run only.
fn enrolled_vars(db_cert: &Path, vars: &Path) -> Result<(), RunError> {
    let mut cmd = Command::new(VIRT_FW_VARS);
    cmd.args(["--input", OVMF_VARS, "--output"])
        .arg(vars)
        .args(["--enroll-generate", THROWAWAY_PK_NAME, "--no-microsoft", "--microsoft-kek", "none", "--add-db", DB_OWNER_GUID])
        .arg(db_cert)
        .arg("--secure-boot");
    tool::run(&mut cmd)?;
    tracing::info!(db = %db_cert.display(), "run: Secure Boot enforced with this db certificate");
    Ok(())
}

/// Reads the serial console until the ready line, a failure marker, QEMU's
/// exit or the timeout, echoing each line to stderr.
fn watch_console(mut child: Child, timeout: Duration, accel: &'static str) -> Result<TestOutcome, RunError> {
    let started = Instant::now();
    let (sender, receiver) = mpsc::channel::<String>();
    let pipes: Vec<Box<dyn Read + Send>> = [child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)]
        .into_iter()
        .flatten()
        .collect();
    for pipe in pipes {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buffer = Vec::new();
            while reader.read_until(b'\n', &mut buffer).map(|n| n > 0).unwrap_or(false) {
                let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\r', '\n']).replace('\r', "");
                if sender.send(line).is_err() {
                    break;
                }
                buffer.clear();
            }
        });
    }
    drop(sender);

    let mut tail: VecDeque<String> = VecDeque::new();
    let deadline = started + timeout;
    let result = loop {
        let now = Instant::now();
        if now >= deadline {
            break Err(RunError::Timeout { seconds: timeout.as_secs(), tail: join(&tail) });
        }
        match receiver.recv_timeout(deadline - now) {
            Ok(line) => {
                eprintln!("{line}");
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                if let Some(start) = line.find(READY_PREFIX) {
                    break Ok(TestOutcome { ready_line: line[start..].to_string(), accel, seconds: started.elapsed().as_secs_f64() });
                }
                let refused = FIRMWARE_REFUSAL.iter().all(|part| line.contains(part));
                if refused || FAILURE_MARKERS.iter().any(|marker| line.contains(marker)) {
                    // Collect a little more output for context.
                    let grace = Instant::now() + Duration::from_secs(2);
                    while let Ok(more) = receiver.recv_timeout(grace.saturating_duration_since(Instant::now())) {
                        eprintln!("{more}");
                        tail.push_back(more);
                    }
                    if refused {
                        break Err(RunError::FirmwareRefused { line, tail: join(&tail) });
                    }
                    break Err(RunError::BootFailed { line, tail: join(&tail) });
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                break Err(RunError::Exited { status, tail: join(&tail) });
            }
        }
    };
    // Power the guest off: QEMU exits cleanly on SIGTERM-like kill of its process.
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn join(lines: &VecDeque<String>) -> String {
    lines.iter().cloned().collect::<Vec<_>>().join("\n")
}
