/* The Deribit decoder's native fast path: a ticker notification's bytes, in one
 * pass, to its Quote or reject reason.
 *
 * Contract (fast_path.py; tests/sources/test_deribit_fast_path.py checks it against
 * the msgspec reference): return exactly what MsgspecFastPath returns -- the Quote,
 * bit for bit, or the same reject reason -- or None to decline. Declining is always
 * safe (the decoder then takes the msgspec path), so this code declines anything
 * unusual rather than handle it: string escapes, non-ASCII bytes, duplicate keys it
 * reads, `id`/`result`/`error` members, integers of more than 19 digits, numbers out
 * of a double's range, nesting deeper than 32. What it accepts it reads as msgspec
 * does: it validates the whole frame as JSON (skipped members too), rounds numbers
 * correctly, and normalises with normalise.ticker_quote's rules in their order.
 *
 * Why native: per message, msgspec's typed decode (about 1.6 us, of which 0.9 us is
 * tokenising members we skip: greeks, stats) and the Python normalising (0.6 us) were
 * most of the decoder's cost; this path does both in about 1 us.
 */
#include <stddef.h>

#include "_json_scan.h"
#include "_ticker_frame.h"

/* What the normalising needs of an instrument, from the decoder's InstrumentCache:
 * (underlying, expiry_ts_ms, strike, is_call, linear), or the reason it is rejected. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *quote_type;
    PyObject *instruments; /* name -> InstrumentInfo | reason, parsing on a miss */
    /* name -> the tuple above | reason: `instruments` again, as tuples, because five
     * attribute lookups on an InstrumentInfo per message cost far more than a tuple's. */
    PyObject *known;
    PyObject *venue;
    Py_ssize_t max_known;
} TickerQuoter;

enum { I_UNDERLYING, I_EXPIRY, I_STRIKE, I_IS_CALL, I_LINEAR, N_INFO };
static const char *INFO_FIELDS[N_INFO] = {"underlying", "expiry_ts_ms", "strike", "is_call",
                                          "linear"};
static PyObject *EXPIRED, *NO_UNDERLYING_PRICE, *NEGATIVE_PRICE, *CROSSED;

static PyObject *info_tuple(PyObject *info) {
    PyObject *tuple = PyTuple_New(N_INFO);
    for (int i = 0; tuple != NULL && i < N_INFO; i++) {
        PyObject *value = PyObject_GetAttrString(info, INFO_FIELDS[i]);
        if (value == NULL)
            Py_CLEAR(tuple);
        else
            PyTuple_SET_ITEM(tuple, i, value);
    }
    return tuple;
}

/* New reference to the instrument's tuple or reject reason; NULL with an exception. */
static PyObject *instrument(TickerQuoter *self, PyObject *name) {
    PyObject *entry = PyDict_GetItemWithError(self->known, name);
    if (entry != NULL) {
        Py_INCREF(entry);
        return entry;
    }
    if (PyErr_Occurred())
        return NULL;
    PyObject *info = PyObject_GetItem(self->instruments, name);
    if (info == NULL)
        return NULL;
    entry = PyUnicode_Check(info) ? Py_NewRef(info) : info_tuple(info);
    Py_DECREF(info);
    if (entry != NULL && PyDict_GET_SIZE(self->known) < self->max_known &&
        PyDict_SetItem(self->known, name, entry) < 0)
        Py_CLEAR(entry);
    return entry;
}

/* Python's `value or NaN`: Deribit sends 0.0 or null for a missing value. */
static inline double or_nan(const Fields *f, int i) {
    return f->has_number[i] && f->number[i] != 0.0 ? f->number[i] : Py_NAN;
}

static inline double iv_decimal(const Fields *f, int i) {
    return f->has_number[i] && f->number[i] != 0.0 ? f->number[i] / 100.0 : Py_NAN;
}

/* The rules of normalise.ticker_quote, in its order, on the scanned fields. */
static PyObject *normalise(TickerQuoter *self, const Fields *f, PyObject *name,
                           PyObject *info, PyObject *received_ts_ns) {
    if (f->seen[F_STATE] && !KEY_IS(f->state, f->state_len, "open"))
        return Py_NewRef(EXPIRED);
    double fwd = f->number[F_UNDERLYING_PRICE];
    if (!f->has_number[F_UNDERLYING_PRICE] || !(0.0 < fwd && fwd < Py_HUGE_VAL))
        return Py_NewRef(NO_UNDERLYING_PRICE);
    double bid = or_nan(f, F_BEST_BID_PRICE), ask = or_nan(f, F_BEST_ASK_PRICE);
    if (bid < 0 || ask < 0)
        return Py_NewRef(NEGATIVE_PRICE);
    if (bid > ask)
        return Py_NewRef(CROSSED);
    if (PyTuple_GET_ITEM(info, I_LINEAR) != Py_True) { /* inverse: premiums in coin */
        bid *= fwd;
        ask *= fwd;
    }
    /* Quote's positional field order (streamer.types.Quote). */
    PyObject *args[17] = {
        Py_NewRef(self->venue), Py_NewRef(PyTuple_GET_ITEM(info, I_UNDERLYING)),
        Py_NewRef(name), Py_NewRef(PyTuple_GET_ITEM(info, I_EXPIRY)),
        Py_NewRef(PyTuple_GET_ITEM(info, I_STRIKE)), Py_NewRef(PyTuple_GET_ITEM(info, I_IS_CALL)),
        PyFloat_FromDouble(bid), PyFloat_FromDouble(ask), PyFloat_FromDouble(fwd),
        PyFloat_FromDouble(or_nan(f, F_INDEX_PRICE)), PyLong_FromLongLong(f->timestamp),
        Py_NewRef(received_ts_ns),
        PyFloat_FromDouble(or_nan(f, F_BEST_BID_AMOUNT)),
        PyFloat_FromDouble(or_nan(f, F_BEST_ASK_AMOUNT)),
        PyFloat_FromDouble(iv_decimal(f, F_BID_IV)), PyFloat_FromDouble(iv_decimal(f, F_ASK_IV)),
        PyFloat_FromDouble(iv_decimal(f, F_MARK_IV))};
    PyObject *quote = NULL;
    int complete = 1;
    for (int i = 0; i < 17; i++)
        complete &= args[i] != NULL;
    if (complete)
        quote = PyObject_Vectorcall(self->quote_type, args, 17, NULL);
    for (int i = 0; i < 17; i++)
        Py_XDECREF(args[i]);
    return quote;
}

static PyObject *quote_frame(TickerQuoter *self, const Fields *f, PyObject *received_ts_ns) {
    PyObject *name = PyUnicode_DecodeASCII(f->name, f->name_len, NULL);
    if (name == NULL)
        return NULL;
    PyObject *info = instrument(self, name);
    PyObject *result = info == NULL || PyUnicode_Check(info)
                           ? Py_XNewRef(info)
                           : normalise(self, f, name, info, received_ts_ns);
    Py_XDECREF(info);
    Py_DECREF(name);
    return result;
}

/* quoter(frame: bytes, received_ts_ns: int) -> Quote | reject reason | None (declined) */
static PyObject *quoter_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "TickerQuoter takes (frame, received_ts_ns)");
        return NULL;
    }
    PyObject *frame = args[0];
    if (!PyBytes_Check(frame)) /* bytes only: its buffer ends with the NUL the loops rely on */
        Py_RETURN_NONE;
    Cursor c = {PyBytes_AS_STRING(frame), PyBytes_AS_STRING(frame) + PyBytes_GET_SIZE(frame)};
    Fields f;
    memset(&f, 0, sizeof(f));
    if (scan_frame(&c, &f) < 0)
        Py_RETURN_NONE;
    return quote_frame((TickerQuoter *)self, &f, args[1]);
}

static PyObject *quoter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *quote_type, *instruments, *venue;
    Py_ssize_t max_known = 100000;
    static char *keywords[] = {"quote_type", "instruments", "venue", "max_known", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOU|n:TickerQuoter", keywords, &quote_type,
                                     &instruments, &venue, &max_known))
        return NULL;
    TickerQuoter *self = (TickerQuoter *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = quoter_vectorcall;
    self->quote_type = Py_NewRef(quote_type);
    self->instruments = Py_NewRef(instruments);
    self->venue = Py_NewRef(venue);
    self->max_known = max_known;
    self->known = PyDict_New();
    if (self->known == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void quoter_dealloc(TickerQuoter *self) {
    Py_XDECREF(self->quote_type);
    Py_XDECREF(self->instruments);
    Py_XDECREF(self->venue);
    Py_XDECREF(self->known);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject TickerQuoterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streamer.sources.deribit._fast_path.TickerQuoter",
    .tp_doc = "TickerQuoter(quote_type, instruments, venue)(frame, received_ts_ns) -> "
              "Quote | reject reason | None (declined: take the msgspec path).",
    .tp_basicsize = sizeof(TickerQuoter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = quoter_new,
    .tp_dealloc = (destructor)quoter_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(TickerQuoter, vectorcall),
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fast_path",
    .m_doc = "Native fast path of the Deribit decoder (see fast_path.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fast_path(void) {
    init_tables();
    if (PyType_Ready(&TickerQuoterType) < 0)
        return NULL;
    EXPIRED = PyUnicode_InternFromString("expired");
    NO_UNDERLYING_PRICE = PyUnicode_InternFromString("no_underlying_price");
    NEGATIVE_PRICE = PyUnicode_InternFromString("negative_price");
    CROSSED = PyUnicode_InternFromString("crossed");
    if (!EXPIRED || !NO_UNDERLYING_PRICE || !NEGATIVE_PRICE || !CROSSED)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "TickerQuoter", (PyObject *)&TickerQuoterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
