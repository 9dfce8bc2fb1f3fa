/* Raw Linux NUMA system calls (no libnuma). Every function returns 0 or a
 * non-negative result on success and -errno on failure. */
#ifndef NN_SYSCALLS_H
#define NN_SYSCALLS_H

#include <stddef.h>

/* Memory policy modes (include/uapi/linux/mempolicy.h). */
#define NN_MPOL_DEFAULT 0
#define NN_MPOL_PREFERRED 1
#define NN_MPOL_BIND 2
#define NN_MPOL_INTERLEAVE 3
#define NN_MPOL_LOCAL 4
#define NN_MPOL_PREFERRED_MANY 5
#define NN_MPOL_WEIGHTED_INTERLEAVE 6
/* Mode flags, OR'd into the mode. */
#define NN_MPOL_F_STATIC_NODES (1 << 15)
#define NN_MPOL_F_RELATIVE_NODES (1 << 14)
#define NN_MPOL_F_NUMA_BALANCING (1 << 13)
#define NN_MPOL_MODE_FLAGS (NN_MPOL_F_STATIC_NODES | NN_MPOL_F_RELATIVE_NODES | NN_MPOL_F_NUMA_BALANCING)
/* get_mempolicy flags. */
#define NN_MPOL_F_NODE 1
#define NN_MPOL_F_ADDR 2
#define NN_MPOL_F_MEMS_ALLOWED 4
/* mbind flags. */
#define NN_MPOL_MF_STRICT 1
#define NN_MPOL_MF_MOVE 2
#define NN_MPOL_MF_MOVE_ALL 4

long nn_mbind(void *addr, size_t len, int mode, const unsigned long *mask,
              unsigned long maxnode, unsigned flags);
long nn_get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode,
                      void *addr, unsigned long flags);
long nn_set_mempolicy(int mode, const unsigned long *mask, unsigned long maxnode);
long nn_move_pages(unsigned long count, void **pages, const int *nodes,
                   int *status, int flags);
long nn_migrate_pages(int pid, unsigned long maxnode, const unsigned long *old_nodes,
                      const unsigned long *new_nodes);
long nn_getcpu(unsigned *cpu, unsigned *node);
long nn_set_mempolicy_home_node(void *addr, size_t len, unsigned long home_node);

/* Which step failed: every nn_* function that fails records its step in a
 * per-thread slot before returning -errno, so the caller can name the exact
 * call (a room check is not madvise, a failed mmap is not mbind). */
#define NN_STEP_NONE 0
#define NN_STEP_MMAP 1          /* mmap of normal pages */
#define NN_STEP_MMAP_HUGETLB 2  /* mmap from the hugetlb pool (MAP_HUGETLB) */
#define NN_STEP_MBIND 3
#define NN_STEP_HOME_NODE 4     /* set_mempolicy_home_node */
#define NN_STEP_ROOM 5          /* free-memory check of the bound nodes (sysfs MemFree) */
#define NN_STEP_POPULATE 6      /* madvise(MADV_POPULATE_WRITE) or first touch */
#define NN_STEP_HUGETLB_NODES 7 /* no free huge page on the nodes the policy allows */
#define NN_STEP_SET_MEMPOLICY 8
#define NN_STEP_GET_MEMPOLICY 9
#define NN_STEP_MOVE_PAGES 10
#define NN_STEP_MIGRATE_PAGES 11
#define NN_STEP_GETCPU 12
#define NN_STEP_MUNMAP 13
/* The step of the last failure in this thread (NN_STEP_NONE after nn_clear_step). */
int nn_last_step(void);
/* What the caller names in an error: "mmap", "mbind", ...; NULL for
 * NN_STEP_NONE or an unknown step. */
const char *nn_step_name(int step);
void nn_clear_step(void);
/* Record `step` as this thread's last failure and return rc (a -errno). */
long nn_fail(int step, long rc);

/* Deterministic fault injection for tests: the next `count` operations of kind
 * `op` fail with `err` (a positive errno). count 0 clears. */
enum nn_fault_op {
    NN_FAULT_MMAP = 0,
    NN_FAULT_MBIND = 1,
    NN_FAULT_POPULATE = 2,
    NN_FAULT_SET_MEMPOLICY = 3,
    NN_FAULT_MOVE_PAGES = 4, /* a moving call moves nothing; every page reports -err */
    NN_FAULT_OPS = 5
};
int nn_inject_fault(int op, int err, int count);
/* Returns -errno if an injected fault is due for `op`, else 0. */
int nn_take_fault(int op);

#endif
