"""Layer 3, memory ranges: binding an existing range, asking where its pages
are, explicit regions, shared segments and migration."""
