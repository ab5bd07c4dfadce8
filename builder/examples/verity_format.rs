//! Formats a data file with `applbuild::verity::format`, like
//! `veritysetup format --salt=<hex> --uuid=<uuid> DATA HASH`, and prints the
//! root hash. Used by ci/bench-verity.sh to time the module against
//! veritysetup.
//!
//! Usage: verity_format DATA HASH SALT_HEX [UUID]
//! SALT_HEX may be `-` for an empty salt. UUID defaults to all zeros.

use std::path::Path;
use std::process::ExitCode;

use applbuild::verity::{self, VerityParams};

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    hex::decode(digits).ok()?.try_into().ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 || args.len() > 5 {
        eprintln!("usage: verity_format DATA HASH SALT_HEX [UUID]  (SALT_HEX `-` means no salt)");
        return ExitCode::from(2);
    }
    let salt = if args[3] == "-" {
        Vec::new()
    } else {
        match hex::decode(&args[3]) {
            Ok(salt) => salt,
            Err(err) => {
                eprintln!(
                    "invalid salt {:?}: {err}; pass an even number of hex digits or `-`",
                    args[3]
                );
                return ExitCode::from(2);
            }
        }
    };
    let uuid = match args.get(4) {
        None => [0; 16],
        Some(text) => match parse_uuid(text) {
            Some(uuid) => uuid,
            None => {
                eprintln!("invalid UUID {text:?}: pass 32 hex digits, with or without dashes");
                return ExitCode::from(2);
            }
        },
    };

    match verity::format(
        Path::new(&args[1]),
        Path::new(&args[2]),
        &VerityParams { salt, uuid },
    ) {
        Ok(info) => {
            println!("Root hash: {}", info.root_hash_hex());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
