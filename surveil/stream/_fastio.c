/* surveil.stream._fastio: a bytes object to receive into.

   writable_bytes(n) -> (bytes, memoryview): a new bytes object of n bytes (not initialised) and a writable
   memoryview of its buffer, so that a socket can recv_into the final bytes object of a Kafka response
   instead of into a stream buffer that is then copied out (as socket.recv itself fills the bytes object it
   returns). The memoryview does not keep the bytes object alive: the caller holds both, writes through the
   view only, releases the view, and only then hands the bytes out (nothing may see them, hash them or
   intern them while they are written). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *writable_bytes(PyObject *mod, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "writable_bytes: n=%zd is negative", n);
        return NULL;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b == NULL) return NULL;
    PyObject *mv = PyMemoryView_FromMemory(PyBytes_AS_STRING(b), n, PyBUF_WRITE);
    if (mv == NULL) {
        Py_DECREF(b);
        return NULL;
    }
    PyObject *ret = PyTuple_Pack(2, b, mv);
    Py_DECREF(b);
    Py_DECREF(mv);
    return ret;
}

static PyMethodDef methods[] = {
    {"writable_bytes", writable_bytes, METH_O, "writable_bytes(n) -> (bytes, writable memoryview of its buffer)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastio", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastio(void) { return PyModule_Create(&module); }
