"""The ``pytest-ebpf`` command: doctor, inspect, verify."""
