//! vaultd.toml: any bytes, checked as the daemon's start, `--check-config` and a reload check
//! a file (without asking the host). Every problem must name a line of the file, and the
//! verdict must agree with the result.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = vault_config::check_bytes(data, Path::new("/etc/vaultd/vaultd.toml"));
    let lines = data.split(|&b| b == b'\n').count();
    for error in checked.errors() {
        if let Some(line) = error.line() {
            assert!(
                (1..=lines.max(1)).contains(&line),
                "line {line} of a {lines}-line file: {error}"
            );
        }
        let _ = error.to_string();
    }
    let valid = checked.is_valid();
    match checked.into_result() {
        Ok(config) => {
            assert!(valid, "a result for a file with errors");
            let _ = format!("{config:?}");
        }
        Err(errors) => {
            assert!(!valid, "errors for a valid file");
            assert!(!errors.is_empty());
            let _ = errors.one_line();
        }
    }
});
