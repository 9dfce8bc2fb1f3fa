"""Layer 0, the kernel, and the one door to it: the compiled library and its
system calls (``lib``), the C allocator's API (``arena``), the files of /sys and
/proc (``sysfs``), the page queries (``pages``) and the topology. Imports nothing
of the package above it."""
