"""The running kernel: bpf() calls, the verifier log, loaders, pins in bpffs."""
