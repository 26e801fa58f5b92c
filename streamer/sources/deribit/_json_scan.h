/* JSON lexing for the native fast path (_fast_path.c): validate and read tokens.
 *
 * Strict JSON (RFC 8259), narrowed: strings with escapes or non-ASCII bytes are
 * refused (the caller declines the frame, and msgspec reads it instead), as is
 * nesting deeper than MAX_DEPTH. Numbers are read correctly rounded.
 */
#ifndef STREAMER_JSON_SCAN_H
#define STREAMER_JSON_SCAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 32
#define MAX_INT_DIGITS 19 /* a 19-digit integer always fits a uint64 */

typedef struct {
    const char *p;
    const char *end;
} Cursor;

typedef struct {
    const char *start; /* the token, sign included */
    const char *stop;
    int negative;
    int is_int;        /* no fraction, no exponent */
    int int_digits;    /* digits before the point */
    uint64_t mantissa; /* significant digits, at most 19 of them */
    int sig_digits;
    int exp10;         /* value = mantissa * 10^exp10 when sig_digits <= 19 */
} Number;

static const double POW10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The loops below need no bounds check: every bytes object's buffer ends with a NUL
 * one past its size, and NUL is valid in no JSON token, so each loop stops there
 * at the latest. Only the end of the frame is compared with `end`. */
static unsigned char STRING_STOP[256]; /* '"', backslash, control bytes, non-ASCII */
static unsigned char WHITESPACE[256];

#define IS_DIGIT(ch) ((unsigned char)((ch) - '0') < 10)

static void init_tables(void) {
    for (int ch = 0; ch < 256; ch++)
        STRING_STOP[ch] = ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x80;
    WHITESPACE[' '] = WHITESPACE['\n'] = WHITESPACE['\r'] = WHITESPACE['\t'] = 1;
}

static inline void skip_ws(Cursor *c) {
    while (WHITESPACE[(unsigned char)*c->p])
        c->p++;
}

static inline int expect(Cursor *c, char ch) {
    skip_ws(c);
    if (*c->p != ch)
        return -1;
    c->p++;
    return 0;
}

/* A string without escapes or non-ASCII bytes; `start`/`len` exclude the quotes. */
static inline int scan_string(Cursor *c, const char **start, Py_ssize_t *len) {
    skip_ws(c);
    if (*c->p != '"')
        return -1;
    const unsigned char *s = (const unsigned char *)c->p + 1, *q = s;
#ifdef __SSE2__
    /* 16 bytes at a time while they are all in the frame: a signed "less than 0x20"
     * catches control bytes and non-ASCII (>= 0x80 is negative) at once. */
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'),
                  space = _mm_set1_epi8(0x20);
    while ((const char *)q + 16 <= c->end) {
        __m128i w = _mm_loadu_si128((const __m128i *)q);
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, quote),
                                                 _mm_cmpeq_epi8(w, slash)),
                                    _mm_cmplt_epi8(w, space));
        int mask = _mm_movemask_epi8(stop);
        if (mask != 0) {
            q += __builtin_ctz((unsigned)mask);
            break;
        }
        q += 16;
    }
#endif
    while (!STRING_STOP[*q])
        q++;
    if (*q != '"')
        return -1;
    *start = (const char *)s;
    *len = (const char *)q - (const char *)s;
    c->p = (const char *)q + 1;
    return 0;
}

/* JSON number grammar, validated only: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(Cursor *c) {
    const char *p = c->p;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (IS_DIGIT(*p))
        do p++; while (IS_DIGIT(*p));
    else
        return -1;
    if (*p == '.') {
        p++;
        if (!IS_DIGIT(*p))
            return -1;
        do p++; while (IS_DIGIT(*p));
    }
    if ((*p | 0x20) == 'e') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!IS_DIGIT(*p))
            return -1;
        do p++; while (IS_DIGIT(*p));
    }
    c->p = p;
    return 0;
}

static inline void take_digit(Number *n, char ch) {
    if (n->sig_digits == 0 && ch == '0')
        return; /* leading zeros carry no precision */
    if (n->sig_digits < 19) /* 19 digits always fit a uint64; more take the slow path */
        n->mantissa = n->mantissa * 10 + (uint64_t)(ch - '0');
    n->sig_digits++;
}

/* The same grammar, read: value = mantissa * 10^exp10 while sig_digits <= 19. */
static int scan_number(Cursor *c, Number *n) {
    skip_ws(c);
    const char *p = c->p;
    *n = (Number){.start = p, .is_int = 1};
    if (*p == '-') {
        n->negative = 1;
        p++;
    }
    if (*p == '0') {
        p++;
        n->int_digits = 1;
    } else if (IS_DIGIT(*p)) {
        do {
            take_digit(n, *p++);
            n->int_digits++;
        } while (IS_DIGIT(*p));
    } else {
        return -1;
    }
    if (*p == '.') {
        n->is_int = 0;
        p++;
        if (!IS_DIGIT(*p))
            return -1;
        do { /* each fraction digit, leading zeros too, shifts the point */
            take_digit(n, *p++);
            n->exp10--;
        } while (IS_DIGIT(*p));
    }
    if ((*p | 0x20) == 'e') {
        n->is_int = 0;
        p++;
        int exp_negative = 0;
        if (*p == '+' || *p == '-')
            exp_negative = *p++ == '-';
        if (!IS_DIGIT(*p))
            return -1;
        int e = 0;
        do {
            if (e < 100000)
                e = e * 10 + (*p - '0');
            p++;
        } while (IS_DIGIT(*p));
        n->exp10 += exp_negative ? -e : e;
    }
    n->stop = c->p = p;
    return 0;
}

/* Correctly rounded, as msgspec's parser is: Clinger's exact fast path when the
 * mantissa and the power of ten are both exact doubles, else Python's own dtoa. */
static int number_to_double(const Number *n, double *out) {
    double value;
    if (n->is_int) {
        if (n->int_digits > MAX_INT_DIGITS)
            return -1;
        /* msgspec reads an integer token as an int, then converts: "-0" is 0.0 */
        value = (double)n->mantissa; /* rounded to nearest, as msgspec's int -> float */
        *out = n->negative ? -value + 0.0 : value;
        return 0;
    }
    if (n->sig_digits <= 19 && n->mantissa <= (1ULL << 53) && n->exp10 >= -22 &&
        n->exp10 <= 22) {
        value = (double)n->mantissa;
        value = n->exp10 < 0 ? value / POW10[-n->exp10] : value * POW10[n->exp10];
        if (n->negative)
            value = -value;
    } else {
        char *parsed_end; /* the token is followed by a delimiter, so dtoa stops there */
        value = PyOS_string_to_double(n->start, &parsed_end, NULL);
        if (value == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        if (parsed_end != n->stop)
            return -1;
    }
    if (!(value - value == 0.0)) /* inf: msgspec says "Number out of range" */
        return -1;
    *out = value;
    return 0;
}

static int skip_value(Cursor *c, int depth);

static int skip_members(Cursor *c, int depth, char close) {
    skip_ws(c);
    if (*c->p == close) {
        c->p++;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            const char *key;
            Py_ssize_t key_len;
            if (scan_string(c, &key, &key_len) < 0 || expect(c, ':') < 0)
                return -1;
        }
        if (skip_value(c, depth) < 0)
            return -1;
        skip_ws(c);
        char ch = *c->p++;
        if (ch == close)
            return 0;
        if (ch != ',')
            return -1;
    }
}

static int skip_literal(Cursor *c, const char *word, Py_ssize_t len) {
    if (c->end - c->p < len || memcmp(c->p, word, (size_t)len) != 0)
        return -1;
    c->p += len;
    return 0;
}

static int skip_value(Cursor *c, int depth) {
    skip_ws(c);
    if (depth > MAX_DEPTH)
        return -1;
    const char *s;
    Py_ssize_t len;
    switch (*c->p) {
    case '{':
        c->p++;
        return skip_members(c, depth + 1, '}');
    case '[':
        c->p++;
        return skip_members(c, depth + 1, ']');
    case '"':
        return scan_string(c, &s, &len);
    case 't':
        return skip_literal(c, "true", 4);
    case 'f':
        return skip_literal(c, "false", 5);
    case 'n':
        return skip_literal(c, "null", 4);
    default:
        return skip_number(c);
    }
}

static int is_null(Cursor *c) {
    skip_ws(c);
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        return 1;
    }
    return 0;
}

typedef int (*MemberReader)(Cursor *c, const char *key, Py_ssize_t key_len, void *state);

/* An object, each member's value read (and consumed) by `member`; -1 if the object
 * is malformed or `member` refuses a value. */
static inline int scan_object(Cursor *c, MemberReader member, void *state) {
    if (expect(c, '{') < 0)
        return -1;
    skip_ws(c);
    if (*c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        const char *key;
        Py_ssize_t key_len;
        if (scan_string(c, &key, &key_len) < 0 || expect(c, ':') < 0 ||
            member(c, key, key_len, state) < 0)
            return -1;
        skip_ws(c);
        char ch = *c->p++;
        if (ch == '}')
            return 0;
        if (ch != ',')
            return -1;
    }
}

#define KEY_IS(k, klen, lit) ((klen) == (Py_ssize_t)sizeof(lit) - 1 && memcmp(k, lit, sizeof(lit) - 1) == 0)

#endif
