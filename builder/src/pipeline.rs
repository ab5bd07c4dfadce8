//! `applbuild image`: runs the stages in order and publishes the outputs.
//!
//! Everything is written into a work folder next to the destination
//! (`out/<board>/.work-<release>-<pid>`) and renamed to
//! `out/<board>/<release>/` only when complete, so a failed or interrupted
//! build leaves the previous output untouched.

use crate::board::{self, Board};
use crate::cache::{Cache, KeyHasher};
use crate::error::Error;
use crate::ext4::{self, Ext4Params};
use crate::manifest::{self, Manifest};
use crate::rootfs::{self, ReleaseInfo};
use crate::{authenticode, build_record, disk, initramfs, kernel, keys, policy, sbom, sign, uki, verity};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `applbuild image` beyond the board file.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Output root; the image goes to `<out>/<board>/<release>/`.
    pub out: PathBuf,
    /// Timestamp for every file, from `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
    /// Use a random verity salt instead of one derived from the inputs.
    pub random_salt: bool,
    /// Rebuild cached stages (kernel, build root) even when their key matches.
    pub no_cache: bool,
    /// Overrides the board's key folder.
    pub keys_dir: Option<PathBuf>,
    /// The init binary to put in the initramfs; built from this source tree when absent.
    pub init: Option<PathBuf>,
    pub cache: Cache,
    /// Build without the private key: only the certificate is read, the
    /// signatures are left empty and the key-independent inputs of the
    /// signing step are kept for `applbuild sign` (see [`SigningInputs`]).
    pub unsigned: bool,
    /// Also write `disk.qcow2`, converted from `disk.raw` by `qemu-img`.
    pub qcow2: bool,
}

/// Folder in an unsigned build's output with the inputs of [`sign_parts`].
pub const SIGNING_INPUTS_DIR: &str = "signing-inputs";

/// Size of the verity signature partition, the size systemd-repart
/// assumes. An unsigned build reserves it so that signing later does not
/// move any partition.
pub const VERITY_SIG_PARTITION_SIZE: usize = 16384;

/// What the signing step needs besides the key. An unsigned build writes it
/// to `signing-inputs/` (the byte fields as separate files), and
/// `applbuild sign` reads it back, so both paths run [`sign_parts`].
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SigningInputs {
    /// Lowercase hex dm-verity root hash, the content of the root hash signature.
    pub root_hash: String,
    /// Release policy text, the content of the policy signature.
    pub policy_text: String,
    pub cmdline: String,
    pub os_release: String,
    /// `SOURCE_DATE_EPOCH` of the build, used in the cpio and FAT timestamps.
    pub epoch: u64,
    pub esp_size: u64,
    /// SHA-256 (hex) of the certificate the kernel trusts; the signing key must match it.
    pub certificate_sha256: String,
    /// That certificate in PEM, for signing with a key that has no
    /// certificate file next to it (a PKCS#11 token). Empty in inputs
    /// written before it was recorded.
    #[serde(default)]
    pub certificate_pem: String,
    /// Whether the UKI gets an Authenticode signature with the Secure Boot
    /// db key (`[secure_boot] sign`).
    #[serde(default)]
    pub secure_boot: bool,
    /// SHA-256 (hex) of the db certificate the board's build read; the db
    /// key must match it. Empty without Secure Boot signing.
    #[serde(default)]
    pub db_certificate_sha256: String,
    /// That db certificate in PEM, for signing with a PKCS#11 db key.
    #[serde(default)]
    pub db_certificate_pem: String,
    #[serde(skip)]
    pub init: Vec<u8>,
    #[serde(skip)]
    pub stub: Vec<u8>,
    #[serde(skip)]
    pub bzimage: Vec<u8>,
}

/// The key-dependent outputs of [`sign_parts`].
pub struct SignedParts {
    /// Detached PKCS#7 over the root hash; empty when unsigned.
    pub root_sig: Vec<u8>,
    /// Attached PKCS#7 of the policy; empty when unsigned.
    pub policy_sig: Vec<u8>,
    pub uki: Vec<u8>,
    pub esp: Vec<u8>,
    /// Content of the verity signature partition; zeros when unsigned.
    pub sig_json: Vec<u8>,
}

/// The keys that [`sign_parts`] signs with.
#[derive(Clone, Copy)]
pub struct PartKeys<'a> {
    /// The release key: root hash and policy signatures.
    pub release: &'a dyn sign::RsaSigner,
    /// The Secure Boot db key: the UKI's Authenticode signature. Needed when
    /// the inputs ask for Secure Boot signing.
    pub db: Option<&'a dyn sign::RsaSigner>,
}

/// Signs the root hash and the policy with the release key and builds
/// everything that contains a signature: initramfs, UKI, ESP and the verity
/// signature partition. When the inputs ask for Secure Boot signing, the
/// UKI is signed with the db key. Without keys the signatures are empty and
/// the UKI is unsigned, so the parts have the same sizes and positions on
/// the disk except the ESP's contents.
pub fn sign_parts(inputs: &SigningInputs, keys: Option<PartKeys<'_>>) -> Result<SignedParts, Error> {
    let key = keys.map(|keys| keys.release);
    let (root_sig, policy_sig, sig_json) = match key {
        Some(key) => {
            use der::Encode;
            use sha2::Digest;
            let root_sig = sign::sign_detached(key, inputs.root_hash.as_bytes())?;
            let policy_sig = sign::sign_attached(key, inputs.policy_text.as_bytes())?;
            let cert_der = key.signer_certificate().to_der().map_err(|err| Error::Internal(format!("encoding the certificate: {err}")))?;
            let sig_json = disk::verity_sig_json(&inputs.root_hash, &root_sig, &sha2::Sha256::digest(&cert_der).into())?;
            (root_sig, policy_sig, sig_json)
        }
        None => (Vec::new(), Vec::new(), vec![0u8; VERITY_SIG_PARTITION_SIZE]),
    };
    let mut root_hash = [0u8; 32];
    hex::decode_to_slice(&inputs.root_hash, &mut root_hash).map_err(|err| Error::Internal(format!("root hash {:?} is not 64 hex digits: {err}", inputs.root_hash)))?;
    let cpio = initramfs_image(&inputs.init, &policy_sig, inputs.epoch)?;
    let uki = uki::build(&inputs.stub, &[(".osrel", inputs.os_release.as_bytes()), (".cmdline", inputs.cmdline.as_bytes()), (".initrd", &cpio), (".linux", &inputs.bzimage)])?;
    let uki = match keys {
        Some(keys) if inputs.secure_boot => {
            let db = keys.db.ok_or_else(|| Error::Internal("the build asks for Secure Boot signing but no db key was loaded".into()))?;
            let signed = authenticode::sign(&uki, db)?;
            tracing::info!(signer = %db.signer_certificate().tbs_certificate().subject(), "uki: signed for Secure Boot");
            signed
        }
        _ => uki,
    };
    let esp = disk::make_esp(&[("EFI/BOOT/BOOTX64.EFI", &uki)], inputs.esp_size, derive_u32(&root_hash, "esp volume id"), "ESP", inputs.epoch)?;
    Ok(SignedParts { root_sig, policy_sig, uki, esp, sig_json })
}

/// Summary of a finished build, printed as JSON with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub board: String,
    pub release: String,
    pub output: PathBuf,
    pub disk: PathBuf,
    pub root_hash: String,
    pub kernel_cached: bool,
    pub seconds: f64,
}

/// Removes the work folder when the build ends, and after a failure also
/// the output folders this build created, so a failed build leaves nothing
/// new behind.
struct WorkDir {
    path: PathBuf,
    /// Folders created for this build, deepest first; removed only if empty.
    created: Vec<PathBuf>,
    succeeded: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        if !self.succeeded {
            for dir in &self.created {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

/// Lists the folders `create_dir_all(path)` is about to create, deepest first.
/// Removes work folders `.work-<release>-<pid>` in `board_out` whose
/// process no longer runs: a build killed by a signal cannot remove its own.
/// A folder whose PID is in use again is left for a later build.
fn remove_stale_work_dirs(board_out: &Path) {
    let Ok(entries) = fs::read_dir(board_out) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(".work-").and_then(|rest| rest.rsplit('-').next()).and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        match fs::remove_dir_all(entry.path()) {
            Ok(()) => tracing::info!("removed {}, left by an interrupted build (process {pid})", entry.path().display()),
            Err(error) => tracing::warn!("cannot remove {}, left by an interrupted build: {error}", entry.path().display()),
        }
    }
}

fn missing_ancestors(path: &Path) -> Vec<PathBuf> {
    path.ancestors().take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists()).map(Path::to_path_buf).collect()
}

/// Builds the image for the board file at `board_path`.
pub fn image(board_path: &Path, options: &ImageOptions) -> Result<BuildSummary, Error> {
    let started = Instant::now();
    let mut times = Vec::new();
    let mut stage_start = Instant::now();
    let mut lap = |stage: &'static str, times: &mut Vec<build_record::StageTime>| {
        times.push(build_record::StageTime { stage, seconds: stage_start.elapsed().as_secs_f64() });
        stage_start = Instant::now();
    };

    let board = board::load_with_keys(board_path, options.keys_dir.as_deref())?;
    let manifest = manifest::load(&board.manifest)?;
    let keys_dir = options.keys_dir.clone().unwrap_or_else(|| board.keys.dir.clone());
    let signer = if options.unsigned { Signer::Certificate(Box::new(keys::load_certificate(&keys_dir)?)) } else { Signer::Key(Box::new(load_or_create_keys(&board, &keys_dir, options.keys_dir.is_some())?)) };
    let (cert_pem, cert_sha256) = signer.certificate()?;
    let db_signer = secure_boot_signer(&board, &keys_dir, options.unsigned)?;
    let (db_cert_pem, db_cert_sha256) = match &db_signer {
        Some(db_signer) => {
            let (pem, sha256) = db_signer.certificate()?;
            (pem, hex::encode(sha256))
        }
        None => (String::new(), String::new()),
    };
    crate::tool::require(crate::tool::IMAGE_TOOLS)?;
    lap("board", &mut times);

    let release = board.release.to_string();
    // Absolute, because external tools (mmdebstrap hooks, chroot) run in
    // other working folders.
    let out_root = std::path::absolute(&options.out).map_err(|source| Error::io("resolve", &options.out, source))?;
    let board_out = out_root.join(&board.name);
    let created = missing_ancestors(&board_out);
    fs::create_dir_all(&board_out).map_err(|source| Error::io("create", &board_out, source))?;
    remove_stale_work_dirs(&board_out);
    let work_path = board_out.join(format!(".work-{release}-{}", std::process::id()));
    let mut work = WorkDir { path: work_path.clone(), created, succeeded: false };
    let _ = fs::remove_dir_all(&work_path);
    fs::create_dir_all(&work_path).map_err(|source| Error::io("create", &work_path, source))?;
    let staging = work.path.join("staging");
    let result_dir = work.path.join("result");
    fs::create_dir_all(&staging).map_err(|source| Error::io("create", &staging, source))?;
    fs::create_dir_all(&result_dir).map_err(|source| Error::io("create", &result_dir, source))?;

    // Root filesystem, ext4, verity.
    let inputs = input_digest(&board, &manifest, options.epoch)?;
    let info = ReleaseInfo { board: &board.name, release: &release, epoch: options.epoch };
    let tree = rootfs::build(&manifest, &info, &options.cache, &staging)?;
    lap("rootfs", &mut times);
    let root_image = staging.join("root.ext4");
    let ext4_params = Ext4Params { uuid: derive16(&inputs, "ext4 uuid"), hash_seed: derive16(&inputs, "ext4 hash seed"), epoch: options.epoch, label: "root".into() };
    let ext4_out = ext4::build(&tree.dir, &root_image, &ext4_params)?;
    fs::remove_dir_all(&tree.dir).map_err(|source| Error::io("remove", &tree.dir, source))?;
    lap("ext4", &mut times);
    let verity_image = staging.join("root.verity");
    let salt = if options.random_salt { random_bytes(32)? } else { derive32(&inputs, "verity salt").to_vec() };
    let verity_params = verity::VerityParams { salt, uuid: derive16(&inputs, "verity uuid") };
    let verity_info = verity::format(&root_image, &verity_image, &verity_params)?;
    let root_hash = hex::encode(verity_info.root_hash);
    tracing::info!(root_hash = %root_hash, "verity: root hash");
    lap("verity", &mut times);

    // Policy.
    let policy_name = format!("applbuild-{}", board.name);
    let mut root_hashes = vec![root_hash.clone()];
    root_hashes.extend(board.ipe.previous_releases.iter().cloned());
    let policy_text = policy::generate(&policy::PolicyInput { name: &policy_name, version: &release, root_hashes, require_signature: board.ipe.require_signature });
    policy::check(policy_text.as_bytes()).map_err(Error::Policy)?;

    // Kernel, initramfs, UKI.
    let kernel_out = kernel::build(&board, cert_pem.as_bytes(), &options.cache, options.no_cache)?;
    lap("kernel", &mut times);
    let init_binary = match &options.init {
        Some(path) => fs::read(path).map_err(|source| Error::io("read", path, source))?,
        None => crate::init_build::build()?,
    };
    let root_uuid = disk::root_partition_uuid(&verity_info.root_hash)?;
    let verity_uuid = disk::verity_partition_uuid(&verity_info.root_hash)?;
    let cmdline = format!(
        "{} roothash={root_hash} root=PARTUUID={} applbuild.verity=PARTUUID={} applbuild.policy={policy_name} applbuild.release={release} ipe.enforce={}",
        board.kernel.cmdline,
        root_uuid.hyphenated(),
        verity_uuid.hyphenated(),
        if board.ipe.enforce { 1 } else { 0 }
    );
    let os_release = format!("NAME=\"applbuild appliance\"\nID=applbuild\nVERSION_ID={release}\nIMAGE_ID={}\nIMAGE_VERSION={release}\n", board.name);
    let stub = fs::read(&kernel_out.stub).map_err(|source| Error::io("read", &kernel_out.stub, source))?;
    let bzimage = fs::read(&kernel_out.bzimage).map_err(|source| Error::io("read", &kernel_out.bzimage, source))?;
    let signing_inputs = SigningInputs {
        root_hash: root_hash.clone(),
        policy_text: policy_text.clone(),
        cmdline: cmdline.clone(),
        os_release,
        epoch: options.epoch,
        esp_size: board.disk.esp_size.0,
        certificate_sha256: hex::encode(cert_sha256),
        certificate_pem: cert_pem.clone(),
        secure_boot: board.secure_boot.sign,
        db_certificate_sha256: db_cert_sha256,
        db_certificate_pem: db_cert_pem,
        init: init_binary,
        stub,
        bzimage,
    };
    let keys = match &signer {
        Signer::Key(key) => Some(PartKeys { release: key.as_ref(), db: db_signer.as_ref().and_then(Signer::key) }),
        Signer::Certificate(_) => None,
    };
    let SignedParts { root_sig, policy_sig, uki: uki_bytes, esp, sig_json } = sign_parts(&signing_inputs, keys)?;
    lap("sign and uki", &mut times);

    // Disk.
    let state = match board.disk.state {
        Some(size) => Some(state_image(&staging, size.0, &inputs, options.epoch)?),
        None => None,
    };
    check_disk_size(&board, esp.len() as u64, ext4_out.size, verity_info.hash_size, state.is_some())?;
    let disk_path = result_dir.join("disk.raw");
    // The disk GUID depends only on the board, so the state partition's
    // UUID (derived from it) stays the same across releases.
    let disk_guid = disk::Uuid::from_bytes(derive16(board.name.as_bytes(), "disk guid"));
    let partitions = disk_partitions(disk_guid, esp, &root_image, ext4_out.size, &verity_image, verity_info.hash_size, sig_json, state.as_ref(), &verity_info.root_hash)?;
    let layout = disk::write_image(&disk_path, board.disk.size.0, disk_guid, &partitions)?;
    write_bmap(&disk_path, &layout)?;
    if options.qcow2 {
        convert_qcow2(&disk_path, &result_dir.join("disk.qcow2"))?;
    }
    lap("disk", &mut times);

    // Artifacts.
    let write = |name: &str, bytes: &[u8]| -> Result<(), Error> {
        let path = result_dir.join(name);
        fs::write(&path, bytes).map_err(|source| Error::io("write", &path, source))
    };
    write("uki.efi", &uki_bytes)?;
    write("roothash", root_hash.as_bytes())?;
    if !options.unsigned {
        write("roothash.p7s", &root_sig)?;
        write("policy.p7s", &policy_sig)?;
    }
    write("policy.pol", policy_text.as_bytes())?;
    write("cmdline", cmdline.as_bytes())?;
    // The SBOM names the disk's digest, and build.json the digests of all
    // outputs, the SBOM included: hash each file once, in that order.
    let mut outputs = build_record::output_digests(&result_dir)?;
    let init = init_input(&signing_inputs.init, options.init.as_deref());
    let sbom_text = sbom_document(&board, &manifest, &tree.debs, &kernel_out, &init, &outputs, &root_hash, options.epoch)?;
    write(sbom::FILE_NAME, sbom_text.as_bytes())?;
    outputs.insert(sbom::FILE_NAME.into(), serde_json::Value::String(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sbom_text.as_bytes()))));
    let record = build_record::RecordInput { board: &board, manifest: &manifest, options, packages: &tree.packages, ext4_out: &ext4_out, verity_info: &verity_info, kernel_out: &kernel_out, outputs, times: &times };
    write(build_record::FILE_NAME, build_record::render(record)?.as_bytes())?;
    if options.unsigned {
        write_signing_inputs(&result_dir.join(SIGNING_INPUTS_DIR), &signing_inputs)?;
    }

    let final_dir = board_out.join(&release);
    publish(&result_dir, &final_dir)?;
    work.succeeded = true;
    drop(work);

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(seconds, "image: wrote {}", final_dir.display());
    Ok(BuildSummary {
        board: board.name.clone(),
        release,
        disk: final_dir.join("disk.raw"),
        output: final_dir,
        root_hash,
        kernel_cached: kernel_out.cached,
        seconds,
    })
}

/// Describes the init for the SBOM: built from `builder/init`, or the
/// binary given with `--init`.
fn init_input(binary: &[u8], init_option: Option<&Path>) -> sbom::InitInput {
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(binary));
    if init_option.is_some() {
        return sbom::InitInput { sha256, version: None, licence: None, comment: "The initramfs /init, a prebuilt binary given with --init.".into() };
    }
    let (version, licence) = crate::init_build::crate_version_and_licence();
    let glibc = crate::init_build::host_glibc_version().map(|version| format!(" (libc6-dev {version})")).unwrap_or_default();
    let comment = format!("The initramfs /init, built from builder/init and statically linked with the host's glibc{glibc}.");
    sbom::InitInput { sha256, version, licence, comment }
}

/// Builds the SBOM from the stage outputs; `outputs` must hold the digest
/// of `disk.raw`.
#[allow(clippy::too_many_arguments)]
fn sbom_document(board: &Board, manifest: &Manifest, debs: &[crate::debpkg::DebPackage], kernel_out: &kernel::KernelOutput, init: &sbom::InitInput, outputs: &serde_json::Map<String, serde_json::Value>, root_hash: &str, epoch: u64) -> Result<String, Error> {
    let disk_sha256 = outputs.get("disk.raw").and_then(|value| value.as_str()).ok_or_else(|| Error::Internal("disk.raw is missing from the outputs".into()))?;
    let bzimage_sha256 = crate::digest::sha256_file(&kernel_out.bzimage).map_err(|source| Error::io("read", &kernel_out.bzimage, source))?;
    let stub_sha256 = crate::digest::sha256_file(&kernel_out.stub).map_err(|source| Error::io("read", &kernel_out.stub, source))?;
    let suite = match &manifest.source {
        manifest::RootfsSource::Debian { suite, .. } => Some(suite.as_str()),
        _ => None,
    };
    sbom::document(&sbom::SbomInput {
        board: &board.name,
        release: &board.release.to_string(),
        epoch,
        suite,
        debs,
        kernel_version: &kernel_out.source_version,
        kernel_lsm: kernel_out.lsm,
        bzimage_sha256: &bzimage_sha256,
        stub: &kernel_out.stub_package,
        stub_sha256: &stub_sha256,
        init,
        disk_sha256,
        root_hash,
    })
}

/// The release key, or only its certificate for an unsigned build.
enum Signer {
    Key(Box<keys::KeyPair>),
    Certificate(Box<x509_cert::Certificate>),
}

impl Signer {
    /// Returns the key, or `None` for an unsigned build.
    fn key(&self) -> Option<&dyn sign::RsaSigner> {
        match self {
            Signer::Key(key) => Some(key.as_ref()),
            Signer::Certificate(_) => None,
        }
    }

    /// Returns the certificate as LF-terminated PEM, as the kernel build
    /// takes it, and the SHA-256 of its DER.
    fn certificate(&self) -> Result<(String, [u8; 32]), Error> {
        match self {
            Signer::Key(key) => Ok((key.cert_pem(), key.cert_sha256())),
            Signer::Certificate(certificate) => {
                use der::{Encode, EncodePem};
                use sha2::Digest;
                let pem = certificate.to_pem(der::pem::LineEnding::LF).map_err(|err| Error::Internal(format!("encoding the certificate: {err}")))?;
                let der = certificate.to_der().map_err(|err| Error::Internal(format!("encoding the certificate: {err}")))?;
                Ok((pem, sha2::Sha256::digest(&der).into()))
            }
        }
    }
}

/// Writes the signing inputs of an unsigned build: `inputs.json` and the
/// init, stub and kernel as files.
fn write_signing_inputs(dir: &Path, inputs: &SigningInputs) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::io("create", dir, source))?;
    let json = serde_json::to_vec_pretty(inputs).map_err(|err| Error::Internal(format!("serialising the signing inputs: {err}")))?;
    for (name, bytes) in [("inputs.json", json.as_slice()), ("init", &inputs.init), ("stub.efi", &inputs.stub), ("linux", &inputs.bzimage)] {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(|source| Error::io("write", &path, source))?;
    }
    Ok(())
}

/// Reads what [`write_signing_inputs`] wrote.
pub fn read_signing_inputs(dir: &Path) -> Result<SigningInputs, Error> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read(&path).map_err(|source| Error::io("read", &path, source))
    };
    let json = read("inputs.json")?;
    let mut inputs: SigningInputs = serde_json::from_slice(&json).map_err(|err| Error::Usage {
        message: format!("{}: invalid signing inputs: {err}", dir.join("inputs.json").display()),
        hint: Some("rebuild with applbuild image --unsigned".into()),
    })?;
    inputs.init = read("init")?;
    inputs.stub = read("stub.efi")?;
    inputs.bzimage = read("linux")?;
    Ok(inputs)
}

/// Loads the board's keys; creates development keys when the board allows
/// it and the folder does not exist yet.
fn load_or_create_keys(board: &Board, dir: &Path, overridden: bool) -> Result<keys::KeyPair, Error> {
    if !dir.join(keys::KEY_FILE).exists() && board.keys.create_if_missing && !overridden {
        tracing::warn!("creating development keys in {}: they are for development only; use `applbuild keys init` and keep release keys offline", dir.display());
        keys::init(dir, keys::DEFAULT_BITS, &format!("applbuild development key ({})", board.name))?;
        keys::init_pair(dir, keys::SECURE_BOOT_DB, keys::DEFAULT_BITS, &format!("applbuild development Secure Boot db key ({})", board.name))?;
    } else if board.secure_boot.sign && !keys::has_pair(dir, keys::SECURE_BOOT_DB) && board.keys.create_if_missing && !overridden {
        tracing::warn!("creating a development Secure Boot db key in {}: it is for development only", dir.display());
        keys::init_pair(dir, keys::SECURE_BOOT_DB, keys::DEFAULT_BITS, &format!("applbuild development Secure Boot db key ({})", board.name))?;
    }
    Ok(keys::load(dir)?)
}

/// Loads the Secure Boot db key (only its certificate for an unsigned
/// build) when the board requests Secure Boot signing.
fn secure_boot_signer(board: &Board, dir: &Path, unsigned: bool) -> Result<Option<Signer>, Error> {
    if !board.secure_boot.sign {
        return Ok(None);
    }
    let required_file = if unsigned { keys::DB_CERT_FILE } else { keys::DB_KEY_FILE };
    if !dir.join(required_file).exists() {
        return Err(Error::Usage {
            message: format!("{}: [secure_boot] sign = true, but the key folder {} has no Secure Boot db key ({required_file} is missing)", board.path.display(), dir.display()),
            hint: Some(format!("create the db key pair with `applbuild keys init --db-only {}` and enroll its db.cert.pem in the firmware (docs/secure-boot.md), or set sign = false in [secure_boot]", dir.display())),
        });
    }
    if unsigned {
        return Ok(Some(Signer::Certificate(Box::new(keys::load_certificate(&dir.join(keys::DB_CERT_FILE))?))));
    }
    Ok(Some(Signer::Key(Box::new(keys::load_pair(dir, keys::SECURE_BOOT_DB)?))))
}

/// Hashes the build inputs. Identifiers and salts are derived from this
/// digest, so the same inputs give the same image.
fn input_digest(board: &Board, manifest: &Manifest, epoch: u64) -> Result<[u8; 32], Error> {
    let mut key = KeyHasher::new("applbuild image inputs v1");
    for path in [&board.path, &manifest.path] {
        let bytes = fs::read(path).map_err(|source| Error::io("read", path, source))?;
        key.add(&bytes);
    }
    key.add_str(&board.name).add_str(&board.release.to_string()).add(&epoch.to_le_bytes());
    Ok(key.finish())
}

fn derive32(seed: &[u8], purpose: &str) -> [u8; 32] {
    let mut key = KeyHasher::new("applbuild derive v1");
    key.add(seed).add_str(purpose);
    key.finish()
}

/// Derives 16 bytes for a UUID. The bytes are used as they are, without
/// RFC 4122 version bits, like systemd-repart's derived UUIDs.
fn derive16(seed: &[u8], purpose: &str) -> [u8; 16] {
    let full = derive32(seed, purpose);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn derive_u32(seed: &[u8], purpose: &str) -> u32 {
    let full = derive32(seed, purpose);
    u32::from_le_bytes([full[0], full[1], full[2], full[3]])
}

fn random_bytes(count: usize) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut bytes = vec![0u8; count];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|source| Error::io("read", Path::new("/dev/urandom"), source))?;
    Ok(bytes)
}

/// Builds the initramfs: the static init, the signed release policy and the
/// device nodes and folders the init expects. Nothing else executes.
fn initramfs_image(init: &[u8], policy_sig: &[u8], epoch: u64) -> Result<Vec<u8>, Error> {
    let mut cpio = initramfs::Cpio::new(epoch)?;
    for dir in ["dev", "proc", "sys", "run", "newroot"] {
        cpio.add_dir(dir, 0o755)?;
    }
    cpio.add_char_dev("dev/console", 0o600, 5, 1)?;
    cpio.add_file("init", 0o755, init)?;
    cpio.add_file("policy.p7s", 0o644, policy_sig)?;
    Ok(cpio.finish())
}

/// Fails with a configuration error when the partitions cannot fit in
/// `disk.size`, naming the size they need.
fn check_disk_size(board: &Board, esp: u64, root: u64, verity: u64, state: bool) -> Result<(), Error> {
    const MIB: u64 = 1 << 20;
    // 1 MiB before the first partition and at the end for the GPT headers
    // and entry arrays, plus up to 1 MiB of alignment per partition.
    let overhead = 2 * MIB + 5 * MIB;
    let state_size = if state { board.disk.state.map(|s| s.0).unwrap_or(0) } else { 0 };
    let needed = [esp, root, verity, 16384, state_size, overhead].iter().fold(0u64, |sum, part| sum.saturating_add(*part));
    if needed > board.disk.size.0 {
        let needed_mib = needed.div_ceil(MIB);
        return Err(Error::Usage {
            message: format!("{}: disk.size {} MiB is too small: the partitions need {needed_mib} MiB", board.path.display(), board.disk.size.0 / MIB),
            hint: Some(format!("set disk.size to at least \"{needed_mib}MiB\" in [disk]")),
        });
    }
    Ok(())
}

/// Writes `disk.bmap` beside the disk image: the ranges that
/// [`disk::mapped_ranges`] names, with their SHA-256.
pub fn write_bmap(disk_path: &Path, layout: &disk::Layout) -> Result<(), Error> {
    let bmap = crate::bmap::Bmap::create(disk_path, &disk::mapped_ranges(disk_path, layout)?)?;
    let bmap_path = disk_path.with_extension("bmap");
    crate::signing::write_replacing(&bmap_path, bmap.to_xml().as_bytes())?;
    tracing::info!(mapped_bytes = bmap.mapped_bytes(), ranges = bmap.ranges.len(), "disk: wrote {}", bmap_path.display());
    Ok(())
}

/// Converts the raw disk to qcow2 with `qemu-img`. The options that could
/// change between QEMU versions are given explicitly, so the same raw image
/// gives the same qcow2 bytes.
pub fn convert_qcow2(raw: &Path, qcow2: &Path) -> Result<(), Error> {
    crate::tool::require(&[crate::tool::QEMU_IMG])?;
    let mut cmd = crate::tool::command(crate::tool::QEMU_IMG);
    // Written beside the destination and renamed, so a failure leaves no partial file.
    let temp = qcow2.with_extension("qcow2.tmp");
    cmd.args(["convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1,cluster_size=65536,lazy_refcounts=off,refcount_bits=16"]).arg(raw).arg(&temp);
    let result = crate::tool::run(&mut cmd);
    if let Err(error) = result {
        let _ = fs::remove_file(&temp);
        return Err(error.into());
    }
    fs::rename(&temp, qcow2).map_err(|source| Error::io("rename into", qcow2, source))
}

/// Makes an empty ext4 filesystem for the writable state partition.
fn state_image(staging: &Path, size: u64, inputs: &[u8; 32], epoch: u64) -> Result<PathBuf, Error> {
    let path = staging.join("state.ext4");
    let uuid = ext4::uuid_text(&derive16(inputs, "state uuid"));
    let seed = ext4::uuid_text(&derive16(inputs, "state hash seed"));
    let mut cmd = crate::tool::command(crate::tool::MKE2FS);
    cmd.env("E2FSPROGS_FAKE_TIME", crate::ext4::fake_time(epoch))
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", "state", "-U", &uuid])
        .args(["-E", &format!("hash_seed={seed},root_owner=0:0")])
        .arg(&path)
        .arg((size / ext4::BLOCK_SIZE).to_string());
    crate::tool::run(&mut cmd)?;
    Ok(path)
}

#[allow(clippy::too_many_arguments)]
fn disk_partitions(
    disk_guid: disk::Uuid,
    esp: Vec<u8>,
    root_image: &Path,
    root_size: u64,
    verity_image: &Path,
    verity_size: u64,
    sig_json: Vec<u8>,
    state: Option<&PathBuf>,
    root_hash: &[u8; 32],
) -> Result<Vec<disk::PartitionSpec>, Error> {
    let round = |size: u64| size.div_ceil(4096) * 4096;
    let file = |path: &Path, size: u64| disk::PartitionInput { size: round(size), content: disk::PartitionContent::File(path.to_path_buf()) };
    let state = match state {
        Some(path) => {
            let size = fs::metadata(path).map_err(|source| Error::io("read", path, source))?.len();
            Some(file(path, size))
        }
        None => None,
    };
    let image = disk::ApplianceImage {
        root_hash,
        esp: disk::PartitionInput { size: esp.len() as u64, content: disk::PartitionContent::Bytes(esp) },
        root: file(root_image, root_size),
        root_verity: file(verity_image, verity_size),
        // 16 KiB, the size systemd-repart assumes for this partition.
        root_verity_sig: disk::PartitionInput { size: round(sig_json.len().max(16384) as u64), content: disk::PartitionContent::Bytes(sig_json) },
        state,
    };
    Ok(disk::appliance_partitions(disk_guid, image)?)
}

/// Renames the finished result into place, replacing an older build of the
/// same release only after the new one is complete.
fn publish(result_dir: &Path, final_dir: &Path) -> Result<(), Error> {
    let old = final_dir.with_file_name(format!(".old-{}-{}", final_dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    let had_old = final_dir.exists();
    if had_old {
        fs::rename(final_dir, &old).map_err(|source| Error::io("move aside", final_dir, source))?;
    }
    if let Err(source) = fs::rename(result_dir, final_dir) {
        if had_old {
            let _ = fs::rename(&old, final_dir);
        }
        return Err(Error::io("rename the build into", final_dir, source));
    }
    if had_old {
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}
