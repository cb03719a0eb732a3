/* Compiled hot paths of surveil (the SVEV frame decoder in surveil/events/binary.py, the per-account rules'
 * counting), each an exact equivalent of numpy code that stays the reference and the fallback when this
 * module is not built; tests compare the two:
 *
 *   StrTable            a cache UTF-8 bytes -> interned id, one per Interner. It never assigns ids on its
 *                       own: a string it does not know is reported as a miss, and StrTable.intern interns
 *                       it into the Interner's names and dict (the order of Interner.intern_list, under
 *                       the interner's lock, taken by the caller) and remembers the pair.
 *   lookup_strings()    splits a frame's string blob and looks every string up (ids, or -2 for a miss).
 *   decode_records()    the fixed-width records -> columns (of one frame, or at a row offset of a block of
 *                       several), string indexes through the frames' tables, and the same validity codes
 *                       as binary._check_records (0 = valid).
 *   key_partitions()    Kafka's default partitioner (murmur2) for the owner topic.
 *   count_day(), second_counts()   the counting of daily_orders_20k and order_rate_1s.
 *   json_columns()      the clean case of jsonl._columns (the objects of a JSON-array frame -> columns).
 *   json_frame_columns()  the clean case of a whole JSON-array frame, from its bytes to a batch's columns
 *                       (orjson.loads, json_columns and jsonl._finish are its reference).
 *
 * Every call holds the GIL while it touches a table, and nothing it does while a table is half-changed
 * can run Python code (StrTable.intern only creates ints and adds str keys to a dict and a list), so a
 * table is never seen half-changed by another thread. decode_records only
 * reads and writes buffers and runs without the GIL.
 *
 * The record layout (76 bytes, little-endian, packed) is binary.RECORD; binary.py checks at import that
 * the offsets below match it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the SVEV decoder reads little-endian records in place: a little-endian machine is needed"
#endif

/* ------------------------------------------------------------------------------------------------ */
/* StrTable: open addressing, linear probing, power-of-two capacity, strings kept in an arena.       */

typedef struct {
    uint64_t hash;
    int64_t off;  /* into the arena; -1 = empty slot */
    int32_t len;
    int32_t id;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t cap;   /* power of two */
    size_t n;
    char *arena;
    size_t arena_len, arena_cap;
    int64_t *by_id;  /* id -> arena offset of its string (-1: not here), for join(); by_id_len[id] its length */
    int32_t *by_id_len;
    size_t by_id_cap;
} StrTable;

static inline uint64_t hash_bytes(const unsigned char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then a final mix (short, similar keys) */
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static int table_alloc(StrTable *t, size_t cap) {
    Slot *s = PyMem_Malloc(cap * sizeof(Slot));
    if (!s) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < cap; i++) s[i].off = -1;
    t->slots = s;
    t->cap = cap;
    return 0;
}

static int StrTable_init(StrTable *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", kwlist)) return -1;
    PyMem_Free(self->slots);
    PyMem_Free(self->arena);
    PyMem_Free(self->by_id);
    PyMem_Free(self->by_id_len);
    self->slots = NULL;
    self->arena = NULL;
    self->by_id = NULL;
    self->by_id_len = NULL;
    self->by_id_cap = 0;
    self->n = 0;
    self->arena_len = self->arena_cap = 0;
    return table_alloc(self, 1024);
}

static void StrTable_dealloc(StrTable *self) {
    PyMem_Free(self->slots);
    PyMem_Free(self->arena);
    PyMem_Free(self->by_id);
    PyMem_Free(self->by_id_len);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline int32_t table_find(const StrTable *t, const unsigned char *p, Py_ssize_t n, uint64_t h) {
    if (t->cap == 0) return -2; /* not initialised */
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const Slot *s = &t->slots[i];
        if (s->off < 0) return -2;
        if (s->hash == h && s->len == n && (n == 0 || memcmp(t->arena + s->off, p, (size_t)n) == 0)) return s->id;
    }
}

static int table_grow(StrTable *t) {
    Slot *old = t->slots;
    size_t old_cap = t->cap;
    if (table_alloc(t, old_cap * 2) < 0) {
        t->slots = old;
        t->cap = old_cap;
        return -1;
    }
    size_t mask = t->cap - 1;
    for (size_t j = 0; j < old_cap; j++) {
        if (old[j].off < 0) continue;
        size_t i = (size_t)old[j].hash & mask;
        while (t->slots[i].off >= 0) i = (i + 1) & mask;
        t->slots[i] = old[j];
    }
    PyMem_Free(old);
    return 0;
}

/* string k of a frame, as lookup_strings gave the offsets: buf[st[k]:st[k+1]-1]; 0, or -1 (out of range) */
static int string_span(const int64_t *st, Py_ssize_t ns, int64_t k, Py_ssize_t buf_len, int64_t *off,
                       Py_ssize_t *len) {
    if (k < 0 || k >= ns - 1 || st[k] < 0 || st[k] > buf_len || st[k + 1] <= st[k] || st[k + 1] - 1 > buf_len)
        return -1;
    *off = st[k];
    *len = (Py_ssize_t)(st[k + 1] - 1 - st[k]);
    return 0;
}

/* remember p[:n] -> id; 0, or -1 with an exception set */
static int table_add(StrTable *self, const unsigned char *p, Py_ssize_t n, int32_t id) {
    if (n > INT32_MAX || id < 0) {
        PyErr_SetString(PyExc_ValueError, "StrTable.add: string too long or negative id");
        return -1;
    }
    uint64_t h = hash_bytes(p, n);
    if (table_find(self, p, n, h) != -2) return 0; /* already known (another frame added it first) */
    if ((size_t)id >= self->by_id_cap) {
        size_t cap = self->by_id_cap ? self->by_id_cap : 1024;
        while (cap <= (size_t)id) cap *= 2;
        int64_t *o = PyMem_Realloc(self->by_id, cap * sizeof(int64_t));
        if (!o) {
            PyErr_NoMemory();
            return -1;
        }
        self->by_id = o;
        int32_t *l = PyMem_Realloc(self->by_id_len, cap * sizeof(int32_t));
        if (!l) {
            PyErr_NoMemory();
            return -1;
        }
        self->by_id_len = l;
        for (size_t i = self->by_id_cap; i < cap; i++) o[i] = -1;
        self->by_id_cap = cap;
    }
    if (self->cap == 0 && table_alloc(self, 1024) < 0) return -1;
    if ((self->n + 1) * 2 > self->cap && table_grow(self) < 0) return -1;
    if (self->arena_len + (size_t)n > self->arena_cap) {
        size_t cap = self->arena_cap ? self->arena_cap : 65536;
        while (cap < self->arena_len + (size_t)n) cap *= 2;
        char *a = PyMem_Realloc(self->arena, cap);
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        self->arena = a;
        self->arena_cap = cap;
    }
    if (n) memcpy(self->arena + self->arena_len, p, (size_t)n);
    size_t mask = self->cap - 1;
    size_t i = (size_t)h & mask;
    while (self->slots[i].off >= 0) i = (i + 1) & mask;
    self->slots[i].hash = h;
    self->slots[i].off = (int64_t)self->arena_len;
    self->slots[i].len = (int32_t)n;
    self->slots[i].id = id;
    self->by_id[id] = (int64_t)self->arena_len;
    self->by_id_len[id] = (int32_t)n;
    self->arena_len += (size_t)n;
    self->n++;
    return 0;
}

static PyObject *StrTable_add(StrTable *self, PyObject *args) {
    Py_buffer b;
    int id;
    if (!PyArg_ParseTuple(args, "y*i", &b, &id)) return NULL;
    int rc = table_add(self, b.buf, b.len, id);
    PyBuffer_Release(&b);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* add_from(buf, starts, which, ids): remember string which[i] of a frame (buf[starts[k]:starts[k+1]-1],
 * the offsets lookup_strings gave) -> ids[i], for every i */
static PyObject *StrTable_add_from(StrTable *self, PyObject *args) {
    Py_buffer buf, starts, which, ids;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &buf, &starts, &which, &ids)) return NULL;
    PyObject *ret = NULL;
    Py_ssize_t ns = starts.len / 8, m = which.len / 8;
    const int64_t *st = starts.buf, *w = which.buf;
    const int32_t *id = ids.buf;
    if (ids.len / 4 != m) {
        PyErr_SetString(PyExc_ValueError, "StrTable.add_from: which (int64) and ids (int32) differ in length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t off;
        Py_ssize_t len;
        if (string_span(st, ns, w[i], buf.len, &off, &len) < 0) {
            PyErr_SetString(PyExc_ValueError, "StrTable.add_from: string offsets out of range");
            goto done;
        }
        if (table_add(self, (const unsigned char *)buf.buf + off, len, id[i]) < 0) goto done;
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&which);
    PyBuffer_Release(&ids);
    return ret;
}

/* intern(strs, buf, starts, which, names, ids, out) -> None: the strings of a frame this table missed,
 * interned. strs[i] is the str of string which[i] of the frame (strings_at gave it); its id is ids[strs[i]]
 * when the interner has it, else the next one: appended to names, then set in ids (the order of
 * Interner.intern_list, so ids are the same). Each id goes to out[i] (int32) and into this table. The caller
 * holds the interner's lock. */
static PyObject *StrTable_intern(StrTable *self, PyObject *args) {
    PyObject *strs, *names, *idmap;
    Py_buffer buf, starts, which, out;
    if (!PyArg_ParseTuple(args, "O!y*y*y*O!O!w*", &PyList_Type, &strs, &buf, &starts, &which, &PyList_Type, &names,
                          &PyDict_Type, &idmap, &out))
        return NULL;
    PyObject *ret = NULL;
    Py_ssize_t ns = starts.len / 8, m = which.len / 8;
    const int64_t *st = starts.buf, *w = which.buf;
    int32_t *o = out.buf;
    if (PyList_GET_SIZE(strs) != m || out.len / 4 < m) {
        PyErr_SetString(PyExc_ValueError, "StrTable.intern: strs, which and out differ in length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t off;
        Py_ssize_t len;
        if (string_span(st, ns, w[i], buf.len, &off, &len) < 0) {
            PyErr_SetString(PyExc_ValueError, "StrTable.intern: string offsets out of range");
            goto done;
        }
        PyObject *s = PyList_GET_ITEM(strs, i);
        if (!PyUnicode_CheckExact(s)) {
            PyErr_SetObject(PyExc_TypeError, s);
            goto done;
        }
        long id;
        PyObject *known = PyDict_GetItemWithError(idmap, s); /* borrowed */
        if (known != NULL) {
            id = PyLong_AsLong(known);
            if (id == -1 && PyErr_Occurred()) goto done;
        } else {
            if (PyErr_Occurred()) goto done;
            Py_ssize_t next = PyList_GET_SIZE(names);
            if (next >= INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "StrTable.intern: too many strings");
                goto done;
            }
            PyObject *pid = PyLong_FromSsize_t(next);
            if (!pid) goto done;
            /* the name first: a reader without the lock never sees an id without its name */
            if (PyList_Append(names, s) < 0 || PyDict_SetItem(idmap, s, pid) < 0) {
                Py_DECREF(pid);
                goto done;
            }
            Py_DECREF(pid);
            id = (long)next;
        }
        if (id < 0 || id > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "StrTable.intern: an id out of range in the interner");
            goto done;
        }
        o[i] = (int32_t)id;
        if (table_add(self, (const unsigned char *)buf.buf + off, len, (int32_t)id) < 0) goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&which);
    PyBuffer_Release(&out);
    return ret;
}

/* join(ids) -> the UTF-8 strings of ids (int32 buffer) joined by NUL, or the list of the ids this table does
 * not hold (the caller adds them and calls again) */
static PyObject *StrTable_join(StrTable *self, PyObject *args) {
    Py_buffer ids;
    if (!PyArg_ParseTuple(args, "y*", &ids)) return NULL;
    const int32_t *id = ids.buf;
    Py_ssize_t m = ids.len / 4, total = 0;
    PyObject *ret = NULL;
    for (Py_ssize_t i = 0; i < m; i++) {
        int32_t x = id[i];
        if (x < 0 || (size_t)x >= self->by_id_cap || self->by_id[x] < 0) {
            ret = PyList_New(0); /* every id not held, for the caller to add */
            if (!ret) goto done;
            for (Py_ssize_t j = i; j < m; j++) {
                int32_t y = id[j];
                if (y < 0 || (size_t)y >= self->by_id_cap || self->by_id[y] < 0) {
                    PyObject *v = PyLong_FromLong(y);
                    if (!v || PyList_Append(ret, v) < 0) {
                        Py_XDECREF(v);
                        Py_CLEAR(ret);
                        goto done;
                    }
                    Py_DECREF(v);
                }
            }
            goto done;
        }
        total += self->by_id_len[x] + (i > 0);
    }
    ret = PyBytes_FromStringAndSize(NULL, total);
    if (!ret) goto done;
    char *w = PyBytes_AS_STRING(ret);
    for (Py_ssize_t i = 0; i < m; i++) {
        if (i > 0) *w++ = 0;
        int32_t x = id[i], n = self->by_id_len[x];
        if (n) memcpy(w, self->arena + self->by_id[x], (size_t)n);
        w += n;
    }
done:
    PyBuffer_Release(&ids);
    return ret;
}

static Py_ssize_t StrTable_len(StrTable *self) { return (Py_ssize_t)self->n; }

/* add_strs(strs, ids): remember the UTF-8 of each str strs[i] -> ids[i] (an int32 buffer) */
static PyObject *StrTable_add_strs(StrTable *self, PyObject *args) {
    PyObject *strs;
    Py_buffer ids;
    if (!PyArg_ParseTuple(args, "O!y*", &PyList_Type, &strs, &ids)) return NULL;
    PyObject *ret = NULL;
    Py_ssize_t m = PyList_GET_SIZE(strs);
    if (ids.len != 4 * m) {
        PyErr_SetString(PyExc_ValueError, "StrTable.add_strs: strs and ids (int32) differ in length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *u = PyList_GET_ITEM(strs, i);
        Py_ssize_t len;
        const char *b;
        if (!PyUnicode_CheckExact(u)) {
            PyErr_SetObject(PyExc_TypeError, u);
            goto done;
        }
        if ((b = PyUnicode_AsUTF8AndSize(u, &len)) == NULL) goto done;
        int32_t id;
        memcpy(&id, (const char *)ids.buf + 4 * i, 4); /* the buffer may not be aligned */
        if (table_add(self, (const unsigned char *)b, len, id) < 0) goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&ids);
    return ret;
}

static PyMethodDef StrTable_methods[] = {
    {"add_strs", (PyCFunction)StrTable_add_strs, METH_VARARGS,
     "add_strs(strs, ids): remember the ids of interned strings (a list of str, an int32 array)"},
    {"intern", (PyCFunction)StrTable_intern, METH_VARARGS, "intern a frame's missed strings and remember them"},
    {"add", (PyCFunction)StrTable_add, METH_VARARGS, "add(utf8_bytes, id): remember an interned string's id"},
    {"join", (PyCFunction)StrTable_join, METH_VARARGS,
     "join(ids): the strings of ids joined by NUL (bytes), or the list of ids not held"},
    {"add_from", (PyCFunction)StrTable_add_from, METH_VARARGS,
     "add_from(buf, starts, which, ids): remember the ids of a frame's strings which[i]"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods StrTable_as_seq = {.sq_length = (lenfunc)StrTable_len};

static PyTypeObject StrTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "surveil.events._svev.StrTable",
    .tp_basicsize = sizeof(StrTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Cache of interned ids by UTF-8 bytes (one per Interner; Python assigns the ids).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)StrTable_init,
    .tp_dealloc = (destructor)StrTable_dealloc,
    .tp_methods = StrTable_methods,
    .tp_as_sequence = &StrTable_as_seq,
};

/* ------------------------------------------------------------------------------------------------ */
/* lookup_strings(tables, buf, pos, slen, counts, ids_out, starts_out) -> number of misses           */
/*   tables: 4 StrTable; counts: 4 ints (strings per table, in blob order); ids_out: int32[total]     */
/*   gets each string's id or -2; starts_out: int64[total + 1] gets each string's start offset in buf  */
/*   A table given as None is not looked up: its strings get -1, or -2 when one is not UTF-8.          */
/*   and, last, the blob's end + 1 (string k is buf[starts[k]:starts[k+1]-1]).                        */

static PyObject *lookup_strings(PyObject *mod, PyObject *args) {
    PyObject *tables;
    Py_buffer buf, ids, starts;
    Py_ssize_t pos, slen;
    Py_ssize_t counts[4];
    if (!PyArg_ParseTuple(args, "O!y*nn(nnnn)w*w*", &PyTuple_Type, &tables, &buf, &pos, &slen, &counts[0],
                          &counts[1], &counts[2], &counts[3], &ids, &starts))
        return NULL;
    PyObject *ret = NULL;
    Py_ssize_t total = 0;
    for (int c = 0; c < 4; c++) {
        if (counts[c] < 0 || counts[c] > buf.len + 1) { /* a blob of L bytes holds at most L + 1 strings */
            PyErr_SetString(PyExc_ValueError, "lookup_strings: string count out of range");
            goto done;
        }
        total += counts[c];
    }
    if (PyTuple_GET_SIZE(tables) != 4) {
        PyErr_SetString(PyExc_ValueError, "lookup_strings: 4 tables expected");
        goto done;
    }
    for (int c = 0; c < 4; c++) {
        PyObject *t = PyTuple_GET_ITEM(tables, c);
        if ((t != Py_None && !PyObject_TypeCheck(t, &StrTableType)) || counts[c] < 0) {
            PyErr_SetString(PyExc_TypeError, "lookup_strings: tables must be StrTable or None, counts >= 0");
            goto done;
        }
    }
    if (pos < 0 || slen < 0 || pos > buf.len || slen > buf.len - pos || ids.len / 4 < total ||
        starts.len / 8 < total + 1) {
        PyErr_SetString(PyExc_ValueError, "lookup_strings: blob or output buffers out of range");
        goto done;
    }
    const unsigned char *blob = (const unsigned char *)buf.buf + pos;
    int32_t *out = ids.buf;
    int64_t *st = starts.buf;
    Py_ssize_t k = 0, misses = 0, s = 0;
    for (int c = 0; c < 4; c++) {
        PyObject *to = PyTuple_GET_ITEM(tables, c);
        const StrTable *t = to == Py_None ? NULL : (const StrTable *)to;
        for (Py_ssize_t j = 0; j < counts[c]; j++, k++) {
            if (s > slen) {
                PyErr_SetString(PyExc_ValueError, "lookup_strings: fewer strings in the blob than counted");
                goto done;
            }
            const unsigned char *p = blob + s;
            const unsigned char *z = memchr(p, 0, (size_t)(slen - s));
            Py_ssize_t n = z ? (Py_ssize_t)(z - p) : slen - s;
            st[k] = pos + s;
            int32_t id;
            if (t != NULL) {
                id = table_find(t, p, n, hash_bytes(p, n));
            } else { /* not looked up: -1, unless the string is not UTF-8 (a miss, that the caller reports) */
                id = -1;
                for (Py_ssize_t i = 0; i < n; i++) {
                    if (p[i] & 0x80) { /* not ASCII: Python's own strict decoder decides */
                        PyObject *u = PyUnicode_DecodeUTF8((const char *)p, n, "strict");
                        if (u == NULL) {
                            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) goto done;
                            PyErr_Clear();
                            id = -2;
                        }
                        Py_XDECREF(u);
                        break;
                    }
                }
            }
            out[k] = id;
            misses += id == -2;
            s += n + 1;
        }
    }
    st[total] = pos + slen + 1;
    ret = PyLong_FromSsize_t(misses);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&starts);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* decode_records(buf, rec_off, n, luts(4 int32 buffers), out, consts[, total, row0, oid, rec_size, mid, mfl])  */
/*   -> number of invalid records                                                                      */
/*   out: one uint8 buffer of 53 * n bytes, 8-byte aligned, columns in this order:                    */
/*   ts price qty seq (int64) | account symbol owner broker (int32) | venue etype side flags bad (u8)  */
/*   consts: (ORDER, TRADE, INDEX, INDICATIVE, MAX_TYPE, F_HAS_QTY, MF_HAS_MATCH_ID, TS_MIN, TS_MAX)    */
/*   rec_size: R_SIZE (76, frame versions 1 to 4) or R_SIZE_MATCH (104, versions 3 and 4: the records   */
/*   carry a match id and its flags after the first 76 bytes). mid (24 bytes a row) and mfl (1 byte a   */
/*   row), when given, get each row's match id and match flags (zeros for records without them).        */

enum { R_TS = 0, R_PRICE = 8, R_QTY = 16, R_SEQ = 24, R_OID = 32, R_OID_LEN = 24, R_ACCOUNT = 56, R_SYMBOL = 60, R_OWNER = 64,
       R_BROKER = 68, R_VENUE = 72, R_ETYPE = 73, R_SIDE = 74, R_FLAGS = 75, R_SIZE = 76, R_MID = 76, R_MID_LEN = 24,
       R_MFLAGS = 100, R_SIZE_MATCH = 104 };

static PyObject *record_layout(PyObject *mod, PyObject *noargs) {
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "ts", R_TS,
                         "order_id", R_OID, "price", R_PRICE, "qty", R_QTY, "seq", R_SEQ, "account", R_ACCOUNT,
                         "symbol", R_SYMBOL, "owner", R_OWNER, "broker", R_BROKER, "venue", R_VENUE, "etype",
                         R_ETYPE, "side", R_SIDE, "flags", R_FLAGS, "match_id", R_MID, "mflags", R_MFLAGS,
                         "itemsize", R_SIZE, "itemsize_match", R_SIZE_MATCH);
}

static inline int64_t rd64(const unsigned char *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t rd32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static PyObject *decode_records(PyObject *mod, PyObject *args) {
    Py_buffer buf, lut[4], out, oid = {0}, mid = {0}, mfl = {0};
    Py_ssize_t rec_off, n, total = -1, row0 = 0, rsize = R_SIZE;
    long long order, trade, index, indicative, max_type, f_has_qty, mf_has, ts_min, ts_max;
    if (!PyArg_ParseTuple(args, "y*nn(y*y*y*y*)w*(LLLLLLLLL)|nnz*nz*z*", &buf, &rec_off, &n, &lut[0], &lut[1],
                          &lut[2], &lut[3], &out, &order, &trade, &index, &indicative, &max_type, &f_has_qty, &mf_has,
                          &ts_min, &ts_max, &total, &row0, &oid, &rsize, &mid, &mfl))
        return NULL;
    PyObject *ret = NULL;
    if (total < 0) total = n;
    if ((oid.buf != NULL && oid.readonly) || (mid.buf != NULL && mid.readonly) || (mfl.buf != NULL && mfl.readonly)) {
        PyErr_SetString(PyExc_TypeError, "decode_records: oid, mid and mfl must be writable buffers");
        goto done;
    }
    if ((rsize != R_SIZE && rsize != R_SIZE_MATCH) || (mid.buf == NULL) != (mfl.buf == NULL)) {
        PyErr_SetString(PyExc_ValueError, "decode_records: record size 76 or 104; mid and mfl together");
        goto done;
    }
    if (rec_off < 0 || n < 0 || rec_off > buf.len || n > (buf.len - rec_off) / rsize || total > out.len / 53 ||
        row0 < 0 || row0 > total || n > total - row0 || ((uintptr_t)out.buf & 7) != 0 ||
        (oid.buf != NULL && oid.len / R_OID_LEN < total) || (mid.buf != NULL && mid.len / R_MID_LEN < total) ||
        (mfl.buf != NULL && mfl.len < total)) {
        PyErr_SetString(PyExc_ValueError, "decode_records: records or output buffer out of range");
        goto done;
    }
    const unsigned char *rec = (const unsigned char *)buf.buf + rec_off;
    unsigned char *o = out.buf;
    /* the columns hold `total` rows; this frame's rows go to [row0, row0 + n) */
    int64_t *ts = (int64_t *)o, *price = ts + total, *qty = price + total, *seq = qty + total;
    int32_t *scol[4];
    scol[0] = (int32_t *)(seq + total);
    for (int c = 1; c < 4; c++) scol[c] = scol[c - 1] + total;
    unsigned char *venue = (unsigned char *)(scol[3] + total), *etype = venue + total, *side = etype + total,
                  *flags = side + total, *bad = flags + total;
    ts += row0, price += row0, qty += row0, seq += row0;
    for (int c = 0; c < 4; c++) scol[c] += row0;
    venue += row0, etype += row0, side += row0, flags += row0, bad += row0;
    unsigned char *oids = oid.buf != NULL ? (unsigned char *)oid.buf + row0 * R_OID_LEN : NULL;
    unsigned char *mids = mid.buf != NULL ? (unsigned char *)mid.buf + row0 * R_MID_LEN : NULL;
    unsigned char *mfls = mfl.buf != NULL ? (unsigned char *)mfl.buf + row0 : NULL;
    const int with_match = rsize == R_SIZE_MATCH;
    const int32_t *tab[4];
    uint32_t cnt[4];
    for (int c = 0; c < 4; c++) {
        tab[c] = lut[c].buf;
        cnt[c] = (uint32_t)(lut[c].len / 4);
    }
    static const int scol_off[4] = {R_ACCOUNT, R_SYMBOL, R_OWNER, R_BROKER};
    Py_ssize_t nbad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *r = rec + i * rsize;
        int64_t t = rd64(r + R_TS), pr = rd64(r + R_PRICE), q = rd64(r + R_QTY);
        unsigned v = r[R_VENUE], et = r[R_ETYPE], sd = r[R_SIDE], fl = r[R_FLAGS];
        ts[i] = t;
        price[i] = pr;
        qty[i] = q;
        seq[i] = rd64(r + R_SEQ);
        venue[i] = (unsigned char)v;
        etype[i] = (unsigned char)et;
        side[i] = (unsigned char)sd;
        flags[i] = (unsigned char)fl;
        if (oids) memcpy(oids + i * R_OID_LEN, r + R_OID, R_OID_LEN);
        unsigned mf = with_match ? r[R_MFLAGS] : 0;
        if (mids) {
            if (with_match)
                memcpy(mids + i * R_MID_LEN, r + R_MID, R_MID_LEN);
            else
                memset(mids + i * R_MID_LEN, 0, R_MID_LEN);
            mfls[i] = (unsigned char)mf;
        }
        unsigned code = 0;
        int32_t sv[4];
        for (int c = 0; c < 4; c++) {
            uint32_t x = rd32(r + scol_off[c]);
            if (x == 0xFFFFFFFFu) {
                sv[c] = -1;
            } else if (x >= cnt[c]) {
                sv[c] = -1;
                code = 20 + c; /* a later column's code wins, as in binary.py */
            } else {
                sv[c] = tab[c][x];
            }
            scol[c][i] = sv[c];
        }
        if (code == 0) { /* binary._check_records: the last failing check of its list wins */
            int needs = et == order || et == trade, mkt = et == index || et == indicative;
            int has_qty = (fl & f_has_qty) != 0;
            if (t < ts_min || t >= ts_max) code = 1;
            else if (v > 2) code = 2;
            else if (et > max_type) code = 3;
            else if (sd > 2) code = 4;
            else if (has_qty && q < 0) code = 5;
            else if (!mkt && sv[0] < 0) code = 6;
            else if (needs && sd == 0) code = 8;
            else if (mkt && sv[1] < 0) code = 9;
            else if (needs && !has_qty) code = 10;
            else if ((et == trade || mkt) && pr <= 0) code = 7;
            else if ((mf & mf_has) && et != trade) code = 11;
        }
        bad[i] = (unsigned char)code;
        nbad += code != 0;
    }
    Py_END_ALLOW_THREADS
    ret = PyLong_FromSsize_t(nbad);
done:
    PyBuffer_Release(&buf);
    for (int c = 0; c < 4; c++) PyBuffer_Release(&lut[c]);
    PyBuffer_Release(&out);
    if (oid.obj != NULL) PyBuffer_Release(&oid);
    if (mid.obj != NULL) PyBuffer_Release(&mid);
    if (mfl.obj != NULL) PyBuffer_Release(&mfl);
    return ret;
}

/* remap(ids, scratch, local_out, uniq_out) -> m: a frame's string table for one column. ids: int32[n]
 * registry ids (-1 = absent); scratch: int32[>= max id + 1], all -1 on entry and on return; local_out:
 * uint32[n] gets each row's index into the table (0xFFFFFFFF when absent); uniq_out: int32[n] gets the
 * table's registry ids in order of first appearance, m of them. */
static PyObject *remap(PyObject *mod, PyObject *args) {
    Py_buffer ids, scratch, local, uniq;
    if (!PyArg_ParseTuple(args, "y*w*w*w*", &ids, &scratch, &local, &uniq)) return NULL;
    PyObject *ret = NULL;
    Py_ssize_t n = ids.len / 4, cap = scratch.len / 4;
    const int32_t *id = ids.buf;
    int32_t *sc = scratch.buf, *u = uniq.buf;
    uint32_t *lo = local.buf;
    if (local.len / 4 < n || uniq.len / 4 < n) {
        PyErr_SetString(PyExc_ValueError, "remap: output buffers too small");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (id[i] >= cap) {
            PyErr_SetString(PyExc_ValueError, "remap: scratch smaller than the largest id");
            goto done;
        }
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t x = id[i];
        if (x < 0) {
            lo[i] = 0xFFFFFFFFu;
            continue;
        }
        if (sc[x] < 0) {
            sc[x] = (int32_t)m;
            u[m++] = x;
        }
        lo[i] = (uint32_t)sc[x];
    }
    for (Py_ssize_t j = 0; j < m; j++) sc[u[j]] = -1;
    ret = PyLong_FromSsize_t(m);
done:
    PyBuffer_Release(&ids);
    PyBuffer_Release(&scratch);
    PyBuffer_Release(&local);
    PyBuffer_Release(&uniq);
    return ret;
}

/* strings_at(buf, starts, which) -> [str]: the strings which[i] of a frame (buf[starts[k]:starts[k+1]-1], as
 * lookup_strings gave the offsets), decoded from UTF-8 (UnicodeDecodeError for invalid bytes) */
static PyObject *strings_at(PyObject *mod, PyObject *args) {
    Py_buffer buf, starts, which;
    if (!PyArg_ParseTuple(args, "y*y*y*", &buf, &starts, &which)) return NULL;
    Py_ssize_t ns = starts.len / 8, m = which.len / 8;
    const int64_t *st = starts.buf, *w = which.buf;
    PyObject *out = PyList_New(m);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t off;
        Py_ssize_t len;
        if (string_span(st, ns, w[i], buf.len, &off, &len) < 0) {
            PyErr_SetString(PyExc_ValueError, "strings_at: string offsets out of range");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *u = PyUnicode_DecodeUTF8((const char *)buf.buf + off, len, "strict");
        if (!u) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, u);
    }
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&which);
    return out;
}

/* count_strings(buf, pos, slen) -> how many NUL-separated strings the blob holds (0 for an empty blob) */
static PyObject *count_strings(PyObject *mod, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t pos, slen;
    if (!PyArg_ParseTuple(args, "y*nn", &buf, &pos, &slen)) return NULL;
    if (pos < 0 || slen < 0 || pos > buf.len || slen > buf.len - pos) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "count_strings: blob out of range");
        return NULL;
    }
    Py_ssize_t k = 0;
    if (slen) {
        const char *p = (const char *)buf.buf + pos, *end = p + slen;
        k = 1;
        while ((p = memchr(p, 0, (size_t)(end - p))) != NULL) {
            k++;
            p++;
        }
    }
    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(k);
}

/* index_symbols(buf, rec_off, n, n_symbols, index_code[, code2, rec_size]) -> list of int: the distinct
 * symbol-table entries (below n_symbols) that the records of type index_code (or code2: market data, index and
 * indicative) use, in table order (the records are buf[rec_off:], n of rec_size bytes, 76 by default) */
static PyObject *index_symbols(PyObject *mod, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t off, n, ns, rsize = R_SIZE;
    int code, code2 = -1;
    if (!PyArg_ParseTuple(args, "y*nnni|in", &buf, &off, &n, &ns, &code, &code2, &rsize)) return NULL;
    PyObject *ret = NULL;
    unsigned char *seen = NULL;
    if (off < 0 || n < 0 || ns < 0 || off > buf.len || (rsize != R_SIZE && rsize != R_SIZE_MATCH) ||
        n > (buf.len - off) / rsize) {
        PyErr_SetString(PyExc_ValueError, "index_symbols: records out of range");
        goto done;
    }
    const unsigned char *r = (const unsigned char *)buf.buf + off;
    Py_ssize_t found = 0;
    for (Py_ssize_t i = 0; i < n; i++, r += rsize) {
        if (r[R_ETYPE] != code && r[R_ETYPE] != code2) continue;
        uint32_t sym;
        memcpy(&sym, r + R_SYMBOL, 4);
        if ((Py_ssize_t)sym >= ns) continue; /* absent or out of the table: the record's own error */
        if (seen == NULL && (seen = PyMem_Calloc((size_t)ns, 1)) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        found += !seen[sym];
        seen[sym] = 1;
    }
    ret = PyList_New(found);
    if (ret == NULL) goto done;
    for (Py_ssize_t j = 0, k = 0; k < found; j++) {
        if (seen[j]) {
            PyObject *v = PyLong_FromSsize_t(j);
            if (v == NULL) {
                Py_CLEAR(ret);
                goto done;
            }
            PyList_SET_ITEM(ret, k++, v);
        }
    }
done:
    PyMem_Free(seen);
    PyBuffer_Release(&buf);
    return ret;
}

/* key_partitions(names, n, out) -> None: Kafka's default partition of each key (a str, UTF-8 encoded), as
 * aiokafka's and the Java client's default partitioner: (murmur2(key) & 0x7fffffff) % n, into int32 out */
static uint32_t murmur2(const unsigned char *d, Py_ssize_t len) {
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    Py_ssize_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t k = (uint32_t)d[i] | (uint32_t)d[i + 1] << 8 | (uint32_t)d[i + 2] << 16 | (uint32_t)d[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len & 3) {
    case 3: h ^= (uint32_t)d[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)d[i + 1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)d[i]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static PyObject *key_partitions(PyObject *mod, PyObject *args) {
    PyObject *names;
    Py_ssize_t n;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "O!nw*", &PyList_Type, &names, &n, &out)) return NULL;
    PyObject *ret = NULL;
    Py_ssize_t m = PyList_GET_SIZE(names);
    if (n <= 0 || n > 0x7fffffff || out.len / 4 < m) {
        PyErr_SetString(PyExc_ValueError, "key_partitions: n must be in 1..2**31-1 and out hold every key");
        goto done;
    }
    int32_t *o = out.buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        Py_ssize_t len;
        const char *p = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(names, i), &len);
        if (!p) goto done;
        o[i] = (int32_t)((murmur2((const unsigned char *)p, len) & 0x7fffffffu) % (uint32_t)n);
    }
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&out);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Per-account counting of the two per-account rules (surveil/rules), exact equivalents of their numpy   */
/* code (which stays the reference and the fallback; tests compare the two).                           */

/* count_day(key, etype, orders, cancels, thr, ORDER, CANCEL, crossed) -> m: daily_orders_20k's day counts.
 * For each order or cancel row i (key int64[n], etype uint8[n]): orders[key] or cancels[key] (int64 arrays,
 * longer than every key) + 1; a row that makes its account's count reach thr (its thr-th message of the
 * day) goes to crossed (int64[n]), in row order, m of them. */
static PyObject *count_day(PyObject *mod, PyObject *args) {
    Py_buffer key, et, orders, cancels, crossed;
    long long thr;
    int order, cancel;
    if (!PyArg_ParseTuple(args, "y*y*w*w*Liiw*", &key, &et, &orders, &cancels, &thr, &order, &cancel, &crossed))
        return NULL;
    PyObject *ret = NULL;
    Py_ssize_t n = key.len / 8, size = orders.len / 8;
    if (thr < 1) {
        PyErr_SetString(PyExc_ValueError, "count_day: the threshold must be positive");
        goto done;
    }
    if (et.len != n || cancels.len / 8 != size || crossed.len / 8 < n) {
        PyErr_SetString(PyExc_ValueError, "count_day: arrays of different lengths");
        goto done;
    }
    const int64_t *k = key.buf;
    const unsigned char *e = et.buf;
    int64_t *o = orders.buf, *c = cancels.buf, *out = crossed.buf;
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++) { /* every key first: nothing changes when one is out of range */
        if ((e[i] == order || e[i] == cancel) && (k[i] < 0 || k[i] >= size)) {
            PyErr_SetString(PyExc_ValueError, "count_day: an account key out of range");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (e[i] != order && e[i] != cancel) continue;
        int64_t j = k[i];
        int64_t before = o[j] + c[j];
        if (e[i] == order) o[j]++;
        else c[j]++;
        if (before == thr - 1) out[m++] = i;
    }
    ret = PyLong_FromSsize_t(m);
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&et);
    PyBuffer_Release(&orders);
    PyBuffer_Release(&cancels);
    PyBuffer_Release(&crossed);
    return ret;
}

/* second_counts(key, sec, flags, thr, scratch, touched, out_key, out_sec, out_cnt) -> m, or -1 when sec is
 * not in order: order_rate_1s's messages per (account, calendar second). key, sec: int64[n], sec
 * non-decreasing; flags: uint8[size] (an alerted account); scratch: int32[size], zeros on entry and on
 * return; touched: int64[n]. The groups with at least thr messages, or of a flagged account, go to out_*
 * (int64[n] each), m of them, by second and then first message. */
static PyObject *second_counts(PyObject *mod, PyObject *args) {
    Py_buffer key, sec, flags, scratch, touched, ok, os_, oc;
    long long thr;
    if (!PyArg_ParseTuple(args, "y*y*y*Lw*w*w*w*w*", &key, &sec, &flags, &thr, &scratch, &touched, &ok, &os_, &oc))
        return NULL;
    PyObject *ret = NULL;
    Py_ssize_t n = key.len / 8, size = flags.len;
    if (sec.len / 8 != n || scratch.len / 4 < size || touched.len / 8 < n || ok.len / 8 < n || os_.len / 8 < n ||
        oc.len / 8 < n) {
        PyErr_SetString(PyExc_ValueError, "second_counts: arrays of different lengths");
        goto done;
    }
    const int64_t *k = key.buf, *s = sec.buf;
    const unsigned char *fl = flags.buf;
    int32_t *cnt = scratch.buf;
    int64_t *t = touched.buf, *rk = ok.buf, *rs = os_.buf, *rc = oc.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (k[i] < 0 || k[i] >= size) {
            PyErr_SetString(PyExc_ValueError, "second_counts: an account key out of range");
            goto done;
        }
        if (i && s[i] < s[i - 1]) {
            ret = PyLong_FromLong(-1);
            goto done;
        }
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n;) {
        int64_t cur = s[i];
        Py_ssize_t nt = 0, j = i;
        for (; j < n && s[j] == cur; j++) {
            if (cnt[k[j]]++ == 0) t[nt++] = k[j];
        }
        for (Py_ssize_t q = 0; q < nt; q++) {
            int64_t a = t[q];
            if (cnt[a] >= thr || fl[a]) {
                rk[m] = a;
                rs[m] = cur;
                rc[m] = cnt[a];
                m++;
            }
            cnt[a] = 0;
        }
        i = j;
    }
    ret = PyLong_FromSsize_t(m);
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&sec);
    PyBuffer_Release(&flags);
    PyBuffer_Release(&scratch);
    PyBuffer_Release(&touched);
    PyBuffer_Release(&ok);
    PyBuffer_Release(&os_);
    PyBuffer_Release(&oc);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* json_columns(objs, keys, maps, ids, out) -> (list of order ids, list of match ids or None), or None  */
/*   ("slow"). The clean case of jsonl._columns in one pass over the objects parsed from a JSON-array   */
/*   frame. objs: list of dicts; keys: the 14 field names (jsonl.FIELDS order); maps: (venue, type, side,*/
/*   aggressor) dicts value -> code, looked up as jsonl._columns does; ids: the interners' dicts of      */
/*   account, symbol, owner, broker (str -> id). out: one uint8 buffer of 59 * n bytes, 8-byte aligned:  */
/*   ts qty seq (int64) price (float64) | account symbol owner broker (int32; -1 absent, -2 not interned */
/*   yet) | venue etype side aggr has_price has_qty has_seq oid_int oid_has mid_int mid_has (uint8).     */
/*   The match ids are None when no object has one. A match id the contract refuses (not ASCII is left   */
/*   to the reference too) is "slow".                                                                    */
/*   Any value of a type or range the fast path does not take as it is (a bool, a float where an        */
/*   integer belongs, an int beyond int64, a negative order id, an unknown venue, a missing ts...)       */
/*   returns None before anything else is done: the caller then runs jsonl._columns, the reference,     */
/*   which decides.                                                                                       */
enum { JK_TS, JK_VENUE, JK_TYPE, JK_ACCOUNT, JK_BROKER, JK_OWNER, JK_SYMBOL, JK_SIDE, JK_PRICE, JK_QTY, JK_OID,
       JK_MID, JK_SEQ, JK_AGGR, JK_N };
#define MATCH_ID_MAX 24 /* schema.MATCH_ID_MAX_BYTES (checked by jsonl.py at import) */
#define ORDER_ID_MAX 24 /* schema.ORDER_ID_MAX_BYTES (checked by jsonl.py at import) */

/* code of v in map (a dict lookup as map[v] in Python): 0..255, or -1 (not there, unhashable: "slow") */
static int map_code(PyObject *map, PyObject *v) {
    PyObject *r = PyDict_GetItemWithError(map, v);
    if (r == NULL) {
        PyErr_Clear();
        return -1;
    }
    long c = PyLong_AsLong(r);
    if (c < 0 || c > 255) {
        PyErr_Clear();
        return -1;
    }
    return (int)c;
}

/* an exact int within int64 into *out: 1; anything else: 0 */
static int exact_i64(PyObject *v, int64_t *out) {
    if (!PyLong_CheckExact(v)) return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = (int64_t)x;
    return 1;
}

/* an optional integer field (absent or null: 0, not there): 1, or 0 for a value to leave to the reference */
static int optional_i64(PyObject *v, int64_t *out, unsigned char *has) {
    *has = v != NULL && v != Py_None;
    if (!*has) {
        *out = 0;
        return 1;
    }
    return exact_i64(v, out);
}

static PyObject *json_columns(PyObject *mod, PyObject *args) {
    PyObject *objs, *keys, *maps, *ids;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "O!O!O!O!w*", &PyList_Type, &objs, &PyTuple_Type, &keys, &PyTuple_Type, &maps,
                          &PyTuple_Type, &ids, &out))
        return NULL;
    PyObject *ret = NULL, *oids = NULL, *mids = NULL;
    Py_ssize_t n = PyList_GET_SIZE(objs);
    if (PyTuple_GET_SIZE(keys) != JK_N || PyTuple_GET_SIZE(maps) != 4 || PyTuple_GET_SIZE(ids) != 4 ||
        out.len / 59 < n || ((uintptr_t)out.buf & 7) != 0) {
        PyErr_SetString(PyExc_ValueError, "json_columns: 14 keys, 4 maps, 4 id dicts and 59 bytes a row");
        goto done;
    }
    for (int c = 0; c < 4; c++) {
        if (!PyDict_Check(PyTuple_GET_ITEM(maps, c)) || !PyDict_Check(PyTuple_GET_ITEM(ids, c))) {
            PyErr_SetString(PyExc_TypeError, "json_columns: maps and ids must be dicts");
            goto done;
        }
    }
    for (int j = 0; j < JK_N; j++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(keys, j))) {
            PyErr_SetString(PyExc_TypeError, "json_columns: the field names must be str");
            goto done;
        }
    }
    int64_t *ts = (int64_t *)out.buf, *qty = ts + n, *seq = qty + n;
    double *price = (double *)(seq + n);
    int32_t *sid = (int32_t *)(price + n); /* 4 columns: account symbol owner broker */
    unsigned char *venue = (unsigned char *)(sid + 4 * n), *etype = venue + n, *side = etype + n, *aggr = side + n,
                  *has_price = aggr + n, *has_qty = has_price + n, *has_seq = has_qty + n, *oid_int = has_seq + n,
                  *oid_has = oid_int + n, *mid_int = oid_has + n, *mid_has = mid_int + n;
    static const int skey[4] = {JK_ACCOUNT, JK_SYMBOL, JK_OWNER, JK_BROKER};
    PyObject *k[JK_N];
    for (int j = 0; j < JK_N; j++) k[j] = PyTuple_GET_ITEM(keys, j);
    PyObject *m_venue = PyTuple_GET_ITEM(maps, 0), *m_type = PyTuple_GET_ITEM(maps, 1),
             *m_side = PyTuple_GET_ITEM(maps, 2), *m_aggr = PyTuple_GET_ITEM(maps, 3);
    oids = PyList_New(n);
    if (oids == NULL) goto done;
    /* The objects' keys are matched to the fields once per key object: orjson gives equal keys of every
     * object of a document the same str object (its key cache), so after the first objects each key is
     * found by its address. The objects (so their keys) live for the whole call. */
    enum { KCACHE = 64 };
    PyObject *kc_key[KCACHE];
    int kc_field[KCACHE], nkc = 0;
    PyObject *val[JK_N];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyList_GET_ITEM(objs, i), *v, *key, *value;
        int c;
        if (!PyDict_CheckExact(o)) goto slow;
        for (int j = 0; j < JK_N; j++) val[j] = NULL;
        Py_ssize_t pos = 0;
        while (PyDict_Next(o, &pos, &key, &value)) {
            int q = 0, f = -1;
            while (q < nkc && kc_key[q] != key) q++;
            if (q < nkc) {
                f = kc_field[q];
            } else {
                if (!PyUnicode_CheckExact(key)) goto slow;
                for (int j = 0; j < JK_N; j++) {
                    if (PyUnicode_Compare(key, k[j]) == 0) {
                        f = j;
                        break;
                    }
                }
                if (nkc == KCACHE) goto slow; /* keys not shared (not orjson's): the reference path decides */
                kc_key[nkc] = key;
                kc_field[nkc++] = f;
            }
            if (f >= 0) val[f] = value;
        }
        if ((v = val[JK_TS]) == NULL || !exact_i64(v, &ts[i])) goto slow;
        /* only built-in values are looked up in the maps (an object's own __hash__ or __eq__ could run Python
         * code, which could change the objects whose values and keys this pass borrows) */
        if ((v = val[JK_VENUE]) == NULL || !PyUnicode_CheckExact(v) || (c = map_code(m_venue, v)) < 0) goto slow;
        venue[i] = (unsigned char)c;
        if ((v = val[JK_TYPE]) == NULL || !PyUnicode_CheckExact(v) || (c = map_code(m_type, v)) < 0) goto slow;
        etype[i] = (unsigned char)c;
        if ((v = val[JK_SIDE]) == NULL) v = Py_None;
        if ((v != Py_None && !PyUnicode_CheckExact(v)) || (c = map_code(m_side, v)) < 0) goto slow;
        side[i] = (unsigned char)c;
        if ((v = val[JK_AGGR]) == NULL) v = Py_None;
        if ((v != Py_None && v != Py_True && v != Py_False) || (c = map_code(m_aggr, v)) < 0) goto slow;
        aggr[i] = (unsigned char)c;
        for (int s = 0; s < 4; s++) {
            int32_t id = -1;
            if ((v = val[skey[s]]) != NULL && v != Py_None) {
                if (!PyUnicode_CheckExact(v)) goto slow;
                PyObject *r = PyDict_GetItemWithError(PyTuple_GET_ITEM(ids, s), v);
                if (r == NULL) {
                    if (PyErr_Occurred()) PyErr_Clear();
                    id = -2;
                } else {
                    long x = PyLong_AsLong(r);
                    if ((x == -1 && PyErr_Occurred()) || x < -1 || x > INT32_MAX) {
                        PyErr_Clear();
                        goto slow;
                    }
                    id = (int32_t)x;
                }
            }
            sid[s * n + i] = id;
        }
        if ((v = val[JK_PRICE]) == NULL || v == Py_None) {
            has_price[i] = 0;
            price[i] = Py_NAN;
        } else if (PyFloat_CheckExact(v)) {
            if (Py_IS_NAN(PyFloat_AS_DOUBLE(v))) goto slow; /* the reference counts it as no price */
            has_price[i] = 1;
            price[i] = PyFloat_AS_DOUBLE(v);
        } else {
            int64_t x;
            if (!exact_i64(v, &x)) goto slow;
            has_price[i] = 1;
            price[i] = (double)x;
        }
        if (!optional_i64(val[JK_QTY], &qty[i], &has_qty[i]) || !optional_i64(val[JK_SEQ], &seq[i], &has_seq[i]))
            goto slow;
        if ((v = val[JK_OID]) == NULL || v == Py_None) {
            v = Py_None;
            oid_has[i] = 0;
            oid_int[i] = 0;
        } else if (PyUnicode_CheckExact(v)) {
            /* longer than ORDER_ID_MAX bytes of UTF-8 (or perhaps: not ASCII, more than a quarter of it in code
             * points): the validating path decides (and rejects one that is) */
            Py_ssize_t len = PyUnicode_GET_LENGTH(v);
            if (len > ORDER_ID_MAX || (!PyUnicode_IS_ASCII(v) && len > ORDER_ID_MAX / 4)) goto slow;
            oid_has[i] = 1;
            oid_int[i] = 0;
        } else if (PyLong_CheckExact(v)) { /* a negative one, or one beyond int64, the validating path rejects */
            int64_t x;
            if (!exact_i64(v, &x) || x < 0) goto slow;
            oid_has[i] = 1;
            oid_int[i] = 1;
        } else {
            goto slow;
        }
        Py_INCREF(v);
        PyList_SET_ITEM(oids, i, v);
        if ((v = val[JK_MID]) == NULL || v == Py_None) {
            mid_has[i] = 0;
            mid_int[i] = 0;
            v = Py_None;
        } else if (PyUnicode_CheckExact(v)) { /* ASCII, 1 to 24 bytes, no NUL; anything else: the reference */
            Py_ssize_t len = PyUnicode_GET_LENGTH(v);
            if (!PyUnicode_IS_ASCII(v) || len < 1 || len > MATCH_ID_MAX || memchr(PyUnicode_DATA(v), 0, (size_t)len))
                goto slow;
            mid_has[i] = 1;
            mid_int[i] = 0;
        } else if (PyLong_CheckExact(v)) {
            int64_t x;
            if (!exact_i64(v, &x) || x < 0) goto slow;
            mid_has[i] = 1;
            mid_int[i] = 1;
        } else {
            goto slow;
        }
        if (v != Py_None && mids == NULL) { /* the first match id: the list, Nones before it */
            if ((mids = PyList_New(n)) == NULL) goto done;
            for (Py_ssize_t j = 0; j < n; j++) PyList_SET_ITEM(mids, j, Py_NewRef(Py_None));
        }
        if (mids != NULL) {
            Py_INCREF(v);
            PyList_SetItem(mids, i, v); /* steals v, releases the None it replaces */
        }
    }
    ret = Py_BuildValue("(OO)", oids, mids != NULL ? mids : Py_None);
    goto done;
slow:
    ret = Py_NewRef(Py_None);
done:
    Py_XDECREF(oids);
    Py_XDECREF(mids);
    PyBuffer_Release(&out);
    return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* json_frame_columns(payload, keys, maps, tables, ids, consts, out, cap[, lines])                         */
/*   -> (n, oids, misses, mids, any_mid), or None                                                           */
/*   The clean case of a JSON-array frame, read from its bytes straight into a batch's columns (no Python */
/*   object per event): what orjson.loads, then json_columns (or jsonl._columns_py) and jsonl._finish     */
/*   would give, for the frames where every value is taken as it is and no event is rejected. keys:     */
/*   jsonl.FIELDS; maps: (venue, type, side, aggressor) dicts as for json_columns; tables: the interners' */
/*   StrTable (UTF-8 bytes -> id caches), ids: their dicts (str -> id); consts: the JC_ numbers below.   */
/*   out: 69 * cap bytes, 8-byte aligned, columns of cap rows each (the first n used): ts qty seq oid mid */
/*   price (int64; price in 1/10000) | account symbol owner broker (int32; -1 absent, -2 - k the k-th    */
/*   distinct string of the column not interned yet) | venue etype side flags mflags (uint8). oids: None  */
/*   when every order id is an integer or absent (they are in the oid column), else the list of n order  */
/*   id values (str, int, None); mids the same of the match ids (mid column, mflags), any_mid whether an  */
/*   event has one. misses: per string column None or the list of its distinct strings not              */
/*   interned yet, in order of first appearance, for the caller to intern (and add to the table).        */
/*   lines (default 0): the payload is JSON Lines instead, one event per line (jsonl.decode_block): no    */
/*   brackets, no commas, exactly one newline between two events (a blank line is "slow"; the caller     */
/*   also checks that n is its number of lines). A ts may be an ISO-8601 string as jsonl.parse_ts reads  */
/*   it (without surrounding spaces); any other form of one is "slow".                                    */
/*   Anything this pass does not read exactly as orjson would, that json_columns would not take as it   */
/*   is, or that _finish would reject, returns None before any string is interned: an escape or a       */
/*   control character in a string, a key not a field, a field twice, a nested value, a number that is   */
/*   not strict JSON or not an exact int64 where one belongs (out of range, a fraction or an exponent), a */
/*   negative integer order id, a bool where none belongs, an unknown venue, a missing ts, a ts, price or */
/*   qty out of range, a missing field the event's type needs, anything before or after the array.      */
/*   A string's bytes are valid UTF-8 when they are used: a table holds only the UTF-8 of str values,   */
/*   and a string it does not know is decoded strictly. Such a miss is looked up in the interner's dict  */
/*   (and remembered in the table when it is there).                                                     */

#define JENUM_MAX 16
typedef struct {
    const char *name[JENUM_MAX];
    Py_ssize_t len[JENUM_MAX];
    int code[JENUM_MAX];
    int n, null_code; /* null_code: the code of None (JSON null or absent), -1 if the map has none */
} JEnum;

/* the str keys of map (values 0..255) as UTF-8 names; the names are borrowed from the keys */
static int jenum_init(JEnum *m, PyObject *map) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    m->n = 0;
    m->null_code = -1;
    while (PyDict_Next(map, &pos, &k, &v)) {
        long c = PyLong_AsLong(v);
        if (c < 0 || c > 255) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "json_frame_columns: codes must be 0..255");
            return -1;
        }
        if (k == Py_None) {
            m->null_code = (int)c;
        } else if (PyUnicode_CheckExact(k)) {
            if (m->n == JENUM_MAX) {
                PyErr_SetString(PyExc_ValueError, "json_frame_columns: too many names in a map");
                return -1;
            }
            const char *s = PyUnicode_AsUTF8AndSize(k, &m->len[m->n]);
            if (s == NULL) return -1;
            m->name[m->n] = s;
            m->code[m->n++] = (int)c;
        }
    }
    return 0;
}

static inline int jsame(const char *a, const unsigned char *b, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if ((unsigned char)a[i] != b[i]) return 0;
    return 1;
}

static inline int jenum_code(const JEnum *m, const unsigned char *p, Py_ssize_t n) {
    for (int j = 0; j < m->n; j++)
        if (m->len[j] == n && jsame(m->name[j], p, n)) return m->code[j];
    return -1;
}

/* the code of a bool/None key of the aggressor map, or -1 */
static int jmap_obj_code(PyObject *map, PyObject *key) {
    PyObject *r = PyDict_GetItemWithError(map, key);
    if (r == NULL) {
        if (PyErr_Occurred()) return -2;
        return -1;
    }
    long c = PyLong_AsLong(r);
    if (c < 0 || c > 255) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "json_frame_columns: codes must be 0..255");
        return -2;
    }
    return (int)c;
}

enum { JT_STR, JT_NUM, JT_TRUE, JT_FALSE, JT_NULL };
typedef struct {
    int type;
    const unsigned char *p; /* string: its bytes (between the quotes); number: its text */
    Py_ssize_t n;
    int hi;      /* string: a byte >= 0x80 */
    int is_int;  /* number: no fraction, no exponent */
} JTok;

static inline int jdigit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline const unsigned char *jws(const unsigned char *p, const unsigned char *e) {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* a string at p (on its opening quote) without escapes or control characters: p after it, or NULL */
static inline const unsigned char *jstring(const unsigned char *p, const unsigned char *e, JTok *t) {
    const unsigned char *q = ++p;
    int hi = 0;
    while (q < e && *q != '"') {
        unsigned char c = *q;
        if (c == '\\' || c < 0x20) return NULL;
        hi |= c & 0x80;
        q++;
    }
    if (q >= e) return NULL;
    t->type = JT_STR;
    t->p = p;
    t->n = q - p;
    t->hi = hi != 0;
    return q + 1;
}

/* a scalar value at p: p after it, or NULL (an object, an array, or anything not strict JSON) */
static inline const unsigned char *jscalar(const unsigned char *p, const unsigned char *e, JTok *t) {
    if (p >= e) return NULL;
    unsigned char c = *p;
    if (c == '"') return jstring(p, e, t);
    if (c == '-' || jdigit(c)) {
        const unsigned char *q = p;
        if (*q == '-') q++;
        if (q >= e) return NULL;
        if (*q == '0') {
            q++;
        } else if (jdigit(*q)) {
            while (q < e && jdigit(*q)) q++;
        } else {
            return NULL;
        }
        int is_int = 1;
        if (q < e && *q == '.') {
            q++;
            if (q >= e || !jdigit(*q)) return NULL;
            while (q < e && jdigit(*q)) q++;
            is_int = 0;
        }
        if (q < e && (*q == 'e' || *q == 'E')) {
            q++;
            if (q < e && (*q == '+' || *q == '-')) q++;
            if (q >= e || !jdigit(*q)) return NULL;
            while (q < e && jdigit(*q)) q++;
            is_int = 0;
        }
        t->type = JT_NUM;
        t->p = p;
        t->n = q - p;
        t->is_int = is_int;
        return q;
    }
    if (e - p >= 4 && memcmp(p, "true", 4) == 0) {
        t->type = JT_TRUE;
        return p + 4;
    }
    if (e - p >= 5 && memcmp(p, "false", 5) == 0) {
        t->type = JT_FALSE;
        return p + 5;
    }
    if (e - p >= 4 && memcmp(p, "null", 4) == 0) {
        t->type = JT_NULL;
        return p + 4;
    }
    return NULL;
}

/* an integer number within int64 (at most 19 digits, then checked): 1, else 0 */
static inline int jint(const JTok *t, int64_t *out) {
    if (t->type != JT_NUM || !t->is_int) return 0;
    const unsigned char *p = t->p, *e = t->p + t->n;
    int neg = *p == '-';
    p += neg;
    if (e - p > 19) return 0;
    uint64_t v = 0; /* 19 digits stay below 2^64 */
    while (p < e) v = v * 10 + (uint64_t)(*p++ - '0');
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return 0;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

/* a number as a double, correctly rounded: exactly m * 10^k or m / 10^k when the digits fit in 2^53 and
 * |k| <= 22 (both operands exact, one IEEE operation: Clinger's fast path), else Python's own strtod */
static const double jpow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int jdouble(const JTok *t, double *out) {
    const unsigned char *p = t->p, *e = t->p + t->n;
    int neg = *p == '-', digits = 0;
    p += neg;
    uint64_t m = 0;
    int k = 0;
    while (p < e && jdigit(*p)) {
        if (m || *p != '0') digits++;
        m = m * 10 + (uint64_t)(*p++ - '0');
        if (digits > 15) goto slow_path;
    }
    if (p < e && *p == '.') {
        p++;
        while (p < e && jdigit(*p)) {
            if (m || *p != '0') digits++;
            m = m * 10 + (uint64_t)(*p++ - '0');
            k--;
            if (digits > 15) goto slow_path;
        }
    }
    if (p < e) { /* an exponent */
        p++;
        int eneg = 0, x = 0;
        if (*p == '+' || *p == '-') eneg = *p++ == '-';
        while (p < e) {
            x = x * 10 + (*p++ - '0');
            if (x > 1000) goto slow_path;
        }
        k += eneg ? -x : x;
    }
    if (k < -22 || k > 22) goto slow_path;
    {
        double d = (double)m; /* exact: m < 10^15 < 2^53 */
        d = k < 0 ? d / jpow10[-k] : d * jpow10[k];
        *out = neg ? -d : d;
        return 1;
    }
slow_path:;
    char buf[64];
    if (t->n >= (Py_ssize_t)sizeof buf) return 0;
    memcpy(buf, t->p, (size_t)t->n);
    buf[t->n] = 0;
    char *end;
    double d = PyOS_string_to_double(buf, &end, NULL);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    if (end != buf + t->n) return 0;
    *out = d;
    return 1;
}

/* the field a key names, or -1: its length and first byte give the one field it can be (slot), whose bytes
 * are then compared. The field names must allow it: 1 to 15 bytes, no two of one length that start alike
 * modulo 32 (jsonl.FIELDS do). */
typedef struct {
    const char *name[JK_N];
    Py_ssize_t len[JK_N];
    signed char slot[16][32];
} JKeys;

static int jkeys_index(JKeys *k) {
    memset(k->slot, -1, sizeof k->slot);
    for (int j = 0; j < JK_N; j++) {
        Py_ssize_t n = k->len[j];
        if (n < 1 || n > 15 || k->slot[n][k->name[j][0] & 31] >= 0) {
            PyErr_SetString(PyExc_ValueError, "json_frame_columns: field names of 1 to 15 bytes, no two of one "
                                              "length with the same first letter");
            return -1;
        }
        k->slot[n][k->name[j][0] & 31] = (signed char)j;
    }
    return 0;
}

static inline int jfield(const unsigned char *p, Py_ssize_t n, const JKeys *k) {
    if (n < 1 || n > 15) return -1;
    int j = k->slot[n][p[0] & 31];
    return j >= 0 && jsame(k->name[j], p, n) ? j : -1;
}

/* a str of a string token (ASCII copied, else strictly decoded): new reference; NULL with
 * UnicodeDecodeError set when the bytes are not UTF-8 */
static inline PyObject *jstr(const JTok *t) {
    if (!t->hi) {
        PyObject *u = PyUnicode_New(t->n, 127);
        if (u != NULL) memcpy(PyUnicode_DATA(u), t->p, (size_t)t->n);
        return u;
    }
    return PyUnicode_DecodeUTF8((const char *)t->p, t->n, "strict");
}

/* the id of a string token of column table/ids: *id, and 1; the table knows it (a hit), or the interner's dict
 * does (then the table learns it), or it is a miss: *id = -2 - k, k its place among the column's distinct
 * misses of this frame (*misses, a list made on the first one, and *seen, str -> k). 0: not UTF-8 ("slow");
 * -1: an error is set. */
static int jstring_id(StrTable *table, PyObject *ids, const JTok *t, uint64_t h, PyObject **misses, PyObject **seen,
                      int32_t *id) {
    if ((*id = table_find(table, t->p, t->n, h)) != -2) return 1;
    PyObject *u = jstr(t), *k;
    if (u == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return -1;
        PyErr_Clear();
        return 0;
    }
    int rc = -1;
    PyObject *r = PyDict_GetItemWithError(ids, u);
    if (r != NULL) {
        long x = PyLong_AsLong(r);
        if ((x == -1 && PyErr_Occurred()) || x < 0 || x > INT32_MAX) {
            PyErr_Clear();
            rc = 0;
        } else {
            *id = (int32_t)x;
            rc = table_add(table, t->p, t->n, *id) < 0 ? -1 : 1;
        }
    } else if (!PyErr_Occurred() &&
               (*misses != NULL || ((*misses = PyList_New(0)) != NULL && (*seen = PyDict_New()) != NULL))) {
        Py_ssize_t m = PyList_GET_SIZE(*misses);
        if ((k = PyDict_GetItemWithError(*seen, u)) != NULL) {
            m = PyLong_AsSsize_t(k);
            rc = m == -1 && PyErr_Occurred() ? -1 : m < 0 || m > INT32_MAX - 2 ? 0 : 1;
        } else if (!PyErr_Occurred() && (k = PyLong_FromSsize_t(m)) != NULL) {
            int bad = PyDict_SetItem(*seen, u, k) < 0 || PyList_Append(*misses, u) < 0;
            Py_DECREF(k);
            rc = bad ? -1 : m > INT32_MAX - 2 ? 0 : 1;
        }
        if (rc == 1) *id = (int32_t)(-2 - m);
    }
    Py_DECREF(u);
    return rc;
}

/* consts: the schema's numbers the checks and flags use, in this order */
enum { JC_PRICE_SCALE, JC_PRICE_MAX, JC_QTY_MAX, JC_TS_MIN, JC_TS_MAX, JC_ORDER, JC_TRADE, JC_INDEX, JC_INDICATIVE,
       JC_F_HAS_SEQ, JC_F_ORDER_ID_INT, JC_F_HAS_PRICE, JC_F_HAS_QTY, JC_F_HAS_ORDER_ID, JC_MF_HAS_MATCH_ID,
       JC_MF_MATCH_ID_INT, JC_N };

/* days since 1970-01-01 of a proleptic Gregorian date (the days_from_civil algorithm of H. Hinnant) */
static inline int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static inline int jdigits(const unsigned char *p, int k, int *out) {
    int v = 0;
    for (int j = 0; j < k; j++) {
        if (!jdigit(p[j])) return 0;
        v = v * 10 + (p[j] - '0');
    }
    *out = v;
    return 1;
}

/* an ISO-8601 timestamp string as jsonl.parse_ts reads it (YYYY-MM-DD[T ]HH:MM:SS[(.|,)1-9 digits] then Z or
 * +-HH[:]MM; the date and time valid as Python's date and datetime take them, the offset's digits taken as
 * they are): 1 and the nanoseconds, or 0 ("slow": anything else, surrounding spaces included) */
static int jiso_ts(const JTok *t, int64_t *out) {
    static const int mdays[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (t->type != JT_STR || t->hi || t->n < 20 || t->n > 35) return 0;
    const unsigned char *p = t->p, *e = t->p + t->n;
    int y, mo, d, hh, mi, ss, oh, om;
    if (!jdigits(p, 4, &y) || p[4] != '-' || !jdigits(p + 5, 2, &mo) || p[7] != '-' || !jdigits(p + 8, 2, &d) ||
        (p[10] != 'T' && p[10] != ' ') || !jdigits(p + 11, 2, &hh) || p[13] != ':' || !jdigits(p + 14, 2, &mi) ||
        p[16] != ':' || !jdigits(p + 17, 2, &ss))
        return 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || hh > 23 || mi > 59 || ss > 59) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo] + (mo == 2 && leap)) return 0;
    p += 19;
    int64_t frac = 0;
    if (p < e && (*p == '.' || *p == ',')) {
        p++;
        int k = 0;
        while (p < e && jdigit(*p) && k < 10) {
            frac = frac * 10 + (*p++ - '0');
            k++;
        }
        if (k < 1 || k > 9) return 0;
        for (; k < 9; k++) frac *= 10;
    }
    int64_t off = 0;
    if (p < e && *p == 'Z') {
        p++;
    } else if (p < e && (*p == '+' || *p == '-')) {
        int sign = *p++ == '-' ? -1 : 1;
        if (e - p < 4 || !jdigits(p, 2, &oh)) return 0;
        p += 2;
        if (*p == ':') p++;
        if (e - p < 2 || !jdigits(p, 2, &om)) return 0;
        p += 2;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return 0;
    }
    if (p != e) return 0;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - off;
    if (secs < -9000000000LL || secs > 9000000000LL) return 0; /* outside the range of int64 nanoseconds */
    *out = secs * 1000000000LL + frac;
    return 1;
}

/* a match id token (absent: 0 and *has 0): 1, with its integer value in *mid for an integer, or 0 ("slow": one
 * the contract refuses, which the reference rejects) */
static inline int jmatch_id(const JTok *t, int64_t *mid, int *has, int *is_int) {
    *mid = 0;
    *has = t->type != JT_NULL;
    *is_int = 0;
    if (!*has) return 1;
    if (t->type == JT_STR) return t->n >= 1 && t->n <= MATCH_ID_MAX; /* no escape, no control character */
    if (jint(t, mid) && *mid >= 0) {
        *is_int = 1;
        return 1;
    }
    return 0;
}

/* spaces, tabs and carriage returns (not newlines) */
static inline const unsigned char *jls(const unsigned char *p, const unsigned char *e) {
    while (p < e && (*p == ' ' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static PyObject *json_frame_columns(PyObject *mod, PyObject *args) {
    Py_buffer pay, out;
    PyObject *keys, *maps, *tables, *ids, *consts;
    Py_ssize_t cap;
    int lines = 0;
    if (!PyArg_ParseTuple(args, "y*O!O!O!O!O!w*n|p", &pay, &PyTuple_Type, &keys, &PyTuple_Type, &maps, &PyTuple_Type,
                          &tables, &PyTuple_Type, &ids, &PyTuple_Type, &consts, &out, &cap, &lines))
        return NULL;
    PyObject *ret = NULL, *oids = NULL, *mids = NULL, *misses[4] = {NULL, NULL, NULL, NULL},
             *mseen[4] = {NULL, NULL, NULL, NULL};
    PyObject **ostr = NULL; /* the str order ids (row -> new reference), once one is met */
    PyObject **mstr = NULL; /* the str match ids, likewise */
    int any_mid = 0;
    Py_ssize_t n = 0;
    if (PyTuple_GET_SIZE(keys) != JK_N || PyTuple_GET_SIZE(maps) != 4 || PyTuple_GET_SIZE(tables) != 4 ||
        PyTuple_GET_SIZE(ids) != 4 || PyTuple_GET_SIZE(consts) != JC_N || cap < 0 || out.len / 69 < cap ||
        ((uintptr_t)out.buf & 7) != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "json_frame_columns: 14 keys, 4 maps, 4 tables, 4 id dicts, 17 constants and 69 bytes a row");
        goto done;
    }
    int64_t K[JC_N];
    for (int j = 0; j < JC_N; j++) {
        K[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(consts, j));
        if (K[j] == -1 && PyErr_Occurred()) goto done;
        if (j >= JC_F_HAS_SEQ && (K[j] < 1 || K[j] > 255)) {
            PyErr_SetString(PyExc_ValueError, "json_frame_columns: flags must be 1..255");
            goto done;
        }
    }
    if (K[JC_PRICE_SCALE] < 1 || K[JC_PRICE_MAX] < 0 || K[JC_PRICE_MAX] > (1LL << 53) / K[JC_PRICE_SCALE]) {
        /* price_max * price_scale units must be exact in a double (then also in int64) */
        PyErr_SetString(PyExc_ValueError, "json_frame_columns: price_max * price_scale must be at most 2^53");
        goto done;
    }
    for (int c = 0; c < 4; c++) {
        if (!PyDict_Check(PyTuple_GET_ITEM(maps, c)) || !PyDict_Check(PyTuple_GET_ITEM(ids, c)) ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(tables, c), &StrTableType)) {
            PyErr_SetString(PyExc_TypeError, "json_frame_columns: maps and ids must be dicts, tables StrTable");
            goto done;
        }
    }
    JKeys kk;
    for (int j = 0; j < JK_N; j++) {
        PyObject *kj = PyTuple_GET_ITEM(keys, j);
        if (!PyUnicode_CheckExact(kj)) {
            PyErr_SetString(PyExc_TypeError, "json_frame_columns: the field names must be str");
            goto done;
        }
        if ((kk.name[j] = PyUnicode_AsUTF8AndSize(kj, &kk.len[j])) == NULL) goto done;
    }
    if (jkeys_index(&kk) < 0) goto done;
    JEnum e_venue, e_type, e_side;
    if (jenum_init(&e_venue, PyTuple_GET_ITEM(maps, 0)) < 0 || jenum_init(&e_type, PyTuple_GET_ITEM(maps, 1)) < 0 ||
        jenum_init(&e_side, PyTuple_GET_ITEM(maps, 2)) < 0)
        goto done;
    PyObject *m_aggr = PyTuple_GET_ITEM(maps, 3);
    int a_true = jmap_obj_code(m_aggr, Py_True), a_false = jmap_obj_code(m_aggr, Py_False),
        a_null = jmap_obj_code(m_aggr, Py_None);
    if (a_true == -2 || a_false == -2 || a_null == -2) goto done;

    int64_t *ts = (int64_t *)out.buf, *qty = ts + cap, *seq = qty + cap, *oid = seq + cap, *mid = oid + cap,
            *price = mid + cap;
    int32_t *sid = (int32_t *)(price + cap);
    unsigned char *venue = (unsigned char *)(sid + 4 * cap), *etype = venue + cap, *side = etype + cap,
                  *flags = side + cap, *mflags = flags + cap;
    const double price_scale = (double)K[JC_PRICE_SCALE], price_max = (double)K[JC_PRICE_MAX];
    static const int skey[4] = {JK_ACCOUNT, JK_SYMBOL, JK_OWNER, JK_BROKER};

    const unsigned char *p = pay.buf, *e = p + pay.len;
    if (lines) { /* JSON Lines: spaces before the first event, no blank line */
        p = jls(p, e);
        if (p >= e) goto end;
        if (*p != '{') goto slow;
    } else {
        p = jws(p, e);
        if (p >= e || *p != '[') goto slow;
        p = jws(p + 1, e);
        if (p < e && *p == ']') {
            p++;
            goto end;
        }
    }
    for (;;) { /* one object a turn */
        if (p >= e || *p != '{' || n == cap) goto slow;
        Py_ssize_t i = n;
        unsigned seen = 0; /* the fields met (a field twice goes slow) */
        JTok tok[JK_N];
        for (int j = 0; j < JK_N; j++) tok[j].type = JT_NULL; /* an absent field reads as null (o.get(f)) */
        p = jws(p + 1, e);
        if (p < e && *p == '}') goto slow; /* no ts */
        for (;;) { /* one key and value a turn */
            JTok kt;
            if (p >= e || *p != '"' || (p = jstring(p, e, &kt)) == NULL || kt.hi) goto slow;
            int f = jfield(kt.p, kt.n, &kk);
            if (f < 0 || (seen >> f) & 1) goto slow;
            seen |= 1u << f;
            p = jws(p, e);
            if (p >= e || *p != ':') goto slow;
            p = jws(p + 1, e);
            if ((p = jscalar(p, e, &tok[f])) == NULL) goto slow;
            p = jws(p, e);
            if (p < e && *p == ',') {
                p = jws(p + 1, e);
                continue;
            }
            if (p < e && *p == '}') {
                p++;
                break;
            }
            goto slow;
        }
        /* the object's values into row i */
        JTok *t;
        int c;
        if (!jint(&tok[JK_TS], &ts[i]) && !jiso_ts(&tok[JK_TS], &ts[i])) goto slow;
        t = &tok[JK_VENUE];
        if (t->type != JT_STR || (c = jenum_code(&e_venue, t->p, t->n)) < 0) goto slow;
        venue[i] = (unsigned char)c;
        t = &tok[JK_TYPE];
        if (t->type != JT_STR || (c = jenum_code(&e_type, t->p, t->n)) < 0) goto slow;
        etype[i] = (unsigned char)c;
        t = &tok[JK_SIDE];
        if (t->type == JT_NULL)
            c = e_side.null_code;
        else
            c = t->type == JT_STR ? jenum_code(&e_side, t->p, t->n) : -1;
        if (c < 0) goto slow;
        side[i] = (unsigned char)c;
        t = &tok[JK_AGGR];
        if (t->type == JT_NULL)
            c = a_null;
        else
            c = t->type == JT_TRUE ? a_true : t->type == JT_FALSE ? a_false : -1;
        if (c < 0) goto slow;
        int fl = c; /* the aggressor's flags, then the others */
        uint64_t hs[4]; /* the four strings' hashes first, their slots fetched together (each a cache miss) */
        for (int s = 0; s < 4; s++) {
            t = &tok[skey[s]];
            if (t->type == JT_STR) {
                const StrTable *tab = (const StrTable *)PyTuple_GET_ITEM(tables, s);
                hs[s] = hash_bytes(t->p, t->n);
                if (tab->cap) __builtin_prefetch(&tab->slots[hs[s] & (tab->cap - 1)]);
            }
        }
        for (int s = 0; s < 4; s++) {
            int32_t id = -1;
            t = &tok[skey[s]];
            if (t->type != JT_NULL) {
                if (t->type != JT_STR) goto slow;
                int rc = jstring_id((StrTable *)PyTuple_GET_ITEM(tables, s), PyTuple_GET_ITEM(ids, s), t, hs[s],
                                    &misses[s], &mseen[s], &id);
                if (rc < 0) goto done;
                if (rc == 0) goto slow;
            }
            sid[s * cap + i] = id;
        }
        /* jsonl._finish's checks: an event it would reject leaves the frame to the orjson path (which keeps
         * the rejects); its integer price and its flags */
        int is_idx = etype[i] == K[JC_INDEX] || etype[i] == K[JC_INDICATIVE], /* market data */
            is_trade = etype[i] == K[JC_TRADE], needs = etype[i] == K[JC_ORDER] || is_trade;
        if (ts[i] < K[JC_TS_MIN] || ts[i] >= K[JC_TS_MAX] || (!is_idx && sid[i] == -1) ||
            (is_idx && sid[cap + i] == -1) || (needs && side[i] == 0))
            goto slow;
        t = &tok[JK_PRICE];
        price[i] = 0;
        if (t->type != JT_NULL) {
            int64_t x;
            double d;
            if (t->type != JT_NUM) goto slow;
            if (jint(t, &x)) {
                d = (double)x;
            } else {
                int rc = t->is_int ? 0 : jdouble(t, &d); /* an integer beyond int64: the reference decides */
                if (rc < 0) goto done;
                if (rc == 0 || !isfinite(d)) goto slow;
            }
            if (d < 0 || fabs(d) > price_max || ((is_idx || is_trade) && d == 0)) goto slow;
            double scaled = d * price_scale, units = rint(scaled), tol = fmax(1e-3, fabs(units) * 1e-15);
            if (fabs(scaled - units) > tol) goto slow; /* more than 4 decimals */
            price[i] = (int64_t)units;                 /* within +-2^53: price_max * price_scale is */
            fl |= (int)K[JC_F_HAS_PRICE];
        } else if (is_idx || is_trade) {
            goto slow;
        }
        t = &tok[JK_QTY];
        qty[i] = 0;
        if (t->type != JT_NULL) {
            if (!jint(t, &qty[i]) || qty[i] < 0 || qty[i] >= K[JC_QTY_MAX] || (is_trade && qty[i] == 0)) goto slow;
            fl |= (int)K[JC_F_HAS_QTY];
        } else if (needs) {
            goto slow;
        }
        t = &tok[JK_SEQ];
        seq[i] = 0;
        if (t->type != JT_NULL) {
            if (!jint(t, &seq[i])) goto slow;
            fl |= (int)K[JC_F_HAS_SEQ];
        }
        t = &tok[JK_OID];
        oid[i] = 0;
        if (t->type != JT_NULL) {
            fl |= (int)K[JC_F_HAS_ORDER_ID];
            if (t->type == JT_STR) {
                if (t->n > ORDER_ID_MAX) goto slow; /* longer than an order id may be: the reference rejects it */
                if (ostr == NULL && (ostr = PyMem_Calloc((size_t)(cap ? cap : 1), sizeof(PyObject *))) == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                if ((ostr[i] = jstr(t)) == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) goto done;
                    PyErr_Clear();
                    goto slow;
                }
            } else if (jint(t, &oid[i]) && oid[i] >= 0) {
                fl |= (int)K[JC_F_ORDER_ID_INT];
            } else {
                goto slow;
            }
        }
        flags[i] = (unsigned char)fl;
        t = &tok[JK_MID];
        int mhas, mint;
        if (!jmatch_id(t, &mid[i], &mhas, &mint) || (mhas && !is_trade)) goto slow; /* on another type: a reject */
        mflags[i] = (unsigned char)((mhas ? K[JC_MF_HAS_MATCH_ID] : 0) | (mint ? K[JC_MF_MATCH_ID_INT] : 0));
        any_mid |= mhas;
        if (mhas && !mint) {
            if (mstr == NULL && (mstr = PyMem_Calloc((size_t)(cap ? cap : 1), sizeof(PyObject *))) == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            if ((mstr[i] = jstr(t)) == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) goto done;
                PyErr_Clear();
                goto slow;
            }
        }
        n++;
        if (lines) { /* the end of the line, then the next event's, or the end */
            p = jls(p, e);
            if (p >= e) break;
            if (*p != '\n') goto slow;
            p = jls(p + 1, e);
            if (p >= e) break;
            if (*p != '{') goto slow; /* a blank line, or anything else */
            continue;
        }
        p = jws(p, e);
        if (p < e && *p == ',') {
            p = jws(p + 1, e);
            continue;
        }
        if (p < e && *p == ']') {
            p++;
            break;
        }
        goto slow;
    }
end:
    if (jws(p, e) != e) goto slow;
    if (ostr != NULL) {
        if ((oids = PyList_New(n)) == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v;
            if (ostr[i] != NULL) {
                v = ostr[i];
                ostr[i] = NULL;
            } else if (flags[i] & K[JC_F_ORDER_ID_INT]) {
                if ((v = PyLong_FromLongLong(oid[i])) == NULL) goto done;
            } else {
                v = Py_NewRef(Py_None);
            }
            PyList_SET_ITEM(oids, i, v);
        }
    }
    if (mstr != NULL) {
        if ((mids = PyList_New(n)) == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v;
            if (mstr[i] != NULL) {
                v = mstr[i];
                mstr[i] = NULL;
            } else if (mflags[i] & K[JC_MF_MATCH_ID_INT]) {
                if ((v = PyLong_FromLongLong(mid[i])) == NULL) goto done;
            } else {
                v = Py_NewRef(Py_None);
            }
            PyList_SET_ITEM(mids, i, v);
        }
    }
    ret = Py_BuildValue("(nO(OOOO)OO)", n, oids ? oids : Py_None, misses[0] ? misses[0] : Py_None,
                        misses[1] ? misses[1] : Py_None, misses[2] ? misses[2] : Py_None,
                        misses[3] ? misses[3] : Py_None, mids ? mids : Py_None, any_mid ? Py_True : Py_False);
    goto done;
slow:
    ret = Py_NewRef(Py_None);
done:
    if (ostr != NULL) {
        for (Py_ssize_t i = 0; i < n + 1 && i < cap; i++) Py_XDECREF(ostr[i]);
        PyMem_Free(ostr);
    }
    if (mstr != NULL) {
        for (Py_ssize_t i = 0; i < n + 1 && i < cap; i++) Py_XDECREF(mstr[i]);
        PyMem_Free(mstr);
    }
    Py_XDECREF(oids);
    Py_XDECREF(mids);
    for (int s = 0; s < 4; s++) {
        Py_XDECREF(misses[s]);
        Py_XDECREF(mseen[s]);
    }
    PyBuffer_Release(&pay);
    PyBuffer_Release(&out);
    return ret;
}

/* json_double(text) -> float, or None when text is not one strict JSON number, or is one of 64 characters or
 * more (jdouble as the frame pass reads prices, which leaves such numbers to orjson; for the tests, against
 * Python's float()) */
static PyObject *json_double(PyObject *mod, PyObject *args) {
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "y*", &b)) return NULL;
    const unsigned char *p = b.buf, *e = p + b.len;
    JTok t;
    double d;
    int rc = 0;
    PyObject *ret = NULL;
    if ((p = jscalar(p, e, &t)) != NULL && p == e && t.type == JT_NUM) rc = jdouble(&t, &d);
    if (rc > 0)
        ret = PyFloat_FromDouble(d);
    else if (rc == 0)
        ret = Py_NewRef(Py_None);
    PyBuffer_Release(&b);
    return ret;
}

static PyMethodDef methods[] = {
    {"json_double", json_double, METH_VARARGS,
     "a JSON number's text as the frame pass reads it (None: not one, or 64 characters or more)"},
    {"count_day", count_day, METH_VARARGS, "daily_orders_20k: day counts per account, rows reaching the threshold"},
    {"second_counts", second_counts, METH_VARARGS, "order_rate_1s: messages per account and calendar second"},
    {"key_partitions", key_partitions, METH_VARARGS, "Kafka's default partition (murmur2) of str keys"},
    {"count_strings", count_strings, METH_VARARGS, "number of NUL-separated strings in a blob"},
    {"index_symbols", index_symbols, METH_VARARGS, "symbol-table entries the index records use"},
    {"strings_at", strings_at, METH_VARARGS, "some strings of a frame, decoded"},
    {"remap", remap, METH_VARARGS, "a column's frame-local string indexes and table, in first-seen order"},
    {"lookup_strings", lookup_strings, METH_VARARGS, "ids of a frame's strings (-2 = not in the table)"},
    {"decode_records", decode_records, METH_VARARGS, "records -> columns and validity codes"},
    {"json_columns", json_columns, METH_VARARGS, "the clean case of jsonl._columns (None: not clean)"},
    {"json_frame_columns", json_frame_columns, METH_VARARGS,
     "the clean case of a JSON-array frame, from its bytes to columns (None: not clean)"},
    {"record_layout", record_layout, METH_NOARGS, "field offsets this module assumes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "surveil.events._svev", NULL, -1, methods};

PyMODINIT_FUNC PyInit__svev(void) {
    if (PyType_Ready(&StrTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&StrTableType);
    if (PyModule_AddObject(m, "StrTable", (PyObject *)&StrTableType) < 0) {
        Py_DECREF(&StrTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
