/* The JSON surface decoder's null rewrite (codec.py): every member `"key":null` whose
 * key is not in `keep` becomes `"key":"nan"`, which msgspec's lax decoder reads as a
 * float NaN, so a surface decodes in one typed pass.
 *
 * Contract (tests/sinks/test_null_floats.py checks it against its rule):
 * return the rewritten bytes (the input itself when nothing changes), or None to
 * decline -- any backslash in the message (a string escape: without escapes every
 * quote delimits a string, so the scan below knows exactly what is inside one). A
 * null is rewritten only as an object member's value (after its key's colon) and
 * only where it is a whole token, so the rewrite turns a valid message into a valid
 * one and leaves an invalid one invalid. `keep` names the members whose null stays
 * null: every field that is not a plain float (strings, ints, optional objects), so a
 * null there is still msgspec's error, never a silent "nan" string.
 *
 * Why native: Python's bytes.replace over the 20 KB of a 14-slice surface took about
 * 30 us (bytes.split 17 us) beside the typed decode's 50 us; this scan reads 32 (AVX2)
 * or 16 (SSE2) bytes a step, for the quotes and the rare `n..l`, and takes 2-4 us.
 * What is inside a string is the parity of the quotes before: no per-string work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static inline int is_ws(char ch) {
    return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t';
}

/* The key whose value `null` at p is, in [*key, *key_end), when p is a member's whole
 * value: `"key"`, whitespace, a colon, whitespace, then `null` and a delimiter or the
 * end. p is outside any string and the message has no escapes, so the quote before
 * the colon closes a string and the quote before that opens it. */
static int member_key(const char *s, const char *p, const char *end, const char **key,
                      const char **key_end) {
    const char *after = p + 4;
    if (after < end && !is_ws(*after) && *after != ',' && *after != '}' && *after != ']')
        return 0;
    const char *q = p;
    while (q > s && is_ws(q[-1]))
        q--;
    if (q == s || q[-1] != ':')
        return 0;
    q--;
    while (q > s && is_ws(q[-1]))
        q--;
    if (q == s || q[-1] != '"')
        return 0;
    const char *close = q - 1, *open = close;
    while (open > s && open[-1] != '"')
        open--;
    if (open == s)
        return 0;
    *key = open;
    *key_end = close;
    return 1;
}

/* The keep keys as an open-addressing set, built again only when another tuple comes
 * (the codec passes the same one each call): a linear scan of its 30-odd keys at each
 * null cost as much as the rest of the scan. */
/* Shared by every caller: safe because the whole call holds the GIL and calls back into
 * no Python code. Keep it so: no Py_BEGIN_ALLOW_THREADS around the scan, and no
 * Py_MOD_GIL_NOT_USED slot (a free-threaded build then re-enables the GIL for it). */
#define KEEP_SLOTS 256
static PyObject *keep_tuple; /* held, so its identity names the table */
static struct {
    const char *key;
    Py_ssize_t len;
} keep_table[KEEP_SLOTS];

static inline unsigned slot_of(const char *key, Py_ssize_t len) {
    unsigned h = (unsigned)len * 31u;
    if (len > 0)
        h = h * 131u + (unsigned char)key[0] * 7u + (unsigned char)key[len - 1] * 3u
            + (unsigned char)key[len / 2];
    return h % KEEP_SLOTS;
}

static int set_keep(PyObject *keep) {
    Py_ssize_t n = PyTuple_GET_SIZE(keep);
    if (n > KEEP_SLOTS / 2) {
        PyErr_SetString(PyExc_ValueError, "too many keep keys");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(keep, i))) {
            PyErr_SetString(PyExc_TypeError, "keep holds bytes");
            return -1;
        }
    }
    memset(keep_table, 0, sizeof keep_table);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(keep, i);
        const char *key = PyBytes_AS_STRING(name);
        Py_ssize_t len = PyBytes_GET_SIZE(name);
        unsigned at = slot_of(key, len);
        while (keep_table[at].key != NULL)
            at = (at + 1) % KEEP_SLOTS;
        keep_table[at].key = key;
        keep_table[at].len = len;
    }
    Py_INCREF(keep);
    Py_XSETREF(keep_tuple, keep);
    return 0;
}

static inline int kept(const char *key, Py_ssize_t len) {
    for (unsigned at = slot_of(key, len); keep_table[at].key != NULL; at = (at + 1) % KEEP_SLOTS) {
        if (keep_table[at].len == len && memcmp(keep_table[at].key, key, (size_t)len) == 0)
            return 1;
    }
    return 0;
}

/* A scan in progress over the message [s, end): where its nulls to rewrite are (the
 * copy is made once, at the end, at its exact size) and whether it has a backslash. */
#define INLINE_AT 128
typedef struct {
    const char *s, *end;
    const char **at; /* the nulls to rewrite, in order: `inline_at` until it is full */
    Py_ssize_t n_at, cap_at;
    const char *inline_at[INLINE_AT];
    unsigned quotes_seen; /* XOR of the quote masks so far: its parity says "inside" */
    unsigned escapes;     /* nonzero: a backslash somewhere (the caller declines) */
} Scan;

/* Note the null at p (outside any string) if it is a member's value whose key is not
 * kept. -1 with an exception (no memory). */
static int rewrite(Scan *c, const char *p) {
    const char *key, *key_end;
    if (c->end - p < 4 || memcmp(p, "null", 4) != 0
            || !member_key(c->s, p, c->end, &key, &key_end) || kept(key, key_end - key))
        return 0;
    if (c->n_at == c->cap_at) {
        Py_ssize_t cap = 2 * c->cap_at;
        const char **grown = PyMem_Malloc((size_t)cap * sizeof *grown);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(grown, c->at, (size_t)c->n_at * sizeof *grown);
        if (c->at != c->inline_at)
            PyMem_Free(c->at);
        c->at = grown;
        c->cap_at = cap;
    }
    c->at[c->n_at++] = p;
    return 0;
}

/* The message with each noted null as "nan" (one byte more each). */
static PyObject *rewritten(const Scan *c) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (c->end - c->s) + c->n_at);
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(out);
    const char *copied = c->s;
    for (Py_ssize_t i = 0; i < c->n_at; i++) {
        memcpy(o, copied, (size_t)(c->at[i] - copied));
        o += c->at[i] - copied;
        memcpy(o, "\"nan\"", 5);
        o += 5;
        copied = c->at[i] + 4;
    }
    memcpy(o, copied, (size_t)(c->end - copied));
    return out;
}

/* The candidates of one block: `nulls` marks where `n..l` starts (rare), `quotes` the
 * quotes; a candidate is outside a string when the quotes before it are even. */
static inline int block(Scan *c, const char *p, unsigned nulls, unsigned quotes,
                        unsigned escapes) {
    c->escapes |= escapes;
    while (nulls) {
        int bit = __builtin_ctz(nulls);
        nulls &= nulls - 1;
        if (!__builtin_parity(c->quotes_seen ^ (quotes & ((1u << bit) - 1)))
                && rewrite(c, p + bit) < 0)
            return -1;
    }
    c->quotes_seen ^= quotes;
    return 0;
}

/* Blocks of 16 (SSE2) or 32 (AVX2) bytes while the second load, 3 bytes on, stays in
 * the message; returns where the blocks stopped, NULL with an exception. */
#ifdef __SSE2__
static const char *scan_sse2(Scan *c, const char *p) {
    const __m128i quote = _mm_set1_epi8('"'), n = _mm_set1_epi8('n'), l = _mm_set1_epi8('l'),
                  slash = _mm_set1_epi8('\\');
    for (; p + 19 < c->end; p += 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)p);
        __m128i w3 = _mm_loadu_si128((const __m128i *)(p + 3));
        if (block(c, p, (unsigned)_mm_movemask_epi8(
                            _mm_and_si128(_mm_cmpeq_epi8(w, n), _mm_cmpeq_epi8(w3, l))),
                  (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, quote)),
                  (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, slash))) < 0)
            return NULL;
    }
    return p;
}
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_AVX2 1
#include <immintrin.h>
static int has_avx2;

__attribute__((target("avx2"))) static const char *scan_avx2(Scan *c, const char *p) {
    const __m256i quote = _mm256_set1_epi8('"'), n = _mm256_set1_epi8('n'),
                  l = _mm256_set1_epi8('l'), slash = _mm256_set1_epi8('\\');
    for (; p + 35 < c->end; p += 32) {
        __m256i w = _mm256_loadu_si256((const __m256i *)p);
        __m256i w3 = _mm256_loadu_si256((const __m256i *)(p + 3));
        if (block(c, p, (unsigned)_mm256_movemask_epi8(
                            _mm256_and_si256(_mm256_cmpeq_epi8(w, n), _mm256_cmpeq_epi8(w3, l))),
                  (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(w, quote)),
                  (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(w, slash))) < 0)
            return NULL;
    }
    return p;
}
#endif

static PyObject *nulls_as_nan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyBytes_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "nulls_as_nan(data: bytes, keep: tuple[bytes, ...])");
        return NULL;
    }
    if (args[1] != keep_tuple && set_keep(args[1]) < 0)
        return NULL;
    const char *s = PyBytes_AS_STRING(args[0]), *end = s + PyBytes_GET_SIZE(args[0]);
    Scan c = {.s = s, .end = end, .n_at = 0, .cap_at = INLINE_AT, .quotes_seen = 0,
              .escapes = 0};
    c.at = c.inline_at;
    PyObject *result = NULL;
    const char *p = s;
#ifdef HAVE_AVX2
    if (has_avx2 && (p = scan_avx2(&c, p)) == NULL)
        goto done;
#endif
#ifdef __SSE2__
    if ((p = scan_sse2(&c, p)) == NULL)
        goto done;
#endif
    for (int inside = __builtin_parity(c.quotes_seen); p < end; p++) {
        if (*p == '\\')
            c.escapes = 1;
        else if (*p == '"')
            inside ^= 1;
        else if (*p == 'n' && !inside && rewrite(&c, p) < 0)
            goto done;
    }
    if (c.escapes) /* quotes may be escaped: the parity above does not hold */
        result = Py_NewRef(Py_None);
    else if (c.n_at == 0)
        result = Py_NewRef(args[0]);
    else
        result = rewritten(&c);
done:
    if (c.at != c.inline_at)
        PyMem_Free(c.at);
    return result;
}

/* Tests: the SSE2 blocks alone on a machine with AVX2, so both are checked. */
static PyObject *use_avx2(PyObject *module, PyObject *flag) {
    (void)module;
    int on = PyObject_IsTrue(flag);
    if (on < 0)
        return NULL;
#ifdef HAVE_AVX2
    int was = has_avx2;
    has_avx2 = on && __builtin_cpu_supports("avx2");
    return PyBool_FromLong(was);
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"nulls_as_nan", (PyCFunction)(void (*)(void))nulls_as_nan, METH_FASTCALL,
     "nulls_as_nan(data, keep) -> bytes | None: members' nulls as \"nan\" (codec.py)."},
    {"_use_avx2", use_avx2, METH_O, "_use_avx2(flag) -> bool: whether it was on (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_null_floats",
    .m_doc = "Native null rewrite of the surface decoder (see codec.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__null_floats(void) {
#ifdef HAVE_AVX2
    __builtin_cpu_init();
    has_avx2 = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
