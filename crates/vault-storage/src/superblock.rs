//! What an ext2/3/4 superblock says of how the filesystem was left: whether its journal needs
//! recovery (it was mounted when the machine went down: the kernel clears the flag only at a
//! clean unmount) and whether errors were recorded. A sign of an unclean end that does not
//! depend on vaultd's own record.
//!
//! Read from the opened mapping before anything mounts it; the parser is pure (and fuzzed).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::StorageError;

/// The superblock's place and size on the device.
const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;

const EXT_MAGIC: u16 = 0xEF53;
/// s_state: cleanly unmounted (as of the last check or unmount).
const STATE_VALID: u16 = 0x0001;
/// s_state: errors were detected.
const STATE_ERROR: u16 = 0x0002;
/// s_feature_compat: has a journal.
const COMPAT_HAS_JOURNAL: u32 = 0x0004;
/// s_feature_incompat: the journal needs recovery.
const INCOMPAT_RECOVER: u32 = 0x0004;

/// How an ext filesystem was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtState {
    pub has_journal: bool,
    /// Mounted when the machine went down (or mounted now): the journal must be replayed.
    pub needs_recovery: bool,
    /// Errors were recorded (s_state, or a non-zero error count).
    pub errors: bool,
    /// s_state says it was unmounted cleanly.
    pub marked_clean: bool,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse a superblock (the 1024 bytes at offset 1024). `None` when it is not ext2/3/4.
pub fn parse(superblock: &[u8]) -> Option<ExtState> {
    if le16(superblock, 0x38)? != EXT_MAGIC {
        return None;
    }
    let state = le16(superblock, 0x3A)?;
    let compat = le32(superblock, 0x5C)?;
    let incompat = le32(superblock, 0x60)?;
    // s_error_count (ext4, at 0x194); older superblocks leave it zero.
    let error_count = le32(superblock, 0x194).unwrap_or(0);
    Some(ExtState {
        has_journal: compat & COMPAT_HAS_JOURNAL != 0,
        needs_recovery: incompat & INCOMPAT_RECOVER != 0,
        errors: state & STATE_ERROR != 0 || error_count > 0,
        marked_clean: state & STATE_VALID != 0,
    })
}

/// Read the superblock of `device`. `Ok(None)` when it holds no ext filesystem.
pub fn read(device: &Path) -> Result<Option<ExtState>, StorageError> {
    let failed = |source| StorageError::Read {
        path: device.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(device).map_err(failed)?;
    file.seek(SeekFrom::Start(SUPERBLOCK_OFFSET))
        .map_err(failed)?;
    let mut block = vec![0u8; SUPERBLOCK_LEN];
    file.read_exact(&mut block).map_err(failed)?;
    Ok(parse(&block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(state: u16, compat: u32, incompat: u32, errors: u32) -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_LEN];
        b[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        b[0x3A..0x3C].copy_from_slice(&state.to_le_bytes());
        b[0x5C..0x60].copy_from_slice(&compat.to_le_bytes());
        b[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        b[0x194..0x198].copy_from_slice(&errors.to_le_bytes());
        b
    }

    #[test]
    fn a_cleanly_unmounted_ext4_needs_nothing() {
        let s = parse(&superblock(STATE_VALID, COMPAT_HAS_JOURNAL, 0x2c2, 0)).expect("ext");
        assert_eq!(
            s,
            ExtState {
                has_journal: true,
                needs_recovery: false,
                errors: false,
                marked_clean: true
            }
        );
    }

    #[test]
    fn a_journal_left_to_replay_and_recorded_errors_are_seen() {
        let s = parse(&superblock(
            STATE_VALID,
            COMPAT_HAS_JOURNAL,
            INCOMPAT_RECOVER | 0x2c0,
            0,
        ))
        .expect("ext");
        assert!(s.needs_recovery && !s.errors);
        let s = parse(&superblock(STATE_ERROR, COMPAT_HAS_JOURNAL, 0, 0)).expect("ext");
        assert!(s.errors && !s.marked_clean);
        let s = parse(&superblock(STATE_VALID, COMPAT_HAS_JOURNAL, 0, 3)).expect("ext");
        assert!(s.errors);
    }

    #[test]
    fn anything_else_is_not_ext() {
        assert_eq!(parse(&[0u8; SUPERBLOCK_LEN]), None);
        assert_eq!(parse(&[0xFF; 10]), None);
        assert_eq!(parse(&[]), None);
        // A truncated block with the magic: what is there is read, the error count is not.
        let b = superblock(STATE_VALID, COMPAT_HAS_JOURNAL, 0, 9);
        assert_eq!(parse(&b[..0x100]).map(|s| s.errors), Some(false));
    }
}
