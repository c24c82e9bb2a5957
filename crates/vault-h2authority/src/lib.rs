//! The `:authority` of stock gRPC clients over a Unix socket, made acceptable to h2 before h2
//! sees it. A crate of its own because it is a parser of bytes from any local user (the control
//! socket's first reader), pure but for the `AsyncRead` around it, so that it is tested and
//! fuzzed without the daemon (integration-tests/fuzz, targets `h2_authority` and `hpack`).
//!
//! Module map:
//! - [`authority`]: [`AuthorityFix`], the filter between the socket and h2: it follows the
//!   client's frames and hands each header block to the mirror.
//! - [`hpack`]: [`hpack::Mirror`], just enough HPACK (RFC 7541) to mend one header in place.

pub mod authority;
pub mod hpack;

pub use authority::{AuthorityFix, MAX_FRAME};
