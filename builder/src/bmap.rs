//! Block map (bmap) files: which blocks of a disk image hold data, with a
//! SHA-256 per range, in the XML format that `bmaptool` (Debian package
//! `bmap-tools`) reads.
//!
//! # Format
//!
//! bmap format version 2.0, as bmap-tools 3.x writes and reads it:
//!
//! ```text
//! <?xml version="1.0" ?>
//! <bmap version="2.0">
//!     <ImageSize> bytes </ImageSize>
//!     <BlockSize> bytes </BlockSize>
//!     <BlocksCount> ceil(ImageSize / BlockSize) </BlocksCount>
//!     <MappedBlocksCount> blocks in all ranges </MappedBlocksCount>
//!     <ChecksumType> sha256 </ChecksumType>
//!     <BmapFileChecksum> 64 hex digits </BmapFileChecksum>
//!     <BlockMap>
//!         <Range chksum="64 hex digits"> first-last </Range>
//!     </BlockMap>
//! </bmap>
//! ```
//!
//! A range names blocks `first..=last` (or one block, `first`), in ascending
//! order without overlap. Its `chksum` covers the image bytes of those blocks;
//! the last block of the image may be partial, and then only its bytes up to
//! the image size count. `BmapFileChecksum` is the SHA-256 of the whole file
//! with its own 64 digits replaced by ASCII `0`; a reader finds the digits as
//! the first occurrence of the stored value in the file, which is why this
//! element comes before the block map. Blocks outside every range are
//! "unmapped": their content does not matter and a flasher skips them.
//!
//! [`Bmap::to_xml`] writes this layout with fixed whitespace, so the same
//! ranges give the same bytes. [`Bmap::parse`] accepts any whitespace and
//! comments, and versions 1.4 and 2.x (identical formats), with SHA-256
//! checksums only.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Block size of the bmap files `applbuild image` writes, the file system
/// and verity block size of the image.
pub const BLOCK_SIZE: u64 = 4096;

/// Length of a SHA-256 digest in hexadecimal.
const SHA256_HEX_LEN: usize = 64;

/// Read size when hashing a range.
const READ_CHUNK: usize = 1 << 20;

/// Errors from creating, reading or parsing a bmap file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BmapError {
    /// The bmap file is not valid bmap XML, or its values disagree.
    #[error("{path}: invalid bmap file: {reason}")]
    Invalid {
        /// The bmap file.
        path: PathBuf,
        /// Description of the problem, with the value found.
        reason: String,
    },

    /// The stored file checksum does not match the file.
    #[error("{path}: BmapFileChecksum is {stored}, but the file hashes to {computed}; the bmap file was changed or damaged")]
    FileChecksum {
        /// The bmap file.
        path: PathBuf,
        /// The checksum stored in the file.
        stored: String,
        /// The checksum computed over the file.
        computed: String,
    },

    /// A range lies past the end of the image.
    #[error("mapped byte range {start}..{end} lies past the end of the {image_size}-byte image")]
    OutOfImage {
        /// Start of the range in bytes.
        start: u64,
        /// End of the range in bytes (exclusive).
        end: u64,
        /// Image size in bytes.
        image_size: u64,
    },

    /// Reading the image or the bmap file failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// Action that failed.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl BmapError {
    /// 2 for a bad bmap file (the user gave the wrong file), 1 for I/O errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            BmapError::Io { .. } => 1,
            _ => 2,
        }
    }
}

/// A range of mapped blocks and the SHA-256 of their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRange {
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
    /// SHA-256 of the image bytes of these blocks.
    pub sha256: [u8; 32],
}

/// A parsed or computed block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    /// Image size in bytes.
    pub image_size: u64,
    /// Block size in bytes.
    pub block_size: u64,
    /// Mapped ranges in ascending order, not overlapping.
    pub ranges: Vec<BlockRange>,
}

impl Bmap {
    /// Computes the block map of `image` from the byte ranges that hold data.
    ///
    /// Each byte range is widened to whole [`BLOCK_SIZE`] blocks; ranges that
    /// then touch or overlap are joined, and each joined range is hashed from
    /// the image.
    ///
    /// # Errors
    ///
    /// [`BmapError::OutOfImage`] for a range past the image end, and
    /// [`BmapError::Io`] when the image cannot be read.
    pub fn create(image: &Path, mapped: &[Range<u64>]) -> Result<Bmap, BmapError> {
        let io = |action, source| BmapError::Io { action, path: image.to_owned(), source };
        let file = File::open(image).map_err(|source| io("open", source))?;
        let image_size = file.metadata().map_err(|source| io("inspect", source))?.len();
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        for range in mapped.iter().filter(|range| range.start < range.end) {
            if range.end > image_size {
                return Err(BmapError::OutOfImage { start: range.start, end: range.end, image_size });
            }
            blocks.push((range.start / BLOCK_SIZE, (range.end - 1) / BLOCK_SIZE));
        }
        blocks.sort_unstable();

        let mut joined: Vec<(u64, u64)> = Vec::new();
        for (first, last) in blocks {
            match joined.last_mut() {
                Some(previous) if first <= previous.1 + 1 => previous.1 = previous.1.max(last),
                _ => joined.push((first, last)),
            }
        }
        let mut bmap = Bmap { image_size, block_size: BLOCK_SIZE, ranges: Vec::with_capacity(joined.len()) };
        for (first, last) in joined {
            let bytes = bmap.byte_range(first, last);
            let sha256 = sha256_range(&file, bytes, &mut vec![0u8; READ_CHUNK]).map_err(|source| io("read", source))?;
            bmap.ranges.push(BlockRange { first, last, sha256 });
        }
        Ok(bmap)
    }

    /// Returns the number of blocks of the image, the last one maybe partial.
    pub fn blocks_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size)
    }

    /// Returns the number of mapped blocks.
    pub fn mapped_blocks(&self) -> u64 {
        self.ranges.iter().map(|range| range.last - range.first + 1).sum()
    }

    /// Returns the number of mapped bytes, counting a partial last block by its bytes.
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges.iter().map(|range| self.bytes_of(range)).map(|bytes| bytes.end - bytes.start).sum()
    }

    /// Returns the image bytes of a range: its blocks, cut at the image end.
    pub fn bytes_of(&self, range: &BlockRange) -> Range<u64> {
        self.byte_range(range.first, range.last)
    }

    fn byte_range(&self, first: u64, last: u64) -> Range<u64> {
        let start = first * self.block_size;
        let end = ((last + 1) * self.block_size).min(self.image_size);
        start..end
    }

    /// Writes the block map as bmap 2.0 XML, byte-identical for equal maps.
    pub fn to_xml(&self) -> String {
        let zeros = "0".repeat(SHA256_HEX_LEN);
        let text = self.xml_with_checksum(&zeros);
        let checksum = hex::encode(Sha256::digest(text.as_bytes()));
        self.xml_with_checksum(&checksum)
    }

    fn xml_with_checksum(&self, checksum: &str) -> String {
        let mut xml = String::new();
        xml.push_str("<?xml version=\"1.0\" ?>\n");
        xml.push_str("<!-- Block map of a disk image written by applbuild: only the ranges in\n");
        xml.push_str("     BlockMap hold data; see docs/flash.md. -->\n");
        xml.push_str("<bmap version=\"2.0\">\n");
        for (name, value) in [
            ("ImageSize", self.image_size.to_string()),
            ("BlockSize", self.block_size.to_string()),
            ("BlocksCount", self.blocks_count().to_string()),
            ("MappedBlocksCount", self.mapped_blocks().to_string()),
            ("ChecksumType", "sha256".to_owned()),
            ("BmapFileChecksum", checksum.to_owned()),
        ] {
            xml.push_str(&format!("    <{name}> {value} </{name}>\n"));
        }
        xml.push_str("    <BlockMap>\n");
        for range in &self.ranges {
            let blocks = if range.first == range.last { range.first.to_string() } else { format!("{}-{}", range.first, range.last) };
            xml.push_str(&format!("        <Range chksum=\"{}\"> {blocks} </Range>\n", hex::encode(range.sha256)));
        }
        xml.push_str("    </BlockMap>\n");
        xml.push_str("</bmap>\n");
        xml
    }

    /// Reads and checks the bmap file at `path`.
    ///
    /// # Errors
    ///
    /// [`BmapError::Io`] when the file cannot be read, else as [`Bmap::parse`].
    pub fn read(path: &Path) -> Result<Bmap, BmapError> {
        let text = std::fs::read_to_string(path).map_err(|source| BmapError::Io { action: "read", path: path.to_owned(), source })?;
        Bmap::parse(&text, path)
    }

    /// Parses bmap XML and checks it: version 1.4 or 2.x, SHA-256 checksums,
    /// the file checksum, counts that agree with the image size, and ranges
    /// in ascending order inside the image, each with a checksum.
    ///
    /// # Errors
    ///
    /// [`BmapError::Invalid`] naming the element and value at fault, or
    /// [`BmapError::FileChecksum`].
    pub fn parse(text: &str, path: &Path) -> Result<Bmap, BmapError> {
        let invalid = |reason: String| BmapError::Invalid { path: path.to_owned(), reason };
        let document = roxmltree::Document::parse(text).map_err(|err| invalid(format!("not XML: {err}")))?;
        let root = document.root_element();
        if root.tag_name().name() != "bmap" {
            return Err(invalid(format!("the root element is <{}>, expected <bmap>", root.tag_name().name())));
        }
        let version = root.attribute("version").unwrap_or("");
        let major = version.split('.').next().unwrap_or("");
        if major != "2" && version != "1.4" {
            return Err(invalid(format!("bmap version {version:?} is not supported; expected 2.0 (bmaptool 3.x)")));
        }

        let element_text = |name: &str| -> Result<&str, BmapError> {
            let node = root.children().find(|node| node.has_tag_name(name)).ok_or_else(|| invalid(format!("element <{name}> is missing")))?;
            Ok(node.text().unwrap_or("").trim())
        };
        let number = |name: &str| -> Result<u64, BmapError> {
            let value = element_text(name)?;
            value.parse().map_err(|_| invalid(format!("<{name}> is {value:?}, expected a whole number")))
        };
        let checksum_type = element_text("ChecksumType")?;
        if checksum_type != "sha256" {
            return Err(invalid(format!("<ChecksumType> is {checksum_type:?}; only sha256 is supported (bmaptool create uses it by default)")));
        }
        let stored = element_text("BmapFileChecksum")?;
        check_file_checksum(text, stored, path)?;

        let image_size = number("ImageSize")?;
        let block_size = number("BlockSize")?;
        if block_size < 512 || !block_size.is_power_of_two() {
            return Err(invalid(format!("<BlockSize> is {block_size}, expected a power of two of at least 512")));
        }
        let mut bmap = Bmap { image_size, block_size, ranges: Vec::new() };
        let blocks_count = number("BlocksCount")?;
        if blocks_count != bmap.blocks_count() {
            return Err(invalid(format!("<BlocksCount> is {blocks_count}, but {image_size} bytes are {} blocks of {block_size} bytes", bmap.blocks_count())));
        }

        let block_map = root.children().find(|node| node.has_tag_name("BlockMap")).ok_or_else(|| invalid("element <BlockMap> is missing".to_owned()))?;
        for node in block_map.children().filter(|node| node.has_tag_name("Range")) {
            let range = parse_range(node.text().unwrap_or(""), node.attribute("chksum")).map_err(invalid)?;
            if range.last >= blocks_count {
                return Err(invalid(format!("range {}-{} ends past the last block {}", range.first, range.last, blocks_count.saturating_sub(1))));
            }
            if let Some(previous) = bmap.ranges.last() {
                if range.first <= previous.last {
                    return Err(invalid(format!("range {}-{} starts inside or before the previous range {}-{}; ranges must ascend", range.first, range.last, previous.first, previous.last)));
                }
            }
            bmap.ranges.push(range);
        }
        let mapped = number("MappedBlocksCount")?;
        if mapped != bmap.mapped_blocks() {
            return Err(invalid(format!("<MappedBlocksCount> is {mapped}, but the ranges hold {} blocks", bmap.mapped_blocks())));
        }
        Ok(bmap)
    }
}

/// Checks `BmapFileChecksum` the way bmaptool does: the first occurrence of
/// the stored digits in the file is replaced by zeros before hashing.
fn check_file_checksum(text: &str, stored: &str, path: &Path) -> Result<(), BmapError> {
    let valid_hex = stored.len() == SHA256_HEX_LEN && stored.bytes().all(|b| b.is_ascii_hexdigit());
    let position = text.find(stored).filter(|_| valid_hex).ok_or_else(|| BmapError::Invalid {
        path: path.to_owned(),
        reason: format!("<BmapFileChecksum> is {stored:?}, expected {SHA256_HEX_LEN} hex digits"),
    })?;
    let mut zeroed = text.as_bytes().to_vec();
    zeroed[position..position + SHA256_HEX_LEN].fill(b'0');
    let computed = hex::encode(Sha256::digest(&zeroed));
    if !computed.eq_ignore_ascii_case(stored) {
        return Err(BmapError::FileChecksum { path: path.to_owned(), stored: stored.to_owned(), computed });
    }
    Ok(())
}

/// Parses the text `first-last` or `first` of a `<Range>` and its `chksum`.
fn parse_range(text: &str, checksum: Option<&str>) -> Result<BlockRange, String> {
    let text = text.trim();
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (first.trim(), last.trim()),
        None => (text, text),
    };
    let bad_range = || format!("<Range> {text:?} is not FIRST-LAST or FIRST (block numbers)");
    let first: u64 = first.parse().map_err(|_| bad_range())?;
    let last: u64 = last.parse().map_err(|_| bad_range())?;
    if first > last {
        return Err(format!("<Range> {text:?} ends before it starts"));
    }
    let checksum = checksum.ok_or_else(|| format!("<Range> {text:?} has no chksum attribute; flash needs one per range to verify the write (make the bmap with bmaptool create)"))?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(checksum, &mut sha256).map_err(|_| format!("<Range> {text:?} has chksum {checksum:?}, expected {SHA256_HEX_LEN} hex digits"))?;
    Ok(BlockRange { first, last, sha256 })
}

/// Returns the SHA-256 of the bytes `range` of `file`, read in chunks the
/// size of `buffer`.
///
/// # Errors
///
/// The read error, or `UnexpectedEof` when the file ends inside the range.
pub fn sha256_range(file: &File, range: Range<u64>, buffer: &mut [u8]) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut offset = range.start;
    while offset < range.end {
        let len = (range.end - offset).min(buffer.len() as u64) as usize;
        file.read_exact_at(&mut buffer[..len], offset)?;
        hasher.update(&buffer[..len]);
        offset += len as u64;
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image_with(bytes: &[(u64, &[u8])], size: u64) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.as_file().set_len(size).expect("set length");
        for (offset, data) in bytes {
            file.as_file().write_all_at(data, *offset).expect("write");
        }
        file.flush().expect("flush");
        file
    }

    #[test]
    fn create_widens_to_blocks_and_joins_neighbours() {
        let image = image_with(&[(0, b"head"), (3 * BLOCK_SIZE + 5, b"x")], 10 * BLOCK_SIZE);
        let bmap = Bmap::create(image.path(), &[0..512, 512..4097, 3 * BLOCK_SIZE + 5..3 * BLOCK_SIZE + 6, 9 * BLOCK_SIZE..10 * BLOCK_SIZE]).expect("create");
        let blocks: Vec<(u64, u64)> = bmap.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(blocks, [(0, 1), (3, 3), (9, 9)]);
        assert_eq!(bmap.mapped_blocks(), 4);
        let mut expected = vec![0u8; 2 * BLOCK_SIZE as usize];
        expected[..4].copy_from_slice(b"head");
        assert_eq!(bmap.ranges[0].sha256, <[u8; 32]>::from(Sha256::digest(&expected)));
    }

    #[test]
    fn partial_last_block_hashes_only_image_bytes() {
        let size = 2 * BLOCK_SIZE + 512;
        let image = image_with(&[(size - 1, b"z")], size);
        let bmap = Bmap::create(image.path(), std::slice::from_ref(&(size - 512..size))).expect("create");
        assert_eq!(bmap.blocks_count(), 3);
        assert_eq!(bmap.mapped_bytes(), 512);
        let mut expected = vec![0u8; 512];
        expected[511] = b'z';
        assert_eq!(bmap.ranges[0].sha256, <[u8; 32]>::from(Sha256::digest(&expected)));
    }

    #[test]
    fn range_past_the_image_is_rejected() {
        let image = image_with(&[], BLOCK_SIZE);
        let error = Bmap::create(image.path(), std::slice::from_ref(&(0..BLOCK_SIZE + 1))).expect_err("past the end");
        assert!(matches!(error, BmapError::OutOfImage { .. }), "{error}");
    }

    #[test]
    fn xml_round_trips_and_is_stable() {
        let image = image_with(&[(0, b"a"), (5 * BLOCK_SIZE, b"b")], 8 * BLOCK_SIZE);
        let bmap = Bmap::create(image.path(), &[0..BLOCK_SIZE, 5 * BLOCK_SIZE..7 * BLOCK_SIZE]).expect("create");
        let xml = bmap.to_xml();
        assert_eq!(xml, bmap.to_xml());
        assert!(xml.contains("<Range chksum=\""), "{xml}");
        assert!(xml.contains("> 0 </Range>"), "{xml}");
        assert!(xml.contains("> 5-6 </Range>"), "{xml}");
        assert_eq!(Bmap::parse(&xml, Path::new("t.bmap")).expect("parse"), bmap);
    }

    #[test]
    fn parse_accepts_bmaptool_layout() {
        // The layout bmaptool create writes: comments, padding, no XML
        // declaration spacing rules. The checksum is fixed up below.
        let template = "<?xml version=\"1.0\" ?>\n<!-- comment -->\n<bmap version=\"2.0\">\n    <!-- Image size -->\n    <ImageSize> 8192 </ImageSize>\n    <BlockSize> 4096 </BlockSize>\n    <BlocksCount> 2 </BlocksCount>\n    <!-- mapped -->\n    <MappedBlocksCount> 1       </MappedBlocksCount>\n    <ChecksumType> sha256 </ChecksumType>\n    <BmapFileChecksum> ZZZZ </BmapFileChecksum>\n    <BlockMap>\n        <Range chksum=\"ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7\"> 1 </Range>\n    </BlockMap>\n</bmap>\n";
        let zeros = template.replace("ZZZZ", &"0".repeat(64));
        let checksum = hex::encode(Sha256::digest(zeros.as_bytes()));
        let text = template.replace("ZZZZ", &checksum);
        let bmap = Bmap::parse(&text, Path::new("t.bmap")).expect("parse");
        assert_eq!(bmap.ranges.len(), 1);
        assert_eq!((bmap.ranges[0].first, bmap.ranges[0].last), (1, 1));
    }

    #[test]
    fn parse_rejects_damaged_files() {
        let image = image_with(&[(0, b"a")], 4 * BLOCK_SIZE);
        let xml = Bmap::create(image.path(), &[0..BLOCK_SIZE, 2 * BLOCK_SIZE..3 * BLOCK_SIZE]).expect("create").to_xml();
        let path = Path::new("disk.bmap");
        let cases: Vec<(String, &str)> = vec![
            (xml.replace("> 2 </Range>", "> 3 </Range>"), "BmapFileChecksum is"),
            (xml.replace("<bmap version=\"2.0\">", "<bmap version=\"3.0\">"), "bmap version \"3.0\" is not supported"),
            (xml.replace("sha256 <", "sha1 <"), "only sha256 is supported"),
            ("<bmap".to_owned(), "not XML"),
        ];
        for (text, expected) in cases {
            let error = Bmap::parse(&text, path).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
            assert!(error.starts_with("disk.bmap"), "{error:?} does not start with the file name");
        }
    }

    /// Rewrites `xml` with a valid file checksum, so that a test reaches
    /// the checks after it.
    fn resealed(xml: &str) -> String {
        let start = xml.find("<BmapFileChecksum> ").expect("checksum element") + "<BmapFileChecksum> ".len();
        let mut text = xml.to_owned();
        text.replace_range(start..start + 64, &"0".repeat(64));
        let checksum = hex::encode(Sha256::digest(text.as_bytes()));
        text.replace_range(start..start + 64, &checksum);
        text
    }

    #[test]
    fn parse_rejects_inconsistent_maps() {
        let image = image_with(&[(0, b"a")], 4 * BLOCK_SIZE);
        let xml = Bmap::create(image.path(), &[0..BLOCK_SIZE, 2 * BLOCK_SIZE..3 * BLOCK_SIZE]).expect("create").to_xml();
        let cases = [
            (xml.replace("<BlocksCount> 4 <", "<BlocksCount> 5 <"), "<BlocksCount> is 5"),
            (xml.replace("<MappedBlocksCount> 2 <", "<MappedBlocksCount> 3 <"), "<MappedBlocksCount> is 3"),
            (xml.replace("> 2 </Range>", "> 4 </Range>"), "ends past the last block 3"),
            (xml.replace("> 2 </Range>", "> 0 </Range>"), "ranges must ascend"),
            (xml.replace("> 2 </Range>", "> 2-1 </Range>"), "ends before it starts"),
            (xml.replace("> 2 </Range>", "> two </Range>"), "is not FIRST-LAST"),
            (xml.replace("<BlockSize> 4096 <", "<BlockSize> 1000 <"), "<BlockSize> is 1000"),
        ];
        for (text, expected) in cases {
            let error = Bmap::parse(&resealed(&text), Path::new("disk.bmap")).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }
}
