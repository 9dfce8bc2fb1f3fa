/* Large blocks, each a mapping of its own ([header page][data...]), reused
 * from the cache; a partitioned arena's are split by cuts between its parts. */
#define _GNU_SOURCE
#include "nn_arena_internal.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

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

/* ---- the THP hint of a cached block ---- */

/* A block's MADV_HUGEPAGE lives no longer than its use: a block cached for
 * reuse gets MADV_NOHUGEPAGE (so khugepaged spends nothing on memory nobody
 * uses, and a reuse without huge pages gets none it did not ask for), recorded
 * in its map.huge as NN_HUGE_NONE; a reuse that wants huge pages advises
 * MADV_HUGEPAGE again. The kernel has no advice back to neutral short of a new
 * mapping, which would throw away the pages the cache keeps: a block mapped
 * with the system's setting (NN_HUGE_SYSTEM) and reused under a NONE request
 * gets MADV_NOHUGEPAGE too. An unmapped block has no VMA: no hint remains. */
static void hint_cached(nn_mapping *m)
{
    if (m->huge == NN_HUGE_TRANSPARENT) {
        madvise(m->base, m->length, MADV_NOHUGEPAGE);
        m->huge = NN_HUGE_NONE;
    }
}

static void hint_reused(nn_mapping *m, int want)
{
    if (is_hugetlb(m->huge))
        return;
    if ((want == NN_HUGE_TRANSPARENT || is_hugetlb(want)) && m->huge != NN_HUGE_TRANSPARENT) {
        madvise(m->base, m->length, MADV_HUGEPAGE);
        m->huge = NN_HUGE_TRANSPARENT;
    } else if (want == NN_HUGE_NONE && m->huge != NN_HUGE_NONE) {
        madvise(m->base, m->length, MADV_NOHUGEPAGE);
        m->huge = NN_HUGE_NONE;
    }
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
    note_peak(a);
    a->stats.live_blocks++;
    a->stats.large_bytes += m->length;
    unlock(a);
    if (a->nparts > 1)
        nn_parts_add(a, ptr, size, cut);
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

void *nn_large_alloc(nn_arena *a, size_t size, int zero)
{
    nn_mapping m;
    int lazy = 0;
    int huge = large_huge_mode(a, size);
    size_t cut[NN_MAX_PARTS - 1];
    if (a->nparts)
        block_cuts(a, size, huge, cut);
    int reuse = nn_cache_take(a, large_length(a, size), cut, &m, &lazy);
    if (reuse)
        hint_reused(&m, huge);
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

void nn_large_free(nn_arena *a, void *ptr)
{
    large_head *h = large_of(ptr);
    nn_mapping m = h->map;
    int cached = 0;
    uint64_t now = nn_now_ms();
    /* A migrated block follows another policy now: it must not be reused as ours. */
    int keep = !(m.status & NN_MAP_MIGRATED) && nn_cacheable(a, m.length);
    if (a->nparts > 1)
        nn_parts_drop(ptr);
    if (keep && (a->ncached == CACHE_SLOTS ||
                 a->stats.cached_bytes + m.length > a->stats.cache_limit))
        nn_cache_make_room(a, m.length);
    if (keep)
        hint_cached(&m);
    lock(a);
    a->stats.used_bytes -= header_of(ptr)->size;
    a->stats.live_blocks--;
    a->stats.large_bytes -= m.length;
    if (keep)
        cached = nn_cache_insert(a, &m, 0, now);
    unlock(a);
    if (!cached) {
        nn_unmap(&m);
        return;
    }
    nn_cache_settle(a);
}

/* mremap keeps the range's policy for a grown tail. */
void *nn_large_resize(nn_arena *a, void *ptr, size_t size)
{
    large_head *h = large_of(ptr);
    nn_mapping m = h->map;
    size_t old_size = header_of(ptr)->size;
    size_t lead = (size_t)((char *)ptr - (char *)m.base);
    size_t page = nn_base_page_size();
    size_t len = (size + lead + page - 1) / page * page;
    if (is_hugetlb(m.huge))
        return NULL; /* let the caller copy */
    if (a->nparts > 1)
        nn_parts_drop(ptr);
    void *base = len == m.length ? m.base : mremap(m.base, m.length, len, MREMAP_MAYMOVE);
    if (base == MAP_FAILED) {
        if (a->nparts > 1)
            nn_parts_add(a, ptr, old_size, cuts_of(&m)->cut);
        return NULL;
    }
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
    note_peak(a);
    unlock(a);
    h = base;
    h->map.base = base;
    h->map.length = len;
    char *out = (char *)base + lead;
    header_of(out)->size = size;
    if (a->nparts > 1)
        nn_parts_add(a, out, size, cuts_of(&h->map)->cut);
    return out;
}

