#define _GNU_SOURCE
#include "nn_arena.h"
#include "nn_syscalls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_FREE
#define MADV_FREE 8
#endif

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
#define DEFAULT_CACHE_LIMIT ((size_t)1 << 30)
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

/* Every live arena. Lock order: arenas_lock, then an arena's lock. Holding
 * arenas_lock keeps every listed arena alive (destroy unlinks under it). */
static pthread_mutex_t arenas_lock = PTHREAD_MUTEX_INITIALIZER;
static nn_arena *arenas;
static size_t narenas;
static unsigned long long next_arena_id = 1;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* ---- the process-wide cache of freed large blocks ---- */

static struct {
    size_t limit;       /* bytes cached by all arenas together */
    size_t hot_limit;   /* of which not MADV_FREE'd */
    long long decay_ms; /* unused this long: unmapped; < 0 never, 0 no cache */
    size_t cached, lazy; /* atomics; hot = cached - lazy (one atomic on the hot path) */
    size_t reclaimed, decayed, evicted; /* atomics: cumulative bytes */
    size_t chunks; /* atomic: of cached, emptied chunks */
} cache = {(size_t)256 << 20, (size_t)32 << 20, 10000, 0, 0, 0, 0, 0, 0};

static size_t load(const size_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }
static void add(size_t *v, size_t n) { __atomic_add_fetch(v, n, __ATOMIC_RELAXED); }
static void sub(size_t *v, size_t n) { __atomic_sub_fetch(v, n, __ATOMIC_RELAXED); }
static long long decay_ms(void) { return __atomic_load_n(&cache.decay_ms, __ATOMIC_RELAXED); }

/* Coarse (a few ms) is plenty for a decay counted in seconds, and costs about
 * a memory read on the free path. */
static uint64_t now_ms(void)
{
    struct timespec t;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
#else
    clock_gettime(CLOCK_MONOTONIC, &t);
#endif
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static int is_hugetlb(int huge) { return huge == NN_HUGE_EXPLICIT_2MB || huge == NN_HUGE_EXPLICIT_1GB; }

/* The part of a normal-page mapping after its header page: what MADV_FREE may
 * give away (the header page stays; it is rewritten on reuse anyway). */
static char *data_start(const nn_mapping *m) { return (char *)m->base + nn_base_page_size(); }
static size_t data_length(const nn_mapping *m) { return m->length - nn_base_page_size(); }

static size_t hot_now(void)
{
    size_t cached = load(&cache.cached), lazy = load(&cache.lazy);
    return cached > lazy ? cached - lazy : 0;
}

/* Pages of [addr, addr + len) present in memory (mincore); 0 on error. About
 * 10 us per 64 MiB: never on the allocation paths. */
static size_t resident_pages(char *addr, size_t len)
{
    uint64_t vec[512];
    size_t page = nn_base_page_size(), count = 0, span = sizeof vec * page;
    for (size_t off = 0; off < len; off += span) {
        size_t piece = len - off < span ? len - off : span;
        size_t npages = (piece + page - 1) / page;
        memset(vec, 0, sizeof vec);
        if (mincore(addr + off, piece, (unsigned char *)vec) != 0)
            return 0;
        for (size_t i = 0; i < (npages + 7) / 8; i++)
            count += (size_t)__builtin_popcountll(vec[i] & 0x0101010101010101ull);
    }
    return count;
}

/* A lazy entry leaves for good: its pages not in memory now were taken back by
 * the kernel (or never written since they were last given back). */
static void count_reclaimed(const cache_entry *e)
{
    if (!e->lazy || is_hugetlb(e->map.huge))
        return;
    size_t pages = data_length(&e->map) / nn_base_page_size();
    size_t now = resident_pages(data_start(&e->map), data_length(&e->map));
    if (now < pages)
        add(&cache.reclaimed, (pages - now) * nn_base_page_size());
}

/* A cached mapping leaves the cache for good. */
static size_t release_entry(const cache_entry *e, size_t *counter)
{
    count_reclaimed(e);
    if (counter)
        add(counter, e->map.length);
    nn_unmap(&e->map);
    return e->map.length;
}

/* Remove entry i of a's cache (a's lock held), with the accounting. */
static cache_entry remove_entry(nn_arena *a, int i)
{
    cache_entry e = a->cache[i];
    if (i < a->ncached - 1) /* the newest goes first in a steady loop: no call */
        memmove(a->cache + i, a->cache + i + 1, (size_t)(a->ncached - i - 1) * sizeof *a->cache);
    a->ncached--;
    a->stats.cached_bytes -= e.map.length;
    sub(&cache.cached, e.map.length);
    if (e.lazy)
        sub(&cache.lazy, e.map.length);
    if (e.chunk) {
        a->stats.cached_chunk_bytes -= e.map.length;
        sub(&cache.chunks, e.map.length);
    }
    return e;
}

static int oldest_idle(const nn_arena *a)
{
    for (int i = 0; i < a->ncached; i++)
        if (!a->cache[i].busy)
            return i;
    return -1;
}

/* ---- decay: a thread that exists only while something is cached ---- */

/* It sleeps until the oldest cached block's deadline, unmaps what expired, and
 * exits when nothing is cached; the next free that caches a block starts it
 * again. fork() stops it first (so the child inherits no lock it holds, and
 * Python counts no extra thread when it warns about forking with threads);
 * nn_cache_resume() restarts it after fork. It never touches Python. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    int running, pending, stop, paused, failed;
} purger = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};

/* Unmap every entry unused for the decay time; the next deadline (ms, 0: none). */
static uint64_t purge_expired(uint64_t now)
{
    long long decay = decay_ms();
    uint64_t next = 0;
    cache_entry victims[CACHE_SLOTS];
    if (decay < 0)
        return 0;
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *a = arenas; a; a = a->next) {
        int n = 0;
        lock(a);
        for (int i = 0; i < a->ncached;) {
            uint64_t due = a->cache[i].freed_ms + (uint64_t)decay;
            if (!a->cache[i].busy && due <= now) {
                victims[n++] = remove_entry(a, i);
            } else {
                if (!next || due < next)
                    next = due;
                i++;
            }
        }
        unlock(a);
        for (int i = 0; i < n; i++)
            release_entry(&victims[i], &cache.decayed);
    }
    pthread_mutex_unlock(&arenas_lock);
    return next;
}

static void *purger_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&purger.lock);
    while (!purger.stop) {
        purger.pending = 0;
        pthread_mutex_unlock(&purger.lock);
        uint64_t next = purge_expired(now_ms());
        pthread_mutex_lock(&purger.lock);
        if (purger.stop || (!next && !purger.pending))
            break;
        if (!next || purger.pending)
            continue;
        next += 2; /* the coarse clock lags the precise one by a tick */
        struct timespec until = {(time_t)(next / 1000u), (long)(next % 1000u) * 1000000L};
        pthread_cond_timedwait(&purger.cond, &purger.lock, &until);
    }
    purger.running = 0;
    pthread_cond_broadcast(&purger.cond);
    pthread_mutex_unlock(&purger.lock);
    return NULL;
}

/* Something was cached: make sure it will decay. */
static void purger_kick(void)
{
    if (decay_ms() <= 0)
        return;
    if (__atomic_load_n(&purger.running, __ATOMIC_RELAXED) &&
        __atomic_load_n(&purger.pending, __ATOMIC_RELAXED))
        return; /* the steady state: no lock taken */
    int failed = 0;
    pthread_mutex_lock(&purger.lock);
    purger.pending = 1;
    if (!purger.running && !purger.paused) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, (size_t)256 << 10);
        if (pthread_create(&t, &attr, purger_main, NULL) == 0)
            purger.running = 1;
        else
            failed = 1;
        purger.failed = failed;
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&purger.lock);
    if (failed) /* no thread: decay on the free path instead */
        purge_expired(now_ms());
}

/* A setting changed: the thread looks at the cache again now. */
static void purger_poke(void)
{
    pthread_mutex_lock(&purger.lock);
    purger.pending = 1;
    pthread_cond_broadcast(&purger.cond);
    pthread_mutex_unlock(&purger.lock);
}

/* ---- fork: no lock or thread of ours is caught mid-use ---- */

static void before_fork(void)
{
    pthread_mutex_lock(&purger.lock);
    purger.paused = 1;
    if (purger.running) {
        purger.stop = 1;
        pthread_cond_broadcast(&purger.cond);
        while (purger.running)
            pthread_cond_wait(&purger.cond, &purger.lock);
        purger.stop = 0;
    }
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *a = arenas; a; a = a->next)
        lock(a);
}

static void after_fork(void)
{
    for (nn_arena *a = arenas; a; a = a->next)
        unlock(a);
    pthread_mutex_unlock(&arenas_lock);
    purger.paused = 0;
    pthread_mutex_unlock(&purger.lock);
}

static void init_once_fn(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0)
        pthread_cond_init(&purger.cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_atfork(before_fork, after_fork, after_fork);
}

void nn_cache_resume(void)
{
    if (load(&cache.cached))
        purger_kick();
}

/* Drop the globally oldest idle entries until the cache fits `limit`. */
static void evict_global(size_t limit)
{
    while (load(&cache.cached) > limit) {
        cache_entry victim;
        int found = 0;
        pthread_mutex_lock(&arenas_lock);
        nn_arena *best = NULL;
        uint64_t oldest = UINT64_MAX;
        for (nn_arena *a = arenas; a; a = a->next) {
            lock(a);
            int i = oldest_idle(a);
            if (i >= 0 && a->cache[i].freed_ms <= oldest) {
                oldest = a->cache[i].freed_ms;
                best = a;
            }
            unlock(a);
        }
        if (best) {
            lock(best);
            int i = oldest_idle(best);
            if (i >= 0) {
                victim = remove_entry(best, i);
                found = 1;
            }
            unlock(best);
        }
        pthread_mutex_unlock(&arenas_lock);
        if (!found)
            return;
        release_entry(&victim, &cache.evicted);
    }
}

/* Cool a's oldest hot entries (MADV_FREE) while the hot allowance is exceeded;
 * `a` stays alive meanwhile (its own free path, or arenas_lock held). */
static void cool(nn_arena *a)
{
    while (hot_now() > cache.hot_limit) {
        lock(a);
        int i = 0;
        while (i < a->ncached && (a->cache[i].lazy || a->cache[i].busy))
            i++;
        if (i == a->ncached) {
            unlock(a);
            return;
        }
        nn_mapping m = a->cache[i].map;
        a->cache[i].busy = 1;
        a->cache[i].lazy = 1; /* off the hot count now: no other thread cools it too */
        add(&cache.lazy, m.length);
        unlock(a);

        /* hugetlb pages cannot be lazily freed */
        int ok = !is_hugetlb(m.huge) &&
                 madvise(data_start(&m), data_length(&m), MADV_FREE) == 0;
        cache_entry victim;
        int drop = 0;
        lock(a);
        for (int j = 0; j < a->ncached; j++)
            if (a->cache[j].map.base == m.base) {
                a->cache[j].busy = 0;
                if (!ok) { /* give it back instead: it may not stay hot */
                    victim = remove_entry(a, j);
                    victim.lazy = 0;
                    drop = 1;
                }
                break;
            }
        unlock(a);
        if (drop)
            release_entry(&victim, &cache.evicted);
    }
}

void nn_cache_configure(size_t limit, size_t hot_limit, long long decay)
{
    pthread_once(&init_once, init_once_fn);
    cache.limit = limit;
    cache.hot_limit = hot_limit < limit ? hot_limit : limit;
    __atomic_store_n(&cache.decay_ms, decay, __ATOMIC_RELAXED);
    if (decay == 0)
        evict_global(0);
    evict_global(cache.limit);
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *a = arenas; a && hot_now() > cache.hot_limit; a = a->next)
        cool(a);
    pthread_mutex_unlock(&arenas_lock);
    purge_expired(now_ms());
    purger_poke();
    nn_cache_resume();
}

void nn_cache_stats_get(nn_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    out->limit = cache.limit;
    out->hot_limit = cache.hot_limit;
    out->decay_ms = decay_ms();
    out->cached_bytes = load(&cache.cached);
    out->hot_bytes = hot_now();
    out->lazy_bytes = load(&cache.lazy);
    out->reclaimed_bytes = load(&cache.reclaimed);
    out->decayed_bytes = load(&cache.decayed);
    out->evicted_bytes = load(&cache.evicted);
    out->cached_chunk_bytes = load(&cache.chunks);
    pthread_mutex_lock(&purger.lock);
    out->decay_thread = purger.running;
    pthread_mutex_unlock(&purger.lock);
    pthread_mutex_lock(&arenas_lock);
    out->arenas = narenas;
    pthread_mutex_unlock(&arenas_lock);
}

size_t nn_cache_lazy_resident(void)
{
    size_t pages = 0;
    nn_mapping lazy[CACHE_SLOTS];
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *a = arenas; a; a = a->next) {
        int n = 0;
        lock(a);
        for (int i = 0; i < a->ncached; i++)
            if (a->cache[i].lazy && !a->cache[i].busy && !is_hugetlb(a->cache[i].map.huge))
                lazy[n++] = a->cache[i].map;
        unlock(a);
        /* mincore outside the spinlock; a block taken meanwhile counts what it
         * has then (or 0 once unmapped): a snapshot, as all of these are */
        for (int i = 0; i < n; i++)
            pages += resident_pages(data_start(&lazy[i]), data_length(&lazy[i]));
    }
    pthread_mutex_unlock(&arenas_lock);
    return pages * nn_base_page_size();
}

size_t nn_cache_trim(void)
{
    size_t released = 0;
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *a = arenas; a; a = a->next)
        released += nn_arena_trim(a);
    pthread_mutex_unlock(&arenas_lock);
    return released;
}

size_t nn_arena_ids(unsigned long long *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *a = arenas; a; a = a->next, n++)
        if (n < max)
            out[n] = a->id;
    pthread_mutex_unlock(&arenas_lock);
    return n;
}

static nn_arena *find_arena(unsigned long long id)
{
    for (nn_arena *a = arenas; a; a = a->next)
        if (a->id == id)
            return a;
    return NULL;
}

int nn_arena_stats_by_id(unsigned long long id, nn_arena_stats *out)
{
    pthread_mutex_lock(&arenas_lock);
    nn_arena *a = find_arena(id);
    if (a)
        nn_arena_stats_get(a, out);
    pthread_mutex_unlock(&arenas_lock);
    return a ? 0 : -ENOENT;
}

long long nn_arena_trim_by_id(unsigned long long id)
{
    pthread_mutex_lock(&arenas_lock);
    nn_arena *a = find_arena(id);
    long long released = a ? (long long)nn_arena_trim(a) : -ENOENT;
    pthread_mutex_unlock(&arenas_lock);
    return released;
}

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

size_t nn_arena_check_size_classes(void)
{
    for (size_t size = 1; size <= SMALL_MAX; size++) {
        int idx = size_class(size);
        /* the class holds the request, and the class below would not */
        if (idx < 0 || idx >= NCLASSES || class_bytes(idx) - HEADER < size ||
            (idx > 0 && class_bytes(idx - 1) - HEADER >= size))
            return size;
    }
    for (int idx = 0; idx < NCLASSES; idx++) /* each class's largest request maps back */
        if (size_class(class_bytes(idx) - HEADER) != idx)
            return class_bytes(idx) - HEADER;
    return 0;
}

static block *header_of(void *ptr) { return (block *)((char *)ptr - HEADER); }

/* The chunk a small block lies in (chunks are CHUNK_SIZE-aligned). */
static chunk_head *chunk_of(void *ptr)
{
    return (chunk_head *)((uintptr_t)ptr & ~(uintptr_t)(CHUNK_SIZE - 1));
}

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

nn_arena *nn_arena_new(const nn_binding *binding, int huge, const nn_prefault_plan *prefault,
                       int strict)
{
    static const nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    if (!prefault)
        prefault = &none;
    size_t nwords = binding->mask ? binding->nwords : 0;
    int ncpus = prefault->cpus ? prefault->ncpus : 0;
    nn_arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->binding = *binding;
    a->binding.nwords = nwords;
    a->binding.mask = NULL;
    if (nwords) {
        a->binding.mask = malloc(nwords * sizeof *binding->mask);
        if (!a->binding.mask) {
            free(a);
            return NULL;
        }
        memcpy(a->binding.mask, binding->mask, nwords * sizeof *binding->mask);
    }
    if (ncpus > 0) {
        a->cpus = malloc((size_t)ncpus * sizeof *prefault->cpus);
        if (!a->cpus) {
            free(a->binding.mask);
            free(a);
            return NULL;
        }
        memcpy(a->cpus, prefault->cpus, (size_t)ncpus * sizeof *prefault->cpus);
    }
    a->huge = huge;
    a->strict = strict;
    a->enforced = 1;
    a->prefault = (nn_prefault_plan){prefault->mode, prefault->nthreads, a->cpus,
                                     ncpus > 0 ? ncpus : 0};
    a->stats.cache_limit = DEFAULT_CACHE_LIMIT;
    a->stats.small_limit = SMALL_MAX;
    a->stats.enforced = 1;

    pthread_once(&init_once, init_once_fn);
    pthread_mutex_lock(&arenas_lock);
    a->id = next_arena_id++;
    a->stats.id = a->id;
    a->next = arenas;
    if (arenas)
        arenas->prev = a;
    arenas = a;
    narenas++;
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
    narenas--;
    pthread_mutex_unlock(&arenas_lock);
    nn_arena_trim(a);
    for (chunk_head *c = a->chunks, *next; c; c = next) {
        next = c->next;
        munmap(c, CHUNK_SIZE);
    }
    free(a->binding.mask);
    for (int i = 0; i < a->nparts; i++)
        free(a->parts[i].mask);
    free(a->parts);
    free(a->cpus);
    free(a);
}

static int probe_binding(const nn_binding *b)
{
    nn_mapping m;
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    int rc = nn_map(b, nn_base_page_size(), 0, NN_HUGE_NONE, &none, NN_MAP_STRICT, &m);
    if (rc == 0)
        nn_unmap(&m);
    return rc;
}

int nn_arena_probe(nn_arena *a)
{
    int rc = probe_binding(&a->binding);
    for (int i = 0; rc == 0 && i < a->nparts; i++)
        rc = probe_binding(&a->parts[i]);
    return rc;
}

int nn_arena_set_parts(nn_arena *a, const nn_binding *parts, int nparts)
{
    if (nparts < 1 || nparts > NN_MAX_PARTS || is_hugetlb(a->huge) || a->nparts)
        return -EINVAL;
    nn_binding *copy = calloc((size_t)nparts, sizeof *copy);
    if (!copy)
        return -ENOMEM;
    for (int i = 0; i < nparts; i++) {
        copy[i] = parts[i];
        copy[i].mask = NULL;
        copy[i].nwords = parts[i].mask ? parts[i].nwords : 0;
        if (copy[i].nwords) {
            copy[i].mask = malloc(copy[i].nwords * sizeof *copy[i].mask);
            if (!copy[i].mask) {
                while (i--)
                    free(copy[i].mask);
                free(copy);
                return -ENOMEM;
            }
            memcpy(copy[i].mask, parts[i].mask, copy[i].nwords * sizeof *copy[i].mask);
        }
    }
    a->parts = copy;
    a->nparts = nparts;
    return 0;
}

void nn_arena_disable_binding(nn_arena *a, int err)
{
    lock(a);
    a->enforced = 0;
    a->stats.enforced = 0;
    a->stats.last_error = err;
    unlock(a);
}

/* Take the oldest idle entries out of a's cache until it holds at most `limit`
 * bytes (and has a free slot if `want_slot`); they go into `out`. */
static int evict_own(nn_arena *a, size_t limit, int want_slot, cache_entry *out)
{
    int n = 0, i;
    while ((a->stats.cached_bytes > limit || (want_slot && a->ncached == CACHE_SLOTS)) &&
           (i = oldest_idle(a)) >= 0)
        out[n++] = remove_entry(a, i);
    return n;
}

static size_t release_all(const cache_entry *entries, int n, size_t *counter)
{
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += release_entry(&entries[i], counter);
    return bytes;
}

void nn_arena_set_cache_limit(nn_arena *a, size_t bytes)
{
    cache_entry victims[CACHE_SLOTS];
    lock(a);
    a->stats.cache_limit = bytes;
    int n = evict_own(a, bytes, 0, victims);
    unlock(a);
    release_all(victims, n, &cache.evicted);
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
    for (size_t i = 0; out && i < n && i < max; i++)
        out[i] = a->cache[i].map;
    unlock(a);
    return n;
}

size_t nn_arena_trim(nn_arena *a)
{
    cache_entry victims[CACHE_SLOTS];
    lock(a);
    int n = evict_own(a, 0, 0, victims);
    unlock(a);
    return release_all(victims, n, NULL);
}

/* Make room in a's own cache for `len` more bytes and a slot, unmapping the
 * oldest outside the lock (a few at a time: a small stack on the free path). */
static void make_room(nn_arena *a, size_t len)
{
    for (;;) {
        cache_entry victims[4];
        int n = 0, i;
        lock(a);
        while (n < 4 &&
               (a->stats.cached_bytes + len > a->stats.cache_limit || a->ncached == CACHE_SLOTS) &&
               (i = oldest_idle(a)) >= 0)
            victims[n++] = remove_entry(a, i);
        unlock(a);
        if (!n)
            return;
        release_all(victims, n, &cache.evicted);
    }
}

/* a's lock held: keep `m` in a's cache if the arena's cap and a slot allow. */
static int cache_insert(nn_arena *a, const nn_mapping *m, int chunk, uint64_t now)
{
    if (a->ncached >= CACHE_SLOTS || a->stats.cached_bytes + m->length > a->stats.cache_limit)
        return 0;
    a->cache[a->ncached++] = (cache_entry){*m, now, 0, 0, (unsigned char)chunk};
    a->stats.cached_bytes += m->length;
    add(&cache.cached, m->length);
    if (chunk) {
        a->stats.cached_chunk_bytes += m->length;
        add(&cache.chunks, m->length);
    }
    return 1;
}

/* Whether a freed mapping of `len` bytes may be cached at all (the arena's
 * cap is checked again under its lock). */
static int cacheable(const nn_arena *a, size_t len)
{
    return len <= a->stats.cache_limit && len <= cache.limit && decay_ms() != 0;
}

/* Something was cached by a: the hot allowance, the budget and decay apply. */
static void cache_settle(nn_arena *a)
{
    if (hot_now() > cache.hot_limit)
        cool(a);
    if (load(&cache.cached) > cache.limit)
        evict_global(cache.limit);
    purger_kick();
}

/* ---- small blocks ---- */

static int chunk_huge(const nn_arena *a) { return a->huge == NN_HUGE_NONE ? NN_HUGE_NONE : NN_HUGE_SYSTEM; }

/* A new CHUNK_SIZE-aligned, policy-bound chunk, mapped without the arena's
 * lock (mmap + mbind take microseconds; other threads' small blocks go on). */
static int map_chunk(nn_arena *a, chunk_head **out, nn_mapping *m)
{
    nn_prefault_plan none = {NN_PREFAULT_NONE, 0, NULL, 0};
    int huge = chunk_huge(a);
    /* Over-map so a CHUNK_SIZE-aligned window exists, then trim. */
    int rc = nn_map(&a->binding, 2 * CHUNK_SIZE, 0, huge, &none, map_options(a), m);
    if (rc)
        return rc;
    char *start = m->base;
    char *aligned = (char *)(((uintptr_t)start + CHUNK_SIZE - 1) & ~(uintptr_t)(CHUNK_SIZE - 1));
    if (aligned > start)
        munmap(start, (size_t)(aligned - start));
    if (start + m->length > aligned + CHUNK_SIZE)
        munmap(aligned + CHUNK_SIZE, (size_t)(start + m->length - aligned - CHUNK_SIZE));
    chunk_head *c = (chunk_head *)aligned;
    c->owner = a;
    c->status = m->status;
    c->live = 0;
    c->end = (char *)c + CHUNK_HEAD;
    *out = c;
    return 0;
}

/* Carve from c next (lock held); `dirty`: its free space may hold old bytes. */
static void use_chunk(nn_arena *a, chunk_head *c, int dirty)
{
    if (a->cur)
        a->cur->end = a->bump;
    a->cur = c;
    c->end = (char *)c + CHUNK_HEAD;
    a->bump = (char *)c + CHUNK_HEAD;
    a->bump_end = (char *)c + CHUNK_SIZE;
    a->bump_dirty = dirty;
}

static void link_chunk(nn_arena *a, chunk_head *c)
{
    c->prev = NULL;
    c->next = a->chunks;
    if (a->chunks)
        a->chunks->prev = c;
    a->chunks = c;
    a->stats.chunk_bytes += CHUNK_SIZE;
}

static void unlink_chunk(nn_arena *a, chunk_head *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        a->chunks = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->stats.chunk_bytes -= CHUNK_SIZE;
}

/* Take every block carved from chunk c (up to `end`; all free) off the free
 * lists (lock held). Each block's class says where the next one starts. */
static void unlist_blocks(nn_arena *a, chunk_head *c, char *end)
{
    for (char *p = (char *)c + CHUNK_HEAD; p < end;) {
        free_block *f = (free_block *)p;
        int idx = (int)f->kind;
        if (idx < 0 || idx >= NCLASSES || f->magic != MAGIC)
            break; /* cannot happen: blocks are carved back to back */
        if (a->free_lists[idx] == f)
            a->free_lists[idx] = f->next;
        else
            f->prev->next = f->next;
        if (f->next)
            f->next->prev = f->prev;
        p += class_bytes(idx);
    }
}

/* The newest idle emptied chunk in a's cache (lock held), or -1. */
static int cached_chunk(const nn_arena *a)
{
    for (int i = a->ncached - 1; i >= 0; i--)
        if (a->cache[i].chunk && !a->cache[i].busy)
            return i;
    return -1;
}

/* An emptied chunk leaves the small blocks (a's lock not held): into the
 * cache under the budget's rules, as a freed large block would, or unmapped. */
static void chunk_release(nn_arena *a, chunk_head *c)
{
    nn_mapping m = {c, CHUNK_SIZE, nn_base_page_size(), chunk_huge(a), c->status, 0};
    int cached = 0;
    if (cacheable(a, CHUNK_SIZE)) {
        if (a->ncached == CACHE_SLOTS || a->stats.cached_bytes + CHUNK_SIZE > a->stats.cache_limit)
            make_room(a, CHUNK_SIZE);
        uint64_t now = now_ms();
        lock(a);
        cached = cache_insert(a, &m, 1, now);
        unlock(a);
    }
    if (!cached) {
        nn_unmap(&m);
        return;
    }
    cache_settle(a);
}

/* Room for `bytes` at the bump pointer; called and returns with the lock held. */
static int grow_chunks(nn_arena *a, size_t bytes)
{
    while ((size_t)(a->bump_end - a->bump) < bytes) {
        if (a->cur && a->cur->live == 0) {
            /* every block carved from the current chunk is free: carve it anew */
            unlist_blocks(a, a->cur, a->bump);
            a->bump = (char *)a->cur + CHUNK_HEAD;
            a->bump_dirty = 1;
            continue;
        }
        if (a->spare) {
            use_chunk(a, a->spare, 0);
            a->spare = NULL;
            continue;
        }
        int i = cached_chunk(a);
        if (i >= 0) { /* an emptied chunk from the cache: no system call */
            cache_entry e = remove_entry(a, i);
            chunk_head *c = e.map.base;
            c->owner = a;
            c->status = e.map.status;
            c->live = 0;
            link_chunk(a, c);
            use_chunk(a, c, 1);
            continue;
        }
        chunk_head *c;
        nn_mapping m;
        unlock(a);
        int rc = map_chunk(a, &c, &m);
        lock(a);
        if (rc) {
            a->stats.last_error = -rc;
            return rc;
        }
        note_mapping(a, &m);
        link_chunk(a, c);
        if ((size_t)(a->bump_end - a->bump) >= bytes && !a->spare)
            a->spare = c; /* another thread grew meanwhile: keep ours for later */
        else
            use_chunk(a, c, 0);
    }
    return 0;
}

static void *small_alloc(nn_arena *a, size_t size, int zero)
{
    int idx = size_class(size);
    size_t bytes = class_bytes(idx);
    block *b;
    int fresh = 0;
    lock(a);
    free_block *f = a->free_lists[idx];
    if (f) {
        a->free_lists[idx] = f->next; /* the new head's prev goes stale: never read */
        b = (block *)f;
    } else {
        if (grow_chunks(a, bytes)) {
            unlock(a);
            return NULL;
        }
        b = (block *)a->bump;
        a->bump += bytes;
        fresh = !a->bump_dirty; /* never handed out: still zero */
    }
    chunk_of(b)->live++;
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
    chunk_head *c = chunk_of(b);
    free_block *f = (free_block *)b;
    uint32_t idx = b->kind;
    lock(a);
    a->stats.used_bytes -= b->size;
    a->stats.live_blocks--;
    free_block *head = a->free_lists[idx];
    f->next = head;
    if (head)
        head->prev = f;
    a->free_lists[idx] = f;
    int empty = --c->live == 0 && c != a->cur;
    if (empty) { /* rare: a chunk's last block */
        unlist_blocks(a, c, c->end);
        unlink_chunk(a, c);
        a->stats.released_chunk_bytes += CHUNK_SIZE;
    }
    unlock(a);
    if (empty)
        chunk_release(a, c);
}

/* ---- large blocks: [header page][data...] ---- */

static int large_huge_mode(const nn_arena *a, size_t size)
{
    if (a->huge == NN_HUGE_AUTO)
        return size >= NN_AUTO_THP_MIN ? NN_HUGE_TRANSPARENT : NN_HUGE_SYSTEM;
    return a->huge;
}

/* The header page keeps the data page-aligned and, with THP, 2 MiB-aligned;
 * in a hugetlb mapping every page is huge, so the header shares the first. */
static size_t large_lead(int huge)
{
    return is_hugetlb(huge) ? LARGE_HUGETLB_OFFSET : nn_base_page_size();
}

/* Every large mapping is asked for with a base page of room before the data,
 * so a hugetlb request that falls back to normal pages still fits its data.
 * (size <= MAX_REQUEST: no overflow.) */
static size_t large_request(size_t size) { return size + nn_base_page_size(); }

static size_t large_length(const nn_arena *a, size_t size)
{
    int huge = large_huge_mode(a, size);
    size_t page = is_hugetlb(huge) ? nn_huge_page_size(huge) : nn_base_page_size();
    return (large_request(size) + page - 1) / page * page;
}

/* ---- partitioned blocks ---- */

/* The calling thread's request for its next partitioned block. */
static __thread struct {
    int set, ncuts;
    size_t granule;
    size_t cut[NN_MAX_PARTS - 1];
} next_block;

void nn_arena_next_block(size_t granule, const size_t *cuts, int ncuts)
{
    next_block.set = granule > 0 || ncuts > 0;
    next_block.granule = granule ? granule : 1;
    next_block.ncuts = ncuts > 0 && ncuts < NN_MAX_PARTS ? ncuts : 0;
    for (int i = 0; i < next_block.ncuts; i++)
        next_block.cut[i] = cuts[i];
}

/* Least common multiple; 0 when it does not fit a size_t. */
static size_t lcm(size_t a, size_t b)
{
    size_t x = a, y = b, out;
    while (y) {
        size_t t = x % y;
        x = y;
        y = t;
    }
    return __builtin_mul_overflow(a / x, b, &out) ? 0 : out;
}

/* The default split of `size` bytes into k parts: the largest unit (THP, then
 * base page; each a multiple of `granule`) of which there are at least k,
 * shared as evenly as possible; else granules shared evenly. */
static void default_cuts(size_t size, size_t granule, int thp, int k, size_t *cut)
{
    size_t units[2] = {thp ? lcm((size_t)2 << 20, granule) : 0, lcm(nn_base_page_size(), granule)};
    for (int u = 0; u < 2; u++) {
        size_t unit = units[u], n = unit ? (size + unit - 1) / unit : 0;
        if (unit && n >= (size_t)k) {
            for (int i = 1; i < k; i++) {
                size_t c = (size_t)((unsigned __int128)i * n / (unsigned)k) * unit;
                cut[i - 1] = c < size ? c : size;
            }
            return;
        }
    }
    size_t rows = size / granule;
    for (int i = 1; i < k; i++)
        cut[i - 1] = (size_t)((unsigned __int128)i * rows / (unsigned)k) * granule;
}

void nn_partition_cuts(size_t size, size_t granule, int thp, int k, size_t *cuts)
{
    if (k > 1)
        default_cuts(size, granule ? granule : 1, thp, k, cuts);
}

/* The cuts of a's next block of `size` bytes (this thread's request, consumed). */
static void block_cuts(const nn_arena *a, size_t size, int huge, size_t *cut)
{
    int k = a->nparts;
    if (next_block.set && next_block.ncuts == k - 1) {
        for (int i = 0; i < k - 1; i++)
            cut[i] = next_block.cut[i] < size ? next_block.cut[i] : size;
    } else {
        default_cuts(size, next_block.set ? next_block.granule : 1, huge == NN_HUGE_TRANSPARENT,
                     k, cut);
    }
    for (int i = 1; i < k - 1; i++) /* ascending, whatever the caller sent */
        if (cut[i] < cut[i - 1])
            cut[i] = cut[i - 1];
    next_block.set = 0;
}

static part_cuts *cuts_of(const nn_mapping *m)
{
    return (part_cuts *)((char *)m->base + sizeof(large_head));
}

/* Best fit from the cache: no more than a quarter larger than needed. Fills
 * only what the caller uses, field by field (a whole-struct copy through the
 * stack costs store-forwarding stalls on the hottest path). */
static int cache_take(nn_arena *a, size_t need, const size_t *cut, nn_mapping *out, int *lazy)
{
    int best = -1;
    size_t cut_bytes = a->nparts ? (size_t)(a->nparts - 1) * sizeof *cut : 0;
    lock(a);
    for (int i = 0; i < a->ncached; i++) {
        size_t len = a->cache[i].map.length;
        /* a partitioned mapping is bound range by range: only the same cuts fit */
        if (!a->cache[i].busy && !a->cache[i].chunk && len >= need && len - need <= need / 4 &&
            (best < 0 || len < a->cache[best].map.length) &&
            (!cut_bytes || memcmp(cuts_of(&a->cache[i].map)->cut, cut, cut_bytes) == 0))
            best = i;
    }
    if (best >= 0) {
        cache_entry *e = &a->cache[best];
        *out = e->map;
        *lazy = e->lazy;
        a->stats.cached_bytes -= e->map.length;
        sub(&cache.cached, e->map.length);
        if (e->lazy)
            sub(&cache.lazy, e->map.length);
        if (best < a->ncached - 1)
            memmove(e, e + 1, (size_t)(a->ncached - best - 1) * sizeof *e);
        a->ncached--;
    }
    unlock(a);
    return best >= 0;
}

static void *large_publish(nn_arena *a, const nn_mapping *m, size_t size, const size_t *cut)
{
    large_head *h = m->base;
    h->owner = a;
    h->map = *m;
    h->map.status &= ~NN_MAP_MIGRATED;
    if (a->nparts > 1)
        memcpy(cuts_of(m)->cut, cut, (size_t)(a->nparts - 1) * sizeof *cut);
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

/* A new mapping for a large block: under the arena's binding, or range by
 * range under its parts (from round_up(cut, page) after the header page). */
static int large_map(nn_arena *a, size_t size, int huge, const size_t *cut, nn_mapping *m)
{
    size_t lead = large_lead(huge);
    if (a->nparts == 0)
        return nn_map(&a->binding, large_request(size), lead, huge, &a->prefault,
                      map_options(a), m);
    size_t offsets[NN_MAX_PARTS - 1], page = nn_base_page_size();
    for (int i = 0; i < a->nparts - 1; i++)
        offsets[i] = lead + (cut[i] + page - 1) / page * page;
    return nn_map_parts(a->parts, a->nparts, offsets, large_request(size), lead, huge,
                        &a->prefault, map_options(a), m);
}

static void *large_alloc(nn_arena *a, size_t size, int zero)
{
    nn_mapping m;
    int lazy = 0;
    int huge = large_huge_mode(a, size);
    size_t cut[NN_MAX_PARTS - 1];
    if (a->nparts)
        block_cuts(a, size, huge, cut);
    int reuse = cache_take(a, large_length(a, size), cut, &m, &lazy);
    if (!reuse) {
        int rc = large_map(a, size, huge, cut, &m);
        lock(a);
        if (rc)
            a->stats.last_error = -rc;
        else
            note_mapping(a, &m);
        unlock(a);
        if (rc)
            return NULL;
    }
    char *ptr = large_publish(a, &m, size, cut);
    if (reuse && zero) {
        /* Data runs page-aligned to the mapping's end: MADV_DONTNEED gives the
         * frames back and they fault in as zero, under the range's policy. Small
         * sizes, hugetlb and prefaulted arenas (whose pages must stay present)
         * clear with memset instead. */
        size_t data = (size_t)((char *)m.base + m.length - ptr);
        if (size <= CALLOC_MEMSET_MAX || is_hugetlb(m.huge) ||
            a->prefault.mode != NN_PREFAULT_NONE || madvise(ptr, data, MADV_DONTNEED) != 0)
            memset(ptr, 0, size);
    } else if (reuse && lazy && a->prefault.mode != NN_PREFAULT_NONE) {
        /* The kernel may have taken some pages: fault them back in now, under
         * the policy, as a prefaulted block promises. */
        int rc = nn_populate(ptr, (size_t)((char *)m.base + m.length - ptr), m.page_size,
                             &a->prefault);
        if (rc) {
            lock(a);
            a->stats.last_error = -rc;
            unlock(a);
        }
    }
    return ptr;
}

static void large_free(nn_arena *a, void *ptr)
{
    large_head *h = large_of(ptr);
    nn_mapping m = h->map;
    int cached = 0;
    uint64_t now = now_ms();
    /* A migrated block follows another policy now: it must not be reused as ours. */
    int keep = !(m.status & NN_MAP_MIGRATED) && cacheable(a, m.length);
    if (keep && (a->ncached == CACHE_SLOTS ||
                 a->stats.cached_bytes + m.length > a->stats.cache_limit))
        make_room(a, m.length);
    lock(a);
    a->stats.used_bytes -= header_of(ptr)->size;
    a->stats.live_blocks--;
    a->stats.large_bytes -= m.length;
    if (keep)
        cached = cache_insert(a, &m, 0, now);
    unlock(a);
    if (!cached) {
        nn_unmap(&m);
        return;
    }
    cache_settle(a);
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
    if (len > m.length && a->prefault.mode != NN_PREFAULT_NONE) {
        /* A prefaulted block has every page present: the grown tail too. */
        int rc = nn_populate((char *)base + m.length, len - m.length, page, &a->prefault);
        if (rc) {
            lock(a);
            a->stats.last_error = -rc;
            unlock(a);
        }
    }
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

static void *too_large(nn_arena *a)
{
    lock(a);
    a->stats.last_error = ENOMEM;
    unlock(a);
    return NULL;
}

void *nn_arena_malloc(nn_arena *a, size_t size)
{
    if (size <= SMALL_MAX)
        return small_alloc(a, size, 0);
    if (size > MAX_REQUEST)
        return too_large(a);
    return large_alloc(a, size, 0);
}

void *nn_arena_calloc(nn_arena *a, size_t nelem, size_t elsize)
{
    size_t size;
    if (__builtin_mul_overflow(nelem, elsize, &size) || size > MAX_REQUEST)
        return too_large(a);
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
    if (size > MAX_REQUEST)
        return too_large(a); /* the old block stays valid */
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

/* ---- whose block is this ---- */

/* Copy n bytes from addr without faulting when addr is not readable: a foreign
 * pointer's neighbourhood may be unmapped or PROT_NONE. */
static int read_safely(const void *addr, void *out, size_t n)
{
    struct iovec local = {out, n}, remote = {(void *)addr, n};
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (got == (ssize_t)n)
        return 0;
    if (got < 0 && (errno == ENOSYS || errno == EPERM)) {
        /* no process_vm_readv (seccomp): a pipe's write copies or says EFAULT */
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            return -errno;
        ssize_t w = write(fds[1], addr, n);
        int rc = w == (ssize_t)n && read(fds[0], out, n) == (ssize_t)n ? 0 : -EFAULT;
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
    return -EFAULT;
}

static int arena_is_live(const nn_arena *a)
{
    int live = 0;
    pthread_mutex_lock(&arenas_lock);
    for (nn_arena *x = arenas; x && !live; x = x->next)
        live = x == a;
    pthread_mutex_unlock(&arenas_lock);
    return live;
}

nn_arena *nn_block_owner(void *ptr, size_t *size, int *status)
{
    block b;
    if (!ptr || read_safely(header_of(ptr), &b, sizeof b) || b.magic != MAGIC)
        return NULL;
    nn_arena *owner;
    int st;
    if (b.kind == KIND_LARGE || b.kind == KIND_HUGETLB) {
        size_t lead = b.kind == KIND_HUGETLB ? LARGE_HUGETLB_OFFSET : nn_base_page_size();
        large_head h;
        if (read_safely((char *)ptr - lead, &h, sizeof h) ||
            (char *)h.map.base != (char *)ptr - lead)
            return NULL;
        owner = h.owner;
        st = h.map.status;
    } else if (b.kind < NCLASSES) {
        chunk_head c;
        if (read_safely(chunk_of(ptr), &c, sizeof c))
            return NULL;
        owner = c.owner;
        st = c.status;
    } else {
        return NULL;
    }
    if (!arena_is_live(owner))
        return NULL;
    if (size)
        *size = b.size;
    if (status)
        *status = st;
    return owner;
}

int nn_block_mapping(void *ptr, void **base, size_t *length)
{
    if (!is_large(header_of(ptr)))
        return -EINVAL;
    *base = large_of(ptr)->map.base;
    *length = large_of(ptr)->map.length;
    return 0;
}

int nn_block_parts(void *ptr, size_t *bounds, int max)
{
    block *b = header_of(ptr);
    nn_arena *a = is_large(b) ? large_of(ptr)->owner : chunk_of(ptr)->owner;
    int k = !a->nparts ? 0 : is_large(b) ? a->nparts : 1;
    if (k == 0 || max < k + 1)
        return k;
    bounds[0] = 0;
    for (int i = 1; i < k; i++) {
        size_t c = cuts_of(&large_of(ptr)->map)->cut[i - 1];
        bounds[i] = c < b->size ? c : b->size; /* a block shrunk in place */
    }
    bounds[k] = b->size;
    return k;
}

int nn_block_mark_migrated(void *ptr)
{
    if (!is_large(header_of(ptr)))
        return -EINVAL;
    large_of(ptr)->map.status |= NN_MAP_MIGRATED;
    return 0;
}
