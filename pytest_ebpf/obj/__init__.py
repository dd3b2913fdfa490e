"""Reading an eBPF object: ELF, instructions, BTF and BTF.ext, maps, program types, the
model. Pure data: no cargo, no kernel, no pytest.
"""
