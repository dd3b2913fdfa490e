//! Types and constants shared by the `lock` eBPF programs and their user-space loader.
#![no_std]

/// Maximum number of entries in the `BLOCKLIST` hash map.
pub const BLOCKLIST_MAX_ENTRIES: u32 = 1024;

/// Value stored in `BLOCKLIST` for a blocked address.
pub const BLOCKED: u32 = 1;

/// Index of the single slot of the `EXEC_COUNT` per-CPU array.
pub const EXEC_COUNT_INDEX: u32 = 0;

/// How `BLOCKLIST` keys are encoded.
///
/// The key is the IPv4 source address exactly as the four bytes appear in the
/// packet (network byte order), reinterpreted as a native-endian `u32`. This is
/// what the XDP program gets by reading a `u32` straight from the packet, so no
/// byte swapping happens in the kernel. User space must build the key from the
/// address octets with [`ipv4_key`] (i.e. `u32::from_ne_bytes(addr.octets())`),
/// NOT with `u32::from(Ipv4Addr)` (which yields the host-order integer).
/// Example: 10.0.0.1 is stored as `0x0100000a` on little-endian hosts.
pub type BlocklistKey = u32;

/// Build a `BLOCKLIST` key from the four address octets (`a.b.c.d`).
#[inline(always)]
pub const fn ipv4_key(octets: [u8; 4]) -> BlocklistKey {
    u32::from_ne_bytes(octets)
}

/// Inverse of [`ipv4_key`].
#[inline(always)]
pub const fn key_octets(key: BlocklistKey) -> [u8; 4] {
    key.to_ne_bytes()
}

// The `user` feature pulls in `aya` so `#[repr(C)]` types added here can get
// `unsafe impl aya::Pod for T {}` behind `#[cfg(feature = "user")]`. The maps
// of this example only use plain integers, which aya already treats as Pod.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrip() {
        assert_eq!(key_octets(ipv4_key([10, 0, 0, 1])), [10, 0, 0, 1]);
    }
}
