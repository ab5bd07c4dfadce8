//! Tests of the newc cpio writer against GNU cpio and by parsing its headers.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use applbuild::initramfs::{Cpio, CpioError};

const EPOCH: u64 = 1_700_000_000;
const INIT: &[u8] = b"#!/bin/sh\necho hello from init\n"; // 31 bytes, not a multiple of 4
const POLICY: &[u8] = b"policy_name=release policy_version=1.0.0\nDEFAULT action=DENY\n";

fn sample_archive() -> Vec<u8> {
    let mut cpio = Cpio::new(EPOCH).expect("epoch fits");
    cpio.add_dir("dev", 0o755).expect("dev");
    cpio.add_char_dev("dev/console", 0o600, 5, 1)
        .expect("console");
    cpio.add_dir("etc", 0o755).expect("etc");
    cpio.add_file("etc/policy.p7s", 0o644, POLICY)
        .expect("policy");
    cpio.add_file("etc/empty", 0o600, b"").expect("empty");
    cpio.add_file("init", 0o755, INIT).expect("init");
    cpio.finish()
}

fn cpio_available() -> bool {
    let found = Command::new("cpio").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: GNU cpio not installed (apt-get install cpio)");
    }
    found
}

fn run_cpio(args: &[&str], input: &[u8], dir: &Path) -> String {
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cpio");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write archive");
    let output = child.wait_with_output().expect("cpio runs");
    assert!(
        output.status.success(),
        "cpio {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 listing")
}

/// One parsed newc header.
#[derive(Debug)]
struct Header {
    name: String,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

/// Parses a newc archive independently of the writer, checking alignment.
fn parse(archive: &[u8]) -> Vec<Header> {
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        assert_eq!(offset % 4, 0, "entry at {offset} is not 4-byte aligned");
        let header = &archive[offset..offset + 110];
        assert_eq!(&header[..6], b"070701");
        let field = |index: usize| {
            let text =
                std::str::from_utf8(&header[6 + index * 8..14 + index * 8]).expect("ascii field");
            u32::from_str_radix(text, 16).expect("hex field")
        };
        let name_size = field(11) as usize;
        let file_size = field(6) as usize;
        let name_start = offset + 110;
        let name = std::str::from_utf8(&archive[name_start..name_start + name_size - 1])
            .expect("utf-8 name")
            .to_owned();
        assert_eq!(
            archive[name_start + name_size - 1],
            0,
            "name of {name} is not NUL-terminated"
        );
        let data_start = (name_start + name_size).next_multiple_of(4);
        let data = archive[data_start..data_start + file_size].to_vec();
        offset = (data_start + file_size).next_multiple_of(4);
        assert_eq!(field(12), 0, "check field of {name}");
        assert_eq!((field(7), field(8)), (0, 0), "device of {name}");
        if name == "TRAILER!!!" {
            assert_eq!(offset, archive.len(), "bytes after the trailer");
            return entries;
        }
        entries.push(Header {
            name,
            ino: field(0),
            mode: field(1),
            uid: field(2),
            gid: field(3),
            nlink: field(4),
            mtime: field(5),
            rdev: (field(9), field(10)),
            data,
        });
    }
}

#[test]
fn headers_follow_newc_rules() {
    let archive = sample_archive();
    assert_eq!(archive.len() % 4, 0);
    let entries = parse(&archive);

    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "dev",
            "dev/console",
            "etc",
            "etc/policy.p7s",
            "etc/empty",
            "init"
        ]
    );
    let modes: Vec<u32> = entries.iter().map(|e| e.mode).collect();
    assert_eq!(
        modes,
        [0o040755, 0o020600, 0o040755, 0o100644, 0o100600, 0o100755]
    );
    let inodes: Vec<u32> = entries.iter().map(|e| e.ino).collect();
    assert_eq!(inodes, [1, 2, 3, 4, 5, 6]);
    let links: Vec<u32> = entries.iter().map(|e| e.nlink).collect();
    assert_eq!(links, [2, 1, 2, 1, 1, 1]);
    for entry in &entries {
        assert_eq!((entry.uid, entry.gid), (0, 0), "owner of {}", entry.name);
        assert_eq!(u64::from(entry.mtime), EPOCH, "mtime of {}", entry.name);
    }
    assert_eq!(entries[1].rdev, (5, 1));
    assert_eq!(entries[3].data, POLICY);
    assert_eq!(entries[5].data, INIT);
}

#[test]
fn output_is_deterministic() {
    assert_eq!(sample_archive(), sample_archive());
}

#[test]
fn gnu_cpio_lists_entries_with_modes() {
    if !cpio_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let listing = run_cpio(&["-itv", "--quiet"], &sample_archive(), dir.path());
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 6, "listing:\n{listing}");

    let expected = [
        ("drwxr-xr-x", "dev"),
        ("crw-------", "dev/console"),
        ("drwxr-xr-x", "etc"),
        ("-rw-r--r--", "etc/policy.p7s"),
        ("-rw-------", "etc/empty"),
        ("-rwxr-xr-x", "init"),
    ];
    for (line, (mode, name)) in lines.iter().zip(expected) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&mode), "line {line:?}");
        assert_eq!(fields.last(), Some(&name), "line {line:?}");
        assert_eq!(
            fields.get(2..4),
            Some(["root", "root"].as_slice()),
            "owner in line {line:?}"
        );
    }
    // Device nodes list major and minor instead of a size.
    assert!(
        lines[1].contains("5,") && lines[1].contains(" 1 "),
        "line {:?}",
        lines[1]
    );
}

#[test]
fn gnu_cpio_extracts_identical_bytes() {
    if !cpio_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // Extract everything but the device node, which needs CAP_MKNOD.
    run_cpio(
        &[
            "-id",
            "--quiet",
            "--no-absolute-filenames",
            "--preserve-modification-time",
            "-f",
            "dev/console",
        ],
        &sample_archive(),
        dir.path(),
    );

    assert_eq!(std::fs::read(dir.path().join("init")).expect("init"), INIT);
    assert_eq!(
        std::fs::read(dir.path().join("etc/policy.p7s")).expect("policy"),
        POLICY
    );
    assert_eq!(
        std::fs::read(dir.path().join("etc/empty")).expect("empty"),
        b""
    );

    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let init = std::fs::metadata(dir.path().join("init")).expect("init metadata");
    assert_eq!(init.permissions().mode() & 0o7777, 0o755);
    assert_eq!(init.mtime() as u64, EPOCH);
}

#[test]
fn invalid_entries_are_rejected() {
    let mut cpio = Cpio::new(EPOCH).expect("epoch fits");
    cpio.add_dir("etc", 0o755).expect("etc");
    cpio.add_file("etc/file", 0o644, b"x").expect("file");

    let long_path = "a".repeat(4096);
    let cases: [(&str, Option<CpioError>); 9] = [
        ("absolute path", cpio.add_file("/init", 0o755, b"").err()),
        ("empty path", cpio.add_dir("", 0o755).err()),
        (
            "dot-dot component",
            cpio.add_file("etc/../init", 0o755, b"").err(),
        ),
        ("empty component", cpio.add_file("etc//x", 0o644, b"").err()),
        (
            "path at PATH_MAX",
            cpio.add_file(&long_path, 0o644, b"").err(),
        ),
        (
            "missing parent",
            cpio.add_file("usr/bin/sh", 0o755, b"").err(),
        ),
        (
            "parent is a file",
            cpio.add_file("etc/file/x", 0o644, b"").err(),
        ),
        ("duplicate path", cpio.add_dir("etc", 0o755).err()),
        (
            "file type bits in mode",
            cpio.add_file("init", 0o100755, b"").err(),
        ),
    ];
    for (case, error) in cases {
        let error = error.unwrap_or_else(|| panic!("{case}: accepted"));
        println!("{case}: {error}");
        let expected_variant = match case {
            "missing parent" | "parent is a file" => {
                matches!(error, CpioError::MissingParent { .. })
            }
            "duplicate path" => matches!(error, CpioError::DuplicatePath { .. }),
            "file type bits in mode" => matches!(error, CpioError::InvalidMode { .. }),
            "path at PATH_MAX" => matches!(error, CpioError::PathTooLong { len: 4096 }),
            _ => matches!(error, CpioError::InvalidPath { .. }),
        };
        assert!(expected_variant, "{case}: unexpected error {error:?}");
    }

    // A rejected entry leaves the archive unchanged.
    assert_eq!(parse(&cpio.finish()).len(), 2);

    let error = Cpio::new(1 << 32).expect_err("epoch beyond 2106");
    assert!(matches!(error, CpioError::EpochOutOfRange { .. }));
    println!("epoch beyond 2106: {error}");
}
