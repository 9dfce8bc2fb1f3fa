"""Layer 0, the kernel: the compiled library (``lib``), the files of /sys and /proc,
the page queries and the topology. Imports nothing of the package above it."""
