"""Building the eBPF crate: the cargo project, the toolchain, known failures and their
fixes, the doctor. Knows nothing of objects or the kernel.
"""
