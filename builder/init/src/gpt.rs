//! GUID Partition Table parsing (UEFI specification) and the partition set of the
//! Discoverable Partitions Specification that this init looks for.

use std::fmt;

use crate::bytes;

/// A GUID in canonical byte order: the order of the hex digits in its text form.
///
/// GPT stores GUIDs mixed-endian (the first three fields little-endian), so bytes read
/// from disk go through [`Guid::from_gpt_bytes`] before any comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Guid(pub [u8; 16]);

/// x86-64 root partition type (Discoverable Partitions Specification).
pub const ROOT_X86_64: Guid = Guid([
    0x4f, 0x68, 0xbc, 0xe3, 0xe8, 0xcd, 0x4d, 0xb1, 0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7, 0x09,
]);
/// x86-64 root verity partition type.
pub const ROOT_VERITY_X86_64: Guid = Guid([
    0x2c, 0x73, 0x57, 0xed, 0xeb, 0xd2, 0x46, 0xd9, 0xae, 0xc1, 0x23, 0xd4, 0x37, 0xec, 0x2b, 0xf5,
]);
/// x86-64 root verity signature partition type.
pub const ROOT_VERITY_SIG_X86_64: Guid = Guid([
    0x41, 0x09, 0x2b, 0x05, 0x9f, 0xc8, 0x45, 0x23, 0x99, 0x4f, 0x2d, 0xef, 0x04, 0x08, 0xb1, 0x76,
]);

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    /// Converts the 16 bytes of a GPT GUID field to canonical order by reversing the
    /// little-endian 4-byte, 2-byte and 2-byte fields.
    pub fn from_gpt_bytes(disk: [u8; 16]) -> Guid {
        let mut out = disk;
        out[0..4].reverse();
        out[4..6].reverse();
        out[6..8].reverse();
        Guid(out)
    }

    /// Converts to the mixed-endian GPT on-disk layout; the inverse of [`Guid::from_gpt_bytes`].
    #[cfg(test)]
    pub fn to_gpt_bytes(self) -> [u8; 16] {
        // The field swap is its own inverse.
        Guid::from_gpt_bytes(self.0).0
    }

    /// Parses the canonical `8-4-4-4-12` text form, in either case.
    pub fn parse(text: &str) -> Option<Guid> {
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return None;
        }
        let digits = groups.concat().to_ascii_lowercase();
        let bytes = bytes::from_lower_hex(&digits)?;
        Some(Guid(bytes.try_into().ok()?))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = bytes::to_hex(&self.0);
        let (a, rest) = hex.split_at(8);
        let (b, rest) = rest.split_at(4);
        let (c, rest) = rest.split_at(4);
        let (d, e) = rest.split_at(4);
        write!(f, "{a}-{b}-{c}-{d}-{e}")
    }
}

/// CRC-32 as GPT uses it: IEEE 802.3 polynomial, reflected, initial value and final XOR 0xffffffff.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc = TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    !crc
}

pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Smallest header that contains every field defined by UEFI 2.x.
const HEADER_MIN_SIZE: u32 = 92;
const HEADER_CRC_OFFSET: usize = 16;
/// Upper bound on the partition entry array read from disk. 128 entries of 128 bytes
/// (16 KiB) is the usual size; this leaves room for larger tables without reading
/// an unbounded amount.
pub const MAX_ENTRIES_BYTES: u64 = 1 << 20;

/// The fields of a primary GPT header that locate and check the partition entry array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub sector_size: u32,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Guid,
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries_crc32: u32,
}

impl Header {
    pub fn entries_offset(&self) -> Option<u64> {
        self.entries_lba.checked_mul(u64::from(self.sector_size))
    }

    pub fn entries_len(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }
}

/// Parses and checks the primary GPT header from the sector at LBA 1.
///
/// Checks the signature, revision 1.x, header size, header CRC32, that the header
/// records itself at LBA 1, the usable range, and the entry array geometry.
pub fn parse_header(sector: &[u8], sector_size: u32) -> Result<Header, String> {
    let field_error = || format!("GPT header shorter than {HEADER_MIN_SIZE} bytes");

    if sector.get(0..8) != Some(SIGNATURE.as_slice()) {
        return Err("no \"EFI PART\" signature at LBA 1".to_string());
    }
    let revision = bytes::le_u32(sector, 8).ok_or_else(field_error)?;
    if revision >> 16 != 1 {
        return Err(format!("unsupported GPT revision {revision:#010x}, expected 1.x"));
    }

    let header_size = bytes::le_u32(sector, 12).ok_or_else(field_error)?;
    if header_size < HEADER_MIN_SIZE || header_size > sector_size {
        return Err(format!(
            "invalid GPT header size {header_size}, expected {HEADER_MIN_SIZE}..={sector_size}"
        ));
    }
    let header_bytes = sector
        .get(..header_size as usize)
        .ok_or_else(|| format!("GPT header size {header_size} exceeds the {} bytes read", sector.len()))?;
    let stored_crc = bytes::le_u32(sector, HEADER_CRC_OFFSET).ok_or_else(field_error)?;
    let mut zeroed = header_bytes.to_vec();
    zeroed[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].fill(0);
    let computed_crc = crc32(&zeroed);
    if computed_crc != stored_crc {
        return Err(format!(
            "GPT header CRC32 mismatch: stored {stored_crc:#010x}, computed {computed_crc:#010x}"
        ));
    }

    let my_lba = bytes::le_u64(sector, 24).ok_or_else(field_error)?;
    if my_lba != 1 {
        return Err(format!("GPT header at LBA 1 records its own LBA as {my_lba}"));
    }
    let first_usable_lba = bytes::le_u64(sector, 40).ok_or_else(field_error)?;
    let last_usable_lba = bytes::le_u64(sector, 48).ok_or_else(field_error)?;
    if first_usable_lba > last_usable_lba {
        return Err(format!(
            "GPT first usable LBA {first_usable_lba} is after the last usable LBA {last_usable_lba}"
        ));
    }
    let disk_guid = Guid::from_gpt_bytes(bytes::array(sector, 56).ok_or_else(field_error)?);
    let entries_lba = bytes::le_u64(sector, 72).ok_or_else(field_error)?;
    let entry_count = bytes::le_u32(sector, 80).ok_or_else(field_error)?;
    let entry_size = bytes::le_u32(sector, 84).ok_or_else(field_error)?;
    let entries_crc32 = bytes::le_u32(sector, 88).ok_or_else(field_error)?;

    if entries_lba < 2 {
        return Err(format!("GPT partition entry array at LBA {entries_lba} overlaps the header"));
    }
    // UEFI requires 128 * 2^n bytes per entry.
    if entry_size < 128 || !entry_size.is_power_of_two() {
        return Err(format!("invalid GPT partition entry size {entry_size}, expected 128 * 2^n"));
    }
    let header = Header {
        sector_size,
        first_usable_lba,
        last_usable_lba,
        disk_guid,
        entries_lba,
        entry_count,
        entry_size,
        entries_crc32,
    };
    if header.entries_len() > MAX_ENTRIES_BYTES {
        return Err(format!(
            "GPT partition entry array of {entry_count} x {entry_size} bytes exceeds the {MAX_ENTRIES_BYTES}-byte limit"
        ));
    }
    if header.entries_offset().is_none() {
        return Err(format!("GPT partition entry LBA {entries_lba} is out of range"));
    }
    Ok(header)
}

/// One used GPT partition entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Partition number as the kernel numbers it: entry index + 1.
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
}

impl Entry {
    pub fn sectors(&self) -> u64 {
        (self.last_lba - self.first_lba).saturating_add(1)
    }
}

/// Parses the partition entry array after checking its CRC32 against the header.
/// Unused entries (type GUID all zero) are skipped.
pub fn parse_entries(header: &Header, array: &[u8]) -> Result<Vec<Entry>, String> {
    let len = usize::try_from(header.entries_len())
        .map_err(|_| "GPT partition entry array too large".to_string())?;
    let array = array
        .get(..len)
        .ok_or_else(|| format!("GPT partition entry array needs {len} bytes, got {}", array.len()))?;
    let computed_crc = crc32(array);
    if computed_crc != header.entries_crc32 {
        return Err(format!(
            "GPT partition entry array CRC32 mismatch: stored {:#010x}, computed {computed_crc:#010x}",
            header.entries_crc32
        ));
    }

    let mut entries = Vec::new();
    for (index, raw) in array.chunks_exact(header.entry_size as usize).enumerate() {
        let number = u32::try_from(index + 1).map_err(|_| "too many GPT entries".to_string())?;
        let field_error = || format!("GPT entry {number} is truncated");
        let type_guid = Guid::from_gpt_bytes(bytes::array(raw, 0).ok_or_else(field_error)?);
        if type_guid == Guid::ZERO {
            continue;
        }
        let entry = Entry {
            number,
            type_guid,
            unique_guid: Guid::from_gpt_bytes(bytes::array(raw, 16).ok_or_else(field_error)?),
            first_lba: bytes::le_u64(raw, 32).ok_or_else(field_error)?,
            last_lba: bytes::le_u64(raw, 40).ok_or_else(field_error)?,
            attributes: bytes::le_u64(raw, 48).ok_or_else(field_error)?,
        };
        if entry.first_lba > entry.last_lba
            || entry.first_lba < header.first_usable_lba
            || entry.last_lba > header.last_usable_lba
        {
            return Err(format!(
                "GPT entry {number} spans LBA {}..={}, outside the usable range {}..={}",
                entry.first_lba, entry.last_lba, header.first_usable_lba, header.last_usable_lba
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The partition UUIDs that the root hash names, in canonical form: the root partition
/// takes the first 16 bytes of the root hash and the verity partition the last 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WantedUuids {
    pub root: Guid,
    pub verity: Guid,
}

impl WantedUuids {
    pub fn from_root_hash(root_hash: &[u8; 32]) -> WantedUuids {
        let mut root = [0u8; 16];
        let mut verity = [0u8; 16];
        root.copy_from_slice(&root_hash[..16]);
        verity.copy_from_slice(&root_hash[16..]);
        WantedUuids { root: Guid(root), verity: Guid(verity) }
    }
}

/// The root, root-verity and root-verity-sig entries of one disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerityLayout {
    pub root: Entry,
    pub verity: Entry,
    /// Every root-verity-sig entry on the disk. The signature partition UUID is not
    /// derived from the root hash, so the caller picks the one whose `rootHash` matches.
    pub signatures: Vec<Entry>,
}

/// Finds the partitions named by `wanted` among one disk's entries.
///
/// Returns `Ok(None)` when the disk has neither derived UUID, so it is some other disk.
/// A disk with either UUID is the boot disk, and any inconsistency on it is an error:
/// a missing partition, a wrong type GUID, or a UUID used twice.
pub fn find_verity_layout(entries: &[Entry], wanted: &WantedUuids) -> Result<Option<VerityLayout>, String> {
    let with_uuid = |uuid: Guid| -> Vec<&Entry> { entries.iter().filter(|e| e.unique_guid == uuid).collect() };
    let roots = with_uuid(wanted.root);
    let verities = with_uuid(wanted.verity);
    if roots.is_empty() && verities.is_empty() {
        return Ok(None);
    }

    let root = pick_one(&roots, wanted.root, ROOT_X86_64, "root")?;
    let verity = pick_one(&verities, wanted.verity, ROOT_VERITY_X86_64, "root-verity")?;
    let signatures: Vec<Entry> = entries
        .iter()
        .filter(|e| e.type_guid == ROOT_VERITY_SIG_X86_64)
        .cloned()
        .collect();
    if signatures.is_empty() {
        return Err(format!(
            "the disk has root and root-verity partitions but no root-verity-sig partition (type {ROOT_VERITY_SIG_X86_64})"
        ));
    }
    Ok(Some(VerityLayout { root: root.clone(), verity: verity.clone(), signatures }))
}

fn pick_one<'a>(found: &[&'a Entry], uuid: Guid, type_guid: Guid, role: &str) -> Result<&'a Entry, String> {
    match found {
        [] => Err(format!("no partition with PARTUUID {uuid} ({role}) on the disk that has its companion partition")),
        [entry] if entry.type_guid == type_guid => Ok(entry),
        [entry] => Err(format!(
            "partition {} with PARTUUID {uuid} ({role}) has type {}, expected {type_guid}",
            entry.number, entry.type_guid
        )),
        [first, second, ..] => Err(format!(
            "PARTUUID {uuid} ({role}) is used by partitions {} and {}",
            first.number, second.number
        )),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A partition to place in a test GPT.
    pub struct TestPartition {
        pub type_guid: Guid,
        pub unique_guid: Guid,
        pub first_lba: u64,
        pub last_lba: u64,
    }

    /// Builds LBA 0..=(2 + entry array) of a GPT disk: protective MBR area, header and
    /// a 128-entry array starting at LBA 2.
    pub fn build_gpt(sector_size: usize, partitions: &[TestPartition]) -> Vec<u8> {
        let entry_count = 128usize;
        let entry_size = 128usize;
        let mut array = vec![0u8; entry_count * entry_size];
        for (i, p) in partitions.iter().enumerate() {
            let raw = &mut array[i * entry_size..(i + 1) * entry_size];
            raw[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
            raw[16..32].copy_from_slice(&p.unique_guid.to_gpt_bytes());
            raw[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            raw[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        }
        let array_sectors = array.len().div_ceil(sector_size);

        let mut header = vec![0u8; sector_size];
        header[0..8].copy_from_slice(SIGNATURE);
        header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[24..32].copy_from_slice(&1u64.to_le_bytes());
        header[32..40].copy_from_slice(&1000u64.to_le_bytes());
        header[40..48].copy_from_slice(&(2 + array_sectors as u64).to_le_bytes());
        header[48..56].copy_from_slice(&900u64.to_le_bytes());
        header[56..72].copy_from_slice(&Guid([7; 16]).to_gpt_bytes());
        header[72..80].copy_from_slice(&2u64.to_le_bytes());
        header[80..84].copy_from_slice(&(entry_count as u32).to_le_bytes());
        header[84..88].copy_from_slice(&(entry_size as u32).to_le_bytes());
        header[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
        let header_crc = crc32(&header[..92]);
        header[16..20].copy_from_slice(&header_crc.to_le_bytes());

        let mut disk = vec![0u8; sector_size];
        disk.extend_from_slice(&header);
        disk.extend_from_slice(&array);
        disk.resize((2 + array_sectors) * sector_size, 0);
        disk
    }

    /// Returns an example root hash, c46e46b6...3f02.
    pub fn example_root_hash() -> [u8; 32] {
        let hex = "c46e46b6bc50ac0d37b3b14b50821bab705944fbd6f87293eb7da884e7e13f02";
        bytes::from_lower_hex(hex).unwrap().try_into().unwrap()
    }

    fn sample_partitions(wanted: &WantedUuids) -> Vec<TestPartition> {
        vec![
            TestPartition {
                type_guid: Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap(),
                unique_guid: Guid([1; 16]),
                first_lba: 100,
                last_lba: 199,
            },
            TestPartition { type_guid: ROOT_X86_64, unique_guid: wanted.root, first_lba: 200, last_lba: 599 },
            TestPartition { type_guid: ROOT_VERITY_X86_64, unique_guid: wanted.verity, first_lba: 600, last_lba: 699 },
            TestPartition { type_guid: ROOT_VERITY_SIG_X86_64, unique_guid: Guid([9; 16]), first_lba: 700, last_lba: 731 },
        ]
    }

    fn parse_disk(disk: &[u8], sector_size: usize) -> Result<Vec<Entry>, String> {
        let header = parse_header(&disk[sector_size..2 * sector_size], sector_size as u32)?;
        let offset = header.entries_offset().unwrap() as usize;
        parse_entries(&header, &disk[offset..])
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn type_constants_match_text() {
        assert_eq!(ROOT_X86_64.to_string(), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
        assert_eq!(ROOT_VERITY_X86_64.to_string(), "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5");
        assert_eq!(ROOT_VERITY_SIG_X86_64.to_string(), "41092b05-9fc8-4523-994f-2def0408b176");
    }

    #[test]
    fn guid_parse_accepts_upper_case() {
        let guid = Guid::parse("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709").unwrap();
        assert_eq!(guid, ROOT_X86_64);
    }

    #[test]
    fn guid_parse_rejects_bad_shapes() {
        assert_eq!(Guid::parse("4f68bce3e8cd4db196e7fbcaf984b709"), None);
        assert_eq!(Guid::parse("4f68bce3-e8cd-4db1-96e7-fbcaf984b70"), None);
        assert_eq!(Guid::parse("4f68bce3-e8cd-4db1-96e7-fbcaf984b70g"), None);
        assert_eq!(Guid::parse("4f68bce3-e8cd-4db1-96e7fbca-f984b709"), None);
    }

    #[test]
    fn guid_disk_order_is_mixed_endian() {
        // The first three fields are little-endian on disk, so c46e46b6-bc50-ac0d-...
        // is stored as b6466ec4 50bc 0dac ...
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        assert_eq!(wanted.root.to_string(), "c46e46b6-bc50-ac0d-37b3-b14b50821bab");
        assert_eq!(wanted.verity.to_string(), "705944fb-d6f8-7293-eb7d-a884e7e13f02");
        assert_eq!(bytes::to_hex(&wanted.root.to_gpt_bytes()), "b6466ec450bc0dac37b3b14b50821bab");
        assert_eq!(Guid::from_gpt_bytes(wanted.root.to_gpt_bytes()), wanted.root);
    }

    #[test]
    fn parse_finds_layout_512() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let disk = build_gpt(512, &sample_partitions(&wanted));
        let entries = parse_disk(&disk, 512).unwrap();
        assert_eq!(entries.len(), 4);
        let layout = find_verity_layout(&entries, &wanted).unwrap().unwrap();
        assert_eq!(layout.root.number, 2);
        assert_eq!(layout.root.first_lba, 200);
        assert_eq!(layout.root.sectors(), 400);
        assert_eq!(layout.verity.number, 3);
        assert_eq!(layout.signatures.len(), 1);
        assert_eq!(layout.signatures[0].number, 4);
    }

    #[test]
    fn parse_finds_layout_4096() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let disk = build_gpt(4096, &sample_partitions(&wanted));
        let header = parse_header(&disk[4096..8192], 4096).unwrap();
        assert_eq!(header.entries_offset(), Some(8192));
        let entries = parse_disk(&disk, 4096).unwrap();
        assert!(find_verity_layout(&entries, &wanted).unwrap().is_some());
    }

    #[test]
    fn other_disk_is_not_a_match() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let other = WantedUuids::from_root_hash(&[0x55; 32]);
        let disk = build_gpt(512, &sample_partitions(&other));
        let entries = parse_disk(&disk, 512).unwrap();
        assert_eq!(find_verity_layout(&entries, &wanted), Ok(None));
    }

    #[test]
    fn header_crc_mismatch_rejected() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let mut disk = build_gpt(512, &sample_partitions(&wanted));
        disk[512 + 48] ^= 1;
        let error = parse_header(&disk[512..1024], 512).unwrap_err();
        assert!(error.contains("header CRC32 mismatch"), "{error}");
    }

    #[test]
    fn entries_crc_mismatch_rejected() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let mut disk = build_gpt(512, &sample_partitions(&wanted));
        disk[1024 + 128 + 40] ^= 1;
        let error = parse_disk(&disk, 512).unwrap_err();
        assert!(error.contains("entry array CRC32 mismatch"), "{error}");
    }

    #[test]
    fn missing_signature_rejected() {
        let error = parse_header(&[0u8; 512], 512).unwrap_err();
        assert!(error.contains("EFI PART"), "{error}");
        assert!(parse_header(&[], 512).is_err());
    }

    #[test]
    fn short_sector_rejected_without_panic() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let disk = build_gpt(512, &sample_partitions(&wanted));
        for len in [8, 12, 40, 91] {
            assert!(parse_header(&disk[512..512 + len], 512).is_err(), "length {len}");
        }
    }

    #[test]
    fn entry_outside_usable_range_rejected() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let mut partitions = sample_partitions(&wanted);
        partitions[1].last_lba = 5000;
        let disk = build_gpt(512, &partitions);
        let error = parse_disk(&disk, 512).unwrap_err();
        assert!(error.contains("outside the usable range"), "{error}");
    }

    #[test]
    fn wrong_root_type_rejected() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let mut partitions = sample_partitions(&wanted);
        partitions[1].type_guid = Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4").unwrap();
        let entries = parse_disk(&build_gpt(512, &partitions), 512).unwrap();
        let error = find_verity_layout(&entries, &wanted).unwrap_err();
        assert!(error.contains("has type 0fc63daf-8483-4772-8e79-3d69d8477de4"), "{error}");
    }

    #[test]
    fn missing_verity_partition_rejected() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let mut partitions = sample_partitions(&wanted);
        partitions.remove(2);
        let entries = parse_disk(&build_gpt(512, &partitions), 512).unwrap();
        let error = find_verity_layout(&entries, &wanted).unwrap_err();
        assert!(error.contains("705944fb-d6f8-7293-eb7d-a884e7e13f02 (root-verity)"), "{error}");
    }

    #[test]
    fn missing_signature_partition_rejected() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let mut partitions = sample_partitions(&wanted);
        partitions.remove(3);
        let entries = parse_disk(&build_gpt(512, &partitions), 512).unwrap();
        let error = find_verity_layout(&entries, &wanted).unwrap_err();
        assert!(error.contains("no root-verity-sig partition"), "{error}");
    }

    #[test]
    fn duplicate_root_uuid_rejected() {
        let wanted = WantedUuids::from_root_hash(&example_root_hash());
        let mut partitions = sample_partitions(&wanted);
        partitions.push(TestPartition { type_guid: ROOT_X86_64, unique_guid: wanted.root, first_lba: 800, last_lba: 850 });
        let entries = parse_disk(&build_gpt(512, &partitions), 512).unwrap();
        let error = find_verity_layout(&entries, &wanted).unwrap_err();
        assert!(error.contains("used by partitions 2 and 5"), "{error}");
    }
}
