//! UEFI Secure Boot in QEMU: OVMF's Secure Boot firmware, with the test db
//! certificate (keys/test/db.cert.pem) as the only entry of `db`, boots the
//! signed UKI and refuses a changed or an unsigned one.
//!
//! `applbuild run --secure-boot` makes the variable store with virt-fw-vars
//! (PyPI virt-firmware, from ci/python-tools.txt; /opt/applbuild-tools/bin
//! must be on PATH, as .ci/run arranges). The images are the default board
//! built with the test keys, once with `[secure_boot] sign = true` and once
//! without signing. Needs root (image builds), the cached kernel and
//! about 6 minutes with TCG; ci/test.sh runs it with `-- --ignored`.

mod common;
use common::{applbuild, copy_test_keys, repo, run, write_default_board};

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use applbuild::disk::{self, FatVolume};

const EPOCH: &str = "1764806400";
/// Printed by the kernel's EFI stub when the firmware reports Secure Boot on.
const EFI_STUB_SECURE_BOOT: &str = "EFI stub: UEFI Secure Boot is enabled.";
/// Printed by the kernel (arch/x86/kernel/setup.c) from the boot parameters.
const KERNEL_SECURE_BOOT: &str = "secureboot: Secure boot enabled";
/// OVMF's boot manager line when Secure Boot refuses the boot loader.
const REFUSAL: &str = "Access Denied";
/// Lines that only appear once a kernel runs.
const KERNEL_STARTED: [&str; 2] = ["EFI stub:", "Linux version"];

struct Images {
    _work: tempfile::TempDir,
    work: PathBuf,
    keys: PathBuf,
    /// Output folder of the build with a signed UKI.
    signed: PathBuf,
    /// Output folder of the build without Secure Boot signing.
    unsigned: PathBuf,
}

/// Builds the default board with and without Secure Boot signing, once.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let work = tempfile::tempdir().expect("temporary folder");
        let keys = work.path().join("keys");
        copy_test_keys(&keys);
        let mut outputs = Vec::new();
        for (label, sign) in [("signed", true), ("unsigned", false)] {
            let board = work.path().join(format!("board-{label}.toml"));
            write_default_board(&board, &keys, sign);
            let out = work.path().join(format!("out-{label}"));
            run(applbuild().current_dir(repo()).env("SOURCE_DATE_EPOCH", EPOCH).arg("image").arg(&board).arg("--out").arg(&out));
            outputs.push(out.join("qemu-x86_64/1.0.0"));
        }
        let unsigned = outputs.pop().expect("unsigned build");
        let signed = outputs.pop().expect("signed build");
        Images { work: work.path().to_path_buf(), _work: work, keys, signed, unsigned }
    })
}

/// Boots `disk` with `applbuild run --test`, with Secure Boot enforced and
/// the test db certificate enrolled when `secure_boot` is set.
fn boot(disk: &Path, keys: &Path, secure_boot: bool) -> Output {
    let mut command = applbuild();
    command.args(["run", "--test", "--timeout", "600"]).arg(disk);
    if secure_boot {
        command.arg("--secure-boot").arg("--db-cert").arg(keys.join("db.cert.pem"));
    }
    command.output().expect("run applbuild run")
}

fn console(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the firmware refused the UKI: `run` failed with the
/// firmware's refusal, and no kernel printed anything.
fn assert_refused(output: &Output, what: &str) {
    let console = console(output);
    assert_eq!(output.status.code(), Some(1), "{what}: applbuild run did not fail:\n{console}");
    assert!(console.contains("the firmware refused to start the UKI"), "{what}: not refused by the firmware:\n{console}");
    let refusal = console.lines().find(|line| line.contains("BdsDxe: failed to load") && line.contains(REFUSAL));
    assert!(refusal.is_some(), "{what}: no `{REFUSAL}` line from the boot manager:\n{console}");
    for marker in KERNEL_STARTED {
        assert!(!console.contains(marker), "{what}: a kernel started ({marker}):\n{console}");
    }
    eprintln!("{what}: {}", refusal.unwrap_or_default().trim());
}

/// Copies an output folder's disk.raw and flips one bit of the UKI's
/// `.osrel` section inside the ESP. Only file data changes, so the FAT
/// stays valid, and without Secure Boot the image still boots.
fn disk_with_changed_uki(images: &Images) -> PathBuf {
    let uki = fs::read(images.signed.join("uki.efi")).expect("read uki.efi");
    let sections = applbuild::uki::read_sections(&uki).expect("UKI sections");
    let osrel = sections.iter().find(|s| s.name == ".osrel").expect(".osrel section");
    let osrel_offset = uki.windows(osrel.data.len()).position(|w| w == osrel.data.as_slice()).expect(".osrel bytes in the UKI");

    let disk_path = images.work.join("changed.raw");
    run(std::process::Command::new("cp").arg("--sparse=always").arg(images.signed.join("disk.raw")).arg(&disk_path));
    let layout = disk::read_layout(&disk_path).expect("GPT");
    let esp_entry = layout.partitions.iter().find(|p| p.type_guid == disk::ESP).expect("ESP");
    let file = fs::OpenOptions::new().read(true).write(true).open(&disk_path).expect("open disk");
    let mut esp = vec![0u8; esp_entry.size() as usize];
    file.read_exact_at(&mut esp, esp_entry.offset()).expect("read ESP");
    let uki_in_esp = esp.windows(4096).position(|w| w == &uki[..4096]).expect("UKI headers in the ESP");
    assert_eq!(&esp[uki_in_esp..uki_in_esp + uki.len()], uki.as_slice(), "the UKI is not stored contiguously in the ESP");

    let offset = esp_entry.offset() + (uki_in_esp + osrel_offset) as u64;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    byte[0] ^= 0x20;
    file.write_all_at(&byte, offset).expect("write byte");
    file.sync_all().expect("sync disk");

    // The FAT volume still reads, and the file there is the changed UKI.
    file.read_exact_at(&mut esp, esp_entry.offset()).expect("read ESP again");
    let changed = FatVolume::open(&esp).and_then(|volume| volume.read_file("EFI/BOOT/BOOTX64.EFI")).expect("FAT still valid");
    assert_eq!(changed.len(), uki.len());
    assert_ne!(changed, uki, "the flip did not change the UKI");
    disk_path
}

#[test]
#[ignore = "builds two images and boots QEMU with OVMF Secure Boot: needs root, the cached kernel, virt-fw-vars; about 6 minutes with TCG"]
fn signed_uki_boots_with_secure_boot_enforced() {
    let images = images();
    let output = boot(&images.signed.join("disk.raw"), &images.keys, true);
    let console = console(&output);
    assert!(output.status.success(), "the signed image did not boot with Secure Boot:\n{console}");
    let ready = String::from_utf8_lossy(&output.stdout);
    assert!(ready.starts_with("appliance ready:"), "stdout: {ready}");
    for evidence in [EFI_STUB_SECURE_BOOT, KERNEL_SECURE_BOOT] {
        let line = console.lines().find(|line| line.contains(evidence));
        assert!(line.is_some(), "no `{evidence}` on the console: Secure Boot was not enforced:\n{console}");
        eprintln!("evidence: {}", line.unwrap_or_default().trim());
    }
}

#[test]
#[ignore = "builds two images and boots QEMU with OVMF Secure Boot: needs root, the cached kernel, virt-fw-vars; about 6 minutes with TCG"]
fn uki_changed_after_signing_is_refused() {
    let images = images();
    let disk_path = disk_with_changed_uki(images);

    let verify = applbuild().arg("verify").arg(&disk_path).arg("--db-cert").arg(images.keys.join("db.cert.pem")).output().expect("run applbuild verify");
    let report = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "verify accepted the changed UKI:\n{report}");
    assert!(report.lines().any(|line| line.starts_with("FAILED: secure boot signature:") && line.contains("changed after it was signed")), "{report}");

    assert_refused(&boot(&disk_path, &images.keys, true), "UKI changed after signing");

    // Control: without Secure Boot the same image boots, so the refusal
    // above came from the signature check and not from a broken image.
    let output = boot(&disk_path, &images.keys, false);
    assert!(output.status.success(), "the changed image does not boot even without Secure Boot:\n{}", console(&output));
}

#[test]
#[ignore = "builds two images and boots QEMU with OVMF Secure Boot: needs root, the cached kernel, virt-fw-vars; about 6 minutes with TCG"]
fn unsigned_uki_is_refused() {
    let images = images();
    let verify = applbuild().arg("verify").arg(&images.unsigned).arg("--db-cert").arg(images.keys.join("db.cert.pem")).output().expect("run applbuild verify");
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(report.lines().any(|line| line.starts_with("FAILED: secure boot signature:") && line.contains("no Authenticode signature")), "{report}");

    assert_refused(&boot(&images.unsigned.join("disk.raw"), &images.keys, true), "unsigned UKI");
}
