#define _GNU_SOURCE
#include "nn_mapping.h"
#include "nn_syscalls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << MAP_HUGE_SHIFT)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define THP_SIZE ((size_t)2 << 20)

size_t nn_base_page_size(void)
{
    static size_t page;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

size_t nn_huge_page_size(int huge)
{
    switch (huge) {
    case NN_HUGE_TRANSPARENT:
    case NN_HUGE_EXPLICIT_2MB:
        return THP_SIZE;
    case NN_HUGE_EXPLICIT_1GB:
        return (size_t)1 << 30;
    default:
        return nn_base_page_size();
    }
}

int nn_hugetlb_flags(int huge)
{
    if (huge == NN_HUGE_EXPLICIT_2MB)
        return MAP_HUGETLB | MAP_HUGE_2MB;
    if (huge == NN_HUGE_EXPLICIT_1GB)
        return MAP_HUGETLB | MAP_HUGE_1GB;
    return 0;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

int nn_apply_binding(const nn_binding *b, void *addr, size_t len, unsigned flags)
{
    long rc = nn_mbind(addr, len, b->mode, b->mask, b->mask ? b->maxnode : 0, flags);
    if (rc == 0 && b->home_node >= 0)
        rc = nn_set_mempolicy_home_node(addr, len, (unsigned long)b->home_node);
    return (int)rc;
}

/* Explicit huge pages: one MAP_HUGETLB mapping, length rounded to the huge page. */
static int map_hugetlb(size_t size, int huge, nn_mapping *out)
{
    size_t page = nn_huge_page_size(huge);
    size_t len = round_up(size, page);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | nn_hugetlb_flags(huge), -1, 0);
    if (p == MAP_FAILED)
        return (int)nn_fail(NN_STEP_MMAP_HUGETLB, -errno);
    out->base = p;
    out->length = len;
    out->page_size = page;
    out->huge = huge;
    return 0;
}

/* Normal pages; with THP, the payload after `lead` is 2 MiB-aligned so huge
 * pages can back it (the lead's 2 MiB region is not wholly inside the mapping,
 * so it stays in base pages). NONE means none: where THP is "always" the kernel
 * would use huge pages anyway. */
static int map_normal(size_t size, size_t lead, int huge, nn_mapping *out)
{
    int thp = huge == NN_HUGE_TRANSPARENT;
    size_t page = nn_base_page_size();
    size_t len = round_up(size, page);
    size_t slack = thp ? THP_SIZE - page : 0;
    char *p = mmap(NULL, len + slack, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return (int)nn_fail(NN_STEP_MMAP, -errno);
    if (slack) {
        char *base = (char *)round_up((uintptr_t)p + lead, THP_SIZE) - lead;
        size_t head = (size_t)(base - p);
        if (head)
            munmap(p, head);
        if (slack - head)
            munmap(base + len, slack - head);
        p = base;
    }
    /* Advice only: a kernel without THP still gives a working mapping. */
    if (thp)
        madvise(p, len, MADV_HUGEPAGE);
    else if (huge == NN_HUGE_NONE)
        madvise(p, len, MADV_NOHUGEPAGE);
    out->base = p;
    out->length = len;
    out->page_size = page;
    out->huge = huge;
    return 0;
}

/* MemFree of one node from sysfs, in bytes; -1 when it cannot be read. */
static long long node_free_bytes(int node)
{
    char path[80], line[160];
    long long kib = -1;
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", node);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Node %*d MemFree: %lld kB", &kib) == 1)
            break;
    fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

/* Populating more than a BIND policy's nodes hold would not fail cleanly: the
 * page allocator invokes the mempolicy-constrained OOM killer, which may kill
 * this process. Refuse up front when the nodes' free memory is short. */
static int bind_has_room(const nn_binding *b, size_t len)
{
    if ((b->mode & ~NN_MPOL_MODE_FLAGS) != NN_MPOL_BIND || !b->mask ||
        (b->mode & NN_MPOL_F_RELATIVE_NODES))
        return 0;
    long long free_bytes = 0;
    for (size_t w = 0; w < b->nwords; w++)
        for (int bit = 0; bit < 64; bit++)
            if (b->mask[w] >> bit & 1UL) {
                long long node_free = node_free_bytes((int)(w * 64) + bit);
                if (node_free < 0)
                    return 0; /* no sysfs: let the kernel decide */
                free_bytes += node_free;
            }
    return (long long)len <= free_bytes ? 0 : (int)nn_fail(NN_STEP_ROOM, -ENOMEM);
}

static int binds_nodes(const nn_binding *b)
{
    return (b->mode & ~NN_MPOL_MODE_FLAGS) == NN_MPOL_BIND && b->mask;
}

/* The hugetlb reservation made by mmap is global, not per node: under BIND a
 * fault on a node whose pool is empty is a SIGBUS at the first write. Take the
 * pages now (MADV_POPULATE_WRITE reports the shortage as an error instead);
 * other modes may take a huge page from any node. Kernels before 5.14 lack the
 * advice (EINVAL): they keep the old behaviour rather than touching pages,
 * which would be the very SIGBUS. */
static int claim_hugetlb(const nn_binding *b, const nn_mapping *m)
{
    if (!binds_nodes(b))
        return 0;
    if (madvise(m->base, m->length, MADV_POPULATE_WRITE) == 0 || errno == EINVAL)
        return 0;
    return (int)nn_fail(NN_STEP_HUGETLB_NODES, -ENOMEM);
}

/* Part i's range [*lo, *hi) of a mapping of `length` bytes (see nn_map_parts). */
static void part_range(const size_t *cuts, int nparts, int i, size_t length, size_t *lo,
                       size_t *hi)
{
    *lo = i ? cuts[i - 1] : 0;
    *hi = i < nparts - 1 && cuts[i] < length ? cuts[i] : length;
}

/* mbind each part's range (and its home node): 0, or -errno with the step
 * noted. Soft mode leaves a refused range unbound and says so in `status`. */
static int bind_mapping(const nn_binding *parts, int nparts, const size_t *cuts, nn_mapping *out,
                        int options)
{
    if (options & NN_MAP_NO_BIND) {
        out->status |= NN_MAP_POLICY_FALLBACK;
        return 0;
    }
    int bound = 0;
    for (int i = 0; i < nparts; i++) {
        const nn_binding *b = &parts[i];
        size_t lo, hi;
        part_range(cuts, nparts, i, out->length, &lo, &hi);
        if (lo >= hi || (b->mode == NN_MPOL_DEFAULT && b->home_node < 0))
            continue;
        int rc = nn_apply_binding(b, (char *)out->base + lo, hi - lo, 0);
        if (rc && (options & NN_MAP_STRICT))
            return rc;
        if (rc) {
            out->status |= NN_MAP_POLICY_FALLBACK;
            out->error = -rc;
        } else {
            bound = 1;
        }
    }
    if (bound && !(out->status & NN_MAP_POLICY_FALLBACK))
        out->status |= NN_MAP_BOUND;
    return 0;
}

/* A BIND part's range must fit its nodes' free memory before it is populated. */
static int parts_have_room(const nn_binding *parts, int nparts, const size_t *cuts,
                           size_t length)
{
    for (int i = 0; i < nparts; i++) {
        size_t lo, hi;
        part_range(cuts, nparts, i, length, &lo, &hi);
        int rc = hi > lo ? bind_has_room(&parts[i], hi - lo) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* Explicit huge pages, bound and claimed; -errno when none can be had on the
 * nodes the policy allows (the caller decides whether normal pages will do). */
static int map_hugetlb_bound(const nn_binding *b, size_t size, int huge, int options,
                             nn_mapping *out)
{
    int rc = map_hugetlb(size, huge, out);
    if (rc)
        return rc;
    rc = bind_mapping(b, 1, NULL, out, options);
    if (rc == 0 && (out->status & NN_MAP_BOUND))
        rc = claim_hugetlb(b, out);
    if (rc) {
        nn_unmap(out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int nn_map(const nn_binding *b, size_t size, size_t lead, int huge,
           const nn_prefault_plan *prefault, int options, nn_mapping *out)
{
    return nn_map_parts(b, 1, NULL, size, lead, huge, prefault, options, out);
}

int nn_map_parts(const nn_binding *parts, int nparts, const size_t *cuts, size_t size,
                 size_t lead, int huge, const nn_prefault_plan *prefault, int options,
                 nn_mapping *out)
{
    int strict = options & NN_MAP_STRICT;
    int rc = nn_take_fault(NN_FAULT_MMAP);

    memset(out, 0, sizeof *out);
    if (size == 0)
        size = 1;
    if (rc)
        return (int)nn_fail(NN_STEP_MMAP, rc);
    if (huge == NN_HUGE_EXPLICIT_2MB || huge == NN_HUGE_EXPLICIT_1GB) {
        if (nparts != 1) /* a huge page cannot be split between nodes */
            return -EINVAL;
        rc = map_hugetlb_bound(parts, size, huge, options, out);
        if (rc && strict)
            return rc;
        if (rc) {
            /* No huge page of that size to be had (none reserved, or none on
             * the bound nodes): soft mode takes normal pages. */
            int why = -rc;
            rc = map_normal(size, round_up(lead, nn_base_page_size()), NN_HUGE_TRANSPARENT, out);
            if (rc == 0)
                rc = bind_mapping(parts, 1, NULL, out, options);
            if (rc) {
                nn_unmap(out);
                return rc;
            }
            out->status |= NN_MAP_HUGE_FALLBACK;
            if (!out->error)
                out->error = why;
        }
    } else {
        rc = map_normal(size, lead, huge, out);
        if (rc == 0)
            rc = bind_mapping(parts, nparts, cuts, out, options);
        if (rc) {
            nn_unmap(out);
            return rc;
        }
    }

    if (prefault && prefault->mode != NN_PREFAULT_NONE) {
        rc = out->status & NN_MAP_BOUND ? parts_have_room(parts, nparts, cuts, out->length) : 0;
        if (rc == 0)
            rc = nn_populate(out->base, out->length, out->page_size, prefault);
        if (rc) {
            nn_unmap(out);
            return rc;
        }
    }
    return 0;
}

int nn_check_room(const nn_binding *b, size_t len) { return bind_has_room(b, len); }

int nn_unmap(const nn_mapping *m)
{
    if (!m->base)
        return 0;
    return munmap(m->base, m->length) ? (int)nn_fail(NN_STEP_MUNMAP, -errno) : 0;
}

/* MADV_POPULATE_WRITE (Linux 5.14) reports ENOMEM instead of a later SIGBUS or
 * OOM kill; older kernels get one write per page. */
static int populate_range(char *addr, size_t len, size_t page)
{
    if (madvise(addr, len, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL)
        return errno == EFAULT || errno == EHWPOISON ? -ENOMEM : -errno;
    for (size_t off = 0; off < len; off += page)
        ((volatile char *)addr)[off] = 0;
    return 0;
}

/* PARALLEL: workers (the caller among them) take 4 MiB pieces from a shared
 * cursor, so a worker on a busy CPU holds nobody up. */
#define POPULATE_PIECE ((size_t)4 << 20)

struct populate_work {
    char *addr;
    size_t len, page, piece;
    size_t next; /* atomic: offset of the next piece to take */
    int rc;      /* atomic: first failure */
};

struct populate_worker_arg {
    struct populate_work *work;
    int cpu;
};

static void populate_pieces(struct populate_work *w)
{
    for (;;) {
        size_t off = __atomic_fetch_add(&w->next, w->piece, __ATOMIC_RELAXED);
        if (off >= w->len || __atomic_load_n(&w->rc, __ATOMIC_RELAXED))
            return;
        size_t n = w->len - off < w->piece ? w->len - off : w->piece;
        int rc = populate_range(w->addr + off, n, w->page);
        if (rc) {
            int none = 0;
            __atomic_compare_exchange_n(&w->rc, &none, rc, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED);
            return;
        }
    }
}

static void *populate_worker(void *arg)
{
    struct populate_worker_arg *a = arg;
    if (a->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(a->cpu, &set);
        /* Pinning is for first-touch placement and speed; failing it is not fatal. */
        sched_setaffinity(0, sizeof set, &set);
    }
    populate_pieces(a->work);
    return NULL;
}

int nn_populate(void *addr, size_t len, size_t page, const nn_prefault_plan *plan)
{
    int rc = nn_take_fault(NN_FAULT_POPULATE);
    if (rc)
        return (int)nn_fail(NN_STEP_POPULATE, rc);
    int nthreads = 1;
    size_t piece = round_up(POPULATE_PIECE, page);
    if (plan->mode == NN_PREFAULT_PARALLEL) {
        nthreads = plan->nthreads > 0 ? plan->nthreads : (plan->ncpus > 0 ? plan->ncpus : 2);
        size_t pieces = (len + piece - 1) / piece;
        if ((size_t)nthreads > pieces)
            nthreads = pieces ? (int)pieces : 1;
    }
    if (nthreads <= 1) {
        rc = populate_range(addr, len, page);
        return rc ? (int)nn_fail(NN_STEP_POPULATE, rc) : 0;
    }

    struct populate_work work = {addr, len, page, piece, 0, 0};
    pthread_t *threads = calloc((size_t)nthreads, sizeof *threads);
    struct populate_worker_arg *args = calloc((size_t)nthreads, sizeof *args);
    int started = 0;
    if (threads && args) {
        for (int i = 1; i < nthreads; i++) {
            args[i] = (struct populate_worker_arg){&work,
                                                   plan->ncpus > 0 ? plan->cpus[i % plan->ncpus] : -1};
            if (pthread_create(&threads[i], NULL, populate_worker, &args[i]) != 0)
                break;
            started = i;
        }
    }
    populate_pieces(&work); /* the caller works too, unpinned */
    for (int i = 1; i <= started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    free(args);
    return work.rc ? (int)nn_fail(NN_STEP_POPULATE, work.rc) : 0;
}
