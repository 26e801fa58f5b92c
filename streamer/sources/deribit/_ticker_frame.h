/* The ticker notification's shape, for the native fast path (_fast_path.c):
 * {"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.*","data":{...}}},
 * members in any order, the data's fields we use read into Fields, the rest validated
 * and skipped. Anything else declines (-1).
 */
#ifndef STREAMER_TICKER_FRAME_H
#define STREAMER_TICKER_FRAME_H

#include "_json_scan.h"

/* The Ticker fields we read (schema.Ticker). */
enum {
    F_TIMESTAMP, F_INSTRUMENT_NAME, F_UNDERLYING_PRICE, F_STATE, F_MARK_IV,
    F_INDEX_PRICE, F_BID_IV, F_BEST_BID_PRICE, F_BEST_BID_AMOUNT, F_BEST_ASK_PRICE,
    F_BEST_ASK_AMOUNT, F_ASK_IV, N_FIELDS
};

typedef struct {
    int seen[N_FIELDS];
    double number[N_FIELDS];      /* float fields, where has_number (`null` has not) */
    int has_number[N_FIELDS];
    long long timestamp;
    const char *name;
    Py_ssize_t name_len;
    const char *state;
    Py_ssize_t state_len;
} Fields;

static int field_index(const char *k, Py_ssize_t len) {
    if (KEY_IS(k, len, "underlying_price")) return F_UNDERLYING_PRICE;
    if (KEY_IS(k, len, "timestamp")) return F_TIMESTAMP;
    if (KEY_IS(k, len, "state")) return F_STATE;
    if (KEY_IS(k, len, "mark_iv")) return F_MARK_IV;
    if (KEY_IS(k, len, "instrument_name")) return F_INSTRUMENT_NAME;
    if (KEY_IS(k, len, "index_price")) return F_INDEX_PRICE;
    if (KEY_IS(k, len, "bid_iv")) return F_BID_IV;
    if (KEY_IS(k, len, "best_bid_price")) return F_BEST_BID_PRICE;
    if (KEY_IS(k, len, "best_bid_amount")) return F_BEST_BID_AMOUNT;
    if (KEY_IS(k, len, "best_ask_price")) return F_BEST_ASK_PRICE;
    if (KEY_IS(k, len, "best_ask_amount")) return F_BEST_ASK_AMOUNT;
    if (KEY_IS(k, len, "ask_iv")) return F_ASK_IV;
    return -1;
}

static int read_field(Cursor *c, Fields *f, int i) {
    Number n;
    if (i == F_INSTRUMENT_NAME)
        return scan_string(c, &f->name, &f->name_len);
    if (i == F_STATE)
        return scan_string(c, &f->state, &f->state_len);
    if (i == F_TIMESTAMP) {
        /* EpochMs: an integer token in [0, 2**63 - 1]; "-0" reads as 0 */
        if (scan_number(c, &n) < 0 || !n.is_int || n.int_digits > MAX_INT_DIGITS ||
            n.mantissa > (uint64_t)INT64_MAX || (n.negative && n.mantissa != 0))
            return -1;
        f->timestamp = (long long)n.mantissa;
        return 0;
    }
    if (is_null(c))
        return 0;
    if (scan_number(c, &n) < 0 || number_to_double(&n, &f->number[i]) < 0)
        return -1;
    f->has_number[i] = 1;
    return 0;
}

static int data_member(Cursor *c, const char *key, Py_ssize_t key_len, void *state) {
    Fields *f = state;
    int i = field_index(key, key_len);
    if (i < 0)
        return skip_value(c, 3);
    if (f->seen[i] || read_field(c, f, i) < 0)
        return -1;
    f->seen[i] = 1;
    return 0;
}

/* A string member that must be read once and pass `ok`. */
static inline int string_once(Cursor *c, int *seen, int (*ok)(const char *, Py_ssize_t)) {
    const char *value;
    Py_ssize_t len;
    return (*seen)++ || scan_string(c, &value, &len) < 0 || !ok(value, len) ? -1 : 0;
}

static int is_ticker_channel(const char *v, Py_ssize_t len) {
    return len >= 7 && memcmp(v, "ticker.", 7) == 0;
}
static int is_jsonrpc_2(const char *v, Py_ssize_t len) { return KEY_IS(v, len, "2.0"); }
static int is_subscription(const char *v, Py_ssize_t len) {
    return KEY_IS(v, len, "subscription");
}

typedef struct {
    Fields *fields;
    int seen_channel, seen_data;
} Params;

static int params_member(Cursor *c, const char *key, Py_ssize_t key_len, void *state) {
    Params *params = state;
    if (KEY_IS(key, key_len, "channel"))
        return string_once(c, &params->seen_channel, is_ticker_channel);
    if (KEY_IS(key, key_len, "data")) {
        Fields *f = params->fields;
        if (params->seen_data++ || scan_object(c, data_member, f) < 0)
            return -1;
        return f->seen[F_TIMESTAMP] && f->seen[F_INSTRUMENT_NAME] ? 0 : -1;
    }
    return skip_value(c, 2);
}

typedef struct {
    Params params;
    int seen_jsonrpc, seen_method, seen_params;
} Frame;

static int frame_member(Cursor *c, const char *key, Py_ssize_t key_len, void *state) {
    Frame *frame = state;
    if (KEY_IS(key, key_len, "jsonrpc"))
        return string_once(c, &frame->seen_jsonrpc, is_jsonrpc_2);
    if (KEY_IS(key, key_len, "method"))
        return string_once(c, &frame->seen_method, is_subscription);
    if (KEY_IS(key, key_len, "params")) {
        Params *params = &frame->params;
        if (frame->seen_params++ || scan_object(c, params_member, params) < 0)
            return -1;
        return params->seen_channel && params->seen_data ? 0 : -1;
    }
    if (KEY_IS(key, key_len, "id") || KEY_IS(key, key_len, "result") ||
        KEY_IS(key, key_len, "error"))
        return -1; /* typed members of a response: leave them to msgspec */
    return skip_value(c, 1);
}

/* The whole frame: {"jsonrpc":"2.0","method":"subscription","params":{...}} */
static int scan_frame(Cursor *c, Fields *f) {
    Frame frame = {.params = {.fields = f}};
    if (scan_object(c, frame_member, &frame) < 0 || !frame.seen_method || !frame.seen_params)
        return -1;
    skip_ws(c);
    return c->p == c->end ? 0 : -1;
}

#endif
