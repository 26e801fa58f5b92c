/* Typed, contiguous buffers of the numpy arrays the core's C kernels take. */
#ifndef STREAMER_CORE_BUFFERS_H
#define STREAMER_CORE_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    Py_buffer view;
    int held;
} Buf;

/* Take ``obj``'s buffer into ``b``: C-contiguous items of ``kind`` ('f' float64, 'i' int64,
 * 'b' bool), ``count`` of them (-1: any), writable if asked; else a ValueError naming it. */
static int get_buffer(PyObject *obj, Buf *b, const char *name, char kind, Py_ssize_t itemsize,
                      Py_ssize_t count, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0)
        return 0;
    b->held = 1;
    const char *fmt = b->view.format ? b->view.format : "B";
    if (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')
        fmt++;
    int kind_ok = kind == 'f' ? fmt[0] == 'd'
                : kind == 'i' ? (fmt[0] == 'q' || fmt[0] == 'l')
                              : (fmt[0] == '?' || fmt[0] == 'B');
    if (!kind_ok || fmt[1] != '\0' || b->view.itemsize != itemsize
        || (count >= 0 && b->view.len != count * itemsize)) {
        const char *type = kind == 'f' ? "float64" : kind == 'i' ? "int64" : "bool";
        if (count < 0)
            PyErr_Format(PyExc_ValueError, "%s: expected contiguous items of %s", name, type);
        else
            PyErr_Format(PyExc_ValueError, "%s: expected %zd contiguous items of %s", name,
                         count, type);
        return 0;
    }
    return 1;
}

static void release_buffers(Buf *bufs, int n) {
    for (int i = 0; i < n; i++)
        if (bufs[i].held)
            PyBuffer_Release(&bufs[i].view);
}

#endif
