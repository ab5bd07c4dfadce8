//! Builder for the Unified Kernel Image (UKI): systemd-stub plus the kernel,
//! initramfs, command line and os-release as extra PE sections.
//!
//! # Layout
//!
//! The stub is a PE32+ executable (Microsoft PE/COFF specification). Its DOS
//! header field `e_lfanew` at offset 0x3c points to the signature `PE\0\0`.
//! The 20-byte COFF header, the optional header (PE32+ magic 0x20b) and the
//! section table of 40-byte headers follow. [`build`] appends one header per
//! new section to that table and the section data after the end of the stub
//! file. Everything in the stub's headers and sections keeps its offset.
//!
//! Data after the stub's last section is dropped: that is the COFF symbol
//! and string table that linkers leave there, which image loaders never
//! read. `PointerToSymbolTable` and `NumberOfSymbols` are then set to 0. The
//! new sections thus follow the stub's sections without a gap, so every byte
//! of the UKI is covered by its Authenticode digest
//! ([`crate::authenticode`]), and verifiers that hash the file from start to
//! end (osslsigncode) agree with those that hash section by section (edk2
//! firmware, sbsigntool).
//!
//! For each new section, in the order given:
//! * `VirtualAddress` is the end of everything mapped before it (all stub
//!   sections and `SizeOfImage`), rounded up to `SectionAlignment`;
//! * `PointerToRawData` is the end of the file so far, rounded up to
//!   `FileAlignment`, and `SizeOfRawData` is the data length rounded up to
//!   `FileAlignment`, zero-padded;
//! * `VirtualSize` is the data length. For `.linux` holding a PE kernel, it is
//!   the larger of that and the kernel's own `SizeOfImage`, as in systemd's
//!   `ukify`. A stub that runs the kernel in place through the EFI handover
//!   protocol then has room for the kernel's uninitialized data;
//! * `Characteristics` is `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`,
//!   except for `.linux`, which `ukify` marks `IMAGE_SCN_CNT_CODE |
//!   IMAGE_SCN_MEM_READ` because such stubs execute it.
//!
//! `NumberOfSections`, `SizeOfImage`, `SizeOfCode`, `SizeOfInitializedData`
//! and `CheckSum` are updated. Nothing else in the stub changes, and the output
//! depends only on the inputs.
//!
//! The stub looks sections up by name and takes the first match (systemd
//! `src/boot/pe.c`), so a name that the stub already uses is rejected. `.linux`
//! must come last, the position that `ukify` gives it.

use thiserror::Error;

/// `e_magic` of the DOS header.
const DOS_MAGIC: &[u8; 2] = b"MZ";
/// Offset of `e_lfanew`, the file offset of the PE signature.
const DOS_E_LFANEW_OFFSET: usize = 0x3c;
/// The PE signature that `e_lfanew` points to.
const PE_SIGNATURE: &[u8; 4] = b"PE\0\0";
/// Size of the COFF file header that follows the signature.
const COFF_HEADER_LEN: usize = 20;
/// Optional header magic of a PE32+ (64-bit) image.
const PE32_PLUS_MAGIC: u16 = 0x20b;
/// Optional header magic of a PE32 (32-bit) image, only named in an error.
const PE32_MAGIC: u16 = 0x10b;
/// Size of one section header.
const SECTION_HEADER_LEN: usize = 40;
/// Maximum section name length in an image file; longer names need a COFF
/// string table, which image loaders do not read.
const SECTION_NAME_MAX: usize = 8;

/// Field offsets in the COFF header, relative to its start.
const COFF_NUMBER_OF_SECTIONS: usize = 2;
const COFF_POINTER_TO_SYMBOL_TABLE: usize = 8;
const COFF_NUMBER_OF_SYMBOLS: usize = 12;
const COFF_SIZE_OF_OPTIONAL_HEADER: usize = 16;

/// Field offsets in the PE32+ optional header, relative to its start.
const OPT_MAGIC: usize = 0;
const OPT_SIZE_OF_CODE: usize = 4;
const OPT_SIZE_OF_INITIALIZED_DATA: usize = 8;
const OPT_SECTION_ALIGNMENT: usize = 32;
const OPT_FILE_ALIGNMENT: usize = 36;
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_SIZE_OF_HEADERS: usize = 60;
const OPT_CHECKSUM: usize = 64;
const OPT_NUMBER_OF_RVA_AND_SIZES: usize = 108;
const OPT_DATA_DIRECTORIES: usize = 112;
/// Index of the certificate table (Authenticode signature) data directory.
const CERTIFICATE_TABLE_INDEX: usize = 4;
/// Size of one data directory entry: address and size.
const DATA_DIRECTORY_LEN: usize = 8;

/// Field offsets in a section header.
const SECTION_VIRTUAL_SIZE: usize = 8;
const SECTION_VIRTUAL_ADDRESS: usize = 12;
const SECTION_SIZE_OF_RAW_DATA: usize = 16;
const SECTION_POINTER_TO_RAW_DATA: usize = 20;
const SECTION_CHARACTERISTICS: usize = 36;

/// Section characteristics flags.
const IMAGE_SCN_CNT_CODE: u32 = 0x0000_0020;
const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;

/// Name of the kernel section.
const LINUX_SECTION: &str = ".linux";

/// Errors from building a UKI.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UkiError {
    /// The stub ends before a header that its other headers point to.
    #[error(
        "invalid stub: {structure} at offset {offset:#x} needs {needed} bytes, but the file has {len}"
    )]
    Truncated {
        /// The structure that is cut off.
        structure: &'static str,
        /// Its file offset.
        offset: usize,
        /// Its size in bytes.
        needed: usize,
        /// The stub's file size.
        len: usize,
    },

    /// A magic number or signature does not match.
    #[error(
        "invalid stub: {expected} not found; pass a systemd-stub PE file such as linuxx64.efi.stub"
    )]
    BadMagic {
        /// The missing magic number.
        expected: &'static str,
    },

    /// The optional header is not PE32+.
    #[error("unsupported stub: optional header magic {magic:#x} is not PE32+ ({PE32_PLUS_MAGIC:#x}){hint}")]
    NotPe32Plus {
        /// The optional header magic found.
        magic: u16,
        /// A hint for 32-bit stubs.
        hint: &'static str,
    },

    /// The optional header is too small for the fields this module updates.
    #[error(
        "invalid stub: optional header has {size} bytes, a PE32+ header needs at least {needed}"
    )]
    OptionalHeaderTooSmall {
        /// `SizeOfOptionalHeader` from the COFF header.
        size: usize,
        /// The size this module needs.
        needed: usize,
    },

    /// `SectionAlignment` or `FileAlignment` is zero or not a power of two.
    #[error("invalid stub: {field} is {value:#x}, expected a power of two")]
    InvalidAlignment {
        /// The field name.
        field: &'static str,
        /// The field value.
        value: u32,
    },

    /// The stub carries an Authenticode signature, which new sections would invalidate.
    #[error(
        "stub is signed (certificate table of {size} bytes): adding sections breaks \
         the signature, so use the unsigned stub and sign the finished UKI"
    )]
    SignedStub {
        /// Size of the certificate table in bytes.
        size: u32,
    },

    /// A section name is empty, longer than 8 bytes, or not printable ASCII.
    #[error("invalid section name {name:?}: use 1 to 8 printable ASCII characters, such as \".cmdline\"")]
    InvalidSectionName {
        /// The rejected name.
        name: String,
    },

    /// A section name is already used by the stub or by an earlier new section.
    #[error("duplicate section {name:?}: the stub reads only the first section of a name")]
    DuplicateSection {
        /// The repeated name.
        name: String,
    },

    /// A section has no data.
    #[error("section {name:?} is empty: omit it instead")]
    EmptySection {
        /// The section name.
        name: String,
    },

    /// `.linux` is followed by another section.
    #[error("section .linux must be the last section, but {next:?} follows it")]
    LinuxNotLast {
        /// The first section after `.linux`.
        next: String,
    },

    /// The header area has no room for the new section headers.
    #[error(
        "stub has no room for {count} more section headers: the table would end at \
         {needed:#x}, but the headers end at {available:#x} (SizeOfHeaders or first \
         section data); rebuild the stub with more header space"
    )]
    NoHeaderRoom {
        /// Number of sections to add.
        count: usize,
        /// End offset of the extended section table.
        needed: usize,
        /// End of the header area.
        available: usize,
    },

    /// The bytes after the section table, where new headers go, are not zero.
    #[error("stub stores data at offset {offset:#x} after its section table, where new section headers go")]
    HeaderAreaInUse {
        /// Offset of the first non-zero byte.
        offset: usize,
    },

    /// A section header of a UKI being read points outside the file.
    #[error("invalid UKI: section {name:?} data at offset {offset:#x} with {size} bytes runs past the end of the {len}-byte file")]
    SectionOutOfBounds {
        /// The section name.
        name: String,
        /// `PointerToRawData`.
        offset: u32,
        /// The bytes read: the smaller of `VirtualSize` and `SizeOfRawData`.
        size: u32,
        /// The file size.
        len: usize,
    },

    /// The UKI's `CheckSum` field does not match its contents.
    #[error("UKI checksum {stored:#010x} does not match the computed {computed:#010x}: the file was changed after it was built")]
    ChecksumMismatch {
        /// The `CheckSum` field.
        stored: u32,
        /// The checksum of the file.
        computed: u32,
    },

    /// A size or address exceeds the 32-bit PE fields.
    #[error("section {name:?} does not fit: {field} would exceed the 32-bit PE limit of 4 GiB")]
    TooLarge {
        /// The section being placed.
        name: String,
        /// The field that overflows.
        field: &'static str,
    },
}

/// One section header of the stub, with the fields used for placement.
#[derive(Debug, Clone, Copy)]
struct StubSection {
    name: [u8; SECTION_NAME_MAX],
    virtual_size: u32,
    virtual_address: u32,
    size_of_raw_data: u32,
    pointer_to_raw_data: u32,
}

/// The parsed headers of the stub.
#[derive(Debug)]
struct PeHeaders {
    coff_offset: usize,
    optional_offset: usize,
    section_table_offset: usize,
    section_alignment: u32,
    file_alignment: u32,
    size_of_image: u32,
    size_of_headers: u32,
    size_of_code: u32,
    size_of_initialized_data: u32,
    sections: Vec<StubSection>,
}

/// A new section with its computed placement.
struct PlacedSection<'a> {
    name: &'a str,
    data: &'a [u8],
    virtual_size: u32,
    virtual_address: u32,
    size_of_raw_data: u32,
    pointer_to_raw_data: u32,
    characteristics: u32,
}

/// Builds a UKI from a systemd-stub PE image and `(name, data)` sections,
/// appended in the order given (normally `.osrel`, `.cmdline`, `.initrd`,
/// `.linux`).
///
/// # Errors
///
/// Returns a [`UkiError`] when:
/// * the stub is not a PE32+ image, is signed, or lacks header room for the
///   new section headers;
/// * a section name is invalid, repeated or already in the stub;
/// * a section is empty, or `.linux` is not last;
/// * the result exceeds the 32-bit PE limits.
pub fn build(stub: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>, UkiError> {
    let headers = parse_headers(stub)?;
    check_unsigned(
        stub,
        headers.optional_offset,
        headers.section_table_offset - headers.optional_offset,
    )?;
    validate_sections(&headers, sections)?;
    check_header_room(stub, &headers, sections.len())?;

    let stub = strip_trailing_data(stub, &headers);
    let placed = place_sections(stub.len(), &headers, sections)?;
    for section in &placed {
        tracing::debug!(
            name = section.name,
            virtual_address = section.virtual_address,
            virtual_size = section.virtual_size,
            file_offset = section.pointer_to_raw_data,
            "placed UKI section"
        );
    }

    let mut image = stub;
    write_sections(&mut image, &headers, &placed)?;
    update_optional_header(&mut image, &headers, &placed)?;
    let checksum = pe_checksum(&image, headers.optional_offset + OPT_CHECKSUM);
    put_u32(&mut image, headers.optional_offset + OPT_CHECKSUM, checksum);
    Ok(image)
}

/// One section of a PE image, as [`read_sections`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name without its NUL padding, such as `.cmdline`.
    pub name: String,
    /// The section's bytes in the file: `SizeOfRawData` bytes, cut to
    /// `VirtualSize` when that is smaller. Sections that [`build`] added
    /// with their exact length come back byte for byte except `.linux`,
    /// which keeps the zero padding up to `FileAlignment`.
    pub data: Vec<u8>,
}

/// Reads the section table of a PE32+ image such as a UKI and returns every
/// section in table order. Also checks the PE `CheckSum` when it is not 0,
/// so a changed byte anywhere in the file is found.
///
/// # Errors
///
/// [`UkiError`] for a file that is not PE32+, a section whose data runs
/// past the end of the file, or a checksum mismatch.
pub fn read_sections(image: &[u8]) -> Result<Vec<Section>, UkiError> {
    let headers = parse_headers(image)?;
    let checksum_offset = headers.optional_offset + OPT_CHECKSUM;
    let stored = read_u32(image, checksum_offset, "optional header")?;
    let computed = pe_checksum(image, checksum_offset);
    if stored != 0 && stored != computed {
        return Err(UkiError::ChecksumMismatch { stored, computed });
    }

    let mut sections = Vec::with_capacity(headers.sections.len());
    for section in &headers.sections {
        let name_len = section.name.iter().position(|&b| b == 0).unwrap_or(SECTION_NAME_MAX);
        let name = String::from_utf8_lossy(&section.name[..name_len]).into_owned();
        let size = section.virtual_size.min(section.size_of_raw_data);
        let data = slice(image, section.pointer_to_raw_data as usize, size as usize, "section data")
            .map_err(|_| UkiError::SectionOutOfBounds {
                name: name.clone(),
                offset: section.pointer_to_raw_data,
                size,
                len: image.len(),
            })?;
        sections.push(Section { name, data: data.to_vec() });
    }
    Ok(sections)
}

/// The parts of a PE32+ image that an Authenticode digest skips or walks:
/// see [`crate::authenticode`].
#[derive(Debug, Clone)]
pub(crate) struct PeLayout {
    /// File offset of the optional header's `CheckSum` field.
    pub checksum_offset: usize,
    /// File offset of the certificate table data directory entry
    /// (`VirtualAddress` then `Size`), or `None` when the optional header
    /// has fewer than five data directories.
    pub certificate_entry_offset: Option<usize>,
    /// `SizeOfHeaders`.
    pub size_of_headers: usize,
    /// `(PointerToRawData, SizeOfRawData)` of every section, in table order.
    pub sections: Vec<(u32, u32)>,
}

/// Reads the offsets that Authenticode hashing needs from a PE32+ image.
///
/// # Errors
///
/// [`UkiError`] for a file that is not PE32+ or whose headers are cut off.
pub(crate) fn pe_layout(image: &[u8]) -> Result<PeLayout, UkiError> {
    let headers = parse_headers(image)?;
    let optional_size = headers.section_table_offset - headers.optional_offset;
    let directories = read_u32(image, headers.optional_offset + OPT_NUMBER_OF_RVA_AND_SIZES, "optional header")? as usize;
    let entry = OPT_DATA_DIRECTORIES + CERTIFICATE_TABLE_INDEX * DATA_DIRECTORY_LEN;
    let has_entry = directories > CERTIFICATE_TABLE_INDEX && entry + DATA_DIRECTORY_LEN <= optional_size;
    Ok(PeLayout {
        checksum_offset: headers.optional_offset + OPT_CHECKSUM,
        certificate_entry_offset: has_entry.then_some(headers.optional_offset + entry),
        size_of_headers: headers.size_of_headers as usize,
        sections: headers.sections.iter().map(|s| (s.pointer_to_raw_data, s.size_of_raw_data)).collect(),
    })
}

/// Recomputes and stores the PE `CheckSum` of `image`, whose headers
/// [`pe_layout`] read.
pub(crate) fn update_checksum(image: &mut [u8], layout: &PeLayout) {
    let checksum = pe_checksum(image, layout.checksum_offset);
    put_u32(image, layout.checksum_offset, checksum);
}

/// Computes the PE image checksum: the 16-bit one's-complement style sum of
/// all little-endian 16-bit words with carries folded back, skipping the
/// 4-byte `CheckSum` field at `checksum_offset`, plus the file length.
fn pe_checksum(image: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u32 = 0;
    for (index, chunk) in image.chunks(2).enumerate() {
        let offset = index * 2;
        if offset >= checksum_offset && offset < checksum_offset + 4 {
            continue;
        }
        let word = match chunk {
            [low, high] => u16::from_le_bytes([*low, *high]),
            [low] => u16::from(*low),
            _ => 0,
        };
        sum += u32::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    // The checksum field is 32 bits wide, so images of 4 GiB or more wrap, as
    // in every other implementation.
    sum.wrapping_add(image.len() as u32)
}

/// Parses the DOS, COFF and optional headers and the section table.
fn parse_headers(stub: &[u8]) -> Result<PeHeaders, UkiError> {
    if stub.get(..2) != Some(DOS_MAGIC.as_slice()) {
        return Err(UkiError::BadMagic {
            expected: "DOS header magic \"MZ\"",
        });
    }
    let pe_offset = read_u32(stub, DOS_E_LFANEW_OFFSET, "DOS header")? as usize;
    let signature = slice(stub, pe_offset, PE_SIGNATURE.len(), "PE signature")?;
    if signature != PE_SIGNATURE {
        return Err(UkiError::BadMagic {
            expected: "PE signature \"PE\\0\\0\"",
        });
    }

    let coff_offset = pe_offset + PE_SIGNATURE.len();
    slice(stub, coff_offset, COFF_HEADER_LEN, "COFF header")?;
    let number_of_sections = usize::from(read_u16(
        stub,
        coff_offset + COFF_NUMBER_OF_SECTIONS,
        "COFF header",
    )?);
    let optional_size = usize::from(read_u16(
        stub,
        coff_offset + COFF_SIZE_OF_OPTIONAL_HEADER,
        "COFF header",
    )?);

    let optional_offset = coff_offset + COFF_HEADER_LEN;
    let magic = read_u16(stub, optional_offset + OPT_MAGIC, "optional header")?;
    if magic != PE32_PLUS_MAGIC {
        let hint = if magic == PE32_MAGIC {
            " but PE32; use the 64-bit stub linuxx64.efi.stub"
        } else {
            ""
        };
        return Err(UkiError::NotPe32Plus { magic, hint });
    }
    let needed = OPT_DATA_DIRECTORIES;
    if optional_size < needed {
        return Err(UkiError::OptionalHeaderTooSmall {
            size: optional_size,
            needed,
        });
    }
    slice(stub, optional_offset, optional_size, "optional header")?;

    let section_alignment = read_u32(
        stub,
        optional_offset + OPT_SECTION_ALIGNMENT,
        "optional header",
    )?;
    let file_alignment = read_u32(
        stub,
        optional_offset + OPT_FILE_ALIGNMENT,
        "optional header",
    )?;
    for (field, value) in [
        ("SectionAlignment", section_alignment),
        ("FileAlignment", file_alignment),
    ] {
        if !value.is_power_of_two() {
            return Err(UkiError::InvalidAlignment { field, value });
        }
    }
    let section_table_offset = optional_offset + optional_size;
    let sections = (0..number_of_sections)
        .map(|index| read_section(stub, section_table_offset + index * SECTION_HEADER_LEN))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(PeHeaders {
        coff_offset,
        optional_offset,
        section_table_offset,
        section_alignment,
        file_alignment,
        size_of_image: read_u32(stub, optional_offset + OPT_SIZE_OF_IMAGE, "optional header")?,
        size_of_headers: read_u32(
            stub,
            optional_offset + OPT_SIZE_OF_HEADERS,
            "optional header",
        )?,
        size_of_code: read_u32(stub, optional_offset + OPT_SIZE_OF_CODE, "optional header")?,
        size_of_initialized_data: read_u32(
            stub,
            optional_offset + OPT_SIZE_OF_INITIALIZED_DATA,
            "optional header",
        )?,
        sections,
    })
}

/// Returns the stub without the data after its headers and last section,
/// with the COFF symbol table fields cleared when that data held it.
fn strip_trailing_data(stub: &[u8], headers: &PeHeaders) -> Vec<u8> {
    let sections_end = headers
        .sections
        .iter()
        .map(|s| s.pointer_to_raw_data as usize + s.size_of_raw_data as usize)
        .fold(headers.size_of_headers as usize, usize::max);
    if stub.len() <= sections_end {
        return stub.to_vec();
    }
    tracing::debug!(bytes = stub.len() - sections_end, offset = sections_end, "UKI: dropping the stub's data after its last section");
    let mut kept = stub[..sections_end].to_vec();
    let symbols = headers.coff_offset + COFF_POINTER_TO_SYMBOL_TABLE;
    if read_u32(&kept, symbols, "COFF header").is_ok_and(|offset| offset as usize >= sections_end) {
        put_u32(&mut kept, symbols, 0);
        put_u32(&mut kept, headers.coff_offset + COFF_NUMBER_OF_SYMBOLS, 0);
    }
    kept
}

/// Rejects a stub whose certificate table data directory is not empty.
fn check_unsigned(
    stub: &[u8],
    optional_offset: usize,
    optional_size: usize,
) -> Result<(), UkiError> {
    let directories = read_u32(
        stub,
        optional_offset + OPT_NUMBER_OF_RVA_AND_SIZES,
        "optional header",
    )? as usize;
    let entry = OPT_DATA_DIRECTORIES + CERTIFICATE_TABLE_INDEX * DATA_DIRECTORY_LEN;
    if directories <= CERTIFICATE_TABLE_INDEX || entry + DATA_DIRECTORY_LEN > optional_size {
        return Ok(());
    }
    let size = read_u32(stub, optional_offset + entry + 4, "optional header")?;
    if size != 0 {
        return Err(UkiError::SignedStub { size });
    }
    Ok(())
}

fn read_section(stub: &[u8], offset: usize) -> Result<StubSection, UkiError> {
    let header = slice(stub, offset, SECTION_HEADER_LEN, "section header")?;
    let mut name = [0u8; SECTION_NAME_MAX];
    name.copy_from_slice(&header[..SECTION_NAME_MAX]);
    Ok(StubSection {
        name,
        virtual_size: read_u32(stub, offset + SECTION_VIRTUAL_SIZE, "section header")?,
        virtual_address: read_u32(stub, offset + SECTION_VIRTUAL_ADDRESS, "section header")?,
        size_of_raw_data: read_u32(stub, offset + SECTION_SIZE_OF_RAW_DATA, "section header")?,
        pointer_to_raw_data: read_u32(
            stub,
            offset + SECTION_POINTER_TO_RAW_DATA,
            "section header",
        )?,
    })
}

/// Checks names, emptiness, duplicates and that `.linux` comes last.
fn validate_sections(headers: &PeHeaders, sections: &[(&str, &[u8])]) -> Result<(), UkiError> {
    let mut seen: Vec<[u8; SECTION_NAME_MAX]> = headers.sections.iter().map(|s| s.name).collect();
    for (index, (name, data)) in sections.iter().enumerate() {
        let valid = !name.is_empty()
            && name.len() <= SECTION_NAME_MAX
            && name.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(UkiError::InvalidSectionName {
                name: (*name).to_owned(),
            });
        }
        let padded = padded_name(name);
        if seen.contains(&padded) {
            return Err(UkiError::DuplicateSection {
                name: (*name).to_owned(),
            });
        }
        seen.push(padded);
        if data.is_empty() {
            return Err(UkiError::EmptySection {
                name: (*name).to_owned(),
            });
        }
        if *name == LINUX_SECTION {
            if let Some((next, _)) = sections.get(index + 1) {
                return Err(UkiError::LinuxNotLast {
                    next: (*next).to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that the extended section table fits in the header area and that
/// the bytes it will overwrite are zero.
fn check_header_room(stub: &[u8], headers: &PeHeaders, count: usize) -> Result<(), UkiError> {
    let old_end = headers.section_table_offset + headers.sections.len() * SECTION_HEADER_LEN;
    let needed = old_end + count * SECTION_HEADER_LEN;
    let first_data = headers
        .sections
        .iter()
        .filter(|s| s.size_of_raw_data != 0)
        .map(|s| s.pointer_to_raw_data as usize)
        .min()
        .unwrap_or(usize::MAX);
    let available = (headers.size_of_headers as usize).min(first_data);
    if needed > available {
        return Err(UkiError::NoHeaderRoom {
            count,
            needed,
            available,
        });
    }

    let area = slice(stub, old_end, needed - old_end, "header area")?;
    if let Some(position) = area.iter().position(|&b| b != 0) {
        return Err(UkiError::HeaderAreaInUse {
            offset: old_end + position,
        });
    }
    Ok(())
}

/// Computes addresses, offsets and sizes of the new sections.
fn place_sections<'a>(
    stub_len: usize,
    headers: &PeHeaders,
    sections: &[(&'a str, &'a [u8])],
) -> Result<Vec<PlacedSection<'a>>, UkiError> {
    let mut mapped_end = u64::from(headers.size_of_image);
    for section in &headers.sections {
        let size = section.virtual_size.max(section.size_of_raw_data);
        mapped_end = mapped_end.max(u64::from(section.virtual_address) + u64::from(size));
    }
    let mut next_address = align_up(mapped_end, headers.section_alignment);
    let mut next_offset = align_up(stub_len as u64, headers.file_alignment);

    let mut placed = Vec::with_capacity(sections.len());
    for &(name, data) in sections {
        let too_large = |field| UkiError::TooLarge {
            name: name.to_owned(),
            field,
        };
        let data_len = data.len() as u64;
        let mut virtual_size = data_len;
        let mut characteristics = IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ;
        if name == LINUX_SECTION {
            virtual_size = virtual_size.max(pe_size_of_image(data).map_or(0, u64::from));
            characteristics = IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_READ;
        }
        let raw_size = align_up(data_len, headers.file_alignment);

        let section = PlacedSection {
            name,
            data,
            virtual_size: u32::try_from(virtual_size).map_err(|_| too_large("VirtualSize"))?,
            virtual_address: u32::try_from(next_address)
                .map_err(|_| too_large("VirtualAddress"))?,
            size_of_raw_data: u32::try_from(raw_size).map_err(|_| too_large("SizeOfRawData"))?,
            pointer_to_raw_data: u32::try_from(next_offset)
                .map_err(|_| too_large("PointerToRawData"))?,
            characteristics,
        };
        next_address = align_up(next_address + virtual_size, headers.section_alignment);
        next_offset += raw_size;
        if next_address > u64::from(u32::MAX) {
            return Err(too_large("SizeOfImage"));
        }
        placed.push(section);
    }
    Ok(placed)
}

/// Writes the new section headers into the table and appends the section data.
fn write_sections(
    image: &mut Vec<u8>,
    headers: &PeHeaders,
    placed: &[PlacedSection<'_>],
) -> Result<(), UkiError> {
    let mut header_offset =
        headers.section_table_offset + headers.sections.len() * SECTION_HEADER_LEN;
    for section in placed {
        let mut header = [0u8; SECTION_HEADER_LEN];
        header[..SECTION_NAME_MAX].copy_from_slice(&padded_name(section.name));
        header[SECTION_VIRTUAL_SIZE..][..4].copy_from_slice(&section.virtual_size.to_le_bytes());
        header[SECTION_VIRTUAL_ADDRESS..][..4]
            .copy_from_slice(&section.virtual_address.to_le_bytes());
        header[SECTION_SIZE_OF_RAW_DATA..][..4]
            .copy_from_slice(&section.size_of_raw_data.to_le_bytes());
        header[SECTION_POINTER_TO_RAW_DATA..][..4]
            .copy_from_slice(&section.pointer_to_raw_data.to_le_bytes());
        header[SECTION_CHARACTERISTICS..][..4]
            .copy_from_slice(&section.characteristics.to_le_bytes());
        image[header_offset..header_offset + SECTION_HEADER_LEN].copy_from_slice(&header);
        header_offset += SECTION_HEADER_LEN;

        image.resize(section.pointer_to_raw_data as usize, 0);
        image.extend_from_slice(section.data);
        image.resize(
            section.pointer_to_raw_data as usize + section.size_of_raw_data as usize,
            0,
        );
    }

    let count =
        u16::try_from(headers.sections.len() + placed.len()).map_err(|_| UkiError::TooLarge {
            name: placed
                .last()
                .map_or_else(String::new, |s| s.name.to_owned()),
            field: "NumberOfSections",
        })?;
    image[headers.coff_offset + COFF_NUMBER_OF_SECTIONS..][..2]
        .copy_from_slice(&count.to_le_bytes());
    Ok(())
}

/// Updates `SizeOfImage`, `SizeOfCode` and `SizeOfInitializedData`.
fn update_optional_header(
    image: &mut [u8],
    headers: &PeHeaders,
    placed: &[PlacedSection<'_>],
) -> Result<(), UkiError> {
    let mut size_of_image = u64::from(headers.size_of_image);
    let mut size_of_code = u64::from(headers.size_of_code);
    let mut size_of_initialized_data = u64::from(headers.size_of_initialized_data);
    for section in placed {
        let end = u64::from(section.virtual_address) + u64::from(section.virtual_size);
        size_of_image = size_of_image.max(align_up(end, headers.section_alignment));
        if section.characteristics & IMAGE_SCN_CNT_CODE != 0 {
            size_of_code += u64::from(section.size_of_raw_data);
        } else {
            size_of_initialized_data += u64::from(section.size_of_raw_data);
        }
    }

    let name = placed
        .last()
        .map_or_else(String::new, |s| s.name.to_owned());
    let fields = [
        (OPT_SIZE_OF_IMAGE, size_of_image, "SizeOfImage"),
        (OPT_SIZE_OF_CODE, size_of_code, "SizeOfCode"),
        (
            OPT_SIZE_OF_INITIALIZED_DATA,
            size_of_initialized_data,
            "SizeOfInitializedData",
        ),
    ];
    for (offset, value, field) in fields {
        let value = u32::try_from(value).map_err(|_| UkiError::TooLarge {
            name: name.clone(),
            field,
        })?;
        put_u32(image, headers.optional_offset + offset, value);
    }
    Ok(())
}

/// Returns `SizeOfImage` of a PE32 or PE32+ image, or `None` if `data` is not one.
fn pe_size_of_image(data: &[u8]) -> Option<u32> {
    if data.get(..2)? != DOS_MAGIC.as_slice() {
        return None;
    }
    let pe_offset = read_u32(data, DOS_E_LFANEW_OFFSET, "").ok()? as usize;
    if data.get(pe_offset..pe_offset.checked_add(4)?)? != PE_SIGNATURE.as_slice() {
        return None;
    }
    // SizeOfImage has the same offset in PE32 and PE32+ optional headers.
    let optional_offset = pe_offset + PE_SIGNATURE.len() + COFF_HEADER_LEN;
    read_u32(data, optional_offset + OPT_SIZE_OF_IMAGE, "").ok()
}

fn padded_name(name: &str) -> [u8; SECTION_NAME_MAX] {
    let mut padded = [0u8; SECTION_NAME_MAX];
    let len = name.len().min(SECTION_NAME_MAX);
    padded[..len].copy_from_slice(&name.as_bytes()[..len]);
    padded
}

/// Rounds `value` up to a multiple of `alignment`, a power of two.
fn align_up(value: u64, alignment: u32) -> u64 {
    let mask = u64::from(alignment) - 1;
    (value + mask) & !mask
}

fn slice<'a>(
    data: &'a [u8],
    offset: usize,
    needed: usize,
    structure: &'static str,
) -> Result<&'a [u8], UkiError> {
    offset
        .checked_add(needed)
        .and_then(|end| data.get(offset..end))
        .ok_or(UkiError::Truncated {
            structure,
            offset,
            needed,
            len: data.len(),
        })
}

fn read_u16(data: &[u8], offset: usize, structure: &'static str) -> Result<u16, UkiError> {
    let bytes = slice(data, offset, 2, structure)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn read_u32(data: &[u8], offset: usize, structure: &'static str) -> Result<u32, UkiError> {
    let bytes = slice(data, offset, 4, structure)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Writes a little-endian `u32`; callers pass offsets inside parsed headers.
fn put_u32(image: &mut [u8], offset: usize, value: u32) {
    image[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

    #[test]
    fn checksum_matches_linker_value() {
        let Ok(stub) = std::fs::read(HOST_STUB) else {
            eprintln!("skipped: {HOST_STUB} not found (install systemd-boot-efi)");
            return;
        };
        let headers = parse_headers(&stub).expect("host stub parses");
        let offset = headers.optional_offset + OPT_CHECKSUM;
        let stored = read_u32(&stub, offset, "").expect("checksum field");
        assert_ne!(stored, 0, "host stub has no checksum to compare with");
        assert_eq!(pe_checksum(&stub, offset), stored);
    }

    #[test]
    fn checksum_of_odd_length_input() {
        // Words 0x0201 and 0x0003 (odd byte padded), no checksum field inside, plus length 3.
        assert_eq!(pe_checksum(&[1, 2, 3], 100), 0x0201 + 0x0003 + 3);
    }

    #[test]
    fn align_up_rounds_to_power_of_two() {
        assert_eq!(align_up(0, 512), 0);
        assert_eq!(align_up(1, 512), 512);
        assert_eq!(align_up(512, 512), 512);
        assert_eq!(align_up(0x19134, 0x1000), 0x1a000);
    }
}
