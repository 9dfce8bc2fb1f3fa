"""Layer 2, allocation: NumPy's handler (NEP 49) bound to a policy, the scopes
that install it, the constructors, the thread's own policy and the cache of
freed blocks. Imports the kernel and policies layers."""
