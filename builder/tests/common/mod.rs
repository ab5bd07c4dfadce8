//! Helpers shared by the integration tests. Each test crate uses only some
//! of them, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// A command running the applbuild binary under test.
pub fn applbuild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_applbuild"))
}

/// Runs a command and returns its stdout; panics with stderr on failure.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Deterministic filler bytes (xorshift64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Compares the part of docs page `page` (relative to the repository)
/// between `<!-- {marker}:begin -->` and `<!-- {marker}:end -->` with
/// `expected`. With APPLBUILD_BLESS=1 in the environment it rewrites the
/// part instead. `filter` is the `cargo test` filter named in the message.
pub fn check_generated_section(page: &str, marker: &str, expected: &str, filter: &str) {
    let path = repo().join(page);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{page}: {error}"));
    let begin = format!("<!-- {marker}:begin -->\n");
    let end = format!("<!-- {marker}:end -->");
    let range = text.find(&begin).map(|start| start + begin.len()).and_then(|start| text[start..].find(&end).map(|length| start..start + length));
    let Some(range) = range else {
        panic!("{page} lacks the markers {begin:?} and {end:?}");
    };

    if std::env::var_os("APPLBUILD_BLESS").is_some() {
        text.replace_range(range, expected);
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("{page}: {error}"));
        return;
    }
    assert!(
        text[range] == *expected,
        "{page} is out of date with the code. Run `APPLBUILD_BLESS=1 cargo test -p applbuild --test {filter}` to regenerate it.\nExpected:\n{expected}"
    );
}

/// Copies the committed test keys (release and Secure Boot db pairs) into
/// `dir`, with the private keys at mode 0600 as applbuild requires.
pub fn copy_test_keys(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("key folder");
    for name in ["key.pem", "cert.pem", "db.key.pem", "db.cert.pem"] {
        std::fs::copy(repo().join("keys/test").join(name), dir.join(name)).expect("copy test key");
    }
    for name in ["key.pem", "db.key.pem"] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    }
}

/// Writes a copy of boards/qemu-x86_64.toml to `path` with absolute paths,
/// the key folder `keys` and `[secure_boot] sign = sign`.
pub fn write_default_board(path: &Path, keys: &Path, sign: bool) {
    let source = repo().join("boards/qemu-x86_64.toml");
    let boards = source.parent().expect("boards folder");
    let mut board: toml::Table = std::fs::read_to_string(&source).expect("read the board").parse().expect("parse the board");
    let manifest = boards.join(board["manifest"].as_str().expect("manifest"));
    board.insert("manifest".into(), manifest.display().to_string().into());
    let kernel = board["kernel"].as_table_mut().expect("[kernel]");
    let fragments: Vec<toml::Value> = kernel["config"].as_array().expect("kernel.config").iter().map(|f| boards.join(f.as_str().expect("fragment")).display().to_string().into()).collect();
    kernel.insert("config".into(), toml::Value::Array(fragments));
    let key_settings = board["keys"].as_table_mut().expect("[keys]");
    key_settings.insert("dir".into(), keys.display().to_string().into());
    key_settings.insert("create_if_missing".into(), false.into());
    let mut secure_boot = toml::Table::new();
    secure_boot.insert("sign".into(), sign.into());
    board.insert("secure_boot".into(), toml::Value::Table(secure_boot));
    std::fs::write(path, toml::to_string(&board).expect("serialise the board")).expect("write the board");
}
