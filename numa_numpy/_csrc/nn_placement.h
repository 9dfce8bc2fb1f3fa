/* Asking the kernel where pages are, and moving them. 0 or -errno. */
#ifndef NN_PLACEMENT_H
#define NN_PLACEMENT_H

#include <stddef.h>

/* status[i] = node of the page at start + i * page_size, or a negative errno
 * (-ENOENT: not faulted in yet, -EFAULT: not mapped). Queries only. */
int nn_query_pages(void *start, size_t npages, size_t page_size, int *status);
/* Move each page to nodes[i] (or nodes[0] when nnodes == 1); status as above. */
int nn_move_range(void *start, size_t npages, size_t page_size, const int *nodes,
                  size_t nnodes, int move_all, int *status);

#endif
