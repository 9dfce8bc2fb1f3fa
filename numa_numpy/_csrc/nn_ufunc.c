/* NumPy's inner loops, split over the worker pool.
 *
 * nn_ufunc_install replaces the legacy inner loops of a fixed list of ufuncs
 * (over bool, int32, int64, float32, float64, complex64, complex128) with
 * trampolines: slot k of a fixed table calls the dispatcher with NumPy's
 * original loop orig[k]. The dispatcher's fast path is one comparison (the
 * call's length against a process-wide gate, which is "never" while parallel
 * mode is off everywhere), then NumPy's own loop. On the slow path it checks
 * the thread's mode and threshold, that no output has step 0 (except the
 * reduction pattern) or partially overlaps an input, and that it is not in a
 * worker, then splits [0, n) into pieces, each run by NumPy's loop on
 * args + start * steps. Pieces follow the part bounds of a partitioned block
 * when an operand lies in one (nn_parts_find), each piece tagged with its
 * part's node.
 *
 * Reductions (args[0] == args[2], steps 0 and 0: the accumulator) of
 * associative ufuncs (add, multiply, maximum, minimum, fmax, fmin,
 * logical_and, logical_or) split the input: piece 0 reduces into the real
 * accumulator, piece j > 0 into a partial that starts from its first element;
 * one more call of NumPy's loop folds the partials in order into the
 * accumulator. For floats this reassociates the sum (NumPy sums each piece
 * pairwise): results differ from NumPy's in the last bits, as they do between
 * NumPy builds; integers are exact.
 *
 * The dispatcher never needs the GIL (NumPy calls numeric loops without it). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NO_IMPORT_ARRAY
#include <numpy/arrayobject.h>
#include <numpy/ufuncobject.h>

#include "nn_arena.h"
#include "nn_ufunc.h"
#include "nn_workers.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NSLOTS 512
#define MAXARGS 4
#define NEVER NPY_MAX_INTP

typedef struct slot {
    PyUFuncGenericFunction orig;
    int nin, nout, reduce_ok;
    npy_intp isz[MAXARGS];
    char name[40];
} slot;

static slot slots[NSLOTS];
static int nslots;

/* Calls at least this long take the slow path (NEVER: parallel off everywhere). */
static npy_intp gate = NEVER;
static int g_on;
static npy_intp g_threshold = 1 << 20;
static int ov_count;             /* threads whose override is on */
static npy_intp ov_min = NEVER;  /* lowest threshold an override used since ov_count was 0 */
static __thread int tl_mode = -1;
static __thread npy_intp tl_threshold;
static nn_ufunc_stats stats;

static void count(unsigned long long *c) { __atomic_fetch_add(c, 1, __ATOMIC_RELAXED); }

/* ---- one call, in pieces ---- */

typedef struct call {
    PyUFuncGenericFunction f;
    char **args;
    const npy_intp *steps;
    void *data;
    int nargs;
    npy_intp isz; /* the reduction's item size */
    npy_intp start[NN_MAX_PIECES + 1];
    int node[NN_MAX_PIECES];
    _Alignas(16) char partial[NN_MAX_PIECES][16];
} call;

static void run_elementwise(void *ctx, int i)
{
    call *c = ctx;
    npy_intp len = c->start[i + 1] - c->start[i];
    char *p[MAXARGS];
    for (int j = 0; j < c->nargs; j++)
        p[j] = c->args[j] + c->start[i] * c->steps[j];
    c->f(p, &len, c->steps, c->data);
}

static void run_reduce(void *ctx, int i)
{
    call *c = ctx;
    npy_intp a = c->start[i], len = c->start[i + 1] - a, s = c->steps[1];
    char *acc = i == 0 ? c->args[0] : c->partial[i];
    char *in = c->args[1] + a * s;
    if (i > 0) { /* a partial starts from its first element */
        memcpy(acc, in, (size_t)c->isz);
        in += s;
        len--;
    }
    char *p[3] = {acc, in, acc};
    if (len > 0)
        c->f(p, &len, c->steps, c->data);
}

/* Split [0, n) evenly into up to `want` pieces of at least one element, cut
 * on multiples of 64 elements when there are enough; tag them `node`. */
static int split_even(call *c, int k0, npy_intp lo, npy_intp hi, int want, int node)
{
    npy_intp n = hi - lo;
    int k = want;
    if (k > NN_MAX_PIECES - k0)
        k = NN_MAX_PIECES - k0;
    if ((npy_intp)k > n)
        k = (int)n;
    npy_intp unit = n >= (npy_intp)k * 64 * 4 ? 64 : 1;
    npy_intp units = n / unit;
    int made = 0;
    for (int i = 0; i < k; i++) {
        npy_intp a = lo + (npy_intp)((__int128)units * i / k) * unit;
        npy_intp b = i + 1 == k ? hi : lo + (npy_intp)((__int128)units * (i + 1) / k) * unit;
        if (b <= a)
            continue;
        c->start[k0 + made] = a;
        c->start[k0 + made + 1] = b;
        c->node[k0 + made] = node;
        made++;
    }
    return made;
}

/* Element index of byte address `addr` for an operand at `p` with step s > 0:
 * the first element at or after it, clamped to [0, n]. */
static npy_intp index_at(const char *p, npy_intp s, npy_intp n, const char *addr)
{
    if (addr <= p)
        return 0;
    npy_intp i = (npy_intp)((addr - p + s - 1) / s);
    return i < n ? i : n;
}

/* Pieces for [0, n) of an operand at `lead` with step `s`: by the parts of
 * its partitioned block, else evenly over every worker. Returns how many. */
static int plan(call *c, npy_intp n, const char *lead, npy_intp s)
{
    char *start;
    size_t bound[NN_REG_PARTS + 1];
    int node[NN_REG_PARTS];
    int parts = s > 0 ? nn_parts_find(lead, &start, bound, node, NN_REG_PARTS) : 0;
    if (parts < 2)
        return split_even(c, 0, 0, n, nn_workers_ready(), -1);
    int k = 0;
    for (int j = 0; j < parts && k < NN_MAX_PIECES; j++) {
        npy_intp lo = index_at(lead, s, n, start + bound[j]);
        npy_intp hi = j + 1 == parts ? n : index_at(lead, s, n, start + bound[j + 1]);
        int w = node[j] >= 0 ? nn_workers_on_node(node[j]) : 0;
        if (hi > lo)
            k += split_even(c, k, lo, hi, w > 0 ? w : 1, w > 0 ? node[j] : -1);
    }
    for (int i = 0; i < k; i++)
        if (c->node[i] >= 0)
            count(&stats.local_pieces);
    return k;
}

/* Byte range an operand covers. */
static void span(const char *p, npy_intp n, npy_intp s, npy_intp isz, const char **lo,
                 const char **hi)
{
    npy_intp last = (n - 1) * s;
    *lo = p + (last < 0 ? last : 0);
    *hi = p + (last > 0 ? last : 0) + isz;
}

/* 1 when every output has a nonzero step and overlaps no input unless it is
 * the very same operand (pointer and step). */
static int independent(const slot *sl, char **args, npy_intp n, const npy_intp *steps)
{
    for (int o = sl->nin; o < sl->nin + sl->nout; o++) {
        if (steps[o] == 0)
            return 0;
        const char *olo, *ohi;
        span(args[o], n, steps[o], sl->isz[o], &olo, &ohi);
        for (int i = 0; i < sl->nin + sl->nout; i++) {
            if (i == o || (args[i] == args[o] && steps[i] == steps[o]))
                continue;
            const char *lo, *hi;
            span(args[i], n, steps[i], sl->isz[i], &lo, &hi);
            if (lo < ohi && olo < hi)
                return 0;
        }
    }
    return 1;
}

static void slow(int k, char **args, const npy_intp *dims, const npy_intp *steps, void *data)
{
    const slot *sl = &slots[k];
    npy_intp n = dims[0];
    int on = tl_mode >= 0 ? tl_mode : __atomic_load_n(&g_on, __ATOMIC_RELAXED);
    npy_intp thr = tl_mode >= 0 ? tl_threshold : __atomic_load_n(&g_threshold, __ATOMIC_RELAXED);
    int reduce = sl->nin == 2 && sl->nout == 1 && args[0] == args[2] && steps[0] == 0 &&
                 steps[2] == 0;
    if (nn_workers_in_worker()) {
        count(&stats.nested);
        goto whole;
    }
    if (!on || n < thr || n < 2 || (reduce ? !sl->reduce_ok : !independent(sl, args, n, steps)))
        goto serial;
    call c = {.f = sl->orig, .args = args, .steps = steps, .data = data,
              .nargs = sl->nin + sl->nout, .isz = sl->isz[0]};
    int pieces = plan(&c, n, reduce ? args[1] : args[sl->nin], reduce ? steps[1] : steps[sl->nin]);
    if (pieces < 2)
        goto serial;
    int rc = nn_workers_run(reduce ? run_reduce : run_elementwise, &c, pieces, c.node);
    if (rc == -EBUSY) {
        count(&stats.busy);
        goto whole;
    }
    if (rc)
        goto serial;
    if (reduce) { /* fold the partials, in order, into the accumulator */
        npy_intp len = pieces - 1, st[3] = {0, 16, 0};
        char *p[3] = {args[0], c.partial[1], args[0]};
        sl->orig(p, &len, st, data);
        count(&stats.reduce_split);
    } else {
        count(&stats.split);
    }
    return;
serial:
    count(&stats.serial);
whole:
    sl->orig(args, dims, steps, data);
}

static inline void dispatch(int k, char **args, const npy_intp *dims, const npy_intp *steps,
                            void *data)
{
    if (__builtin_expect(dims[0] < __atomic_load_n(&gate, __ATOMIC_RELAXED), 1)) {
        slots[k].orig(args, dims, steps, data);
        return;
    }
    slow(k, args, dims, steps, data);
}

/* ---- the trampolines: slot 0x000 .. 0x1ff ---- */

#define T(n)                                                                                \
    static void t_##n(char **a, npy_intp const *d, npy_intp const *s, void *p)              \
    {                                                                                       \
        dispatch(0x##n, a, d, s, p);                                                        \
    }
#define T16(h) T(h##0) T(h##1) T(h##2) T(h##3) T(h##4) T(h##5) T(h##6) T(h##7) \
    T(h##8) T(h##9) T(h##a) T(h##b) T(h##c) T(h##d) T(h##e) T(h##f)
#define T256(h) T16(h##0) T16(h##1) T16(h##2) T16(h##3) T16(h##4) T16(h##5) T16(h##6) \
    T16(h##7) T16(h##8) T16(h##9) T16(h##a) T16(h##b) T16(h##c) T16(h##d) T16(h##e) T16(h##f)
T256(0)
T256(1)
#define E(n) t_##n,
#define E16(h) E(h##0) E(h##1) E(h##2) E(h##3) E(h##4) E(h##5) E(h##6) E(h##7) \
    E(h##8) E(h##9) E(h##a) E(h##b) E(h##c) E(h##d) E(h##e) E(h##f)
#define E256(h) E16(h##0) E16(h##1) E16(h##2) E16(h##3) E16(h##4) E16(h##5) E16(h##6) \
    E16(h##7) E16(h##8) E16(h##9) E16(h##a) E16(h##b) E16(h##c) E16(h##d) E16(h##e) E16(h##f)
static PyUFuncGenericFunction const tramp[NSLOTS] = {E256(0) E256(1)};

/* ---- installing ---- */

static const char *const UFUNCS[] = {
    "add", "subtract", "multiply", "true_divide", "floor_divide", "negative", "absolute",
    "sqrt", "exp", "log", "sin", "cos", "tan", "maximum", "minimum", "fmax", "fmin",
    "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not"};
static const char *const ASSOCIATIVE[] = {"add", "multiply", "maximum", "minimum", "fmax",
                                          "fmin", "logical_and", "logical_or"};

static npy_intp item_size(int t)
{
    switch (t) {
    case NPY_BOOL: return 1;
    case NPY_INT: case NPY_FLOAT: return 4;
    case NPY_LONG: case NPY_LONGLONG: case NPY_DOUBLE: case NPY_CFLOAT: return 8;
    case NPY_CDOUBLE: return 16;
    default: return 0;
    }
}

static char type_char(int t)
{
    switch (t) {
    case NPY_BOOL: return '?';
    case NPY_INT: return 'i';
    case NPY_LONG: return 'l';
    case NPY_LONGLONG: return 'q';
    case NPY_FLOAT: return 'f';
    case NPY_DOUBLE: return 'd';
    case NPY_CFLOAT: return 'F';
    default: return 'D';
    }
}

static int is_ours(PyUFuncGenericFunction f)
{
    for (int i = 0; i < NSLOTS; i++)
        if (tramp[i] == f)
            return 1;
    return 0;
}

static void replace_loops(PyUFuncObject *uf, const char *name, int reduce_ok)
{
    int nargs = uf->nargs;
    if (nargs > MAXARGS || uf->nout != 1 || !uf->functions)
        return;
    for (int t = 0; t < uf->ntypes && nslots < NSLOTS; t++) {
        const char *types = &uf->types[t * nargs];
        int ok = 1, dup = 0, sig[MAXARGS];
        for (int j = 0; j < nargs; j++) {
            sig[j] = (unsigned char)types[j];
            ok = ok && item_size(sig[j]) > 0;
        }
        for (int u = 0; ok && u < t && !dup; u++)
            dup = memcmp(types, &uf->types[u * nargs], (size_t)nargs) == 0;
        PyUFuncGenericFunction f = uf->functions[t];
        if (!ok || dup || !f || is_ours(f))
            continue;
        slot *s = &slots[nslots];
        s->orig = f; /* before the trampoline can be called */
        s->nin = uf->nin;
        s->nout = uf->nout;
        s->reduce_ok = reduce_ok;
        char code[MAXARGS + 3] = {0}, *at = code;
        for (int j = 0; j < nargs; j++) {
            s->isz[j] = item_size(sig[j]);
            if (j == uf->nin) {
                *at++ = '-';
                *at++ = '>';
            }
            *at++ = type_char(sig[j]);
        }
        snprintf(s->name, sizeof s->name, "%s %s", name, code);
        PyUFuncGenericFunction old = NULL;
        if (PyUFunc_ReplaceLoopBySignature(uf, tramp[nslots], sig, &old) != 0)
            continue;
        if (old != f) { /* not the loop we read: put it back */
            PyUFuncGenericFunction back;
            PyUFunc_ReplaceLoopBySignature(uf, old, sig, &back);
            continue;
        }
        nslots++;
    }
}

static int in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return 1;
    return 0;
}

int nn_ufunc_install(void)
{
    static int done;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = nslots;
    if (!done) {
        PyObject *np = _import_umath() < 0 ? NULL : PyImport_ImportModule("numpy");
        rc = np ? 0 : -ENOENT;
        for (size_t i = 0; np && i < sizeof UFUNCS / sizeof *UFUNCS; i++) {
            PyObject *uf = PyObject_GetAttrString(np, UFUNCS[i]);
            if (uf && PyObject_TypeCheck(uf, &PyUFunc_Type))
                replace_loops((PyUFuncObject *)uf, UFUNCS[i],
                              in_list(UFUNCS[i], ASSOCIATIVE,
                                      sizeof ASSOCIATIVE / sizeof *ASSOCIATIVE));
            Py_XDECREF(uf);
        }
        Py_XDECREF(np);
        done = np != NULL;
        if (done)
            rc = nslots;
    }
    PyErr_Clear();
    __atomic_store_n(&stats.installed, nslots, __ATOMIC_RELAXED);
    PyGILState_Release(gil);
    return rc;
}

int nn_ufunc_installed(void) { return nslots; }

const char *nn_ufunc_loop_name(int i) { return i >= 0 && i < nslots ? slots[i].name : NULL; }

static pthread_mutex_t mode_lock = PTHREAD_MUTEX_INITIALIZER;

/* mode_lock held: the gate is the lowest threshold anything may use now. */
static void set_gate(void)
{
    npy_intp g = g_on ? g_threshold : NEVER;
    if (ov_count > 0 && ov_min < g)
        g = ov_min;
    __atomic_store_n(&gate, g, __ATOMIC_RELAXED);
}

int nn_ufunc_set_mode(int on, long long threshold)
{
    if (threshold < 1)
        return -EINVAL;
    pthread_mutex_lock(&mode_lock);
    __atomic_store_n(&g_threshold, (npy_intp)threshold, __ATOMIC_RELAXED);
    __atomic_store_n(&g_on, on != 0, __ATOMIC_RELAXED);
    set_gate();
    pthread_mutex_unlock(&mode_lock);
    return 0;
}

int nn_ufunc_set_thread_mode(int mode, long long threshold)
{
    if (mode < -1 || mode > 1 || (mode == 1 && threshold < 1))
        return -EINVAL;
    pthread_mutex_lock(&mode_lock);
    ov_count += (mode == 1) - (tl_mode == 1);
    if (ov_count == 0)
        ov_min = NEVER;
    if (mode == 1 && threshold < ov_min)
        ov_min = (npy_intp)threshold;
    tl_mode = mode;
    tl_threshold = mode == 1 ? (npy_intp)threshold : 0;
    set_gate();
    pthread_mutex_unlock(&mode_lock);
    return 0;
}

int nn_ufunc_thread_mode(long long *threshold)
{
    *threshold = tl_threshold;
    return tl_mode;
}

void nn_ufunc_stats_get(nn_ufunc_stats *out)
{
    *out = stats;
    out->on = g_on;
    out->threshold = g_threshold;
    out->installed = nslots;
}

/* ---- test hook: a replaced loop called inside a worker's piece ---- */

typedef struct nested_job {
    int slot;
    char *buf;
    npy_intp n;
} nested_job;

static void nested_piece(void *ctx, int piece)
{
    nested_job *j = ctx;
    char *half = j->buf + (piece ? j->n / 2 : 0) * 8;
    npy_intp len = piece ? j->n - j->n / 2 : j->n / 2, steps[3] = {8, 8, 8};
    char *args[3] = {half, half, half};
    tramp[j->slot](args, &len, steps, NULL);
}

int nn_ufunc_nested_check(const char *loop, double *buf, long long n)
{
    int k = 0;
    while (k < nslots && strcmp(slots[k].name, loop) != 0)
        k++;
    if (k == nslots || slots[k].isz[0] != 8 || n < 2)
        return -EINVAL;
    nested_job j = {k, (char *)buf, (npy_intp)n};
    return nn_workers_run(nested_piece, &j, 2, NULL);
}
