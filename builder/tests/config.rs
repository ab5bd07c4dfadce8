//! Tests of board and manifest loading: the real files of the repository,
//! the fixtures under `tests/data/config/` (one fault each) and the key
//! reference in `docs/board.md` and `docs/manifest.md`.
//!
//! Fixture paths are relative to the crate folder, which `cargo test` uses as
//! the working directory, so messages show short, machine-independent paths.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use applbuild::board::{self, Arch, Board, Lsm, Release};
use applbuild::config::{self, ConfigError, ErrorKind, Location, Section};
use applbuild::manifest::{self, FileAttr, Manifest, RootfsSource};
use applbuild::size::{Bytes, GIB, MIB};

const FIXTURES: &str = "tests/data/config";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Loads a fixture as a board or a manifest, by its name's prefix, and
/// returns the error.
fn load_error(name: &str) -> Result<ConfigError, String> {
    let path = fixture(name);
    let result = if name.starts_with("board-") {
        board::load(&path).map(|_| ())
    } else if name.starts_with("manifest-") {
        manifest::load(&path).map(|_| ())
    } else {
        return Err(format!(
            "{name}: fixture names start with board- or manifest-"
        ));
    };
    match result {
        Ok(()) => Err(format!("{name}: loaded without error")),
        Err(error) => Ok(error),
    }
}

// ---------------------------------------------------------------------------
// The real files

#[test]
fn default_board_loads() {
    let path = repo_root().join("boards/qemu-x86_64.toml");
    let board = board::load(&path).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(board.name, "qemu-x86_64");
    assert_eq!(board.arch, Arch::X86_64);
    assert_eq!(
        board.release,
        Release {
            major: 1,
            minor: 0,
            patch: 0
        }
    );
    assert_eq!(
        board.manifest,
        repo_root().join("boards/../manifests/firewall.toml")
    );
    assert_eq!(board.kernel.source, board::KERNEL_SOURCE_DEBIAN_6_12);
    assert_eq!(
        board.kernel.config,
        [
            repo_root().join("boards/kernel/common.config"),
            repo_root().join("boards/kernel/qemu-x86_64.config")
        ]
    );
    assert_eq!(board.kernel.cmdline, "console=ttyS0");
    assert_eq!(board.kernel.lsm, Lsm::IpeRust);
    assert_eq!(board.disk.size, Bytes(512 * MIB));
    assert_eq!(board.disk.esp_size, Bytes(64 * MIB));
    assert_eq!(board.disk.state, Some(Bytes(64 * MIB)));
    assert_eq!(board.keys.dir, repo_root().join("boards/../keys/dev"));
    assert!(board.keys.create_if_missing);
    assert!(board.ipe.enforce);
    assert!(board.ipe.require_signature);
    assert!(board.ipe.previous_releases.is_empty());
    assert_eq!(board.qemu.memory, Bytes(512 * MIB));
    assert_eq!(board.qemu.cpus, 2);
    assert_eq!(board.qemu.timeout_secs, 600);
}

fn check_uefi_board(board: &Board, root: &Path) {
    assert_eq!(board.name, "x86_64-uefi");
    assert_eq!(board.release.to_string(), "1.0.0");
    assert_eq!(
        board.kernel.config,
        [
            root.join("boards/kernel/common.config"),
            root.join("boards/kernel/x86_64-uefi.config")
        ]
    );
    assert_eq!(board.kernel.cmdline, "console=tty0 console=ttyS0");
    assert_eq!(board.disk.size, Bytes(2 * GIB));
    assert_eq!(board.disk.state, Some(Bytes(256 * MIB)));
    assert_eq!(board.keys.dir, root.join("boards/../keys/release"));
    assert!(!board.keys.create_if_missing);
    assert_eq!(board.qemu.memory, Bytes(GIB));
    assert_eq!(board.qemu.disk_bus, "nvme");
    assert_eq!(board.qemu.nic_model, "e1000e");
    assert_eq!(board.qemu.nics, 2);
}

/// The UEFI board names release keys, which are never committed. In the
/// repository it loads once `keys/release` exists and otherwise fails only
/// on that folder. A copy beside an empty `keys/release` must load.
#[test]
fn uefi_board_loads() {
    let root = repo_root();
    match board::load(&root.join("boards/x86_64-uefi.toml")) {
        Ok(board) => check_uefi_board(&board, &root),
        Err(error) => match &*error.kind {
            ErrorKind::KeyDirMissing { path } => {
                assert_eq!(path, &root.join("boards/../keys/release"))
            }
            _ => panic!("unexpected error: {error}"),
        },
    }

    let temp = tempfile::tempdir().expect("create a temporary folder");
    let copy = temp.path();
    fs::create_dir_all(copy.join("boards/kernel")).expect("create boards/kernel");
    fs::create_dir_all(copy.join("manifests")).expect("create manifests");
    fs::create_dir_all(copy.join("keys/release")).expect("create keys/release");
    for file in [
        "boards/x86_64-uefi.toml",
        "boards/kernel/common.config",
        "boards/kernel/x86_64-uefi.config",
    ] {
        fs::copy(root.join(file), copy.join(file)).expect("copy a board file");
    }
    fs::write(copy.join("manifests/firewall.toml"), "").expect("write a manifest placeholder");

    let board = board::load(&copy.join("boards/x86_64-uefi.toml"))
        .unwrap_or_else(|error| panic!("{error}"));
    check_uefi_board(&board, copy);
}

#[test]
fn firewall_manifest_loads() {
    let path = repo_root().join("manifests/firewall.toml");
    let manifest = manifest::load(&path).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(manifest.name, "firewall");
    assert_eq!(manifest.hostname, "firewall");
    assert_eq!(
        manifest.source,
        RootfsSource::Debian {
            suite: "trixie".to_owned(),
            mirror: "http://deb.debian.org/debian".to_owned(),
            packages: vec!["busybox-static".to_owned(), "nftables".to_owned()],
        }
    );
    assert_eq!(
        manifest.overlays,
        [repo_root().join("manifests/firewall/overlay")]
    );
    assert_eq!(manifest.remove, manifest::DEFAULT_REMOVE);
    assert!(manifest.files.is_empty());
    assert_eq!(manifest.firewall.allow_tcp, [22]);
    assert!(manifest.firewall.allow_udp.is_empty());
    assert!(manifest.firewall.allow_icmp);
}

/// The manifest that each real board names loads too.
#[test]
fn real_boards_name_loadable_manifests() {
    let board = board::load(&repo_root().join("boards/qemu-x86_64.toml"))
        .unwrap_or_else(|error| panic!("{error}"));
    manifest::load(&board.manifest).unwrap_or_else(|error| panic!("{error}"));
}

// ---------------------------------------------------------------------------
// Valid fixtures and defaults

#[test]
fn fixture_board_takes_defaults() {
    let board = board::load(&fixture("board.toml")).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(board.path, fixture("board.toml"));
    assert_eq!(
        board.release,
        Release {
            major: 2,
            minor: 3,
            patch: 4
        }
    );
    assert_eq!(board.manifest, fixture("manifest.toml"));
    assert_eq!(board.kernel.source, "debian:linux-source-6.12");
    assert_eq!(board.kernel.config, [fixture("kernel/test.config")]);
    assert_eq!(board.kernel.cmdline, "console=ttyS0");
    assert_eq!(board.kernel.lsm, Lsm::IpeRust);
    assert_eq!(board.disk.size, Bytes(256 * MIB));
    assert_eq!(board.disk.esp_size, Bytes(40 * MIB));
    assert_eq!(board.disk.state, None);
    assert_eq!(board.keys.dir, fixture("keys"));
    assert!(!board.keys.create_if_missing);
    assert!(board.ipe.enforce);
    assert!(board.ipe.require_signature);
    assert!(board.ipe.previous_releases.is_empty());
    assert_eq!(board.qemu.memory, Bytes(512 * MIB));
    assert_eq!(board.qemu.cpus, 2);
    assert_eq!(board.qemu.timeout_secs, 600);
}

#[test]
fn fixture_manifest_takes_defaults() {
    let manifest =
        manifest::load(&fixture("manifest.toml")).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(manifest.path, fixture("manifest.toml"));
    assert_eq!(manifest.hostname, "test-manifest");
    assert_eq!(
        manifest.source,
        RootfsSource::Debian {
            suite: "trixie".to_owned(),
            mirror: "http://deb.debian.org/debian".to_owned(),
            packages: vec!["busybox-static".to_owned(), "nftables".to_owned()],
        }
    );
    assert_eq!(manifest.overlays, [fixture("overlay")]);
    assert_eq!(
        manifest.files,
        [
            FileAttr {
                path: "/usr/bin/busybox".to_owned(),
                mode: 0o755,
                uid: 0,
                gid: 0
            },
            FileAttr {
                path: "/etc/shadow".to_owned(),
                mode: 0o640,
                uid: 0,
                gid: 42
            },
        ]
    );
    assert_eq!(manifest.remove, manifest::DEFAULT_REMOVE);
    assert_eq!(manifest.firewall.allow_tcp, [22]);
    assert!(manifest.firewall.allow_udp.is_empty());
    assert!(manifest.firewall.allow_icmp);
    assert!(manifest.interfaces.is_empty(), "no [[interfaces]] means DHCP");
    assert!(manifest.forward.is_empty());
}

#[test]
fn router_manifest_loads_interfaces_and_forward_rules() {
    let manifest = manifest::load(&repo_root().join("manifests/router-test.toml")).unwrap_or_else(|error| panic!("{error}"));
    let interfaces: Vec<(&str, &str)> = manifest.interfaces.iter().map(|i| (i.name.as_str(), i.address.as_str())).collect();
    assert_eq!(interfaces, [("eth0", "192.168.10.1/24"), ("eth1", "192.168.20.1/24")]);
    assert_eq!(manifest.forward.len(), 1);
    let rule = &manifest.forward[0];
    assert_eq!((rule.from.as_str(), rule.to.as_str(), rule.protocol, rule.ports.as_slice()), ("eth0", "eth1", "udp", &[5000u16][..]));
}

/// Writes `text` as `manifest.toml` in a fresh temporary folder and loads it.
fn load_manifest_text(
    text: &str,
    prepare: impl FnOnce(&Path),
) -> (tempfile::TempDir, Result<Manifest, ConfigError>) {
    let temp = tempfile::tempdir().expect("create a temporary folder");
    prepare(temp.path());
    let path = temp.path().join("manifest.toml");
    fs::write(&path, text).expect("write the manifest");
    let result = manifest::load(&path);
    (temp, result)
}

#[test]
fn tarball_and_directory_sources_load() {
    let (temp, result) = load_manifest_text(
        "name = \"tar\"\n[source]\nkind = \"tarball\"\npath = \"rootfs.tar\"\n",
        |dir| fs::write(dir.join("rootfs.tar"), b"").expect("write the tarball"),
    );
    let manifest = result.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        manifest.source,
        RootfsSource::Tarball {
            path: temp.path().join("rootfs.tar")
        }
    );

    let (temp, result) = load_manifest_text(
        "name = \"dir\"\n[source]\nkind = \"directory\"\npath = \"tree\"\n",
        |dir| fs::create_dir(dir.join("tree")).expect("create the tree"),
    );
    let manifest = result.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        manifest.source,
        RootfsSource::Directory {
            path: temp.path().join("tree")
        }
    );
}

#[test]
fn absolute_paths_stay_absolute() {
    let temp = tempfile::tempdir().expect("create a temporary folder");
    let overlay = temp.path().join("overlay");
    fs::create_dir(&overlay).expect("create the overlay");
    let text = format!(
        "name = \"abs\"\noverlays = [{:?}]\n[source]\nkind = \"directory\"\npath = {:?}\n",
        overlay.display().to_string(),
        overlay.display().to_string()
    );

    let (_temp, result) = load_manifest_text(&text, |_| {});
    let manifest = result.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        manifest.source,
        RootfsSource::Directory {
            path: overlay.clone()
        }
    );
    assert_eq!(manifest.overlays, [overlay]);
}

// ---------------------------------------------------------------------------
// Malformed fixtures

/// A malformed fixture, the expected `LINE:COL` (or `None` for a message about
/// the whole file) and phrases that the message must contain, hint included.
struct Case {
    file: &'static str,
    position: Option<&'static str>,
    phrases: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case { file: "board-syntax.toml", position: Some("3:17"), phrases: &["invalid TOML: invalid basic string"] },
    Case { file: "board-duplicate-key.toml", position: Some("5:1"), phrases: &["invalid TOML", "duplicate key"] },
    Case {
        file: "board-not-utf8.toml",
        position: Some("3:6"),
        phrases: &["the file is not valid UTF-8"],
    },
    Case {
        file: "board-unknown-key.toml",
        position: Some("11:1"),
        phrases: &["unknown key `esp_szie` in [disk]", "hint: did you mean `esp_size`?"],
    },
    Case {
        file: "board-misplaced-key.toml",
        position: Some("5:1"),
        phrases: &["unknown key `esp_size` in the top level", "hint: `esp_size` belongs in [disk]"],
    },
    Case {
        file: "board-unknown-table.toml",
        position: Some("6:2"),
        phrases: &["unknown key `kernal` in the top level", "hint: did you mean `kernel`?"],
    },
    Case {
        file: "board-bad-size.toml",
        position: Some("10:8"),
        phrases: &["invalid size `64XB` for `disk.size`: unknown unit `XB`", "hint: write a whole number of bytes"],
    },
    Case {
        file: "board-ambiguous-size.toml",
        position: Some("13:10"),
        phrases: &["invalid size `512M` for `qemu.memory`: ambiguous unit `M`: write `MiB` for 2^20 bytes"],
    },
    Case {
        file: "board-unaligned-size.toml",
        position: Some("10:8"),
        phrases: &["invalid value `1000000` for `disk.size`: expected a multiple of 1MiB"],
    },
    Case {
        file: "board-wrong-type.toml",
        position: Some("13:8"),
        phrases: &["wrong type for `qemu.cpus`: expected an integer, found string"],
    },
    Case {
        file: "board-table-not-table.toml",
        position: Some("5:8"),
        phrases: &["wrong type for `disk`: expected a table, found string"],
    },
    Case {
        file: "board-bad-release.toml",
        position: Some("3:11"),
        phrases: &["invalid release `1.0` for `release`", "hint: write the release as X.Y.Z"],
    },
    Case {
        file: "board-missing-release.toml",
        position: None,
        phrases: &["missing required key `release`", "hint: add `release = …` above the first [table] header"],
    },
    Case {
        file: "board-missing-fragment-list.toml",
        position: Some("6:1"),
        phrases: &["missing required key `kernel.config`", "hint: add `config = …` to [kernel]"],
    },
    Case {
        file: "board-bad-arch.toml",
        position: Some("2:8"),
        phrases: &["unsupported value `arm64` for `arch`", "hint: use \"x86_64\""],
    },
    Case {
        file: "board-unknown-lsm.toml",
        position: Some("8:7"),
        phrases: &["unsupported value `selinux` for `kernel.lsm`", "hint: use \"ipe\" or \"ipe-rust\""],
    },
    Case {
        file: "board-bad-name.toml",
        position: Some("1:8"),
        phrases: &["invalid value `../escape` for `name`", "starting with a letter or digit"],
    },
    Case {
        file: "board-missing-fragment.toml",
        position: Some("7:33"),
        phrases: &["kernel config fragment not found: tests/data/config/kernel/missing.config", "hint: relative paths"],
    },
    Case {
        file: "board-missing-manifest.toml",
        position: Some("4:12"),
        phrases: &["manifest not found: tests/data/config/no-such-manifest.toml"],
    },
    Case {
        file: "board-missing-key-dir.toml",
        position: Some("10:7"),
        phrases: &[
            "key directory not found: tests/data/config/no-such-keys",
            "hint: create keys with `applbuild keys init tests/data/config/no-such-keys`",
        ],
    },
    Case {
        file: "board-cmdline-enforce.toml",
        position: Some("8:11"),
        phrases: &["invalid value `console=ttyS0 ipe.enforce=0` for `kernel.cmdline`", "`[ipe] enforce` sets it"],
    },
    Case {
        file: "board-esp-too-small.toml",
        position: Some("10:12"),
        phrases: &["esp_size 32MiB is too small for FAT32: the minimum is 40MiB", "65,525 clusters"],
    },
    Case {
        file: "board-esp-too-large.toml",
        position: Some("11:12"),
        phrases: &["esp_size 64MiB is not smaller than the disk size 64MiB", "hint: increase `disk.size`"],
    },
    Case {
        file: "board-no-root-space.toml",
        position: Some("10:8"),
        phrases: &["esp_size 64MiB plus state 64MiB leave no space for the root partition on a 128MiB disk"],
    },
    Case {
        file: "board-previous-release-not-hex.toml",
        position: Some("15:5"),
        phrases: &[
            "invalid root hash `not-a-hash` in `ipe.previous_releases`: expected 64 hexadecimal digits",
            "hint: copy the hash",
        ],
    },
    Case {
        file: "board-duplicate-previous-release.toml",
        position: Some("15:5"),
        phrases: &[
            "duplicate root hash `8f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809` in \
             `ipe.previous_releases`, first listed at line 14, column 5",
        ],
    },
    Case {
        file: "board-zero-cpus.toml",
        position: Some("13:8"),
        phrases: &["invalid value `0` for `qemu.cpus`: expected an integer from 1 to 4294967295"],
    },
    Case {
        file: "manifest-bad-address.toml",
        position: Some("9:11"),
        phrases: &["invalid value `192.168.1.300/24` for `interfaces.address`", "such as \"192.168.1.1/24\""],
    },
    Case {
        file: "manifest-bad-interface-name.toml",
        position: Some("8:8"),
        phrases: &["invalid value `eth0/1` for `interfaces.name`: expected 1 to 15 ASCII letters"],
    },
    Case {
        file: "manifest-duplicate-interface.toml",
        position: Some("12:8"),
        phrases: &["duplicate interface name `eth0` in `interfaces.name`, first listed at line 8, column 8"],
    },
    Case {
        file: "manifest-forward-unknown-interface.toml",
        position: Some("13:6"),
        phrases: &["invalid value `wan0` for `forward.to`: expected one of the interfaces in [[interfaces]]: eth0"],
    },
    Case {
        file: "manifest-forward-without-ports.toml",
        position: Some("15:1"),
        phrases: &["missing required key `forward.ports`"],
    },
    Case {
        file: "manifest-forward-icmp-ports.toml",
        position: Some("19:9"),
        phrases: &["`forward.ports` does not apply to `protocol = \"icmp\"`", "hint: remove it"],
    },
    Case {
        file: "manifest-forward-same-interface.toml",
        position: Some("13:6"),
        phrases: &["invalid value `eth0` for `forward.to`: expected an interface other than `from`"],
    },
    Case {
        file: "manifest-invalid-package.toml",
        position: Some("5:31"),
        phrases: &["invalid Debian package name `NFTables`", "hint: a package name has at least two characters"],
    },
    Case {
        file: "manifest-pinned-package.toml",
        position: Some("5:31"),
        phrases: &["invalid Debian package name `nftables=1.1.3-1`", "hint: list package names only"],
    },
    Case {
        file: "manifest-duplicate-package.toml",
        position: Some("8:5"),
        phrases: &[
            "duplicate package `busybox-static` in `source.packages`, first listed at line 6, column 5",
            "hint: remove one of them",
        ],
    },
    Case {
        file: "manifest-no-packages.toml",
        position: Some("3:1"),
        phrases: &["missing required key `source.packages`", "hint: add `packages = …` to [source]"],
    },
    Case {
        file: "manifest-missing-source.toml",
        position: None,
        phrases: &["missing required key `source`", "hint: add a [source] table"],
    },
    Case {
        file: "manifest-unknown-kind.toml",
        position: Some("4:8"),
        phrases: &["unsupported value `docker` for `source.kind`", "hint: use \"debian\", \"tarball\" or \"directory\""],
    },
    Case {
        file: "manifest-missing-overlay.toml",
        position: Some("2:24"),
        phrases: &["overlay directory not found: tests/data/config/no-such-overlay"],
    },
    Case {
        file: "manifest-overlay-is-file.toml",
        position: Some("2:13"),
        phrases: &["overlay directory tests/data/config/manifest.toml is not a directory"],
    },
    Case {
        file: "manifest-missing-tarball.toml",
        position: Some("5:8"),
        phrases: &["tarball not found: tests/data/config/no-such-rootfs.tar.gz"],
    },
    Case {
        file: "manifest-tarball-without-path.toml",
        position: Some("3:1"),
        phrases: &["missing required key `source.path`"],
    },
    Case {
        file: "manifest-key-not-applicable.toml",
        position: Some("6:1"),
        phrases: &[
            "`source.packages` does not apply to `kind = \"directory\"`",
            "hint: remove it, or use it with `kind = \"debian\"`",
        ],
    },
    Case {
        file: "manifest-mode-decimal.toml",
        position: Some("9:8"),
        phrases: &["invalid value `755` for `files.mode`", "TOML reads 755 as a decimal number"],
    },
    Case {
        file: "manifest-mode-too-large.toml",
        position: Some("9:8"),
        phrases: &["invalid value `17777` for `files.mode`: expected 3 or 4 octal digits"],
    },
    Case {
        file: "manifest-relative-file-path.toml",
        position: Some("8:8"),
        phrases: &["invalid value `etc/shadow` for `files.path`: expected an absolute path"],
    },
    Case {
        file: "manifest-duplicate-file-path.toml",
        position: Some("12:8"),
        phrases: &["duplicate path `/etc/shadow` in `files.path`, first listed at line 8, column 8"],
    },
    Case {
        file: "manifest-files-without-mode.toml",
        position: Some("7:1"),
        phrases: &["missing required key `files.mode`", "hint: add `mode = …` to this [[files]] table"],
    },
    Case {
        file: "manifest-unknown-files-key.toml",
        position: Some("10:1"),
        phrases: &["unknown key `owner` in [[files]]", "hint: valid keys in [[files]]: path, mode, uid, gid"],
    },
    Case {
        file: "manifest-remove-wildcard.toml",
        position: Some("2:29"),
        phrases: &["invalid value `/usr/*/man` for `remove`", "no other wildcards"],
    },
    Case {
        file: "manifest-duplicate-port.toml",
        position: Some("8:23"),
        phrases: &["duplicate TCP port `22` in `firewall.allow_tcp`, first listed at line 8, column 14"],
    },
    Case {
        file: "manifest-port-zero.toml",
        position: Some("8:18"),
        phrases: &["invalid value `0` for `firewall.allow_udp`: expected a port number from 1 to 65535"],
    },
    Case {
        file: "manifest-port-wrong-type.toml",
        position: Some("8:14"),
        phrases: &["wrong type for `firewall.allow_tcp[0]`: expected a port number, found string"],
    },
    Case {
        file: "manifest-bad-hostname.toml",
        position: Some("2:12"),
        phrases: &["invalid value `fire_wall` for `hostname`: expected a host name"],
    },
    Case {
        file: "manifest-name-not-hostname.toml",
        position: Some("1:8"),
        phrases: &["invalid value `test_manifest` for `hostname`", "set `hostname` to use another"],
    },
    Case {
        file: "manifest-bad-mirror.toml",
        position: Some("5:10"),
        phrases: &["invalid value `deb.debian.org/debian` for `source.mirror`: expected an http://"],
    },
];

/// Returns what is wrong with the error of one case, or `None` if it matches.
fn check_case(case: &Case) -> Option<String> {
    let error = match load_error(case.file) {
        Ok(error) => error,
        Err(problem) => return Some(problem),
    };
    let text = error.to_string();

    let location = match case.position {
        Some(position) => format!("{FIXTURES}/{}:{position}: ", case.file),
        None => format!("{FIXTURES}/{}: ", case.file),
    };
    if !text.starts_with(&location) {
        return Some(format!(
            "{}: expected the message to start with `{location}`, got:\n{text}",
            case.file
        ));
    }
    for phrase in case.phrases {
        if !text.contains(phrase) {
            return Some(format!(
                "{}: expected the message to contain `{phrase}`, got:\n{text}",
                case.file
            ));
        }
    }
    if error.exit_code() != 2 {
        return Some(format!(
            "{}: exit code {} instead of 2",
            case.file,
            error.exit_code()
        ));
    }
    None
}

#[test]
fn malformed_fixtures_report_position_and_cause() {
    let problems: Vec<String> = CASES.iter().filter_map(check_case).collect();
    assert!(
        problems.is_empty(),
        "{} of {} cases failed:\n\n{}",
        problems.len(),
        CASES.len(),
        problems.join("\n\n")
    );
}

#[test]
fn every_malformed_fixture_has_a_case() {
    let listed: BTreeSet<&str> = CASES.iter().map(|case| case.file).collect();
    let mut unlisted = Vec::new();
    for entry in fs::read_dir(FIXTURES).expect("list the fixtures") {
        let name = entry
            .expect("read a fixture entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let malformed = name.starts_with("board-") || name.starts_with("manifest-");
        if malformed && !listed.contains(name.as_str()) {
            unlisted.push(name);
        }
    }
    assert!(
        unlisted.is_empty(),
        "fixtures without a case in CASES: {unlisted:?}"
    );
}

#[test]
fn missing_file_names_path_and_os_error() {
    let error =
        board::load(&fixture("no-such-board.toml")).expect_err("a missing board must not load");

    assert_eq!(
        error.to_string(),
        "tests/data/config/no-such-board.toml: cannot read the file: No such file or directory (os error 2)"
    );
    assert_eq!(error.location.position, None);
    assert_eq!(error.exit_code(), 2);
}

/// An overlay folder with mode 000. Root reads it anyway, because of
/// CAP_DAC_OVERRIDE, and so does the rootfs stage running as root, so the
/// loader accepts it there. The test checks whichever applies by trying to
/// list the folder first.
#[test]
fn unreadable_overlay_is_rejected_unless_readable_anyway() {
    let temp = tempfile::tempdir().expect("create a temporary folder");
    let overlay = temp.path().join("locked");
    fs::create_dir(&overlay).expect("create the overlay");
    fs::write(overlay.join("file"), "x").expect("fill the overlay");
    fs::set_permissions(&overlay, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let text = "name = \"locked\"\noverlays = [\"locked\"]\n[source]\nkind = \"directory\"\npath = \"locked\"\n";
    let path = temp.path().join("manifest.toml");
    fs::write(&path, text).expect("write the manifest");

    let readable_anyway =
        fs::read_dir(&overlay).is_ok_and(|mut entries| entries.next().is_some_and(|e| e.is_ok()));
    let result = manifest::load(&path);
    fs::set_permissions(&overlay, fs::Permissions::from_mode(0o755)).expect("restore the mode");

    if readable_anyway {
        eprintln!("note: running as root, so mode 000 does not deny reading; checked that the overlay is accepted");
        result.unwrap_or_else(|error| panic!("{error}"));
        return;
    }
    let error = result.expect_err("an unreadable overlay must not load");
    let text = error.to_string();
    let expected_start = format!(
        "{}:2:13: cannot read overlay directory {}: ",
        path.display(),
        overlay.display()
    );
    assert!(text.starts_with(&expected_start), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    assert!(
        text.contains("hint: give the user running applbuild read access"),
        "{text}"
    );
}

/// Truncating a valid file anywhere must give an error or a board, never a
/// panic.
#[test]
fn truncated_files_never_panic() {
    let temp = tempfile::tempdir().expect("create a temporary folder");
    for name in ["board.toml", "manifest.toml"] {
        let text = fs::read_to_string(fixture(name)).expect("read the fixture");
        let path = temp.path().join(name);
        for (end, _) in text.char_indices() {
            fs::write(&path, &text[..end]).expect("write the truncated copy");
            let _ = board::load(&path);
            let _ = manifest::load(&path);
        }
    }
}

// ---------------------------------------------------------------------------
// Messages for proofreading

/// Returns the variant name of an error. The match has no wildcard, so a new
/// variant fails to compile here until the proofreading test covers it.
fn variant_name(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Read { .. } => "Read",
        ErrorKind::NotUtf8 => "NotUtf8",
        ErrorKind::Syntax { .. } => "Syntax",
        ErrorKind::UnknownKey { .. } => "UnknownKey",
        ErrorKind::MissingKey { .. } => "MissingKey",
        ErrorKind::WrongType { .. } => "WrongType",
        ErrorKind::InvalidSize { .. } => "InvalidSize",
        ErrorKind::InvalidRelease { .. } => "InvalidRelease",
        ErrorKind::UnknownChoice { .. } => "UnknownChoice",
        ErrorKind::InvalidValue { .. } => "InvalidValue",
        ErrorKind::KeyNotApplicable { .. } => "KeyNotApplicable",
        ErrorKind::FileNotFound { .. } => "FileNotFound",
        ErrorKind::WrongFileType { .. } => "WrongFileType",
        ErrorKind::Unreadable { .. } => "Unreadable",
        ErrorKind::KeyDirMissing { .. } => "KeyDirMissing",
        ErrorKind::InvalidPackageName { .. } => "InvalidPackageName",
        ErrorKind::Duplicate { .. } => "Duplicate",
        ErrorKind::EspTooSmall { .. } => "EspTooSmall",
        ErrorKind::EspTooLarge { .. } => "EspTooLarge",
        ErrorKind::NoRootSpace { .. } => "NoRootSpace",
        ErrorKind::InvalidRootHash { .. } => "InvalidRootHash",
        ErrorKind::Internal { .. } => "Internal",
    }
}

const ALL_VARIANTS: &[&str] = &[
    "Read",
    "NotUtf8",
    "Syntax",
    "UnknownKey",
    "MissingKey",
    "WrongType",
    "InvalidSize",
    "InvalidRelease",
    "UnknownChoice",
    "InvalidValue",
    "KeyNotApplicable",
    "FileNotFound",
    "WrongFileType",
    "Unreadable",
    "KeyDirMissing",
    "InvalidPackageName",
    "Duplicate",
    "EspTooSmall",
    "EspTooLarge",
    "NoRootSpace",
    "InvalidRootHash",
    "Internal",
];

/// Prints one message of every error variant, from the fixtures where one
/// reaches it. `cargo test --test config -- --nocapture messages` shows them.
#[test]
fn messages_print_for_proofreading() {
    let mut errors: Vec<ConfigError> = Vec::new();
    errors.push(board::load(&fixture("no-such-board.toml")).expect_err("missing board"));
    for case in CASES {
        errors.push(load_error(case.file).unwrap_or_else(|problem| panic!("{problem}")));
    }
    // Root can read a mode 000 folder, and internal errors need a bug, so
    // these two are built by hand.
    let location = Location {
        file: fixture("manifest.toml"),
        position: Some((3, 13)),
    };
    errors.push(ConfigError {
        location: location.clone(),
        kind: Box::new(ErrorKind::Unreadable {
            key: "overlays".to_owned(),
            role: "overlay directory",
            path: fixture("overlay"),
            // EACCES on Linux.
            error: io::Error::from_raw_os_error(13),
        }),
    });
    errors.push(ConfigError {
        location,
        kind: Box::new(ErrorKind::Internal {
            message: "`disk.size` is declared as Size but read as [Path]".to_owned(),
        }),
    });

    let mut seen = BTreeSet::new();
    for error in &errors {
        let name = variant_name(&error.kind);
        seen.insert(name);
        println!("[{name}]\napplbuild: error: {error}\n");
    }
    let missing: Vec<&&str> = ALL_VARIANTS
        .iter()
        .filter(|name| !seen.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "variants without a printed example: {missing:?}"
    );
}

// ---------------------------------------------------------------------------
// Reference pages

/// Compares the generated part of a docs page with the settings table.
fn check_reference_page(page: &str, sections: &[Section]) {
    common::check_generated_section(page, "settings-reference", &config::render_reference(sections), "config reference");
}

#[test]
fn board_reference_matches_settings() {
    check_reference_page("docs/board.md", board::SECTIONS);
}

#[test]
fn manifest_reference_matches_settings() {
    check_reference_page("docs/manifest.md", manifest::SECTIONS);
}

/// Every key of the settings tables appears in its page as a table row,
/// with its section heading above it.
#[test]
fn reference_pages_document_every_key() {
    for (page, sections) in [
        ("docs/board.md", board::SECTIONS),
        ("docs/manifest.md", manifest::SECTIONS),
    ] {
        let text = fs::read_to_string(repo_root().join(page))
            .unwrap_or_else(|error| panic!("{page}: {error}"));
        for section in sections {
            let heading = match section.name {
                "" => "### Top level".to_owned(),
                _ => format!("### `{}`", section.title()),
            };
            let Some(start) = text.find(&heading) else {
                panic!("{page} has no heading `{heading}`");
            };
            let body = &text[start..];
            for setting in section.settings {
                let row = format!("| `{}` |", setting.key);
                assert!(
                    body.contains(&row),
                    "{page}: `{}` is not documented under `{heading}`",
                    setting.key
                );
            }
        }
    }
}

/// Every default in the settings tables parses with the code that reads
/// values from files: the fixtures with fewest keys take all of them.
#[test]
fn defaults_are_valid_values() {
    let (_temp, result) = load_manifest_text(
        "name = \"defaults\"\n[source]\nkind = \"debian\"\npackages = [\"busybox-static\"]\n",
        |_| {},
    );
    let manifest = result.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(manifest.overlays, Vec::<PathBuf>::new());
    assert_eq!(manifest.firewall.allow_tcp, [22]);
}
