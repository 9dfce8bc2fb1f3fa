/* The process-wide cache of freed mappings (large blocks and emptied chunks):
 * one budget over every arena, a hot allowance beyond which blocks are
 * MADV_FREE'd, eviction of the oldest, and decay by a thread that exists only
 * while something is cached (stopped around fork). */
#define _GNU_SOURCE
#include "nn_arena_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_FREE
#define MADV_FREE 8
#endif

/* ---- the process-wide cache of freed large blocks ---- */

/* Unconfigured until nn_cache_configure (the Python layer's budget, set when
 * the package is imported): a zero budget and decay 0 cache nothing, so a block
 * freed before then is unmapped, never kept under numbers of C's own. */
static struct {
    size_t limit;       /* bytes cached by all arenas together */
    size_t hot_limit;   /* of which not MADV_FREE'd */
    long long decay_ms; /* unused this long: unmapped; < 0 never, 0 no cache */
    size_t cached, lazy; /* atomics; hot = cached - lazy (one atomic on the hot path) */
    size_t reclaimed, decayed, evicted; /* atomics: cumulative bytes */
    size_t chunks; /* atomic: of cached, emptied chunks */
} cache;

static size_t load(const size_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }
static void add(size_t *v, size_t n) { __atomic_add_fetch(v, n, __ATOMIC_RELAXED); }
static void sub(size_t *v, size_t n) { __atomic_sub_fetch(v, n, __ATOMIC_RELAXED); }
static long long decay_ms(void) { return __atomic_load_n(&cache.decay_ms, __ATOMIC_RELAXED); }

/* Coarse (a few ms) is plenty for a decay counted in seconds, and costs about
 * a memory read on the free path. */
uint64_t nn_now_ms(void)
{
    struct timespec t;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
#else
    clock_gettime(CLOCK_MONOTONIC, &t);
#endif
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

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
cache_entry nn_cache_remove(nn_arena *a, int i)
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
    pthread_mutex_lock(&nn_arenas_lock);
    for (nn_arena *a = nn_arenas; a; a = a->next) {
        int n = 0;
        lock(a);
        for (int i = 0; i < a->ncached;) {
            uint64_t due = a->cache[i].freed_ms + (uint64_t)decay;
            if (!a->cache[i].busy && due <= now) {
                victims[n++] = nn_cache_remove(a, i);
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
    pthread_mutex_unlock(&nn_arenas_lock);
    return next;
}

static void *purger_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&purger.lock);
    while (!purger.stop) {
        purger.pending = 0;
        pthread_mutex_unlock(&purger.lock);
        uint64_t next = purge_expired(nn_now_ms());
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
        purge_expired(nn_now_ms());
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
    pthread_mutex_lock(&nn_arenas_lock);
    for (nn_arena *a = nn_arenas; a; a = a->next)
        lock(a);
}

static void after_fork(void)
{
    for (nn_arena *a = nn_arenas; a; a = a->next)
        unlock(a);
    pthread_mutex_unlock(&nn_arenas_lock);
    purger.paused = 0;
    pthread_mutex_unlock(&purger.lock);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_once_fn(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0)
        pthread_cond_init(&purger.cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_atfork(before_fork, after_fork, after_fork);
}

void nn_cache_init(void) { pthread_once(&init_once, init_once_fn); }

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
        pthread_mutex_lock(&nn_arenas_lock);
        nn_arena *best = NULL;
        uint64_t oldest = UINT64_MAX;
        for (nn_arena *a = nn_arenas; a; a = a->next) {
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
                victim = nn_cache_remove(best, i);
                found = 1;
            }
            unlock(best);
        }
        pthread_mutex_unlock(&nn_arenas_lock);
        if (!found)
            return;
        release_entry(&victim, &cache.evicted);
    }
}

/* Cool a's oldest hot entries (MADV_FREE) while the hot allowance is exceeded;
 * `a` stays alive meanwhile (its own free path, or nn_arenas_lock held). */
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
                    victim = nn_cache_remove(a, j);
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
    nn_cache_init();
    cache.limit = limit;
    cache.hot_limit = hot_limit < limit ? hot_limit : limit;
    __atomic_store_n(&cache.decay_ms, decay, __ATOMIC_RELAXED);
    if (decay == 0)
        evict_global(0);
    evict_global(cache.limit);
    pthread_mutex_lock(&nn_arenas_lock);
    for (nn_arena *a = nn_arenas; a && hot_now() > cache.hot_limit; a = a->next)
        cool(a);
    pthread_mutex_unlock(&nn_arenas_lock);
    purge_expired(nn_now_ms());
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
    pthread_mutex_lock(&nn_arenas_lock);
    out->arenas = nn_narenas;
    pthread_mutex_unlock(&nn_arenas_lock);
}

size_t nn_cache_lazy_resident(void)
{
    size_t pages = 0;
    nn_mapping lazy[CACHE_SLOTS];
    pthread_mutex_lock(&nn_arenas_lock);
    for (nn_arena *a = nn_arenas; a; a = a->next) {
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
    pthread_mutex_unlock(&nn_arenas_lock);
    return pages * nn_base_page_size();
}

size_t nn_cache_trim(void)
{
    size_t released = 0;
    pthread_mutex_lock(&nn_arenas_lock);
    for (nn_arena *a = nn_arenas; a; a = a->next)
        released += nn_arena_trim(a);
    pthread_mutex_unlock(&nn_arenas_lock);
    return released;
}

/* ---- one arena's side of the cache ---- */

/* Take the oldest idle entries out of a's cache until it holds at most `limit`
 * bytes (and has a free slot if `want_slot`); they go into `out`. */
static int evict_own(nn_arena *a, size_t limit, int want_slot, cache_entry *out)
{
    int n = 0, i;
    while ((a->stats.cached_bytes > limit || (want_slot && a->ncached == CACHE_SLOTS)) &&
           (i = oldest_idle(a)) >= 0)
        out[n++] = nn_cache_remove(a, i);
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
void nn_cache_make_room(nn_arena *a, size_t len)
{
    for (;;) {
        cache_entry victims[4];
        int n = 0, i;
        lock(a);
        while (n < 4 &&
               (a->stats.cached_bytes + len > a->stats.cache_limit || a->ncached == CACHE_SLOTS) &&
               (i = oldest_idle(a)) >= 0)
            victims[n++] = nn_cache_remove(a, i);
        unlock(a);
        if (!n)
            return;
        release_all(victims, n, &cache.evicted);
    }
}

/* a's lock held: keep `m` in a's cache if the arena's cap and a slot allow. */
int nn_cache_insert(nn_arena *a, const nn_mapping *m, int chunk, uint64_t now)
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
int nn_cacheable(const nn_arena *a, size_t len)
{
    return len <= a->stats.cache_limit && len <= cache.limit && decay_ms() != 0;
}

/* Something was cached by a: the hot allowance, the budget and decay apply. */
void nn_cache_settle(nn_arena *a)
{
    if (hot_now() > cache.hot_limit)
        cool(a);
    if (load(&cache.cached) > cache.limit)
        evict_global(cache.limit);
    purger_kick();
}

/* Best fit from the cache: no more than a quarter larger than needed. Fills
 * only what the caller uses, field by field (a whole-struct copy through the
 * stack costs store-forwarding stalls on the hottest path). */
int nn_cache_take(nn_arena *a, size_t need, const size_t *cut, nn_mapping *out, int *lazy)
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
