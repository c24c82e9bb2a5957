//! Just enough HPACK (RFC 7541) to mend one header on its way to h2: a mirror of the client's
//! dynamic table (sizes, and which entries are `:authority`), a walk over each header block, and
//! the Huffman code (Appendix B, given by its code lengths: the code is canonical).
//!
//! Only `:authority` values that h2 would refuse are changed; every other byte of the block is
//! kept. A changed value that enters the dynamic table keeps its decoded length, so h2's table
//! and the client's stay the same size entry for entry and every later index still points
//! where the client meant.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// SETTINGS_HEADER_TABLE_SIZE: vaultd's h2 never announces another, so the client's encoder
/// may use up to the protocol's default.
const TABLE_LIMIT: usize = 4096;
/// What a header block may say `:authority` is when the client's own value cannot be kept.
const STAND_IN: &[u8] = b"localhost";

/// The block cannot be read as HPACK (or uses something this mirror does not follow); the
/// caller stops rewriting and leaves the judgement to h2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    name_len: usize,
    size: usize,
    authority: bool,
}

/// The client encoder's dynamic table, as far as sizes and `:authority` go. Comparable, so a
/// test can tell that a mended block leaves the table as the client's own would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Default for Mirror {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max: TABLE_LIMIT,
        }
    }
}

/// The names of RFC 7541's static table, 1-based (entry 1 is `:authority`).
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// A name reference: its length and whether it is `:authority`.
#[derive(Debug, Clone, Copy)]
struct Name {
    len: usize,
    authority: bool,
}

impl Mirror {
    fn name(&self, index: usize) -> Result<Name, Malformed> {
        match index {
            0 => Err(Malformed),
            1..=61 => Ok(Name {
                len: STATIC_NAMES[index - 1].len(),
                authority: index == 1,
            }),
            _ => self
                .entries
                .get(index - 62)
                .map(|e| Name {
                    len: e.name_len,
                    authority: e.authority,
                })
                .ok_or(Malformed),
        }
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            let Some(old) = self.entries.pop_back() else {
                break;
            };
            self.size -= old.size;
        }
    }

    fn insert(&mut self, name_len: usize, value_len: usize, authority: bool) {
        let size = name_len + value_len + 32;
        if size > self.max {
            // An entry larger than the table empties it and is not added (RFC 7541 4.4).
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        self.size += size;
        self.entries.push_front(Entry {
            name_len,
            size,
            authority,
        });
    }

    /// Walk one complete header block, applying its changes to the table. Returns the block
    /// with every `:authority` that h2 would refuse made acceptable, or `None` if nothing needed
    /// to change.
    pub fn rewrite(&mut self, block: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
        let mut at = Reader { buf: block, pos: 0 };
        let mut out: Option<Vec<u8>> = None;
        // Everything before this offset is already in `out`.
        let mut kept = 0;
        while at.pos < block.len() {
            let start = at.pos;
            let first = block[start];
            let replacement = if first & 0x80 != 0 {
                // Indexed field. Static 1 is `:authority` with an empty value, which h2 refuses;
                // a dynamic entry was mended when it was inserted.
                let index = at.int(7)?;
                self.name(index)?;
                (index == 1).then(|| literal(0x00, STAND_IN))
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing: the entry must keep its size.
                let index = at.int(6)?;
                let name = self.literal_name(&mut at, index)?;
                let value_start = at.pos;
                let value = at.string()?.decoded()?;
                self.insert(name.len, value.len(), name.authority);
                if name.authority && !acceptable(&value) {
                    let mended = same_length_stand_in(&value)?;
                    let mut bytes = block[start..value_start].to_vec();
                    bytes.extend_from_slice(&literal_string(&mended));
                    Some(bytes)
                } else {
                    None
                }
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update.
                let max = at.int(5)?;
                if max > TABLE_LIMIT {
                    return Err(Malformed);
                }
                self.max = max;
                self.evict_to(max);
                None
            } else {
                // Literal without indexing (0000) or never indexed (0001): no table change.
                let never = first & 0x10;
                let index = at.int(4)?;
                let name = self.literal_name(&mut at, index)?;
                let value = at.string()?;
                (name.authority && !acceptable(&value.decoded()?)).then(|| literal(never, STAND_IN))
            };
            if let Some(bytes) = replacement {
                let out = out.get_or_insert_with(|| Vec::with_capacity(block.len() + 16));
                out.extend_from_slice(&block[kept..start]);
                out.extend_from_slice(&bytes);
                kept = at.pos;
            }
        }
        Ok(out.map(|mut out| {
            out.extend_from_slice(&block[kept..]);
            out
        }))
    }

    /// The name of a literal field: by index, or (index 0) spelled out.
    fn literal_name(&self, at: &mut Reader<'_>, index: usize) -> Result<Name, Malformed> {
        if index != 0 {
            return self.name(index);
        }
        let name = at.string()?.decoded()?;
        Ok(Name {
            len: name.len(),
            authority: name == b":authority",
        })
    }
}

/// What h2 accepts as `:authority` (the same parse it makes).
fn acceptable(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A stand-in of the same length: unreserved characters kept, the rest `-`. A percent-encoded
/// socket path (`%2Frun%2Fvaultd%2Fvaultd.sock`) becomes `-2Frun-2Fvaultd-2Fvaultd.sock`.
fn same_length_stand_in(value: &[u8]) -> Result<Vec<u8>, Malformed> {
    let mended: Vec<u8> = value
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => b,
            _ => b'-',
        })
        .collect();
    // An empty value has no stand-in of its length (no authority is empty): not followed, so
    // an empty `:authority` that enters the table is refused by h2 as before. Sent without
    // indexing, it is mended like any other.
    if acceptable(&mended) {
        Ok(mended)
    } else {
        Err(Malformed)
    }
}

/// A literal field without indexing (or never indexed), name `:authority` (static 1).
fn literal(never: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(never | 0x01);
    out.extend_from_slice(&literal_string(value));
    out
}

/// A string literal without Huffman coding.
fn literal_string(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    encode_int(&mut out, value.len(), 7, 0x00);
    out.extend_from_slice(value);
    out
}

/// RFC 7541 5.1: an integer with an N-bit prefix, `flags` in the first byte's high bits.
// Each `as u8` is of a value masked or compared to fit in the byte.
#[allow(clippy::cast_possible_truncation)]
fn encode_int(out: &mut Vec<u8>, value: usize, prefix: u32, flags: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

struct Str<'a> {
    huffman: bool,
    bytes: &'a [u8],
}

impl Str<'_> {
    fn decoded(&self) -> Result<Vec<u8>, Malformed> {
        if self.huffman {
            huffman_decode(self.bytes)
        } else {
            Ok(self.bytes.to_vec())
        }
    }
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Malformed> {
        let b = *self.buf.get(self.pos).ok_or(Malformed)?;
        self.pos += 1;
        Ok(b)
    }

    /// RFC 7541 5.1, bounded well below anything a header block can hold.
    fn int(&mut self, prefix: u32) -> Result<usize, Malformed> {
        let max = (1usize << prefix) - 1;
        let mut value = usize::from(self.byte()?) & max;
        if value < max {
            return Ok(value);
        }
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            value += usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 21 {
                return Err(Malformed);
            }
        }
    }

    fn string(&mut self) -> Result<Str<'a>, Malformed> {
        let huffman = self.buf.get(self.pos).ok_or(Malformed)? & 0x80 != 0;
        let len = self.int(7)?;
        let end = self.pos.checked_add(len).ok_or(Malformed)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(Str { huffman, bytes })
    }
}

/// The bit length of each symbol's code, 0–255 and EOS (256): RFC 7541 Appendix B.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];
const EOS: u16 = 256;
const MAX_CODE_BITS: usize = 30;

/// The canonical code's decoding tables: per length, the first code, how many codes have it,
/// and where its symbols start in `symbols` (ordered by length, then symbol).
struct Canonical {
    first_code: [u32; MAX_CODE_BITS + 1],
    count: [u32; MAX_CODE_BITS + 1],
    first_index: [u32; MAX_CODE_BITS + 1],
    symbols: Vec<u16>,
}

fn canonical() -> &'static Canonical {
    static TABLE: OnceLock<Canonical> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut count = [0u32; MAX_CODE_BITS + 1];
        for &len in &CODE_LENGTHS {
            count[usize::from(len)] += 1;
        }
        let mut first_code = [0u32; MAX_CODE_BITS + 1];
        let mut first_index = [0u32; MAX_CODE_BITS + 1];
        let (mut code, mut index) = (0u32, 0u32);
        for len in 1..=MAX_CODE_BITS {
            first_code[len] = code;
            first_index[len] = index;
            code = (code + count[len]) << 1;
            index += count[len];
        }
        let mut symbols: Vec<u16> = (0..=EOS).collect();
        symbols.sort_by_key(|&s| (CODE_LENGTHS[usize::from(s)], s));
        Canonical {
            first_code,
            count,
            first_index,
            symbols,
        }
    })
}

/// RFC 7541 5.2: the padding must be a prefix of EOS (all ones) shorter than a byte, and EOS
/// itself may not appear.
fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, Malformed> {
    let table = canonical();
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in bytes {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len > MAX_CODE_BITS {
                return Err(Malformed);
            }
            let offset = code.wrapping_sub(table.first_code[len]);
            if code >= table.first_code[len] && offset < table.count[len] {
                let symbol = table.symbols[(table.first_index[len] + offset) as usize];
                let symbol = u8::try_from(symbol).map_err(|_| Malformed)?;
                out.push(symbol);
                (code, len) = (0, 0);
            }
        }
    }
    if len >= 8 || code != (1u32 << len) - 1 {
        return Err(Malformed);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
mod tests;
