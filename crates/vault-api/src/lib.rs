//! The gRPC control API of vaultd, generated from `proto/vault/v1/vault.proto`.

#![allow(missing_debug_implementations, clippy::all)]

pub mod v1 {
    tonic::include_proto!("vault.v1");
}
