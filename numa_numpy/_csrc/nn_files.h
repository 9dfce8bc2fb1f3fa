/* Reading a file into placed memory: each piece of the destination is read
 * (preadv) by a worker pinned to the node its pages are bound to, so the
 * copy out of the page cache runs where the memory is. Pure C: the workers
 * never touch Python. Functions return 0 or -errno. */
#ifndef NN_FILES_H
#define NN_FILES_H

#include <stddef.h>

/* Read npieces ranges of file `fd`: piece i, lengths[i] bytes from file
 * offset offsets[i] into dests[i], on a worker of node nodes[i] (-1 or nodes
 * NULL: any thread). Without workers (or while another job runs) the caller
 * reads every piece itself, in order. errs[i] (may be NULL): 0, the read's
 * -errno, or -ENODATA when the file ended first. Returns 0, the first
 * failed piece's code, or -EINVAL. */
int nn_files_read(int fd, char *const *dests, const long long *offsets, const size_t *lengths,
                  const int *nodes, int npieces, int *errs);

#endif
