/* surveil.stream._fastio: a bytes object to receive into.

   writable_bytes(n) -> (bytes, memoryview): a new bytes object of n bytes (not initialised) and a writable
   memoryview of its buffer, so that a socket can recv_into the final bytes object of a Kafka response
   instead of into a stream buffer that is then copied out (as socket.recv itself fills the bytes object it
   returns). The view (and every slice of it) holds a reference to the bytes object, through a small
   exporter object, so the memory it writes to cannot be freed under it. The caller writes through the view
   only, releases it, and only then hands the bytes out (nothing may see them, hash them or intern them
   while they are written). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *bytes;
} Writable;

static int Writable_getbuffer(Writable *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->bytes), PyBytes_GET_SIZE(self->bytes),
                             0, flags);
}

static void Writable_dealloc(Writable *self) {
    Py_XDECREF(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyBufferProcs Writable_as_buffer = {(getbufferproc)Writable_getbuffer, NULL};

static PyTypeObject WritableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "surveil.stream._fastio.Writable",
    .tp_basicsize = sizeof(Writable),
    .tp_dealloc = (destructor)Writable_dealloc,
    .tp_as_buffer = &Writable_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "the writable buffer of a bytes object being received (see writable_bytes)",
};

static PyObject *writable_bytes(PyObject *mod, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "writable_bytes: n=%zd is negative", n);
        return NULL;
    }
    Writable *w = PyObject_New(Writable, &WritableType);
    if (w == NULL) return NULL;
    w->bytes = PyBytes_FromStringAndSize(NULL, n);
    if (w->bytes == NULL) {
        Py_DECREF(w);
        return NULL;
    }
    PyObject *mv = PyMemoryView_FromObject((PyObject *)w);
    PyObject *ret = mv == NULL ? NULL : PyTuple_Pack(2, w->bytes, mv);
    Py_XDECREF(mv);
    Py_DECREF(w);
    return ret;
}

static PyMethodDef methods[] = {
    {"writable_bytes", writable_bytes, METH_O, "writable_bytes(n) -> (bytes, writable memoryview of its buffer)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastio", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastio(void) {
    if (PyType_Ready(&WritableType) < 0) return NULL;
    return PyModule_Create(&module);
}
