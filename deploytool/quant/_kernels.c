/*
 * deploytool.quant._kernels: TWN ternarization and BWN binarization of float32 weights in compiled loops.
 *
 * The numpy code in quantizers.py is the rule and stays the fallback; these functions give the very same
 * numbers, bit for bit (tests/quant/test_kernels.py compares them on every shape and edge value), in fewer
 * passes over memory: numpy's float64 sums of float32 values are restated here in numpy's own association
 * (buffers of NUMPY_BUFSIZE values, each summed pairwise with 8 accumulators below PW_BLOCKSIZE and halved above
 * it, added to the running total in turn), so the threshold and the scale do not move by an ulp between a
 * machine that built this module and one that did not.
 *
 * Only the buffer protocol is used (no numpy headers): callers pass C-contiguous arrays.
 * Build flags: -ffp-contract=off (no fused multiply-add may change a rounding); no -ffast-math.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* the loops below are compiled for AVX-512 and AVX2 too where the compiler can, the CPU's best chosen when the
   module loads (wider vectors, the same lanes: each of the 8 accumulators stays one lane, the same numbers) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDE
#endif

#define NUMPY_BUFSIZE 8192
#define PW_BLOCKSIZE 128
#define BLOCK 65536 /* quantizers._BLOCK: the numpy code sums a block of this many values per call */

/* numpy's DOUBLE pairwise sum of n values v(i) (i < n), v(i) a double made from a[i] by MAP */
#define DEFINE_PAIRWISE(NAME, MAP)                                                                    \
    WIDE static double NAME(const float *a, Py_ssize_t n, float t)                                         \
    {                                                                                                 \
        (void)t;                                                                                      \
        if (n < 8) {                                                                                  \
            double res = 0.;                                                                          \
            for (Py_ssize_t i = 0; i < n; i++) res += MAP(a[i], t);                                   \
            return res;                                                                               \
        }                                                                                             \
        if (n <= PW_BLOCKSIZE) {                                                                      \
            double r[8];                                                                              \
            for (int j = 0; j < 8; j++) r[j] = MAP(a[j], t);                                          \
            Py_ssize_t i;                                                                             \
            for (i = 8; i < n - (n % 8); i += 8)                                                      \
                for (int j = 0; j < 8; j++) r[j] += MAP(a[i + j], t);                                 \
            double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));          \
            for (; i < n; i++) res += MAP(a[i], t);                                                   \
            return res;                                                                               \
        }                                                                                             \
        Py_ssize_t n2 = n / 2;                                                                        \
        n2 -= n2 % 8;                                                                                 \
        return NAME(a, n2, t) + NAME(a + n2, n - n2, t);                                              \
    }

/* |x| as numpy's abs gives it, widened to double */
#define ABS_OF(x, t) ((double)fabsf(x))
/* |x| where |x| > t, else 0: the values the numpy code sums for the scale (it sums ``code * x``, whose zeros
   may be -0.0: a sum of them differs from this one only in the sign of a zero, when nothing is kept and the
   scale is 0 whatever the sum). Branch-free (a compare and a mask): the kept entries are random */
#define KEPT_OF(x, t) kept_of(x, t)

static inline double kept_of(float x, float t)
{
    float ax = fabsf(x);
    uint32_t u;
    memcpy(&u, &ax, 4);
    u &= (uint32_t)0 - (uint32_t)(ax > t); /* all ones where kept, else 0 (+0.0f) */
    memcpy(&ax, &u, 4);
    return (double)ax;
}

DEFINE_PAIRWISE(pw_abs, ABS_OF)
DEFINE_PAIRWISE(pw_kept, KEPT_OF)

/* the float64 sum numpy's ``a.sum(dtype=np.float64)`` gives for one call over n values: the running total
   (starting at 0) plus each buffer's pairwise sum in turn */
static double one_call(double (*pw)(const float *, Py_ssize_t, float), const float *a, Py_ssize_t n, float t)
{
    double total = 0.;
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE)
        total += pw(a + i, n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE, t);
    return total;
}

/* the numpy code's association: a Python float running total plus each block's one-call sum */
static double blocks(double (*pw)(const float *, Py_ssize_t, float), const float *a, Py_ssize_t n, float t)
{
    double total = 0.;
    for (Py_ssize_t i = 0; i < n; i += BLOCK) total += one_call(pw, a + i, n - i < BLOCK ? n - i : BLOCK, t);
    return total;
}

/* codes of n values: sign(x) where |x| > t, else 0 (NaN: 0); returns how many are not 0. Counted in blocks of
   int8 sums so that both loops vectorize */
WIDE static Py_ssize_t codes_of(const float *a, Py_ssize_t n, float t, int8_t *out)
{
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < n; i++) out[i] = (int8_t)((a[i] > t) - (a[i] < -t));
    for (Py_ssize_t i = 0; i < n; i++) count += out[i] != 0;
    return count;
}

/* codes of n values (codes_of) and the sum of the kept |x| in the numpy code's association (a running total
   plus each block's one-call sum; block: BLOCK for a whole matrix, the row's length for rows), a buffer of
   values at a time: each is read from memory once, its codes and its sum made while it is in cache */
static Py_ssize_t codes_and_kept(const float *a, Py_ssize_t n, float t, int8_t *out, Py_ssize_t block,
                                 double *kept)
{
    Py_ssize_t count = 0;
    double total = 0.;
    for (Py_ssize_t b = 0; b < n; b += block) {
        Py_ssize_t bn = n - b < block ? n - b : block;
        double bs = 0.;
        for (Py_ssize_t i = 0; i < bn; i += NUMPY_BUFSIZE) {
            Py_ssize_t m = bn - i < NUMPY_BUFSIZE ? bn - i : NUMPY_BUFSIZE;
            count += codes_of(a + b + i, m, t, out + b + i);
            bs += pw_kept(a + b + i, m, t);
        }
        total += bs;
    }
    *kept = total;
    return count;
}

/* quantizers._threshold: the largest float32 at most d (a double) */
static float threshold32(double d)
{
    float f = (float)d;
    if ((double)f > d) f = nextafterf(f, -INFINITY);
    return f;
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *fmt, Py_ssize_t itemsize,
                      const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (view->itemsize != itemsize || strcmp(f, fmt) != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous buffer of format '%s', got '%s'", what, fmt,
                     view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* layer_abs_sum(x: float32) -> float: the numpy code's float64 sum of |x| (blocks of BLOCK) */
static PyObject *layer_abs_sum(PyObject *self, PyObject *args)
{
    PyObject *xo;
    if (!PyArg_ParseTuple(args, "O", &xo)) return NULL;
    Py_buffer x;
    if (get_buffer(xo, &x, 0, "f", 4, "x") < 0) return NULL;
    double s;
    Py_BEGIN_ALLOW_THREADS
    s = blocks(pw_abs, (const float *)x.buf, x.len / 4, 0.f);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    return PyFloat_FromDouble(s);
}

/* layer_codes(x: float32, t: float (a float32 value), codes: int8 out) -> (count, kept sum):
   codes = sign(x) where |x| > t else 0; count of them; the numpy code's float64 sum of the kept |x| */
static PyObject *layer_codes(PyObject *self, PyObject *args)
{
    PyObject *xo, *co;
    double td;
    if (!PyArg_ParseTuple(args, "OdO", &xo, &td, &co)) return NULL;
    Py_buffer x, c;
    if (get_buffer(xo, &x, 0, "f", 4, "x") < 0) return NULL;
    if (get_buffer(co, &c, 1, "b", 1, "codes") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_ssize_t n = x.len / 4;
    if (c.len != n) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&c);
        PyErr_SetString(PyExc_ValueError, "codes: not as long as x");
        return NULL;
    }
    const float *a = (const float *)x.buf;
    int8_t *out = (int8_t *)c.buf;
    float t = (float)td;
    Py_ssize_t count = 0;
    double kept;
    Py_BEGIN_ALLOW_THREADS
    count = codes_and_kept(a, n, t, out, BLOCK, &kept);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyBuffer_Release(&c);
    return Py_BuildValue("nd", count, kept);
}

/* ternarize_rows(x: float32 [rows * k], k, codes: int8 out, alpha: float32 out [rows]) -> bool (all finite):
   quantizers._ternarize_rows row by row: delta = 0.7 * mean|row| (float64, numpy's sum of one row), codes
   sign(x) where |x| > the float32 threshold, alpha = mean of the kept |x| (float64, then float32) or 0 */
static PyObject *ternarize_rows(PyObject *self, PyObject *args)
{
    PyObject *xo, *co, *ao;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "OnOO", &xo, &k, &co, &ao)) return NULL;
    Py_buffer x, c, al;
    if (get_buffer(xo, &x, 0, "f", 4, "x") < 0) return NULL;
    if (get_buffer(co, &c, 1, "b", 1, "codes") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_buffer(ao, &al, 1, "f", 4, "alpha") < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&c);
        return NULL;
    }
    Py_ssize_t n = x.len / 4, rows = al.len / 4;
    if (k <= 0 || c.len != n || rows * k != n) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&c);
        PyBuffer_Release(&al);
        PyErr_SetString(PyExc_ValueError, "ternarize_rows: shapes disagree");
        return NULL;
    }
    const float *a = (const float *)x.buf;
    int8_t *out = (int8_t *)c.buf;
    float *alpha = (float *)al.buf;
    int finite = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows && finite; r++) {
        const float *row = a + r * k;
        double mean = one_call(pw_abs, row, k, 0.f) / (double)k;
        if (!isfinite(mean)) {
            finite = 0;
            break;
        }
        float t = threshold32(0.7 * mean);
        double kept;
        Py_ssize_t count = codes_and_kept(row, k, t, out + r * k, k, &kept);
        alpha[r] = count > 0 ? (float)(kept / (double)count) : 0.0f;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyBuffer_Release(&c);
    PyBuffer_Release(&al);
    return PyBool_FromLong(finite);
}

/* signs of n values: 1 where x >= 0 (-0.0 included), else -1 (NaN included) */
WIDE static void signs_of(const float *a, Py_ssize_t n, int8_t *out)
{
    for (Py_ssize_t i = 0; i < n; i++) out[i] = (int8_t)(2 * (a[i] >= 0.f) - 1);
}

/* the float32 residual x - s * m of n values (s = +-1: s * m is +-m exactly, one float32 subtraction) */
WIDE static void residual_of(const float *a, const int8_t *s, float m, Py_ssize_t n, float *r)
{
    for (Py_ssize_t i = 0; i < n; i++) r[i] = a[i] - (float)s[i] * m;
}

/* binarize_layer(x: float32, signs: int8 out) -> float: the signs, and the float64 sum of |x| as numpy's one
   call ``np.abs(w).mean(dtype=np.float64)`` sums a contiguous array (buffers in turn), a buffer at a time */
static PyObject *binarize_layer(PyObject *self, PyObject *args)
{
    PyObject *xo, *so;
    if (!PyArg_ParseTuple(args, "OO", &xo, &so)) return NULL;
    Py_buffer x, sg;
    if (get_buffer(xo, &x, 0, "f", 4, "x") < 0) return NULL;
    if (get_buffer(so, &sg, 1, "b", 1, "signs") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_ssize_t n = x.len / 4;
    if (sg.len != n) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&sg);
        PyErr_SetString(PyExc_ValueError, "signs: not as long as x");
        return NULL;
    }
    const float *a = (const float *)x.buf;
    int8_t *out = (int8_t *)sg.buf;
    double total = 0.;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE) {
        Py_ssize_t m = n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE;
        signs_of(a + i, m, out + i);
        total += pw_abs(a + i, m, 0.f);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyBuffer_Release(&sg);
    return PyFloat_FromDouble(total);
}

/* binarize_rows(x: float32 [rows * k], k, signs: int8 out, alpha: float32 out [rows]): the signs, and each
   row's mean |x| (numpy's sum of one row, over k, in float64, then float32) */
static PyObject *binarize_rows(PyObject *self, PyObject *args)
{
    PyObject *xo, *so, *ao;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "OnOO", &xo, &k, &so, &ao)) return NULL;
    Py_buffer x, sg, al;
    if (get_buffer(xo, &x, 0, "f", 4, "x") < 0) return NULL;
    if (get_buffer(so, &sg, 1, "b", 1, "signs") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_buffer(ao, &al, 1, "f", 4, "alpha") < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&sg);
        return NULL;
    }
    Py_ssize_t n = x.len / 4, rows = al.len / 4;
    if (k <= 0 || sg.len != n || rows * k != n) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&sg);
        PyBuffer_Release(&al);
        PyErr_SetString(PyExc_ValueError, "binarize_rows: shapes disagree");
        return NULL;
    }
    const float *a = (const float *)x.buf;
    int8_t *out = (int8_t *)sg.buf;
    float *alpha = (float *)al.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        signs_of(a + r * k, k, out + r * k);
        alpha[r] = (float)(one_call(pw_abs, a + r * k, k, 0.f) / (double)k);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyBuffer_Release(&sg);
    PyBuffer_Release(&al);
    Py_RETURN_NONE;
}

/* one unit (a whole matrix or a row) of n values: BinaryBERT's greedy two planes as the numpy code makes them:
   s1 = sign(x), a1 = mean|x| (float64, numpy's one-call sum), the float32 residual x - float32(a1) s1, s2 its
   signs and a2 its mean magnitude; a buffer at a time (the residual lives only in ``r``) */
static void greedy_unit(const float *a, Py_ssize_t n, int8_t *s1, int8_t *s2, float *a1, float *a2, float *r)
{
    double total = 0.;
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE) {
        Py_ssize_t m = n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE;
        signs_of(a + i, m, s1 + i);
        total += pw_abs(a + i, m, 0.f);
    }
    double mean = total / (double)n;
    float m32 = (float)mean;
    total = 0.;
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE) {
        Py_ssize_t m = n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE;
        residual_of(a + i, s1 + i, m32, m, r);
        signs_of(r, m, s2 + i);
        total += pw_abs(r, m, 0.f);
    }
    *a1 = m32;
    *a2 = (float)(total / (double)n);
}

/* greedy_planes(x: float32 [units * k], k, s1, s2: int8 out, a1, a2: float32 out [units]) */
static PyObject *greedy_planes(PyObject *self, PyObject *args)
{
    PyObject *xo, *s1o, *s2o, *a1o, *a2o;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "OnOOOO", &xo, &k, &s1o, &s2o, &a1o, &a2o)) return NULL;
    Py_buffer x, b1, b2, c1, c2;
    if (get_buffer(xo, &x, 0, "f", 4, "x") < 0) return NULL;
    if (get_buffer(s1o, &b1, 1, "b", 1, "s1") < 0) goto fail1;
    if (get_buffer(s2o, &b2, 1, "b", 1, "s2") < 0) goto fail2;
    if (get_buffer(a1o, &c1, 1, "f", 4, "a1") < 0) goto fail3;
    if (get_buffer(a2o, &c2, 1, "f", 4, "a2") < 0) goto fail4;
    Py_ssize_t n = x.len / 4, units = c1.len / 4;
    if (k <= 0 || b1.len != n || b2.len != n || units * k != n || c2.len != c1.len) {
        PyErr_SetString(PyExc_ValueError, "greedy_planes: shapes disagree");
        goto fail5;
    }
    float *r = (float *)PyMem_RawMalloc(NUMPY_BUFSIZE * sizeof(float));
    if (r == NULL) {
        PyErr_NoMemory();
        goto fail5;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t u = 0; u < units; u++)
        greedy_unit((const float *)x.buf + u * k, k, (int8_t *)b1.buf + u * k, (int8_t *)b2.buf + u * k,
                    (float *)c1.buf + u, (float *)c2.buf + u, r);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(r);
    PyBuffer_Release(&c2);
    PyBuffer_Release(&c1);
    PyBuffer_Release(&b2);
    PyBuffer_Release(&b1);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
fail5:
    PyBuffer_Release(&c2);
fail4:
    PyBuffer_Release(&c1);
fail3:
    PyBuffer_Release(&b2);
fail2:
    PyBuffer_Release(&b1);
fail1:
    PyBuffer_Release(&x);
    return NULL;
}

/* pack_rows(codes: int8 [rows * k], k, out: uint8 [rows * ceil(k / per)], per) -> bool: each row's codes
   {-1, 0, 1} packed ``per`` to a byte, low first, the last byte padded with the code 0: per = 5 (trits,
   byte = sum (c_i + 1) 3^i) or 4 (byte = sum (c_i + 2) << 2i, MatMulNBits' zero point 2). False (nothing
   promised about ``out``) when a code is not -1, 0 or 1 */
static PyObject *pack_rows(PyObject *self, PyObject *args)
{
    PyObject *co, *oo;
    Py_ssize_t k;
    int per;
    if (!PyArg_ParseTuple(args, "OnOi", &co, &k, &oo, &per)) return NULL;
    if (per != 4 && per != 5) {
        PyErr_SetString(PyExc_ValueError, "pack_rows: per must be 4 or 5");
        return NULL;
    }
    Py_buffer c, o;
    if (get_buffer(co, &c, 0, "b", 1, "codes") < 0) return NULL;
    if (get_buffer(oo, &o, 1, "B", 1, "out") < 0) {
        PyBuffer_Release(&c);
        return NULL;
    }
    Py_ssize_t n = c.len, nb = k > 0 ? (k + per - 1) / per : 0, rows = k > 0 ? n / k : 0;
    if (k <= 0 || rows * k != n || o.len != rows * nb) {
        PyBuffer_Release(&c);
        PyBuffer_Release(&o);
        PyErr_SetString(PyExc_ValueError, "pack_rows: shapes disagree");
        return NULL;
    }
    const int8_t *in = (const int8_t *)c.buf;
    uint8_t *out = (uint8_t *)o.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        const int8_t *row = in + r * k;
        uint8_t *dst = out + r * nb;
        for (Py_ssize_t b = 0; b < nb; b++) {
            unsigned v = 0, mul = 1;
            for (int j = 0; j < per; j++) {
                Py_ssize_t i = b * per + j;
                int code = i < k ? row[i] : 0;
                bad |= code < -1 || code > 1;
                if (per == 5) {
                    v += (unsigned)(code + 1) * mul;
                    mul *= 3;
                } else {
                    v |= (unsigned)(code + 2) << (2 * j);
                }
            }
            dst[b] = (uint8_t)v;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&c);
    PyBuffer_Release(&o);
    return PyBool_FromLong(!bad);
}

static PyMethodDef methods[] = {
    {"layer_abs_sum", layer_abs_sum, METH_VARARGS, "float64 sum of |x| in the numpy code's association"},
    {"layer_codes", layer_codes, METH_VARARGS, "TWN codes above a float32 threshold, their count and kept sum"},
    {"ternarize_rows", ternarize_rows, METH_VARARGS, "TWN with one scale per row"},
    {"binarize_layer", binarize_layer, METH_VARARGS, "BWN signs and numpy's one-call float64 sum of |x|"},
    {"binarize_rows", binarize_rows, METH_VARARGS, "BWN signs and one float32 scale per row"},
    {"greedy_planes", greedy_planes, METH_VARARGS, "BinaryBERT's greedy two binary planes per unit"},
    {"pack_rows", pack_rows, METH_VARARGS, "ternary codes packed 5 (trits) or 4 (2-bit) to a byte per row"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
