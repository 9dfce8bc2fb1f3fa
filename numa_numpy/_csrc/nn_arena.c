#define _GNU_SOURCE
#include "nn_arena.h"
#include "nn_syscalls.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAGIC 0x4e554d41u /* "NUMA" */
#define KIND_LARGE 0xfff0u /* data after a header page */
#define KIND_HUGETLB 0xfff1u /* data LARGE_HUGETLB_OFFSET into a hugetlb mapping */
#define HEADER 16 /* keeps malloc's 16-byte alignment */
#define LARGE_HUGETLB_OFFSET 64
#define CHUNK_SIZE ((size_t)1 << 20)
#define SMALL_MAX ((size_t)64 << 10) /* largest small request */
#define NCLASSES 44 /* size_class(SMALL_MAX) + 1 */
#define CACHE_SLOTS 64
#define DEFAULT_CACHE_LIMIT ((size_t)1 << 30)
/* calloc from the cache: below this a memset of warm pages beats faulting fresh
 * ones (glibc draws the same line); above it, MADV_DONTNEED gives zero pages
 * back without unbinding the range. */
#define CALLOC_MEMSET_MAX ((size_t)32 << 20)
#define AUTO_THP_MIN ((size_t)4 << 20)

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

/* At the start of every chunk (chunks are CHUNK_SIZE-aligned). */
typedef struct chunk_head {
    nn_arena *owner;
    struct chunk_head *next;
    int status;
} chunk_head;

typedef struct free_block {
    struct free_block *next;
} free_block;

struct nn_arena {
    int lock;
    nn_binding binding;
    int huge, strict, enforced;
    nn_prefault_plan prefault;
    int *cpus;
    free_block *free_lists[NCLASSES];
    char *bump, *bump_end;
    chunk_head *chunks;
    nn_mapping cache[CACHE_SLOTS]; /* oldest first */
    int ncached;
    nn_arena_stats stats;
    nn_arena *prev, *next; /* every live arena, for fork */
};

_Static_assert(sizeof(block) == HEADER, "block header size");
_Static_assert(sizeof(large_head) + HEADER <= LARGE_HUGETLB_OFFSET, "large header size");

/* ---- locking ---- */

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* One atomic exchange to take, a store to release: the critical sections are a
 * few pointer moves, where a mutex's two atomics per call cost more than the
 * work. A waiter yields its CPU rather than spin against a preempted holder. */
static void lock(nn_arena *a)
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

static void unlock(nn_arena *a) { __atomic_store_n(&a->lock, 0, __ATOMIC_RELEASE); }

/* fork(): hold every arena's lock across it, so the child never inherits one
 * taken by a thread that does not exist there. */
static pthread_mutex_t arenas_lock = PTHREAD_MUTEX_INITIALIZER;
static nn_arena *arenas;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void before_fork(void)
{
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *a = arenas; a; a = a->next)
        lock(a);
}

static void after_fork(void)
{
    for (nn_arena *a = arenas; a; a = a->next)
        unlock(a);
    pthread_mutex_unlock(&arenas_lock);
}

static void register_atfork(void) { pthread_atfork(before_fork, after_fork, after_fork); }

/* ---- size classes, counted on the request so power-of-two arrays fit exactly ---- */

/* Requests 1..128 by 16, then four classes per power of two up to SMALL_MAX. */
static int size_class(size_t size)
{
    if (size <= 128)
        return size <= 16 ? 0 : (int)((size + 15) / 16) - 1;
    int p = 63 - __builtin_clzll((unsigned long long)(size - 1));
    size_t step = (size_t)1 << (p - 2);
    return 8 + (p - 7) * 4 + (int)((size - ((size_t)1 << p) + step - 1) / step) - 1;
}

/* Bytes a class takes in a chunk: its largest request plus the header. */
static size_t class_bytes(int idx)
{
    size_t request;
    if (idx < 8) {
        request = 16 * (size_t)(idx + 1);
    } else {
        int q = (idx - 8) / 4, r = (idx - 8) % 4, p = 7 + q;
        request = ((size_t)1 << p) + (size_t)(r + 1) * ((size_t)1 << (p - 2));
    }
    return request + HEADER;
}

static block *header_of(void *ptr) { return (block *)((char *)ptr - HEADER); }

static int is_large(const block *b) { return b->kind == KIND_LARGE || b->kind == KIND_HUGETLB; }

static large_head *large_of(void *ptr)
{
    size_t offset = header_of(ptr)->kind == KIND_HUGETLB ? LARGE_HUGETLB_OFFSET
                                                          : nn_base_page_size();
    return (large_head *)((char *)ptr - offset);
}

static int map_options(const nn_arena *a)
{
    return (a->strict ? NN_MAP_STRICT : 0) | (a->enforced ? 0 : NN_MAP_NO_BIND);
}

static void note_mapping(nn_arena *a, const nn_mapping *m)
{
    if (m->status & NN_MAP_POLICY_FALLBACK)
        a->stats.fallbacks++;
    if (m->status & NN_MAP_HUGE_FALLBACK)
        a->stats.huge_fallbacks++;
    if (m->error)
        a->stats.last_error = m->error;
}

/* ---- arenas ---- */

nn_arena *nn_arena_new(int mode, const unsigned long *mask, size_t nwords,
                       unsigned long maxnode, int home_node, int huge, int prefault,
                       int prefault_threads, const int *cpus, int ncpus, int strict)
{
    nn_arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    if (nwords) {
        a->binding.mask = malloc(nwords * sizeof *mask);
        if (!a->binding.mask) {
            free(a);
            return NULL;
        }
        memcpy(a->binding.mask, mask, nwords * sizeof *mask);
    }
    if (ncpus > 0) {
        a->cpus = malloc((size_t)ncpus * sizeof *cpus);
        if (!a->cpus) {
            free(a->binding.mask);
            free(a);
            return NULL;
        }
        memcpy(a->cpus, cpus, (size_t)ncpus * sizeof *cpus);
    }
    a->binding.mode = mode;
    a->binding.home_node = home_node;
    a->binding.maxnode = maxnode;
    a->binding.nwords = nwords;
    a->huge = huge;
    a->strict = strict;
    a->enforced = 1;
    a->prefault = (nn_prefault_plan){prefault, prefault_threads, a->cpus, ncpus};
    a->stats.cache_limit = DEFAULT_CACHE_LIMIT;
    a->stats.small_limit = SMALL_MAX;
    a->stats.enforced = 1;

    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&arenas_lock);
    a->next = arenas;
    if (arenas)
        arenas->prev = a;
    arenas = a;
    pthread_mutex_unlock(&arenas_lock);
    return a;
}

void nn_arena_destroy(nn_arena *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&arenas_lock);
    if (a->prev)
        a->prev->next = a->next;
    else
        arenas = a->next;
    if (a->next)
        a->next->prev = a->prev;
    pthread_mutex_unlock(&arenas_lock);
    nn_arena_trim(a);
    for (chunk_head *c = a->chunks, *next; c; c = next) {
        next = c->next;
        munmap(c, CHUNK_SIZE);
    }
    free(a->binding.mask);
    free(a->cpus);
    free(a);
}

int nn_arena_probe(nn_arena *a)
{
    nn_mapping m;
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    int rc = nn_map(&a->binding, nn_base_page_size(), 0, NN_HUGE_NONE, &none, NN_MAP_STRICT, &m);
    if (rc == 0)
        nn_unmap(&m);
    return rc;
}

void nn_arena_disable_binding(nn_arena *a, int err)
{
    lock(a);
    a->enforced = 0;
    a->stats.enforced = 0;
    a->stats.last_error = err;
    unlock(a);
}

/* Drop the oldest cached mappings until the cache fits `limit` bytes and has a
 * free slot if `want_slot`; they go into `out` (to unmap outside the lock). */
static int evict(nn_arena *a, size_t limit, int want_slot, nn_mapping *out)
{
    int n = 0;
    while (a->ncached && (a->stats.cached_bytes > limit || (want_slot && a->ncached == CACHE_SLOTS))) {
        out[n] = a->cache[0];
        a->stats.cached_bytes -= out[n].length;
        memmove(a->cache, a->cache + 1, (size_t)--a->ncached * sizeof *a->cache);
        n++;
    }
    return n;
}

static size_t unmap_all(const nn_mapping *maps, int n)
{
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        bytes += maps[i].length;
        nn_unmap(&maps[i]);
    }
    return bytes;
}

void nn_arena_set_cache_limit(nn_arena *a, size_t bytes)
{
    nn_mapping victims[CACHE_SLOTS];
    lock(a);
    a->stats.cache_limit = bytes;
    int n = evict(a, bytes, 0, victims);
    unlock(a);
    unmap_all(victims, n);
}

void nn_arena_stats_get(nn_arena *a, nn_arena_stats *out)
{
    lock(a);
    *out = a->stats;
    unlock(a);
}

size_t nn_arena_cached_mappings(nn_arena *a, nn_mapping *out, size_t max)
{
    lock(a);
    size_t n = (size_t)a->ncached;
    if (out && max)
        memcpy(out, a->cache, (n < max ? n : max) * sizeof *out);
    unlock(a);
    return n;
}

size_t nn_arena_trim(nn_arena *a)
{
    nn_mapping victims[CACHE_SLOTS];
    lock(a);
    int n = evict(a, 0, 0, victims);
    unlock(a);
    return unmap_all(victims, n);
}

/* ---- small blocks ---- */

/* A new CHUNK_SIZE-aligned, policy-bound chunk; called with the lock held. */
static int grow_chunks(nn_arena *a)
{
    nn_mapping m;
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    int huge = a->huge == NN_HUGE_NONE ? NN_HUGE_NONE : NN_HUGE_SYSTEM;
    /* Over-map so a CHUNK_SIZE-aligned window exists, then trim. */
    int rc = nn_map(&a->binding, 2 * CHUNK_SIZE, 0, huge, &none, map_options(a), &m);
    if (rc) {
        a->stats.last_error = -rc;
        return rc;
    }
    note_mapping(a, &m);
    char *start = m.base;
    char *aligned = (char *)(((uintptr_t)start + CHUNK_SIZE - 1) & ~(uintptr_t)(CHUNK_SIZE - 1));
    if (aligned > start)
        munmap(start, (size_t)(aligned - start));
    if (start + m.length > aligned + CHUNK_SIZE)
        munmap(aligned + CHUNK_SIZE, (size_t)(start + m.length - aligned - CHUNK_SIZE));
    chunk_head *c = (chunk_head *)aligned;
    c->owner = a;
    c->next = a->chunks;
    c->status = m.status;
    a->chunks = c;
    a->bump = aligned + 64;
    a->bump_end = aligned + CHUNK_SIZE;
    a->stats.chunk_bytes += CHUNK_SIZE;
    return 0;
}

static void *small_alloc(nn_arena *a, size_t size, int zero)
{
    int idx = size_class(size);
    size_t bytes = class_bytes(idx);
    block *b;
    int fresh = 0;
    lock(a);
    if (a->free_lists[idx]) {
        b = (block *)a->free_lists[idx];
        a->free_lists[idx] = ((free_block *)b)->next;
    } else {
        if ((size_t)(a->bump_end - a->bump) < bytes && grow_chunks(a)) {
            unlock(a);
            return NULL;
        }
        b = (block *)a->bump;
        a->bump += bytes;
        fresh = 1; /* never handed out: still zero */
    }
    a->stats.used_bytes += size;
    a->stats.live_blocks++;
    unlock(a);
    b->size = size;
    b->kind = (uint32_t)idx;
    b->magic = MAGIC;
    if (zero && !fresh)
        memset(b + 1, 0, size);
    return b + 1;
}

static void small_free(nn_arena *a, block *b)
{
    lock(a);
    a->stats.used_bytes -= b->size;
    a->stats.live_blocks--;
    ((free_block *)b)->next = a->free_lists[b->kind];
    a->free_lists[b->kind] = (free_block *)b;
    unlock(a);
}

/* ---- large blocks: [header page][data...] ---- */

static int large_huge_mode(const nn_arena *a, size_t size)
{
    if (a->huge == NN_HUGE_AUTO)
        return size >= AUTO_THP_MIN ? NN_HUGE_TRANSPARENT : NN_HUGE_SYSTEM;
    return a->huge;
}

static int is_hugetlb(int huge) { return huge == NN_HUGE_EXPLICIT_2MB || huge == NN_HUGE_EXPLICIT_1GB; }

/* The header page keeps the data page-aligned and, with THP, 2 MiB-aligned;
 * in a hugetlb mapping every page is huge, so the header shares the first. */
static size_t large_lead(int huge)
{
    return is_hugetlb(huge) ? LARGE_HUGETLB_OFFSET : nn_base_page_size();
}

/* Every large mapping is asked for with a base page of room before the data,
 * so a hugetlb request that falls back to normal pages still fits its data. */
static size_t large_request(size_t size) { return size + nn_base_page_size(); }

static size_t large_length(const nn_arena *a, size_t size)
{
    int huge = large_huge_mode(a, size);
    size_t page = is_hugetlb(huge) ? nn_huge_page_size(huge) : nn_base_page_size();
    return (large_request(size) + page - 1) / page * page;
}

/* Best fit from the cache: no more than a quarter larger than needed. */
static int cache_take(nn_arena *a, size_t need, nn_mapping *out)
{
    int best = -1;
    lock(a);
    for (int i = 0; i < a->ncached; i++) {
        size_t len = a->cache[i].length;
        if (len >= need && len - need <= need / 4 &&
            (best < 0 || len < a->cache[best].length))
            best = i;
    }
    if (best >= 0) {
        *out = a->cache[best];
        memmove(a->cache + best, a->cache + best + 1,
                (size_t)(a->ncached - best - 1) * sizeof *a->cache);
        a->ncached--;
        a->stats.cached_bytes -= out->length;
    }
    unlock(a);
    return best >= 0;
}

static void *large_publish(nn_arena *a, const nn_mapping *m, size_t size)
{
    large_head *h = m->base;
    h->owner = a;
    h->map = *m;
    h->map.status &= ~NN_MAP_MIGRATED;
    char *ptr = (char *)m->base + large_lead(m->huge);
    block *b = header_of(ptr);
    b->size = size;
    b->kind = is_hugetlb(m->huge) ? KIND_HUGETLB : KIND_LARGE;
    b->magic = MAGIC;
    lock(a);
    a->stats.used_bytes += size;
    a->stats.live_blocks++;
    a->stats.large_bytes += m->length;
    unlock(a);
    return ptr;
}

static void *large_alloc(nn_arena *a, size_t size, int zero)
{
    nn_mapping m;
    int huge = large_huge_mode(a, size);
    int reuse = cache_take(a, large_length(a, size), &m);
    if (!reuse) {
        int rc = nn_map(&a->binding, large_request(size), large_lead(huge), huge,
                        &a->prefault, map_options(a), &m);
        lock(a);
        if (rc)
            a->stats.last_error = -rc;
        else
            note_mapping(a, &m);
        unlock(a);
        if (rc)
            return NULL;
    }
    char *ptr = large_publish(a, &m, size);
    if (zero && reuse) {
        /* Data runs page-aligned to the mapping's end: MADV_DONTNEED gives the
         * frames back and they fault in as zero, under the range's policy. Small
         * sizes, hugetlb and prefaulted arenas (whose pages must stay present)
         * clear with memset instead. */
        size_t data = (size_t)((char *)m.base + m.length - ptr);
        if (size <= CALLOC_MEMSET_MAX || is_hugetlb(m.huge) ||
            a->prefault.mode != NN_PREFAULT_NONE || madvise(ptr, data, MADV_DONTNEED) != 0)
            memset(ptr, 0, size);
    }
    return ptr;
}

static void large_free(nn_arena *a, void *ptr)
{
    large_head *h = large_of(ptr);
    nn_mapping m = h->map;
    nn_mapping victims[CACHE_SLOTS];
    int n = 0, cached = 0;
    lock(a);
    a->stats.used_bytes -= header_of(ptr)->size;
    a->stats.live_blocks--;
    a->stats.large_bytes -= m.length;
    /* A migrated block follows another policy now: it must not be reused as ours. */
    if (!(m.status & NN_MAP_MIGRATED) && m.length <= a->stats.cache_limit) {
        n = evict(a, a->stats.cache_limit - m.length, 1, victims);
        a->cache[a->ncached++] = m;
        a->stats.cached_bytes += m.length;
        cached = 1;
    }
    unlock(a);
    unmap_all(victims, n);
    if (!cached)
        nn_unmap(&m);
}

/* mremap keeps the range's policy for a grown tail. */
static void *large_resize(nn_arena *a, void *ptr, size_t size)
{
    large_head *h = large_of(ptr);
    nn_mapping m = h->map;
    size_t old_size = header_of(ptr)->size;
    size_t lead = (size_t)((char *)ptr - (char *)m.base);
    size_t page = nn_base_page_size();
    size_t len = (size + lead + page - 1) / page * page;
    if (is_hugetlb(m.huge))
        return NULL; /* let the caller copy */
    void *base = len == m.length ? m.base : mremap(m.base, m.length, len, MREMAP_MAYMOVE);
    if (base == MAP_FAILED)
        return NULL;
    lock(a);
    a->stats.large_bytes += len - m.length;
    a->stats.used_bytes += size - old_size;
    unlock(a);
    h = base;
    h->map.base = base;
    h->map.length = len;
    char *out = (char *)base + lead;
    header_of(out)->size = size;
    return out;
}

/* ---- the allocator interface ---- */

void *nn_arena_malloc(nn_arena *a, size_t size)
{
    if (size <= SMALL_MAX)
        return small_alloc(a, size, 0);
    return large_alloc(a, size, 0);
}

void *nn_arena_calloc(nn_arena *a, size_t nelem, size_t elsize)
{
    size_t size;
    if (__builtin_mul_overflow(nelem, elsize, &size))
        return NULL;
    if (size <= SMALL_MAX)
        return small_alloc(a, size, 1);
    return large_alloc(a, size, 1);
}

void nn_arena_free(nn_arena *a, void *ptr)
{
    if (!ptr)
        return;
    block *b = header_of(ptr);
    if (is_large(b))
        large_free(a, ptr);
    else
        small_free(a, b);
}

void *nn_arena_realloc(nn_arena *a, void *ptr, size_t size)
{
    if (!ptr)
        return nn_arena_malloc(a, size);
    block *b = header_of(ptr);
    size_t old = b->size;
    if (!is_large(b)) {
        if (size <= SMALL_MAX && size_class(size) == (int)b->kind) {
            lock(a);
            a->stats.used_bytes += size - old;
            unlock(a);
            b->size = size;
            return ptr;
        }
    } else if (size > SMALL_MAX) {
        void *moved = large_resize(a, ptr, size);
        if (moved)
            return moved;
    }
    void *fresh = nn_arena_malloc(a, size);
    if (!fresh)
        return NULL; /* the old block stays valid, as realloc promises */
    memcpy(fresh, ptr, old < size ? old : size);
    nn_arena_free(a, ptr);
    return fresh;
}

nn_arena *nn_block_owner(void *ptr, size_t *size, int *status)
{
    block *b = header_of(ptr);
    if (b->magic != MAGIC)
        return NULL;
    if (size)
        *size = b->size;
    if (is_large(b)) {
        if (status)
            *status = large_of(ptr)->map.status;
        return large_of(ptr)->owner;
    }
    chunk_head *c = (chunk_head *)((uintptr_t)ptr & ~(uintptr_t)(CHUNK_SIZE - 1));
    if (status)
        *status = c->status;
    return c->owner;
}

int nn_block_mapping(void *ptr, void **base, size_t *length)
{
    if (!is_large(header_of(ptr)))
        return -EINVAL;
    *base = large_of(ptr)->map.base;
    *length = large_of(ptr)->map.length;
    return 0;
}

int nn_block_mark_migrated(void *ptr)
{
    if (!is_large(header_of(ptr)))
        return -EINVAL;
    large_of(ptr)->map.status |= NN_MAP_MIGRATED;
    return 0;
}
