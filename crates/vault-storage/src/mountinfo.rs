//! `/proc/self/mountinfo` (proc(5)): which device is mounted where.

use std::path::{Path, PathBuf};

use crate::StorageError;

pub const MOUNTINFO: &str = "/proc/self/mountinfo";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted (bind mounts show a subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub options: String,
}

pub fn read_mountinfo() -> Result<Vec<MountEntry>, StorageError> {
    let text = std::fs::read_to_string(MOUNTINFO).map_err(|source| StorageError::Read {
        path: MOUNTINFO.into(),
        source,
    })?;
    parse_mountinfo(&text)
}

/// Parse the whole table. Lines look like
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// a variable number of optional fields ends at the lone `-`.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, StorageError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            parse_line(line).map_err(|why| StorageError::Mountinfo {
                path: MOUNTINFO.into(),
                line: index + 1,
                why,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<MountEntry, &'static str> {
    let mut fields = line.split(' ');
    let mut next = |what: &'static str| fields.next().filter(|f| !f.is_empty()).ok_or(what);
    let mount_id = next("no mount ID")?.parse().map_err(|_| "bad mount ID")?;
    let parent_id = next("no parent ID")?.parse().map_err(|_| "bad parent ID")?;
    let (major, minor) = next("no major:minor")?
        .split_once(':')
        .ok_or("bad major:minor")?;
    let major = major.parse().map_err(|_| "bad major")?;
    let minor = minor.parse().map_err(|_| "bad minor")?;
    let root = PathBuf::from(unescape(next("no root")?));
    let mount_point = PathBuf::from(unescape(next("no mount point")?));
    let options = next("no mount options")?.to_owned();
    loop {
        if next("no separator")? == "-" {
            break;
        }
    }
    let fs_type = unescape(next("no filesystem type")?);
    let source = unescape(next("no mount source")?);
    Ok(MountEntry {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        fs_type,
        source,
        options,
    })
}

/// The kernel escapes space, tab, newline and backslash as three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The entry visible at `path`: with stacked mounts the last one listed is on top.
pub fn mount_at<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries.iter().rev().find(|e| e.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 253:0 / /srv/immich rw,noatime shared:20 master:3 - ext4 /dev/mapper/immich-data rw
37 22 0:45 /photos /mnt/with\\040space rw - tmpfs tmp\\134fs rw,size=1024k
38 36 0:46 / /srv/immich rw - tmpfs none rw
";

    #[test]
    fn parses_fields_optional_fields_and_escapes() {
        let entries = parse_mountinfo(SAMPLE).expect("parse");
        assert_eq!(entries.len(), 4);
        let immich = &entries[1];
        assert_eq!((immich.major, immich.minor), (253, 0));
        assert_eq!(immich.mount_point, Path::new("/srv/immich"));
        assert_eq!(immich.fs_type, "ext4");
        assert_eq!(immich.source, "/dev/mapper/immich-data");
        assert_eq!(immich.parent_id, 22);
        let spaced = &entries[2];
        assert_eq!(spaced.mount_point, Path::new("/mnt/with space"));
        assert_eq!(spaced.root, Path::new("/photos"));
        assert_eq!(spaced.source, "tmp\\fs");
    }

    #[test]
    fn the_last_of_stacked_mounts_is_on_top() {
        let entries = parse_mountinfo(SAMPLE).expect("parse");
        let top = mount_at(&entries, Path::new("/srv/immich")).expect("mounted");
        assert_eq!(top.fs_type, "tmpfs");
        assert!(mount_at(&entries, Path::new("/srv")).is_none());
    }

    #[test]
    fn malformed_lines_name_their_line_number() {
        let err =
            parse_mountinfo("22 1 254:1 / / rw - ext4 /dev/vda rw\n23 x\n").expect_err("must fail");
        assert!(err.to_string().contains("mountinfo:2:"), "{err}");
        let err = parse_mountinfo("22 1 254:1 / / rw shared:1 ext4\n").expect_err("must fail");
        assert!(err.to_string().contains(":1:"), "{err}");
    }

    #[test]
    fn reads_this_machines_table() {
        let entries = read_mountinfo().expect("read");
        assert!(mount_at(&entries, Path::new("/")).is_some(), "/ is mounted");
    }
}
