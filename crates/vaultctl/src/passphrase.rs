//! Reading the passphrase: from a key file, from stdin when it is not a terminal, or from the
//! terminal with no echo. Held in zeroised memory and bounded in size.
//!
//! The buffer is never grown or copied on the way: a file or stdin is read with plain read(2)
//! calls (stdin's shared buffer in std is bypassed: it would keep a copy for the life of the
//! process) into one buffer of the bound's size; the terminal's line is taken over as it is.
//! What a library copies on the way out (the protobuf encoding, HTTP/2 frames) is zeroed when
//! freed by vaultctl's zeroing allocator (main.rs).

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;
use std::path::Path;

use zeroize::Zeroizing;

use crate::exit::Failure;

/// LUKS2 allows longer, but nobody types more, and a bound keeps a stray file out of memory.
/// The daemon's bound (vault-api), so the client refuses what the daemon would.
pub use vault_api::request::MAX_PASSPHRASE_BYTES;

pub fn read(key_file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let secret = match key_file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| {
                Failure::Input(format!("cannot read the key file {}: {e}", path.display()))
            })?;
            read_bounded(file)?
        }
        None if !std::io::stdin().is_terminal() => {
            // Unbuffered: a descriptor of our own for fd 0, read with read(2).
            let stdin = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .map_err(|e| Failure::Input(format!("cannot read the passphrase: {e}")))?;
            let mut secret = read_bounded(stdin)?;
            // A passphrase piped in with `echo` ends with a newline that is not part of it.
            if secret.last() == Some(&b'\n') {
                secret.pop();
            }
            secret
        }
        None => {
            let typed = rpassword::prompt_password("Passphrase: ")
                .map_err(|e| Failure::Input(format!("cannot read the passphrase: {e}")))?;
            // Taken over as it is: no copy, no second buffer to grow.
            Zeroizing::new(typed.into_bytes())
        }
    };
    if secret.len() > MAX_PASSPHRASE_BYTES {
        return Err(Failure::Input(format!(
            "the passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes"
        )));
    }
    if secret.is_empty() {
        return Err(Failure::Input("the passphrase is empty".into()));
    }
    Ok(secret)
}

/// A new passphrase (the backup drive's recovery passphrase): from a key file or stdin as
/// [`read`] takes them; on a terminal typed twice, and the two must match.
pub fn read_new(key_file: Option<&Path>, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if key_file.is_some() || !std::io::stdin().is_terminal() {
        return read(key_file);
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(|typed| Zeroizing::new(typed.into_bytes()))
            .map_err(|e| Failure::Input(format!("cannot read the {what}: {e}")))
    };
    let first = ask(&format!("New {what}: "))?;
    let second = ask(&format!("The {what} again: "))?;
    if first != second {
        return Err(Failure::Input(format!("the two {what}s differ")));
    }
    if first.is_empty() || first.len() > MAX_PASSPHRASE_BYTES {
        return Err(Failure::Input(format!(
            "the {what} must be 1 to {MAX_PASSPHRASE_BYTES} bytes"
        )));
    }
    Ok(first)
}

/// Up to one byte over the bound (enough to know it is too long), into a buffer allocated once
/// at that size and never grown.
fn read_bounded(mut source: impl Read) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buffer = Zeroizing::new(vec![0u8; MAX_PASSPHRASE_BYTES + 1]);
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Input(format!("cannot read the passphrase: {e}"))),
        }
    }
    // Shortening keeps the allocation; Zeroizing clears its whole capacity when dropped.
    buffer.truncate(filled);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_read_into_one_buffer_that_never_grows() {
        let secret = read_bounded(&b"correct horse"[..]).expect("read");
        assert_eq!(secret.as_slice(), b"correct horse");
        assert_eq!(secret.capacity(), MAX_PASSPHRASE_BYTES + 1);
        let long = vec![b'x'; 4 * MAX_PASSPHRASE_BYTES];
        let secret = read_bounded(long.as_slice()).expect("read");
        assert_eq!(
            secret.len(),
            MAX_PASSPHRASE_BYTES + 1,
            "one byte over, no more"
        );
        assert_eq!(secret.capacity(), MAX_PASSPHRASE_BYTES + 1, "never grown");
    }

    #[test]
    fn a_key_file_is_bounded_and_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "right horse\n").expect("write");
        // A key file is taken byte for byte (its newline too), as cryptsetup's --key-file does.
        assert_eq!(
            read(Some(&path)).expect("read").as_slice(),
            b"right horse\n"
        );
        std::fs::write(&path, vec![b'x'; MAX_PASSPHRASE_BYTES + 1]).expect("write");
        assert!(read(Some(&path)).is_err());
        std::fs::write(&path, "").expect("write");
        assert!(read(Some(&path)).is_err());
    }
}
