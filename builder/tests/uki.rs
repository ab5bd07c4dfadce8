//! Tests of the UKI builder with Debian's systemd-stub, checked with objdump.

mod common;
use common::pseudo_random;

use std::path::Path;
use std::process::Command;

use applbuild::uki::{self, UkiError};

const HOST_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const OSREL: &[u8] = b"ID=appliance\nVERSION_ID=1\n";
const CMDLINE: &[u8] =
    b"console=ttyS0 roothash=c46e46b6bc50ac0d37b3b14b50821bab705944fbd6f87293eb7da884e7e13f02";

/// Returns the host stub, or `None` with a skip message when it or objdump is missing.
fn host_stub() -> Option<Vec<u8>> {
    if Command::new("objdump").arg("--version").output().is_err() {
        eprintln!("skipped: objdump not installed (apt-get install binutils)");
        return None;
    }
    match std::fs::read(HOST_STUB) {
        Ok(stub) => Some(stub),
        Err(error) => {
            eprintln!(
                "skipped: cannot read {HOST_STUB} ({error}); apt-get install systemd-boot-efi"
            );
            None
        }
    }
}

/// Builds a file with a minimal PE32+ header whose `SizeOfImage` exceeds the
/// file size, like a kernel with uninitialized data.
fn fake_kernel(size_of_image: u32) -> Vec<u8> {
    let mut kernel = pseudo_random(100_003, 7);
    kernel[0..2].copy_from_slice(b"MZ");
    kernel[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    kernel[0x80..0x84].copy_from_slice(b"PE\0\0");
    let optional = 0x80 + 4 + 20;
    kernel[optional..optional + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    kernel[optional + 56..optional + 60].copy_from_slice(&size_of_image.to_le_bytes());
    kernel
}

/// One row of `objdump -h`.
#[derive(Debug)]
struct Section {
    name: String,
    size: u64,
    vma: u64,
    file_offset: u64,
}

fn objdump(flag: &str, image: &Path) -> String {
    let output = Command::new("objdump")
        .arg(flag)
        .arg(image)
        .output()
        .expect("run objdump");
    assert!(
        output.status.success(),
        "objdump {flag} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn sections(image: &Path) -> Vec<Section> {
    let listing = objdump("-h", image);
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 7 || fields[0].parse::<u32>().is_err() {
                return None;
            }
            let hex = |text: &str| u64::from_str_radix(text, 16).expect("hex field");
            Some(Section {
                name: fields[1].to_owned(),
                size: hex(fields[2]),
                vma: hex(fields[3]),
                file_offset: hex(fields[5]),
            })
        })
        .collect()
}

/// Returns a field of `objdump -p`, such as `SizeOfImage`, parsed as hex.
fn header_field(image: &Path, name: &str) -> u64 {
    let listing = objdump("-p", image);
    let line = listing
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("objdump -p has no {name}:\n{listing}"));
    let value = line.split_whitespace().nth(1).expect("value column");
    u64::from_str_radix(value, 16).expect("hex value")
}

/// PE checksum, written independently of the builder.
fn pe_checksum(image: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    let mut index = 0;
    while index < image.len() {
        if index != checksum_offset && index != checksum_offset + 2 {
            let low = u64::from(image[index]);
            let high = u64::from(*image.get(index + 1).unwrap_or(&0));
            sum += low | (high << 8);
            sum = (sum & 0xffff) + (sum >> 16);
        }
        index += 2;
    }
    ((sum & 0xffff) + (sum >> 16)) as u32 + image.len() as u32
}

fn build_sample(stub: &[u8], kernel: &[u8], initrd: &[u8]) -> Vec<u8> {
    uki::build(
        stub,
        &[
            (".osrel", OSREL),
            (".cmdline", CMDLINE),
            (".initrd", initrd),
            (".linux", kernel),
        ],
    )
    .expect("build UKI")
}

#[test]
fn objdump_lists_new_sections() {
    let Some(stub) = host_stub() else { return };
    let kernel = pseudo_random(1_234_567, 1);
    let initrd = pseudo_random(54_321, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("uki.efi");
    let image = build_sample(&stub, &kernel, &initrd);
    std::fs::write(&path, &image).expect("write UKI");

    let stub_path = Path::new(HOST_STUB);
    let old = sections(stub_path);
    let new = sections(&path);
    assert_eq!(
        new.len(),
        old.len() + 4,
        "sections:\n{}",
        objdump("-h", &path)
    );
    for (before, after) in old.iter().zip(&new) {
        assert_eq!(before.name, after.name);
        assert_eq!(
            (before.size, before.vma, before.file_offset),
            (after.size, after.vma, after.file_offset)
        );
    }

    let added = &new[old.len()..];
    let expected: [(&str, &[u8]); 4] = [
        (".osrel", OSREL),
        (".cmdline", CMDLINE),
        (".initrd", &initrd),
        (".linux", &kernel),
    ];
    let section_alignment = header_field(&path, "SectionAlignment");
    let file_alignment = header_field(&path, "FileAlignment");
    let mut previous_end = old
        .iter()
        .map(|s| s.vma + s.size)
        .max()
        .expect("stub sections");
    for (section, (name, data)) in added.iter().zip(expected) {
        assert_eq!(section.name, name);
        assert_eq!(section.size, data.len() as u64, "size of {name}");
        assert_eq!(
            section.vma % section_alignment,
            0,
            "VMA of {name} is not aligned"
        );
        assert_eq!(
            section.file_offset % file_alignment,
            0,
            "file offset of {name} is not aligned"
        );
        assert!(
            section.vma >= previous_end,
            "{name} overlaps the section before it"
        );
        let start = section.file_offset as usize;
        assert_eq!(
            &image[start..start + data.len()],
            data,
            "bytes of {name} at its file offset"
        );
        previous_end = section.vma + section.size;
    }

    // systemd-stub expects .linux at the highest address.
    let linux = added.last().expect("added sections");
    assert!(
        new.iter().all(|s| s.vma <= linux.vma),
        ".linux is not the last section in memory"
    );
}

#[test]
fn header_fields_match_sections() {
    let Some(stub) = host_stub() else { return };
    let kernel = pseudo_random(300_001, 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("uki.efi");
    let image = build_sample(&stub, &kernel, b"initrd");
    std::fs::write(&path, &image).expect("write UKI");

    let listing = sections(&path);
    let last = listing.last().expect("sections");
    let section_alignment = header_field(&path, "SectionAlignment");
    let expected_size_of_image = (last.vma + last.size).next_multiple_of(section_alignment);
    assert_eq!(header_field(&path, "SizeOfImage"), expected_size_of_image);

    let file_alignment = header_field(&path, "FileAlignment");
    let raw = |len: usize| (len as u64).next_multiple_of(file_alignment);
    let stub_code = header_field(Path::new(HOST_STUB), "SizeOfCode");
    let stub_data = header_field(Path::new(HOST_STUB), "SizeOfInitializedData");
    assert_eq!(
        header_field(&path, "SizeOfCode"),
        stub_code + raw(kernel.len())
    );
    assert_eq!(
        header_field(&path, "SizeOfInitializedData"),
        stub_data + raw(OSREL.len()) + raw(CMDLINE.len()) + raw(6)
    );

    // The checksum field sits 64 bytes into the optional header.
    let pe_offset = u32::from_le_bytes(image[0x3c..0x40].try_into().expect("4 bytes")) as usize;
    let checksum_offset = pe_offset + 4 + 20 + 64;
    let checksum = header_field(&path, "CheckSum");
    assert_eq!(checksum, u64::from(pe_checksum(&image, checksum_offset)));
    assert_eq!(image.len() as u64 % file_alignment, 0);
}

#[test]
fn linux_virtual_size_covers_kernel_image() {
    let Some(stub) = host_stub() else { return };
    let kernel = fake_kernel(0x80_0000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("uki.efi");
    let image = build_sample(&stub, &kernel, b"initrd");
    std::fs::write(&path, &image).expect("write UKI");

    let linux = sections(&path).pop().expect("sections");
    assert_eq!(linux.name, ".linux");
    // objdump -h prints the smaller of VirtualSize and SizeOfRawData, so read
    // VirtualSize from the last section header itself.
    let pe_offset = u32::from_le_bytes(image[0x3c..0x40].try_into().expect("4 bytes")) as usize;
    let sections_count = u16::from_le_bytes(
        image[pe_offset + 6..pe_offset + 8]
            .try_into()
            .expect("2 bytes"),
    );
    let optional_size = u16::from_le_bytes(
        image[pe_offset + 20..pe_offset + 22]
            .try_into()
            .expect("2 bytes"),
    );
    let last_header =
        pe_offset + 24 + usize::from(optional_size) + (usize::from(sections_count) - 1) * 40;
    assert_eq!(&image[last_header..last_header + 8], b".linux\0\0");
    let virtual_size = u32::from_le_bytes(
        image[last_header + 8..last_header + 12]
            .try_into()
            .expect("4 bytes"),
    );
    assert_eq!(virtual_size, 0x80_0000, "VirtualSize of .linux");

    let section_alignment = header_field(&path, "SectionAlignment");
    assert_eq!(
        header_field(&path, "SizeOfImage"),
        (linux.vma + 0x80_0000).next_multiple_of(section_alignment)
    );
    let start = linux.file_offset as usize;
    assert_eq!(&image[start..start + kernel.len()], kernel.as_slice());
}

#[test]
fn output_is_deterministic() {
    let Some(stub) = host_stub() else { return };
    let kernel = pseudo_random(200_000, 4);
    assert_eq!(
        build_sample(&stub, &kernel, b"initrd"),
        build_sample(&stub, &kernel, b"initrd")
    );
}

#[test]
fn invalid_inputs_are_rejected() {
    let Some(stub) = host_stub() else { return };
    let mut signed = stub.clone();
    let pe_offset = u32::from_le_bytes(stub[0x3c..0x40].try_into().expect("4 bytes")) as usize;
    let certificate_size = pe_offset + 4 + 20 + 112 + 4 * 8 + 4;
    signed[certificate_size..certificate_size + 4].copy_from_slice(&1024u32.to_le_bytes());
    let mut pe32 = stub.clone();
    pe32[pe_offset + 24..pe_offset + 26].copy_from_slice(&0x10bu16.to_le_bytes());
    let many: Vec<(String, Vec<u8>)> = (0..8).map(|i| (format!(".extra{i}"), vec![1u8])).collect();
    let many: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();

    let cases: [(&str, Result<Vec<u8>, UkiError>); 9] = [
        (
            "not a PE file",
            uki::build(b"not a PE file at all", &[(".cmdline", CMDLINE)]),
        ),
        (
            "truncated stub",
            uki::build(&stub[..0x100], &[(".cmdline", CMDLINE)]),
        ),
        ("PE32 stub", uki::build(&pe32, &[(".cmdline", CMDLINE)])),
        ("signed stub", uki::build(&signed, &[(".cmdline", CMDLINE)])),
        (
            "name too long",
            uki::build(&stub, &[(".cmdline-x", CMDLINE)]),
        ),
        ("name in stub", uki::build(&stub, &[(".sbat", CMDLINE)])),
        ("empty section", uki::build(&stub, &[(".cmdline", b"")])),
        (
            "linux not last",
            uki::build(&stub, &[(".linux", CMDLINE), (".cmdline", CMDLINE)]),
        ),
        ("no header room", uki::build(&stub, &many)),
    ];
    for (case, result) in cases {
        let error = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
        println!("{case}: {error}");
        let expected_variant = match case {
            "not a PE file" => matches!(error, UkiError::BadMagic { .. }),
            "truncated stub" => matches!(error, UkiError::Truncated { .. }),
            "PE32 stub" => matches!(error, UkiError::NotPe32Plus { magic: 0x10b, .. }),
            "signed stub" => matches!(error, UkiError::SignedStub { size: 1024 }),
            "name too long" => matches!(error, UkiError::InvalidSectionName { .. }),
            "name in stub" => matches!(error, UkiError::DuplicateSection { .. }),
            "empty section" => matches!(error, UkiError::EmptySection { .. }),
            "linux not last" => matches!(error, UkiError::LinuxNotLast { .. }),
            _ => matches!(error, UkiError::NoHeaderRoom { count: 8, .. }),
        };
        assert!(expected_variant, "{case}: unexpected error {error:?}");
    }

    let duplicate = uki::build(&stub, &[(".cmdline", CMDLINE), (".cmdline", CMDLINE)]);
    assert!(matches!(duplicate, Err(UkiError::DuplicateSection { .. })));
    // Seven more headers still fit in the stub's 0x400-byte header area.
    assert!(uki::build(&stub, &many[..7]).is_ok());
}
