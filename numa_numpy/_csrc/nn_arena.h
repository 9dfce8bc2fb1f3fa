/* The per-policy block allocator behind the NumPy handler. Small blocks are
 * carved from policy-bound chunks by size class; large blocks are mappings of
 * their own, kept after free in a cache so that their faulted pages are reused.
 * The cache is one for the whole process (every arena's freed blocks count
 * against one budget), mostly reclaimable by the kernel (MADV_FREE beyond a
 * small "hot" allowance) and decays: a block unused for the decay time is
 * unmapped by a thread that exists only while something is cached. Every block
 * records its own size (NumPy's free size is not trusted). Thread-safe without
 * the GIL; never touches Python. */
#ifndef NN_ARENA_H
#define NN_ARENA_H

#include <stddef.h>
#include "nn_mapping.h"

typedef struct nn_arena nn_arena;

typedef struct nn_arena_stats {
    unsigned long long id; /* unique for the process's lifetime */
    size_t used_bytes;     /* bytes handed out in live blocks (their requested sizes) */
    size_t peak_bytes;     /* the highest used_bytes has been (the arena's lifetime) */
    size_t live_blocks;
    size_t chunk_bytes;    /* mapped for small blocks */
    size_t large_bytes;    /* mapped for live large blocks */
    size_t cached_bytes;   /* freed large mappings (and emptied chunks) kept for reuse */
    size_t cached_chunk_bytes;   /* of cached_bytes, emptied chunks */
    size_t released_chunk_bytes; /* cumulative: chunks emptied of small blocks and
                                    given back (to the cache or the kernel) */
    size_t cache_limit;    /* this arena's own cap (its nodes' share); SIZE_MAX until
                              set: none of its own, the process's budget alone */
    size_t small_limit;    /* largest request served from chunks */
    size_t fallbacks;      /* mappings left unbound in soft mode */
    size_t huge_fallbacks; /* explicit huge pages unavailable: normal pages used */
    int last_error;        /* errno of the last failure or fallback */
    int enforced;          /* 0 when the policy was refused up front (soft mode) */
} nn_arena_stats;

/* The process-wide cache of freed large blocks. */
typedef struct nn_cache_stats {
    size_t limit;           /* budget: bytes cached by all arenas together */
    size_t hot_limit;       /* of which not MADV_FREE'd (the kernel cannot take) */
    long long decay_ms;     /* unused this long: unmapped (< 0 never, 0 no cache) */
    size_t cached_bytes;    /* mapped in cached blocks now */
    size_t hot_bytes;       /* of which hot */
    size_t lazy_bytes;      /* of which MADV_FREE'd: the kernel may take their pages */
    size_t reclaimed_bytes; /* cumulative: pages of lazy blocks not in memory when
                               they were unmapped (the kernel took them, or they
                               were never written) */
    size_t decayed_bytes;   /* cumulative: unmapped after the decay time */
    size_t evicted_bytes;   /* cumulative: unmapped to stay inside the budget */
    size_t cached_chunk_bytes; /* of cached_bytes, emptied chunks of small blocks */
    size_t arenas;          /* live arenas */
    int decay_thread;       /* 1 while the decay thread runs */
} nn_cache_stats;

/* Set the budget, the hot allowance and the decay time, and apply them now.
 * The numbers are the Python layer's (numa_numpy._alloc.budget); until the
 * first call the cache is unconfigured: budget 0, decay 0, nothing kept. */
void nn_cache_configure(size_t limit, size_t hot_limit, long long decay_ms);
void nn_cache_stats_get(nn_cache_stats *out);
/* Resident bytes of the lazy (MADV_FREE'd) cached blocks, asked of the kernel. */
size_t nn_cache_lazy_resident(void);
/* Unmap every arena's cached blocks; the bytes released. */
size_t nn_cache_trim(void);
/* After fork: restart the decay thread if something is cached. */
void nn_cache_resume(void);
/* Ids of the live arenas (up to max into out); returns how many live. */
size_t nn_arena_ids(unsigned long long *out, size_t max);
/* By id, safe against an arena destroyed meanwhile: 0 or -ENOENT. */
int nn_arena_stats_by_id(unsigned long long id, nn_arena_stats *out);
long long nn_arena_trim_by_id(unsigned long long id);

/* An arena under `binding` (mask copied), allocating with `huge` (NN_HUGE_*)
 * and prefaulting by `prefault` (CPUs copied; NULL: none); strict != 0 refuses
 * rather than falls back. NULL when out of memory. */
nn_arena *nn_arena_new(const nn_binding *binding, int huge, const nn_prefault_plan *prefault,
                       int strict);
void nn_arena_destroy(nn_arena *a);
/* Most parts one partitioned block is split into. */
#define NN_MAX_PARTS 256

/* Make the arena partitioned (before its first allocation): each large block
 * is one mapping split into `nparts` contiguous ranges, range i bound by
 * parts[i] (masks copied); small blocks follow the arena's own binding. By
 * default the cuts fall on multiples of the THP unit (transparent huge pages)
 * or the base page, the units shared as evenly as possible. 0, -EINVAL
 * (nparts out of range, explicit huge pages) or -ENOMEM. */
int nn_arena_set_parts(nn_arena *a, const nn_binding *parts, int nparts);
/* For the calling thread's next large block from a partitioned arena (and
 * only that one): with ncuts == nparts - 1, these cuts (bytes from the data
 * start, ascending); else the default rule with cuts on multiples of
 * `granule` bytes too (a row's size: rows are not split). (0, NULL, 0) clears. */
void nn_arena_next_block(size_t granule, const size_t *cuts, int ncuts);
/* The default rule's k - 1 cuts of `size` bytes (granule: a row's size; thp:
 * the block is in transparent huge pages), for callers that split arrays the
 * same way without allocating. */
void nn_partition_cuts(size_t size, size_t granule, int thp, int k, size_t *cuts);
/* For a pointer nn_block_owner accepted: the block's part bounds, nparts + 1
 * byte offsets from 0 to its size into `bounds` (up to max), and returns
 * nparts; 1 for a small block of a partitioned arena (the first part's policy),
 * 0 for a block of an arena that is not partitioned. */
int nn_block_parts(void *ptr, size_t *bounds, int max);

/* Map, bind and release one page under the arena's policy: 0 or -errno. */
int nn_arena_probe(nn_arena *a);
/* Soft mode after a refused probe: allocate unbound and remember why. */
void nn_arena_disable_binding(nn_arena *a, int err);
/* This arena's own cap on its cached bytes (within the process's budget). */
void nn_arena_set_cache_limit(nn_arena *a, size_t bytes);
void nn_arena_stats_get(nn_arena *a, nn_arena_stats *out);
/* Copy up to `max` of the cached (freed) large mappings into `out` (may be NULL
 * with max 0); returns how many the cache holds. For per-node accounting. */
size_t nn_arena_cached_mappings(nn_arena *a, nn_mapping *out, size_t max);
/* Unmap every cached large block; returns the bytes released. */
size_t nn_arena_trim(nn_arena *a);
/* Self-check of the size-class tables (size_class and class_bytes are
 * inverses): 0, or the first request size they disagree on. For tests. */
size_t nn_arena_check_size_classes(void);

void *nn_arena_malloc(nn_arena *a, size_t size);
void *nn_arena_calloc(nn_arena *a, size_t nelem, size_t elsize);
void *nn_arena_realloc(nn_arena *a, void *ptr, size_t size);
void nn_arena_free(nn_arena *a, void *ptr);

/* For a pointer this allocator returned: its arena, recorded size and mapping
 * status bits (NN_MAP_*). Returns NULL for a pointer that is not ours, without
 * touching memory that may not be readable (it reads through the kernel). */
nn_arena *nn_block_owner(void *ptr, size_t *size, int *status);
/* For a pointer nn_block_owner accepted. Large blocks only: the bounds of the block's own mapping, for migration.
 * 0, or -EINVAL for a small block (its pages are shared with other blocks). */
int nn_block_mapping(void *ptr, void **base, size_t *length);
/* Record that a large block's pages now follow another policy: it is unmapped
 * on free instead of returning to its arena's cache. */
int nn_block_mark_migrated(void *ptr);

/* Most parts of a partitioned block nn_parts_find knows about. */
#define NN_REG_PARTS 64
/* Live large blocks of partitioned arenas, by address (the allocator keeps
 * the table: add on publish, drop before free or move; a few dozen at most,
 * those beyond are not found). */
void nn_parts_add(nn_arena *a, void *ptr, size_t size, const size_t *cut);
void nn_parts_drop(void *ptr);
/* For any address inside such a block: its data start, nparts + 1 part
 * bounds (byte offsets) and each part's node (-1: several), up to max parts;
 * returns nparts, or 0 when the address is in none. Never reads the block. */
int nn_parts_find(const void *addr, char **start, size_t *bounds, int *nodes, int max);

#endif
