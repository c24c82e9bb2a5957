//! The restore test: a few files of the new snapshot, restored on the backup drive and compared
//! byte for byte with their source. Only files that did not change since the backup began are
//! candidates (the vault may be RUNNING, with uploads arriving).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use crate::progress::Node;

/// Files larger than this are not picked (the sample is a test, not a second backup).
pub const MAX_SAMPLE_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Up to `count` files of `nodes` whose source is still what was backed up (same size, not
/// modified since `backup_began`), chosen at random.
pub fn pick(nodes: &[Node], count: usize, backup_began: SystemTime) -> Vec<String> {
    let mut candidates: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.kind == "file" && n.size <= MAX_SAMPLE_FILE_BYTES)
        .filter(|n| {
            std::fs::symlink_metadata(&n.path).is_ok_and(|m| {
                m.is_file() && m.len() == n.size && m.modified().is_ok_and(|t| t < backup_began)
            })
        })
        .collect();
    let state = RandomState::new();
    let mut picked = Vec::with_capacity(count);
    while picked.len() < count && !candidates.is_empty() {
        let mut h = state.build_hasher();
        h.write_usize(picked.len());
        let i = usize::try_from(h.finish() % candidates.len() as u64).unwrap_or(0);
        picked.push(candidates.swap_remove(i).path.clone());
    }
    picked
}

/// The first difference between `restored` and `source`; none when they are the same bytes.
pub fn differs(source: &Path, restored: &Path) -> Option<String> {
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut a, mut b) = match (open(source), open(restored)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let na = match read_full(&mut a, &mut ba) {
            Ok(n) => n,
            Err(e) => return Some(format!("{}: {e}", source.display())),
        };
        let nb = match read_full(&mut b, &mut bb) {
            Ok(n) => n,
            Err(e) => return Some(format!("{}: {e}", restored.display())),
        };
        if na != nb || ba[..na] != bb[..nb] {
            let at = ba[..na.min(nb)]
                .iter()
                .zip(&bb[..na.min(nb)])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            return Some(format!(
                "{} differs from its restored copy at byte {}",
                source.display(),
                offset + at as u64
            ));
        }
        if na == 0 {
            return None;
        }
        offset += na as u64;
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(path: &Path, size: u64) -> Node {
        Node {
            path: path.display().to_string(),
            kind: "file".into(),
            size,
            mtime: String::new(),
        }
    }

    #[test]
    fn only_unchanged_files_are_picked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let same = dir.path().join("same.jpg");
        let grown = dir.path().join("grown.jpg");
        std::fs::write(&same, b"abc").expect("write");
        std::fs::write(&grown, b"abcdef").expect("write");
        let later = SystemTime::now() + Duration::from_secs(5);
        let nodes = [
            node(&same, 3),
            node(&grown, 3),
            node(&dir.path().join("gone.jpg"), 1),
        ];
        assert_eq!(pick(&nodes, 5, later), vec![same.display().to_string()]);
        // Modified after the backup began: not a candidate.
        let earlier = SystemTime::now() - Duration::from_secs(3600);
        assert!(pick(&nodes, 5, earlier).is_empty());
    }

    #[test]
    fn a_difference_is_found_and_placed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"hello world").expect("write");
        std::fs::write(&b, b"hello world").expect("write");
        assert_eq!(differs(&a, &b), None);
        std::fs::write(&b, b"hello_world").expect("write");
        let said = differs(&a, &b).expect("a difference");
        assert!(said.contains("at byte 5"), "{said}");
        std::fs::write(&b, b"hello").expect("write");
        assert!(differs(&a, &b).is_some());
        assert!(differs(&a, &dir.path().join("missing")).is_some());
    }
}
