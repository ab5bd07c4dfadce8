//! Device-mapper control through ioctls on `/dev/mapper/control`, the interface that
//! libdevmapper uses, and the `verity` target's table line.
//!
//! The structures mirror `include/uapi/linux/dm-ioctl.h` (interface version 4). Each
//! command takes a `struct dm_ioctl` followed by its payload, and the kernel writes the
//! result back into the same buffer.

use std::fs::File;
use std::io;
use std::mem::{offset_of, size_of};

use crate::sys;

pub const DM_NAME_LEN: usize = 128;
pub const DM_UUID_LEN: usize = 129;
pub const DM_MAX_TYPE_NAME: usize = 16;

/// Mirror of `struct dm_ioctl`. 312 bytes on every architecture, because the kernel
/// header pads `data[7]` to an 8-byte multiple.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmIoctl {
    /// Interface version: in, the version the caller was written for; out, the kernel's.
    pub version: [u32; 3],
    /// Total buffer size, including this structure.
    pub data_size: u32,
    /// Offset of the payload from the start of this structure.
    pub data_start: u32,
    pub target_count: u32,
    pub open_count: i32,
    pub flags: u32,
    pub event_nr: u32,
    pub padding: u32,
    /// Device number in the kernel's `huge_encode_dev` form, which glibc's `major()`
    /// and `minor()` decode.
    pub dev: u64,
    pub name: [u8; DM_NAME_LEN],
    pub uuid: [u8; DM_UUID_LEN],
    pub data: [u8; 7],
}

/// Mirror of `struct dm_target_spec`; the target's parameter string follows it directly.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmTargetSpec {
    pub sector_start: u64,
    pub length: u64,
    pub status: i32,
    /// Bytes from the start of this spec to the next one (for DM_TABLE_LOAD).
    pub next: u32,
    pub target_type: [u8; DM_MAX_TYPE_NAME],
}

const _: () = assert!(size_of::<DmIoctl>() == 312);
const _: () = assert!(size_of::<DmTargetSpec>() == 40);

/// The interface version this code is written for: major 4 must match the kernel, and
/// minor 0 accepts any 4.x kernel.
const INTERFACE_VERSION: [u32; 3] = [4, 0, 0];

/// `DM_IOCTL`, the ioctl type byte.
const DM_IOCTL_TYPE: u8 = 0xfd;
/// `_IOC_READ | _IOC_WRITE`.
const IOC_READ_WRITE: libc::c_ulong = 3;

/// `_IOWR(DM_IOCTL, nr, struct dm_ioctl)` from the generic asm/ioctl.h encoding:
/// direction in bits 30-31, size in bits 16-29, type in bits 8-15, number in bits 0-7.
const fn iowr(nr: u8) -> libc::c_ulong {
    (IOC_READ_WRITE << 30)
        | ((size_of::<DmIoctl>() as libc::c_ulong) << 16)
        | ((DM_IOCTL_TYPE as libc::c_ulong) << 8)
        | nr as libc::c_ulong
}

/// `DM_VERSION_CMD` = 0.
pub const DM_VERSION: libc::c_ulong = iowr(0);
/// `DM_DEV_CREATE_CMD` = 3.
pub const DM_DEV_CREATE: libc::c_ulong = iowr(3);
/// `DM_DEV_SUSPEND_CMD` = 6: suspends with `DM_SUSPEND_FLAG`, resumes without it.
pub const DM_DEV_SUSPEND: libc::c_ulong = iowr(6);
/// `DM_TABLE_LOAD_CMD` = 9.
pub const DM_TABLE_LOAD: libc::c_ulong = iowr(9);

pub const DM_READONLY_FLAG: u32 = 1 << 0;

pub const CONTROL_PATH: &str = "/dev/mapper/control";

impl DmIoctl {
    /// Builds a header for the named device with no payload.
    pub fn for_device(name: &str) -> Result<DmIoctl, String> {
        let mut name_field = [0u8; DM_NAME_LEN];
        // The name must leave room for its NUL terminator.
        let slot = name_field
            .get_mut(..name.len())
            .filter(|_| name.len() < DM_NAME_LEN && !name.is_empty() && !name.contains('\0'))
            .ok_or_else(|| format!("invalid device-mapper name {name:?}"))?;
        slot.copy_from_slice(name.as_bytes());
        Ok(DmIoctl {
            version: INTERFACE_VERSION,
            data_size: size_of::<DmIoctl>() as u32,
            data_start: size_of::<DmIoctl>() as u32,
            target_count: 0,
            open_count: 0,
            flags: 0,
            event_nr: 0,
            padding: 0,
            dev: 0,
            name: name_field,
            uuid: [0; DM_UUID_LEN],
            data: [0; 7],
        })
    }

    /// Serializes in native byte order at the `repr(C)` field offsets.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; size_of::<DmIoctl>()];
        let mut put = |offset: usize, bytes: &[u8]| {
            if let Some(slot) = out.get_mut(offset..offset + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        };
        for (i, part) in self.version.iter().enumerate() {
            put(offset_of!(DmIoctl, version) + 4 * i, &part.to_ne_bytes());
        }
        put(offset_of!(DmIoctl, data_size), &self.data_size.to_ne_bytes());
        put(offset_of!(DmIoctl, data_start), &self.data_start.to_ne_bytes());
        put(offset_of!(DmIoctl, target_count), &self.target_count.to_ne_bytes());
        put(offset_of!(DmIoctl, open_count), &self.open_count.to_ne_bytes());
        put(offset_of!(DmIoctl, flags), &self.flags.to_ne_bytes());
        put(offset_of!(DmIoctl, event_nr), &self.event_nr.to_ne_bytes());
        put(offset_of!(DmIoctl, padding), &self.padding.to_ne_bytes());
        put(offset_of!(DmIoctl, dev), &self.dev.to_ne_bytes());
        put(offset_of!(DmIoctl, name), &self.name);
        put(offset_of!(DmIoctl, uuid), &self.uuid);
        put(offset_of!(DmIoctl, data), &self.data);
        out
    }

    /// Reads the fields the kernel returns: version, flags and dev.
    pub fn read_result(buffer: &[u8]) -> Option<DmResult> {
        let u32_at = |offset: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(buffer.get(offset..offset + 4)?.try_into().ok()?))
        };
        let version_offset = offset_of!(DmIoctl, version);
        let dev_offset = offset_of!(DmIoctl, dev);
        Some(DmResult {
            version: [u32_at(version_offset)?, u32_at(version_offset + 4)?, u32_at(version_offset + 8)?],
            flags: u32_at(offset_of!(DmIoctl, flags))?,
            dev: u64::from_ne_bytes(buffer.get(dev_offset..dev_offset + 8)?.try_into().ok()?),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmResult {
    pub version: [u32; 3],
    pub flags: u32,
    pub dev: u64,
}

impl DmResult {
    pub fn major_minor(&self) -> (u32, u32) {
        (libc::major(self.dev as libc::dev_t), libc::minor(self.dev as libc::dev_t))
    }
}

impl DmTargetSpec {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; size_of::<DmTargetSpec>()];
        let mut put = |offset: usize, bytes: &[u8]| {
            if let Some(slot) = out.get_mut(offset..offset + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        };
        put(offset_of!(DmTargetSpec, sector_start), &self.sector_start.to_ne_bytes());
        put(offset_of!(DmTargetSpec, length), &self.length.to_ne_bytes());
        put(offset_of!(DmTargetSpec, status), &self.status.to_ne_bytes());
        put(offset_of!(DmTargetSpec, next), &self.next.to_ne_bytes());
        put(offset_of!(DmTargetSpec, target_type), &self.target_type);
        out
    }
}

/// Builds the DM_TABLE_LOAD buffer for a read-only device with one target:
/// `struct dm_ioctl`, `struct dm_target_spec`, the NUL-terminated parameter string,
/// and zero padding to an 8-byte boundary as the kernel expects between targets.
pub fn table_load_buffer(name: &str, target_type: &str, sectors: u64, params: &str) -> Result<Vec<u8>, String> {
    if target_type.is_empty() || target_type.len() >= DM_MAX_TYPE_NAME {
        return Err(format!("invalid target type {target_type:?}"));
    }
    if params.contains('\0') {
        return Err("target parameters contain a NUL byte".to_string());
    }
    let mut type_field = [0u8; DM_MAX_TYPE_NAME];
    if let Some(slot) = type_field.get_mut(..target_type.len()) {
        slot.copy_from_slice(target_type.as_bytes());
    }

    let params_len = (params.len() + 1).next_multiple_of(8);
    let spec_len = size_of::<DmTargetSpec>() + params_len;
    let total = size_of::<DmIoctl>() + spec_len;

    let mut header = DmIoctl::for_device(name)?;
    header.data_size = u32::try_from(total).map_err(|_| "table too large".to_string())?;
    header.target_count = 1;
    header.flags = DM_READONLY_FLAG;
    let spec = DmTargetSpec {
        sector_start: 0,
        length: sectors,
        status: 0,
        next: u32::try_from(spec_len).map_err(|_| "table too large".to_string())?,
        target_type: type_field,
    };

    let mut buffer = header.to_bytes();
    buffer.extend_from_slice(&spec.to_bytes());
    buffer.extend_from_slice(params.as_bytes());
    buffer.resize(total, 0);
    Ok(buffer)
}

/// The arguments of a `verity` target in the order of the kernel's `verity_ctr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerityTable {
    pub data_dev: (u32, u32),
    pub hash_dev: (u32, u32),
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub hash_start_block: u64,
    pub algorithm: String,
    /// Lower-case hex, exactly the string the signature covers.
    pub root_hash_hex: String,
    /// Lower-case hex, or `-` for no salt.
    pub salt_hex: String,
    /// Description of the `user` key that contains the PKCS#7 root hash signature.
    pub signature_key_description: String,
}

impl VerityTable {
    /// Returns the target length in 512-byte sectors, which covers every data block.
    pub fn sectors(&self) -> Option<u64> {
        self.data_blocks.checked_mul(u64::from(self.data_block_size) / 512)
    }

    /// Formats the parameter string that follows `<start> <length> verity`.
    pub fn params(&self) -> String {
        format!(
            "1 {}:{} {}:{} {} {} {} {} {} {} {} 2 root_hash_sig_key_desc {}",
            self.data_dev.0,
            self.data_dev.1,
            self.hash_dev.0,
            self.hash_dev.1,
            self.data_block_size,
            self.hash_block_size,
            self.data_blocks,
            self.hash_start_block,
            self.algorithm,
            self.root_hash_hex,
            self.salt_hex,
            self.signature_key_description,
        )
    }
}

/// A failed device-mapper command and the errno the kernel returned.
#[derive(Debug)]
pub struct DmError {
    pub command: &'static str,
    pub error: io::Error,
}

fn run(control: &File, command: &'static str, request: libc::c_ulong, mut buffer: Vec<u8>) -> Result<DmResult, DmError> {
    sys::dm_ioctl(control, request, &mut buffer, size_of::<DmIoctl>()).map_err(|error| DmError { command, error })?;
    DmIoctl::read_result(&buffer).ok_or_else(|| DmError {
        command,
        error: io::Error::new(io::ErrorKind::InvalidData, "short reply"),
    })
}

fn invalid(command: &'static str, message: String) -> DmError {
    DmError { command, error: io::Error::new(io::ErrorKind::InvalidInput, message) }
}

/// Runs DM_VERSION and returns the kernel's interface version. The kernel itself fails
/// the command with EINVAL when its major version differs from ours.
pub fn check_version(control: &File) -> Result<[u32; 3], DmError> {
    let header = DmIoctl::for_device("version").map_err(|m| invalid("DM_VERSION", m))?;
    let result = run(control, "DM_VERSION", DM_VERSION, header.to_bytes())?;
    if result.version[0] != INTERFACE_VERSION[0] {
        return Err(invalid(
            "DM_VERSION",
            format!("kernel device-mapper interface {}.{}.{}, expected 4.x", result.version[0], result.version[1], result.version[2]),
        ));
    }
    Ok(result.version)
}

/// Creates an empty device and returns its device number (major, minor).
pub fn create_device(control: &File, name: &str) -> Result<(u32, u32), DmError> {
    let header = DmIoctl::for_device(name).map_err(|m| invalid("DM_DEV_CREATE", m))?;
    Ok(run(control, "DM_DEV_CREATE", DM_DEV_CREATE, header.to_bytes())?.major_minor())
}

/// Loads a read-only single-target table into the device's inactive slot.
pub fn load_table(control: &File, name: &str, target_type: &str, sectors: u64, params: &str) -> Result<(), DmError> {
    let buffer = table_load_buffer(name, target_type, sectors, params).map_err(|m| invalid("DM_TABLE_LOAD", m))?;
    run(control, "DM_TABLE_LOAD", DM_TABLE_LOAD, buffer).map(drop)
}

/// Resumes the device, which makes the loaded table live, and returns its device number.
pub fn resume(control: &File, name: &str) -> Result<(u32, u32), DmError> {
    let header = DmIoctl::for_device(name).map_err(|m| invalid("DM_DEV_SUSPEND", m))?;
    Ok(run(control, "DM_DEV_SUSPEND", DM_DEV_SUSPEND, header.to_bytes())?.major_minor())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_table() -> VerityTable {
        VerityTable {
            data_dev: (259, 2),
            hash_dev: (259, 3),
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 300,
            hash_start_block: 1,
            algorithm: "sha256".to_string(),
            root_hash_hex: "8df1ec12b9e6bbc5d389c0dd2587b4103a6c73c56a917194ec5bfc22f1fab0d9".to_string(),
            salt_hex: "-".to_string(),
            signature_key_description: "applbuild:root-8df1ec12b9e6bbc5".to_string(),
        }
    }

    #[test]
    fn ioctl_numbers_match_header() {
        // _IOWR(0xfd, nr, 312-byte struct dm_ioctl)
        assert_eq!(DM_VERSION, 0xc138_fd00);
        assert_eq!(DM_DEV_CREATE, 0xc138_fd03);
        assert_eq!(DM_DEV_SUSPEND, 0xc138_fd06);
        assert_eq!(DM_TABLE_LOAD, 0xc138_fd09);
    }

    #[test]
    fn dm_ioctl_offsets_match_header() {
        assert_eq!(offset_of!(DmIoctl, data_size), 12);
        assert_eq!(offset_of!(DmIoctl, data_start), 16);
        assert_eq!(offset_of!(DmIoctl, target_count), 20);
        assert_eq!(offset_of!(DmIoctl, flags), 28);
        assert_eq!(offset_of!(DmIoctl, dev), 40);
        assert_eq!(offset_of!(DmIoctl, name), 48);
        assert_eq!(offset_of!(DmIoctl, uuid), 176);
        assert_eq!(offset_of!(DmIoctl, data), 305);
        assert_eq!(offset_of!(DmTargetSpec, next), 20);
        assert_eq!(offset_of!(DmTargetSpec, target_type), 24);
    }

    #[test]
    fn verity_params_string() {
        assert_eq!(
            sample_table().params(),
            "1 259:2 259:3 4096 4096 300 1 sha256 8df1ec12b9e6bbc5d389c0dd2587b4103a6c73c56a917194ec5bfc22f1fab0d9 - \
             2 root_hash_sig_key_desc applbuild:root-8df1ec12b9e6bbc5"
        );
        assert_eq!(sample_table().sectors(), Some(2400));
    }

    #[test]
    fn table_buffer_layout() {
        let params = sample_table().params();
        let buffer = table_load_buffer("root", "verity", 2400, &params).unwrap();
        let spec_len = 40 + (params.len() + 1).next_multiple_of(8);
        assert_eq!(buffer.len(), 312 + spec_len);
        assert_eq!(buffer.len() % 8, 0);

        let u32_at = |o: usize| u32::from_ne_bytes(buffer[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(buffer[o..o + 8].try_into().unwrap());
        assert_eq!([u32_at(0), u32_at(4), u32_at(8)], [4, 0, 0]);
        assert_eq!(u32_at(12) as usize, buffer.len());
        assert_eq!(u32_at(16), 312);
        assert_eq!(u32_at(20), 1);
        assert_eq!(u32_at(28), DM_READONLY_FLAG);
        assert_eq!(&buffer[48..53], b"root\0");

        assert_eq!(u64_at(312), 0);
        assert_eq!(u64_at(320), 2400);
        assert_eq!(u32_at(332) as usize, spec_len);
        assert_eq!(&buffer[336..343], b"verity\0");
        assert_eq!(&buffer[352..352 + params.len()], params.as_bytes());
        assert_eq!(buffer[352 + params.len()], 0);
    }

    #[test]
    fn result_decodes_device_number() {
        let mut header = DmIoctl::for_device("root").unwrap();
        header.version = [4, 48, 0];
        // huge_encode_dev(MKDEV(253, 300)): minor low byte, major << 8, minor high bits << 12.
        header.dev = (300 & 0xff) | (253 << 8) | ((300 & !0xff) << 12);
        let result = DmIoctl::read_result(&header.to_bytes()).unwrap();
        assert_eq!(result.version, [4, 48, 0]);
        assert_eq!(result.major_minor(), (253, 300));
    }

    #[test]
    fn invalid_names_rejected() {
        assert!(DmIoctl::for_device("").is_err());
        assert!(DmIoctl::for_device(&"x".repeat(128)).is_err());
        assert!(DmIoctl::for_device(&"x".repeat(127)).is_ok());
        assert!(table_load_buffer("root", "a-very-long-target", 8, "").is_err());
        assert!(table_load_buffer("root", "verity", 8, "a\0b").is_err());
    }
}
