//! The gRPC control API of vaultd, generated from `proto/vault/v1/vault.proto`, and
//! [`request`]: what the daemon checks of each request's path and message.

pub mod v1 {
    #![allow(missing_debug_implementations, clippy::all)]
    tonic::include_proto!("vault.v1");
}

pub mod request;

/// Root's own control socket beside `socket` (`/run/vaultd/vaultd.sock` →
/// `/run/vaultd/vaultd.root.sock`): mode 0600, root's only, so no other user can fill its
/// listen queue and root's calls are served however the shared socket is flooded.
pub fn root_socket_path(socket: &std::path::Path) -> std::path::PathBuf {
    let stem = socket
        .file_stem()
        .map_or_else(|| "vaultd".into(), |s| s.to_string_lossy().into_owned());
    socket.with_file_name(format!("{stem}.root.sock"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_root_socket_sits_beside_the_shared_one() {
        use std::path::Path;
        assert_eq!(
            super::root_socket_path(Path::new("/run/vaultd/vaultd.sock")),
            Path::new("/run/vaultd/vaultd.root.sock")
        );
        assert_eq!(
            super::root_socket_path(Path::new("/tmp/x/ctl")),
            Path::new("/tmp/x/ctl.root.sock")
        );
    }
}
