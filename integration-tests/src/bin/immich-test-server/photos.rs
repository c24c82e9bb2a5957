//! Immich's folders with their `.immich` markers, and the photos written while a queue runs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::sim::Shared;

/// The folders Immich keeps under its upload location, each with a `.immich` marker.
pub(crate) const DATA_FOLDERS: [&str; 6] = [
    "upload",
    "thumbs",
    "encoded-video",
    "library",
    "profile",
    "backups",
];

pub(crate) const PHOTO_BYTES: usize = 4096;

/// Creates Immich's folders and their `.immich` markers (existing ones are kept).
pub(crate) fn prepare_data_dir(dir: &Path) {
    for folder in DATA_FOLDERS {
        let folder = dir.join(folder);
        let marker = folder.join(".immich");
        let made = fs::create_dir_all(&folder).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&marker)
                .map(drop)
        });
        if let Err(e) = made {
            eprintln!("immich-test-server: {}: {e}", marker.display());
        }
    }
}

/// The first photo number not yet used in `upload` (so a restart does not overwrite photos).
pub(crate) fn next_photo_number(upload: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(upload) else {
        return 1;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("photo-")?
                .strip_suffix(".jpg")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(1, |n| n + 1)
}

pub(crate) fn photo_bytes(n: u64) -> Vec<u8> {
    let line = format!("VAULTD-TEST-PHOTO {n}\n");
    line.bytes().cycle().take(PHOTO_BYTES).collect()
}

/// Writes photo `n`; `Ok(false)` when every queue was paused meanwhile (nothing is left behind).
pub(crate) fn write_photo(upload: &Path, n: u64, shared: &Shared) -> io::Result<bool> {
    let temporary = upload.join(format!(".photo-{n}.jpg.tmp"));
    let photo = upload.join(format!("photo-{n}.jpg"));
    let mut file = File::create(&temporary)?;
    file.write_all(&photo_bytes(n))?;
    file.sync_all()?;
    drop(file);
    {
        let state = shared.state();
        if !state.any_running() {
            drop(state);
            let _ = fs::remove_file(&temporary);
            return Ok(false);
        }
        fs::rename(&temporary, &photo)?;
    }
    File::open(upload)?.sync_all()?;
    Ok(true)
}

pub(crate) fn write_photos(dir: &Path, every: Duration, shared: &Shared) {
    let upload = dir.join("upload");
    let mut n = next_photo_number(&upload);
    loop {
        thread::sleep(every);
        if !shared.state().any_running() {
            continue;
        }
        match write_photo(&upload, n, shared) {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => eprintln!("immich-test-server: writing photo-{n}.jpg: {e}"),
        }
    }
}
