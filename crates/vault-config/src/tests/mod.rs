//! vault-config's tests: `parse` (each key's checks), `file_errors` (the file as a whole), `schema` (SCHEMA, the defaults built
//! from it), `docs` (docs/config.md and packaging/vaultd.toml against SCHEMA), `collect` (every
//! error of a file at once, across keys and on the host).

use std::path::Path;

use super::*;

mod collect;
mod docs;
mod file_errors;
mod parse;
mod schema;

fn p() -> &'static Path {
    Path::new("/etc/vaultd/vaultd.toml")
}

/// The one error `text` has (a test of a single problem fails if more are reported).
fn err(text: &str) -> ConfigError {
    let errors = parse(text, p()).expect_err("should be rejected");
    assert_eq!(
        errors.len(),
        1,
        "one error expected for {text:?}:\n{errors}"
    );
    errors.into_iter().next().expect("one")
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
