#define _GNU_SOURCE
#include "nn_arena.h"
#include "nn_syscalls.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAGIC 0x4e554d41u /* "NUMA" */
#define KIND_LARGE 0xffffu
#define HEADER 16          /* keeps malloc's 16-byte alignment */
#define LARGE_OFFSET 64    /* large blocks: data on a cache line */
#define CHUNK_SIZE ((size_t)1 << 20)
#define SMALL_MAX ((size_t)64 << 10) /* largest small block, header included */
#define NCLASSES 43
#define CACHE_SLOTS 64
#define DEFAULT_CACHE_LIMIT ((size_t)1 << 30)
/* calloc above this takes a fresh (already zero) mapping rather than a memset. */
#define CALLOC_FRESH_MIN ((size_t)1 << 20)
#define AUTO_THP_MIN ((size_t)4 << 20)

/* Right before every user pointer. */
typedef struct block {
    size_t size;
    uint32_t kind; /* size class, or KIND_LARGE */
    uint32_t magic;
} block;

/* At the start of every large mapping; the block follows at LARGE_OFFSET - HEADER. */
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
    pthread_mutex_t lock;
    nn_binding binding;
    int huge, strict, enforced;
    nn_prefault_plan prefault;
    int *cpus;
    free_block *free_lists[NCLASSES];
    char *bump, *bump_end;
    chunk_head *chunks;
    nn_mapping cache[CACHE_SLOTS];
    int ncached;
    nn_arena_stats stats;
};

_Static_assert(sizeof(block) == HEADER, "block header size");
_Static_assert(sizeof(large_head) + HEADER <= LARGE_OFFSET, "large header size");

/* Classes: 32..128 by 16, then four per power of two up to 64 KiB. */
static int size_class(size_t total)
{
    if (total <= 128)
        return total <= 32 ? 0 : (int)((total + 15) / 16) - 2;
    int p = 63 - __builtin_clzll((unsigned long long)(total - 1));
    size_t step = (size_t)1 << (p - 2);
    return 7 + (p - 7) * 4 + (int)((total - ((size_t)1 << p) + step - 1) / step) - 1;
}

static size_t class_size(int idx)
{
    if (idx < 7)
        return 32 + 16 * (size_t)idx;
    int q = (idx - 7) / 4, r = (idx - 7) % 4, p = 7 + q;
    return ((size_t)1 << p) + (size_t)(r + 1) * ((size_t)1 << (p - 2));
}

static block *header_of(void *ptr) { return (block *)((char *)ptr - HEADER); }
static large_head *large_of(void *ptr) { return (large_head *)((char *)ptr - LARGE_OFFSET); }

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
    pthread_mutex_init(&a->lock, NULL);
    a->binding.mode = mode;
    a->binding.home_node = home_node;
    a->binding.maxnode = maxnode;
    a->binding.nwords = nwords;
    a->huge = huge;
    a->strict = strict;
    a->enforced = 1;
    a->prefault = (nn_prefault_plan){prefault, prefault_threads, a->cpus, ncpus};
    a->stats.cache_limit = DEFAULT_CACHE_LIMIT;
    a->stats.small_limit = SMALL_MAX - HEADER;
    a->stats.enforced = 1;
    return a;
}

void nn_arena_destroy(nn_arena *a)
{
    if (!a)
        return;
    nn_arena_trim(a);
    for (chunk_head *c = a->chunks, *next; c; c = next) {
        next = c->next;
        munmap(c, CHUNK_SIZE);
    }
    pthread_mutex_destroy(&a->lock);
    free(a->binding.mask);
    free(a->cpus);
    free(a);
}

int nn_arena_probe(nn_arena *a)
{
    nn_mapping m;
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    int rc = nn_map(&a->binding, nn_base_page_size(), NN_HUGE_NONE, &none, NN_MAP_STRICT, &m);
    if (rc == 0)
        nn_unmap(&m);
    return rc;
}

void nn_arena_disable_binding(nn_arena *a, int err)
{
    pthread_mutex_lock(&a->lock);
    a->enforced = 0;
    a->stats.enforced = 0;
    a->stats.last_error = err;
    pthread_mutex_unlock(&a->lock);
}

void nn_arena_set_cache_limit(nn_arena *a, size_t bytes)
{
    pthread_mutex_lock(&a->lock);
    a->stats.cache_limit = bytes;
    pthread_mutex_unlock(&a->lock);
    if (a->stats.cached_bytes > bytes)
        nn_arena_trim(a);
}

void nn_arena_stats_get(nn_arena *a, nn_arena_stats *out)
{
    pthread_mutex_lock(&a->lock);
    *out = a->stats;
    pthread_mutex_unlock(&a->lock);
}

size_t nn_arena_trim(nn_arena *a)
{
    nn_mapping victims[CACHE_SLOTS];
    int n;
    size_t bytes = 0;
    pthread_mutex_lock(&a->lock);
    n = a->ncached;
    memcpy(victims, a->cache, (size_t)n * sizeof *victims);
    a->ncached = 0;
    a->stats.cached_bytes = 0;
    pthread_mutex_unlock(&a->lock);
    for (int i = 0; i < n; i++) {
        bytes += victims[i].length;
        nn_unmap(&victims[i]);
    }
    return bytes;
}

/* ---- small blocks ---- */

/* A new CHUNK_SIZE-aligned, policy-bound chunk; called with the lock held. */
static int grow_chunks(nn_arena *a)
{
    nn_mapping m;
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    /* Over-map so a CHUNK_SIZE-aligned window exists, then trim. */
    int huge = a->huge == NN_HUGE_NONE ? NN_HUGE_NONE : NN_HUGE_SYSTEM;
    int rc = nn_map(&a->binding, 2 * CHUNK_SIZE, huge, &none, map_options(a), &m);
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
    a->bump = aligned + LARGE_OFFSET;
    a->bump_end = aligned + CHUNK_SIZE;
    a->stats.chunk_bytes += CHUNK_SIZE;
    return 0;
}

static void *small_alloc(nn_arena *a, size_t size, int zero)
{
    int idx = size_class(size + HEADER);
    size_t bytes = class_size(idx);
    block *b;
    int fresh = 0;
    pthread_mutex_lock(&a->lock);
    if (a->free_lists[idx]) {
        b = (block *)a->free_lists[idx];
        a->free_lists[idx] = ((free_block *)b)->next;
    } else {
        if ((size_t)(a->bump_end - a->bump) < bytes && grow_chunks(a)) {
            pthread_mutex_unlock(&a->lock);
            return NULL;
        }
        b = (block *)a->bump;
        a->bump += bytes;
        fresh = 1; /* never handed out: still zero */
    }
    a->stats.used_bytes += size;
    a->stats.live_blocks++;
    pthread_mutex_unlock(&a->lock);
    b->size = size;
    b->kind = (uint32_t)idx;
    b->magic = MAGIC;
    if (zero && !fresh)
        memset(b + 1, 0, size);
    return b + 1;
}

static void small_free(nn_arena *a, block *b)
{
    pthread_mutex_lock(&a->lock);
    a->stats.used_bytes -= b->size;
    a->stats.live_blocks--;
    ((free_block *)b)->next = a->free_lists[b->kind];
    a->free_lists[b->kind] = (free_block *)b;
    pthread_mutex_unlock(&a->lock);
}

/* ---- large blocks ---- */

static int large_huge_mode(const nn_arena *a, size_t size)
{
    if (a->huge == NN_HUGE_AUTO)
        return size >= AUTO_THP_MIN ? NN_HUGE_TRANSPARENT : NN_HUGE_SYSTEM;
    return a->huge;
}

static size_t large_length(const nn_arena *a, size_t size)
{
    int huge = large_huge_mode(a, size);
    size_t page = nn_huge_page_size(huge == NN_HUGE_TRANSPARENT ? NN_HUGE_NONE : huge);
    return (size + LARGE_OFFSET + page - 1) / page * page;
}

/* Best fit from the cache: no more than a quarter larger than needed. */
static int cache_take(nn_arena *a, size_t need, nn_mapping *out)
{
    int best = -1;
    pthread_mutex_lock(&a->lock);
    for (int i = 0; i < a->ncached; i++) {
        size_t len = a->cache[i].length;
        if (len >= need && len - need <= need / 4 &&
            (best < 0 || len < a->cache[best].length))
            best = i;
    }
    if (best >= 0) {
        *out = a->cache[best];
        a->cache[best] = a->cache[--a->ncached];
        a->stats.cached_bytes -= out->length;
    }
    pthread_mutex_unlock(&a->lock);
    return best >= 0;
}

static void *large_publish(nn_arena *a, const nn_mapping *m, size_t size)
{
    large_head *h = m->base;
    h->owner = a;
    h->map = *m;
    char *ptr = (char *)m->base + LARGE_OFFSET;
    block *b = header_of(ptr);
    b->size = size;
    b->kind = KIND_LARGE;
    b->magic = MAGIC;
    pthread_mutex_lock(&a->lock);
    a->stats.used_bytes += size;
    a->stats.live_blocks++;
    a->stats.large_bytes += m->length;
    pthread_mutex_unlock(&a->lock);
    return ptr;
}

static void *large_alloc(nn_arena *a, size_t size, int zero)
{
    nn_mapping m;
    size_t need = large_length(a, size);
    int reuse = !(zero && size >= CALLOC_FRESH_MIN) && cache_take(a, need, &m);
    if (!reuse) {
        int rc = nn_map(&a->binding, size + LARGE_OFFSET, large_huge_mode(a, size), &a->prefault,
                        map_options(a), &m);
        pthread_mutex_lock(&a->lock);
        if (rc)
            a->stats.last_error = -rc;
        else
            note_mapping(a, &m);
        pthread_mutex_unlock(&a->lock);
        if (rc)
            return NULL;
    }
    void *ptr = large_publish(a, &m, size);
    if (zero && reuse)
        memset(ptr, 0, size);
    return ptr;
}

static void large_free(nn_arena *a, void *ptr)
{
    large_head *h = large_of(ptr);
    nn_mapping m = h->map;
    int cached = 0;
    pthread_mutex_lock(&a->lock);
    a->stats.used_bytes -= header_of(ptr)->size;
    a->stats.live_blocks--;
    a->stats.large_bytes -= m.length;
    if (!(m.status & NN_MAP_MIGRATED) && a->ncached < CACHE_SLOTS &&
        a->stats.cached_bytes + m.length <= a->stats.cache_limit) {
        a->cache[a->ncached++] = m;
        a->stats.cached_bytes += m.length;
        cached = 1;
    }
    pthread_mutex_unlock(&a->lock);
    if (!cached)
        nn_unmap(&m);
}

/* mremap keeps the range's policy for a grown tail. */
static void *large_resize(nn_arena *a, void *ptr, size_t size)
{
    large_head *h = large_of(ptr);
    nn_mapping m = h->map;
    size_t old_size = header_of(ptr)->size;
    size_t len = large_length(a, size);
    if (m.huge == NN_HUGE_EXPLICIT_2MB || m.huge == NN_HUGE_EXPLICIT_1GB)
        return NULL; /* let the caller copy */
    void *base = len == m.length ? m.base : mremap(m.base, m.length, len, MREMAP_MAYMOVE);
    if (base == MAP_FAILED)
        return NULL;
    pthread_mutex_lock(&a->lock);
    a->stats.large_bytes += len - m.length;
    a->stats.used_bytes += size - old_size;
    pthread_mutex_unlock(&a->lock);
    h = base;
    h->map.base = base;
    h->map.length = len;
    char *out = (char *)base + LARGE_OFFSET;
    header_of(out)->size = size;
    return out;
}

/* ---- the allocator interface ---- */

void *nn_arena_malloc(nn_arena *a, size_t size)
{
    if (size <= a->stats.small_limit)
        return small_alloc(a, size, 0);
    return large_alloc(a, size, 0);
}

void *nn_arena_calloc(nn_arena *a, size_t nelem, size_t elsize)
{
    size_t size;
    if (__builtin_mul_overflow(nelem, elsize, &size))
        return NULL;
    if (size <= a->stats.small_limit)
        return small_alloc(a, size, 1);
    return large_alloc(a, size, 1);
}

void nn_arena_free(nn_arena *a, void *ptr)
{
    if (!ptr)
        return;
    block *b = header_of(ptr);
    if (b->kind == KIND_LARGE)
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
    if (b->kind != KIND_LARGE) {
        if (size <= a->stats.small_limit && size_class(size + HEADER) == (int)b->kind) {
            pthread_mutex_lock(&a->lock);
            a->stats.used_bytes += size - old;
            pthread_mutex_unlock(&a->lock);
            b->size = size;
            return ptr;
        }
    } else if (size > a->stats.small_limit) {
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
    if (b->kind == KIND_LARGE) {
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
    if (header_of(ptr)->kind != KIND_LARGE)
        return -EINVAL;
    *base = large_of(ptr)->map.base;
    *length = large_of(ptr)->map.length;
    return 0;
}

int nn_block_mark_migrated(void *ptr)
{
    if (header_of(ptr)->kind != KIND_LARGE)
        return -EINVAL;
    large_of(ptr)->map.status |= NN_MAP_MIGRATED;
    return 0;
}
