"""Layer 5, diagnostics: the doctor, the kernel's capabilities and the
bandwidth matrix. Reads the layers below; nothing below imports it."""
