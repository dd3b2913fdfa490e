"""Other kernels in throwaway VMs: kernel images and the qemu runner."""
