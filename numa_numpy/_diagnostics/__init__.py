"""Layer 5, diagnostics: the doctor (its findings, the registry of its checks and
the checks by topic), the kernel's capabilities and the bandwidth matrix. Reads
the layers below; nothing below imports it."""
