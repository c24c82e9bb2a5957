//! Reading the passphrase: from a key file, from stdin when it is not a terminal, or from the
//! terminal with no echo. Held in zeroised memory and bounded in size.

use std::io::{IsTerminal, Read};
use std::path::Path;

use zeroize::Zeroizing;

use crate::exit::Failure;

/// LUKS2 allows longer, but nobody types more, and a bound keeps a stray file out of memory.
pub const MAX_PASSPHRASE_BYTES: usize = 512;

pub fn read(key_file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut secret = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_BYTES + 1));
    match key_file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| {
                Failure::Input(format!("cannot read the key file {}: {e}", path.display()))
            })?;
            read_bounded(file, &mut secret)?;
        }
        None if !std::io::stdin().is_terminal() => {
            read_bounded(std::io::stdin().lock(), &mut secret)?;
            // A passphrase piped in with `echo` ends with a newline that is not part of it.
            if secret.last() == Some(&b'\n') {
                secret.pop();
            }
        }
        None => {
            let typed = Zeroizing::new(
                rpassword::prompt_password("Passphrase: ")
                    .map_err(|e| Failure::Input(format!("cannot read the passphrase: {e}")))?,
            );
            secret.extend_from_slice(typed.as_bytes());
        }
    }
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

fn read_bounded(source: impl Read, into: &mut Zeroizing<Vec<u8>>) -> Result<(), Failure> {
    // One byte over the bound is enough to know it is too long.
    let limit = u64::try_from(MAX_PASSPHRASE_BYTES + 1).unwrap_or(u64::MAX);
    source
        .take(limit)
        .read_to_end(into)
        .map_err(|e| Failure::Input(format!("cannot read the passphrase: {e}")))?;
    Ok(())
}
