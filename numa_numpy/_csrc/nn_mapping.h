/* Policy-bound anonymous mappings: mmap -> mbind -> populate, in that order
 * (a policy acts at the first fault; pages populated before mbind stay where
 * they landed). Functions return 0 or -errno and never touch Python. */
#ifndef NN_MAPPING_H
#define NN_MAPPING_H

#include <stddef.h>

/* A memory policy as the kernel takes it. */
typedef struct nn_binding {
    int mode;             /* NN_MPOL_* | mode flags */
    int home_node;        /* -1: none (set_mempolicy_home_node) */
    unsigned long maxnode; /* passed to the kernel: mask bits + 1 */
    size_t nwords;        /* longs in mask */
    unsigned long *mask;  /* NULL when nwords == 0 */
} nn_binding;

#define NN_HUGE_NONE 0        /* base pages only: MADV_NOHUGEPAGE */
#define NN_HUGE_TRANSPARENT 1 /* 2 MiB-aligned base + MADV_HUGEPAGE */
#define NN_HUGE_EXPLICIT_2MB 2 /* MAP_HUGETLB | MAP_HUGE_2MB */
#define NN_HUGE_EXPLICIT_1GB 3 /* MAP_HUGETLB | MAP_HUGE_1GB */
#define NN_HUGE_AUTO 4          /* like NumPy's allocator: TRANSPARENT from NN_AUTO_THP_MIN
                                  bytes, SYSTEM below */
#define NN_HUGE_SYSTEM 5       /* no advice: the system's THP setting decides */
/* NN_HUGE_AUTO's threshold, for blocks and regions alike. */
#define NN_AUTO_THP_MIN ((size_t)4 << 20)

#define NN_PREFAULT_NONE 0
#define NN_PREFAULT_TOUCH 1
#define NN_PREFAULT_PARALLEL 2

/* nn_map options. */
#define NN_MAP_STRICT 1    /* refuse rather than fall back */
#define NN_MAP_NO_BIND 2   /* known beforehand that the kernel refuses the policy */

/* What nn_map did. */
#define NN_MAP_BOUND 1           /* policy applied by mbind */
#define NN_MAP_POLICY_FALLBACK 2 /* mbind refused: memory left unbound */
#define NN_MAP_HUGE_FALLBACK 4   /* explicit huge pages unavailable: normal pages used */
#define NN_MAP_MIGRATED 8        /* pages moved to another policy after allocation */

typedef struct nn_mapping {
    void *base;
    size_t length;     /* bytes mapped: a multiple of page_size */
    size_t page_size;  /* kernel page size of the mapping */
    int huge;          /* NN_HUGE_* actually used */
    int status;        /* NN_MAP_* bits */
    int error;         /* errno behind a fallback, 0 if none */
} nn_mapping;

/* Placement work for a prefault: threads and the CPUs to pin them to. */
typedef struct nn_prefault_plan {
    int mode;          /* NN_PREFAULT_* */
    int nthreads;      /* for PARALLEL; <= 0: one per CPU given, else 2 */
    const int *cpus;   /* may be NULL */
    int ncpus;
} nn_prefault_plan;

size_t nn_base_page_size(void);
size_t nn_huge_page_size(int huge);
/* mmap flags for an explicit huge-page mode (MAP_HUGETLB | size bits), else 0. */
int nn_hugetlb_flags(int huge);

/* Map `size` bytes (page-rounded) under `b`. The first `lead` bytes (a multiple
 * of the base page) come before the payload: with THP, the payload is what is
 * 2 MiB-aligned, so a header in the lead never faults a whole huge page. */
int nn_map(const nn_binding *b, size_t size, size_t lead, int huge,
           const nn_prefault_plan *prefault, int options, nn_mapping *out);
/* nn_map with one policy per part: part i covers [cuts[i-1], cuts[i]) of the
 * mapping (offsets from its base, base-page multiples; part 0 from 0, the last
 * to the end). Normal pages only (-EINVAL for explicit huge pages). */
int nn_map_parts(const nn_binding *parts, int nparts, const size_t *cuts, size_t size,
                 size_t lead, int huge, const nn_prefault_plan *prefault, int options,
                 nn_mapping *out);
int nn_unmap(const nn_mapping *m);
/* -ENOMEM when `len` bytes cannot fit in a BIND policy's nodes' free memory. */
int nn_check_room(const nn_binding *b, size_t len);
/* mbind (plus the home node) over an existing range. */
int nn_apply_binding(const nn_binding *b, void *addr, size_t len, unsigned flags);
/* Fault in [addr, addr+len) so the policy places every page now. */
int nn_populate(void *addr, size_t len, size_t page_size, const nn_prefault_plan *plan);

#endif
