/* Private to the block allocator's files: the layouts of blocks, chunks and
 * large mappings, the arena's struct and spinlock, the registry of live arenas,
 * and the calls between the files. nn_arena.h is the API.
 *
 *   nn_arena.c   the registry, an arena's life (new, probe, parts, destroy) and
 *                the malloc / calloc / realloc / free entries
 *   nn_small.c   size classes, chunks and the small blocks carved from them
 *   nn_large.c   large blocks, each a mapping of its own, and partition cuts
 *   nn_cache.c   the process-wide cache of freed mappings: budget, cooling,
 *                eviction, the decay thread, fork
 *   nn_blocks.c  whose block a pointer is: owner, mapping, parts */
#ifndef NN_ARENA_INTERNAL_H
#define NN_ARENA_INTERNAL_H

#include "nn_arena.h"
#include "nn_syscalls.h"

#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>

#define MAGIC 0x4e554d41u /* "NUMA" */
#define KIND_LARGE 0xfff0u /* data after a header page */
#define KIND_HUGETLB 0xfff1u /* data LARGE_HUGETLB_OFFSET into a hugetlb mapping */
#define HEADER 16 /* keeps malloc's 16-byte alignment */
#define LARGE_HUGETLB_OFFSET 64
#define CHUNK_SIZE ((size_t)1 << 20)
#define SMALL_MAX ((size_t)64 << 10) /* largest small request */
#define NCLASSES 44 /* size_class(SMALL_MAX) + 1 */
/* The class tables below assume these: 8 classes of 16 bytes up to 128, then
 * four per power of two up to SMALL_MAX (2^16), whose class is the last. */
_Static_assert(SMALL_MAX == (size_t)1 << 16, "size classes are laid out up to 2^16");
_Static_assert(NCLASSES == 8 + (16 - 7) * 4, "NCLASSES is size_class(SMALL_MAX) + 1");
_Static_assert(HEADER % 16 == 0, "blocks keep malloc's 16-byte alignment");
#define CACHE_SLOTS 64
/* Larger requests fail, as glibc's above PTRDIFF_MAX do: the header page, the
 * THP alignment slack and page rounding can then never overflow a size_t. */
#define MAX_REQUEST (((size_t)PTRDIFF_MAX) - ((size_t)1 << 31))
/* calloc from the cache: below this a memset of warm pages beats faulting fresh
 * ones (glibc draws the same line); above it, MADV_DONTNEED gives zero pages
 * back without unbinding the range. */
#define CALLOC_MEMSET_MAX ((size_t)32 << 20)

/* Right before every user pointer. */
typedef struct block {
    size_t size;
    uint32_t kind; /* size class, KIND_LARGE or KIND_HUGETLB */
    uint32_t magic;
} block;

/* At the start of every large mapping. */
typedef struct large_head {
    nn_arena *owner;
    nn_mapping map;
} large_head;

/* After the large_head of a partitioned arena's block: where each part after
 * the first begins, in bytes from the user pointer. A cut is row-aligned for
 * the caller; its page is bound from round_up(cut, page): the page holding a
 * boundary lives on the earlier part's node. */
typedef struct part_cuts {
    size_t cut[NN_MAX_PARTS - 1];
} part_cuts;

/* At the start of every chunk (chunks are CHUNK_SIZE-aligned; blocks start
 * CHUNK_HEAD bytes in). `live` counts the blocks handed out and not freed:
 * when it falls to 0 in a chunk that is not the one being carved, the chunk's
 * free blocks are taken off the free lists and the chunk leaves the small
 * blocks for the cache (under the budget) or the kernel. */
typedef struct chunk_head {
    nn_arena *owner;
    struct chunk_head *next, *prev; /* the arena's chunks */
    char *end;                      /* blocks were carved up to here */
    size_t live;
    int status;
} chunk_head;
#define CHUNK_HEAD 64
_Static_assert(sizeof(chunk_head) <= CHUNK_HEAD, "a chunk's head fits before its blocks");

/* A free small block, over its header and first bytes: `next` replaces the
 * size, kind and magic stay, `prev` is in the data (every class has >= 16
 * bytes). Lists are doubly linked so that an empty chunk's blocks can be taken
 * off them; a list head's `prev` is stale (never read: the head is known by
 * free_lists[kind] == block), so taking the head writes nothing but the list. */
typedef struct free_block {
    struct free_block *next;
    uint32_t kind, magic;
    struct free_block *prev;
} free_block;
_Static_assert(sizeof(free_block) <= HEADER + 16, "a free block fits the smallest class");

/* A freed large mapping kept for reuse. "Hot" entries keep their pages as they
 * are (as glibc's heap keeps freed memory), within a small process-wide
 * allowance; beyond it the oldest are "cooled": MADV_FREE lets the kernel take
 * their pages under pressure, without swap, while the mapping, its policy and
 * (until the kernel needs them) its pages stay. */
typedef struct cache_entry {
    nn_mapping map;
    uint64_t freed_ms;  /* coarse monotonic time of the free, for decay */
    unsigned char lazy; /* MADV_FREE'd (or being so) */
    unsigned char busy; /* being cooled outside the lock: not to be taken */
    unsigned char chunk; /* an emptied chunk: reused only as a chunk */
} cache_entry;

struct nn_arena {
    int lock;
    unsigned long long id; /* unique for the process's lifetime */
    nn_binding binding;
    int huge, strict, enforced;
    nn_prefault_plan prefault;
    int *cpus;
    int nparts;        /* partitioned: large blocks split between parts[] (0: not) */
    nn_binding *parts; /* masks owned */
    free_block *free_lists[NCLASSES];
    char *bump, *bump_end;
    chunk_head *cur;   /* the chunk bump points into (never given back) */
    int bump_dirty;    /* cur came from the cache: its free space is not zero */
    chunk_head *chunks;
    chunk_head *spare; /* mapped by a thread that lost a growth race: used next */
    cache_entry cache[CACHE_SLOTS]; /* oldest first */
    int ncached;
    nn_arena_stats stats;
    nn_arena *prev, *next; /* every live arena: for fork and the process-wide cache */
};

_Static_assert(sizeof(block) == HEADER, "block header size");
_Static_assert(sizeof(large_head) + HEADER <= LARGE_HUGETLB_OFFSET, "large header size");
_Static_assert(sizeof(large_head) + sizeof(part_cuts) + HEADER <= 4096,
               "a partitioned block's cuts fit its header page");

/* ---- locking ---- */

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* One atomic exchange to take, a store to release: the critical sections are a
 * few pointer moves (no system call is made under it), where a mutex's two
 * atomics per call cost more than the work. A waiter yields its CPU rather than
 * spin against a preempted holder. */
static inline void lock(nn_arena *a)
{
    int spins = 0;
    while (__atomic_exchange_n(&a->lock, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&a->lock, __ATOMIC_RELAXED)) {
            if (++spins < 64)
                CPU_RELAX();
            else
                sched_yield();
        }
    }
}

static inline void unlock(nn_arena *a) { __atomic_store_n(&a->lock, 0, __ATOMIC_RELEASE); }
/* After used_bytes grew (under the lock): keep its high-water mark. */
static inline void note_peak(nn_arena *a)
{
    if (a->stats.used_bytes > a->stats.peak_bytes)
        a->stats.peak_bytes = a->stats.used_bytes;
}

/* Every live arena (nn_arena.c). Lock order: nn_arenas_lock, then an arena's
 * lock. Holding nn_arenas_lock keeps every listed arena alive (destroy unlinks
 * under it). */
extern pthread_mutex_t nn_arenas_lock;
extern nn_arena *nn_arenas;
extern size_t nn_narenas;

/* ---- small accessors every file uses ---- */

static inline int is_hugetlb(int huge) { return huge == NN_HUGE_EXPLICIT_2MB || huge == NN_HUGE_EXPLICIT_1GB; }

static inline block *header_of(void *ptr) { return (block *)((char *)ptr - HEADER); }

/* The chunk a small block lies in (chunks are CHUNK_SIZE-aligned). */
static inline chunk_head *chunk_of(void *ptr)
{
    return (chunk_head *)((uintptr_t)ptr & ~(uintptr_t)(CHUNK_SIZE - 1));
}

static inline int is_large(const block *b) { return b->kind == KIND_LARGE || b->kind == KIND_HUGETLB; }

static inline large_head *large_of(void *ptr)
{
    size_t offset = header_of(ptr)->kind == KIND_HUGETLB ? LARGE_HUGETLB_OFFSET
                                                          : nn_base_page_size();
    return (large_head *)((char *)ptr - offset);
}

static inline int map_options(const nn_arena *a)
{
    return (a->strict ? NN_MAP_STRICT : 0) | (a->enforced ? 0 : NN_MAP_NO_BIND);
}

static inline void note_mapping(nn_arena *a, const nn_mapping *m)
{
    if (m->status & NN_MAP_POLICY_FALLBACK)
        a->stats.fallbacks++;
    if (m->status & NN_MAP_HUGE_FALLBACK)
        a->stats.huge_fallbacks++;
    if (m->error)
        a->stats.last_error = m->error;
}

static inline part_cuts *cuts_of(const nn_mapping *m)
{
    return (part_cuts *)((char *)m->base + sizeof(large_head));
}

/* ---- between the files ---- */

/* nn_cache.c: the cache's once-only setup (the decay thread's clock, the fork
 * handlers), its coarse clock, and an arena's side of the cache. */
void nn_cache_init(void);
uint64_t nn_now_ms(void);
/* Remove entry i of a's cache (a's lock held), with the accounting. */
cache_entry nn_cache_remove(nn_arena *a, int i);
/* Whether a freed mapping of `len` bytes may be cached at all (the arena's
 * cap is checked again under its lock). */
int nn_cacheable(const nn_arena *a, size_t len);
/* Make room in a's own cache for `len` more bytes and a slot (a's lock not held). */
void nn_cache_make_room(nn_arena *a, size_t len);
/* a's lock held: keep `m` in a's cache if the arena's cap and a slot allow. */
int nn_cache_insert(nn_arena *a, const nn_mapping *m, int chunk, uint64_t now);
/* Something was cached by a: the hot allowance, the budget and decay apply. */
void nn_cache_settle(nn_arena *a);
/* Best fit for a large block of `need` bytes (with these cuts, partitioned):
 * 1 and the mapping in *out, or 0. */
int nn_cache_take(nn_arena *a, size_t need, const size_t *cut, nn_mapping *out, int *lazy);

/* nn_small.c */
int nn_size_class(size_t size);
void *nn_small_alloc(nn_arena *a, size_t size, int zero);
void nn_small_free(nn_arena *a, block *b);

/* nn_large.c */
void *nn_large_alloc(nn_arena *a, size_t size, int zero);
void nn_large_free(nn_arena *a, void *ptr);
/* NULL when the block cannot grow or shrink in place (the caller copies). */
void *nn_large_resize(nn_arena *a, void *ptr, size_t size);

#endif
