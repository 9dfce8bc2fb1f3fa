/* Node-parallel inner loops for NumPy's common ufuncs: each replaced loop
 * (PyUFunc_ReplaceLoopBySignature) calls NumPy's own loop directly, or, when
 * parallel mode is on and the call is large enough, on pieces of its range run
 * by the worker pool (nn_workers.h), the pieces following the part bounds of
 * a partitioned block. Functions return 0 (or a count) or -errno. */
#ifndef NN_UFUNC_H
#define NN_UFUNC_H

/* Replace the loops (once; takes the GIL): returns how many loops are ours
 * (>= 0), or -ENOENT (NumPy's ufunc API cannot be imported). */
int nn_ufunc_install(void);
/* Number of loops ours, and the name of loop i ("add ff->f"; NULL past the end). */
int nn_ufunc_installed(void);
const char *nn_ufunc_loop_name(int i);

/* Process-wide: parallel on/off and the fewest elements a call must have to
 * be split (>= 1). -EINVAL for threshold < 1. */
int nn_ufunc_set_mode(int on, long long threshold);
/* The calling thread's override: mode -1 (follow the process), 0 (off) or 1
 * (on, with this threshold). 0 or -EINVAL. */
int nn_ufunc_set_thread_mode(int mode, long long threshold);
/* The calling thread's override (-1, 0, 1) and its threshold in *threshold. */
int nn_ufunc_thread_mode(long long *threshold);

typedef struct nn_ufunc_stats {
    unsigned long long split;         /* elementwise calls run as pieces */
    unsigned long long reduce_split;  /* reductions run as pieces */
    unsigned long long serial;        /* large calls run whole: off, overlap, step 0, ... */
    unsigned long long busy;          /* large calls run whole: another caller held the pool */
    unsigned long long nested;        /* large calls from inside a worker, run whole */
    unsigned long long local_pieces;  /* pieces sent to the node of their part */
    int installed;
    int on;
    long long threshold;
} nn_ufunc_stats;
void nn_ufunc_stats_get(nn_ufunc_stats *out);
/* Test hook: a job of two pieces, each calling replaced loop `loop` (an
 * 8-byte binary loop, "add dd->d") in place on its half of buf[0:n]; a
 * worker's call must run whole (counted as nested). nn_workers_run's code. */
int nn_ufunc_nested_check(const char *loop, double *buf, long long n);

#endif
