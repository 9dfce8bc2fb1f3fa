"""Layer 4, compute: node teams (worker threads pinned per node), partitioned
arrays and their node-parallel ufuncs, replicas, thread-pool caps."""
