//! gzip JSON Lines objects, compressed as their lines come.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// Uncompressed bytes of stored events' lines compressed into one gzip member: 128 KiB
/// makes objects 3 % larger than one member would, 64 KiB 6 % (`profile_batches`).
pub(crate) const MEMBER_BYTES: usize = 128 * 1024;

/// The same for dead letters: they are few, and seldom read, so their object may be
/// larger for an open batch to hold less.
pub(crate) const DEAD_LETTER_MEMBER_BYTES: usize = 32 * 1024;

/// A gzip JSON Lines object, compressed as its lines come: a gzip member (RFC 1952 §2.2:
/// a gzip file is a series of members, and `gzip -d`, Python's `gzip`, Hadoop's codec
/// under Athena, DuckDB and flate2's `MultiGzDecoder` read them all) for each
/// `member_bytes` of lines. An open batch holds its lines compressed, not as text: an
/// instance that reads 64 partitions holds 64 open batches. Members end at the first
/// line end past `member_bytes`, so the same lines give the same bytes.
#[derive(Debug)]
pub(crate) struct GzipLines {
    /// Uncompressed bytes of lines in one member.
    member_bytes: usize,
    /// The members so far.
    compressed: Vec<u8>,
    /// Lines not yet in a member.
    pub(crate) tail: Vec<u8>,
    /// Uncompressed bytes in `compressed`.
    members_raw: usize,
}

impl GzipLines {
    pub(crate) fn new(member_bytes: usize) -> GzipLines {
        GzipLines { member_bytes, compressed: Vec::new(), tail: Vec::new(), members_raw: 0 }
    }

    /// Where the next line is written; [`GzipLines::end_line`] ends it.
    pub(crate) fn line(&mut self) -> &mut Vec<u8> {
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(self.member_bytes + self.member_bytes / 8);
        }
        &mut self.tail
    }

    pub(crate) fn end_line(&mut self) {
        self.tail.push(b'\n');
        if self.tail.len() >= self.member_bytes {
            self.compress_tail();
        }
    }

    /// Uncompressed bytes of all its lines.
    pub(crate) fn raw_len(&self) -> usize {
        self.members_raw + self.tail.len()
    }

    fn compress_tail(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        // Level 3: most of level 6's ratio on JSON at about twice the speed. flate2 writes
        // no timestamp in the header, so equal input gives equal output.
        let mut encoder = GzEncoder::new(std::mem::take(&mut self.compressed), Compression::new(3));
        match encoder.write_all(&self.tail).and_then(|()| encoder.finish()) {
            Ok(compressed) => self.compressed = compressed,
            Err(_) => unreachable!("writing to a Vec cannot fail"),
        }
        self.members_raw += self.tail.len();
        self.tail.clear();
    }

    /// The object: every member.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.compress_tail();
        self.compressed
    }
}
