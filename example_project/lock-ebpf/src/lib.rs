#![no_std]

// This file exists to enable the library target, so that `lock` can list this crate
// as a build-dependency (cache invalidation for the aya-build cargo-in-cargo build).
