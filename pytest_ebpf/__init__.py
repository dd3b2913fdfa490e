"""pytest-ebpf: build, inspect, verify, load and run Rust eBPF objects from pytest."""
