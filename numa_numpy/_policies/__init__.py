"""Layer 1, policies: what an allocation asks for (policy values, weights, the
allocation keywords) and whether the kernel will honour it (enforcement).
Imports only the kernel layer."""
