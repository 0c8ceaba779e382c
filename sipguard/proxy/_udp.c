/* sipguard.proxy._udp: the UDP sockets' datagrams in and out without the event loop's
 * transport (proxy/transport.py, ``UdpSocket``; bench/RESULTS.md, session 18).
 *
 * uvloop's datagram transport reads one datagram a system call until EAGAIN, turns every
 * source address into a new (host, port) tuple through inet_ntop, and runs the protocol in a
 * context; its sendto looks the destination up in an LRU of Python objects and copies a
 * context for every datagram sent. Here:
 *
 * - ``Reader(fd, family, deliver, error)`` is the callable the loop runs when the socket is
 *   readable (``loop.add_reader``). It reads a datagram, delivers it, and reads the next, until
 *   the queue is empty or ROUNDS datagrams were read, so the other sockets get their turn (the
 *   poll is level-triggered: what is left calls again). One datagram a ``recvmmsg``, as the
 *   loop's transport reads them: the overload guard measures how long work has waited by the
 *   oldest datagram still in the kernel's queue (proxy/overload.py, ``QueueProbe``), and
 *   datagrams read ahead in a batch would be hidden from it (with batches of 8, a stalled
 *   worker's INVITEs were decided instead of answered 503: tests/integration/
 *   test_edge_limits.py). Each datagram goes to ``deliver(data, (host, port))``; the source
 *   tuple comes from a small cache of the addresses seen last, so a peer's datagrams share
 *   one. A datagram longer than the buffer (MSG_TRUNC) is dropped, as the parser would refuse
 *   it. ``error(OSError)`` gets a failed read other than EAGAIN/EINTR. An exception from
 *   ``deliver`` does not stop the reading: the first is raised when it is done (the loop logs
 *   it), the others are written as unraisable.
 * - ``send(fd, family, data, addr)`` sends one datagram at once (MSG_DONTWAIT) and returns 0,
 *   or the errno of a failed send (EAGAIN/ENOBUFS: the caller queues it). The destination's
 *   sockaddr comes from a cache keyed by (host, port); a host that is not an address of the
 *   socket's family is a ValueError, as uvloop's (no DNS lookup here, ever). An IPv6 host may
 *   name its zone after a '%' (fe80::1%eth0), as libuv takes it.
 * - ``Reader.close()`` before the socket closes: a delivery that closed it ends the batch, and
 *   no later read can reach another socket given the same descriptor.
 *
 * The event loop's thread is the only caller (the GIL is held throughout: the sockets are
 * non-blocking, so no call waits).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 1                 /* datagrams a recvmmsg (the module doc: why one) */
#define ROUNDS 32               /* datagrams a readiness callback, at most (libuv's count) */
#define BUFSIZE 65536           /* a UDP datagram's payload fits (IPv4: 65,507 bytes) */
#define SOURCES 64              /* cached source tuples a reader (a power of two) */
#define DESTS 256               /* cached destinations (a power of two) */

typedef struct {
    int family;                 /* 0: empty */
    unsigned short port;        /* host order */
    unsigned char addr[16];
    PyObject *tuple;            /* (host, port) */
} Source;

typedef struct {
    PyObject_HEAD
    int fd;
    int family;
    PyObject *deliver;
    PyObject *error;
    char *buffers;              /* BATCH * BUFSIZE */
    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    struct sockaddr_storage names[BATCH];
    Source sources[SOURCES];
} Reader;

static unsigned int slot_of(int family, unsigned short port, const unsigned char *addr, unsigned int size) {
    unsigned int h = 2166136261u ^ (unsigned int)family;
    for (unsigned int i = 0; i < size; i++) h = (h ^ addr[i]) * 16777619u;
    h = (h ^ port) * 16777619u;
    return h ^ (h >> 15);
}

/* the (host, port) tuple of a source address, from the cache or made (new reference) */
static PyObject *source_tuple(Reader *self, const struct sockaddr_storage *name) {
    const unsigned char *addr;
    unsigned int size;
    unsigned short port;
    int family = name->ss_family;
    if (family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)name;
        addr = (const unsigned char *)&sin->sin_addr;
        size = 4;
        port = ntohs(sin->sin_port);
    } else if (family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)name;
        addr = (const unsigned char *)&sin6->sin6_addr;
        size = 16;
        port = ntohs(sin6->sin6_port);
    } else {
        return Py_BuildValue("(si)", "", 0);
    }
    Source *entry = &self->sources[slot_of(family, port, addr, size) & (SOURCES - 1)];
    if (entry->tuple != NULL && entry->family == family && entry->port == port && memcmp(entry->addr, addr, size) == 0) {
        Py_INCREF(entry->tuple);
        return entry->tuple;
    }
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(family, addr, text, sizeof text) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *tuple = Py_BuildValue("(si)", text, (int)port);
    if (tuple == NULL) return NULL;
    Py_XSETREF(entry->tuple, tuple);
    Py_INCREF(tuple);
    entry->family = family;
    entry->port = port;
    memcpy(entry->addr, addr, size);
    return tuple;
}

static int reader_init(Reader *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "family", "deliver", "error", NULL};
    int fd, family;
    PyObject *deliver, *error;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiOO", kwlist, &fd, &family, &deliver, &error)) return -1;
    if (!PyCallable_Check(deliver) || !PyCallable_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "deliver and error must be callable");
        return -1;
    }
    if (self->buffers == NULL) {
        self->buffers = PyMem_RawMalloc((size_t)BATCH * BUFSIZE);
        if (self->buffers == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->fd = fd;
    self->family = family;
    Py_INCREF(deliver);
    Py_XSETREF(self->deliver, deliver);
    Py_INCREF(error);
    Py_XSETREF(self->error, error);
    for (int i = 0; i < BATCH; i++) {
        self->iovs[i].iov_base = self->buffers + (size_t)i * BUFSIZE;
        self->iovs[i].iov_len = BUFSIZE;
    }
    return 0;
}

static int reader_traverse(Reader *self, visitproc visit, void *arg) {
    Py_VISIT(self->deliver);
    Py_VISIT(self->error);
    return 0;
}

static int reader_clear(Reader *self) {
    Py_CLEAR(self->deliver);
    Py_CLEAR(self->error);
    for (int i = 0; i < SOURCES; i++) Py_CLEAR(self->sources[i].tuple);
    return 0;
}

static void reader_dealloc(Reader *self) {
    PyObject_GC_UnTrack(self);
    reader_clear(self);
    PyMem_RawFree(self->buffers);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* keep-alive pings (CRLF, empty, NAT keepalives) as UdpEndpoint.datagram_received drops them */
static int keepalive(const unsigned char *data, size_t len) {
    if (len < 4) return 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = data[i];
        if (c != '\r' && c != '\n' && c != 0 && c != ' ') return 0;
    }
    return 1;
}

/* keep the first exception of a batch to raise at its end; report the others */
static void keep_error(PyObject **type, PyObject **value, PyObject **tb) {
    if (*type == NULL) {
        PyErr_Fetch(type, value, tb);
    } else {
        PyErr_WriteUnraisable(NULL);
    }
}

static PyObject *reader_call(Reader *self, PyObject *args, PyObject *kwds) {
    PyObject *etype = NULL, *evalue = NULL, *etb = NULL;
    if (self->buffers == NULL || self->deliver == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Reader not initialised");
        return NULL;
    }
    for (int round = 0; round < ROUNDS && self->fd >= 0; round++) {
        for (int i = 0; i < BATCH; i++) {
            struct msghdr *hdr = &self->msgs[i].msg_hdr;
            memset(hdr, 0, sizeof *hdr);
            hdr->msg_name = &self->names[i];
            hdr->msg_namelen = sizeof self->names[i];
            hdr->msg_iov = &self->iovs[i];
            hdr->msg_iovlen = 1;
            self->msgs[i].msg_len = 0;
        }
        int got = recvmmsg(self->fd, self->msgs, BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) break;
            PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
            PyObject *res = exc == NULL ? NULL : PyObject_CallOneArg(self->error, exc);
            Py_XDECREF(exc);
            if (res == NULL) keep_error(&etype, &evalue, &etb);
            Py_XDECREF(res);
            break;
        }
        for (int i = 0; i < got && self->fd >= 0; i++) {     /* closed by a delivery: no more */
            struct mmsghdr *m = &self->msgs[i];
            if (m->msg_hdr.msg_flags & MSG_TRUNC) continue;
            const unsigned char *data = (const unsigned char *)self->iovs[i].iov_base;
            if (keepalive(data, m->msg_len)) continue;
            PyObject *source = source_tuple(self, &self->names[i]);
            if (source == NULL) {
                keep_error(&etype, &evalue, &etb);
                continue;
            }
            PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)m->msg_len);
            if (bytes == NULL) {
                Py_DECREF(source);
                keep_error(&etype, &evalue, &etb);
                continue;
            }
            PyObject *call[2] = {bytes, source};
            PyObject *res = PyObject_Vectorcall(self->deliver, call, 2, NULL);
            Py_DECREF(bytes);
            Py_DECREF(source);
            if (res == NULL) keep_error(&etype, &evalue, &etb);
            Py_XDECREF(res);
        }
        if (got < BATCH) break;
    }
    if (etype != NULL) {
        PyErr_Restore(etype, evalue, etb);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *reader_get_fd(Reader *self, void *closure) { return PyLong_FromLong(self->fd); }

/* the socket is about to close: read nothing more (its descriptor may be another socket's next) */
static PyObject *reader_close(Reader *self, PyObject *unused) {
    self->fd = -1;
    Py_RETURN_NONE;
}

static PyMethodDef reader_methods[] = {
    {"close", (PyCFunction)reader_close, METH_NOARGS, "read nothing more: the socket is closing"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reader_getset[] = {
    {"fd", (getter)reader_get_fd, NULL, "the socket read", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sipguard.proxy._udp.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Reader(fd, family, deliver, error): read the socket's datagrams when called (module doc)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_traverse = (traverseproc)reader_traverse,
    .tp_clear = (inquiry)reader_clear,
    .tp_call = (ternaryfunc)reader_call,
    .tp_getset = reader_getset,
    .tp_methods = reader_methods,
};

/* -- send -------------------------------------------------------------------------------- */
typedef struct {
    PyObject *host;             /* the str the sockaddr was made from (a reference) */
    long port;
    int family;
    socklen_t len;
    struct sockaddr_storage addr;
} Dest;

static Dest dests[DESTS];

/* the sockaddr of (host, port) for a socket of ``family``; NULL with an exception set */
static const Dest *dest_of(int family, PyObject *addr) {
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2) {
        PyErr_SetString(PyExc_TypeError, "address must be a (host, port) tuple");
        return NULL;
    }
    PyObject *host = PyTuple_GET_ITEM(addr, 0);
    PyObject *port_obj = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port_obj)) {
        PyErr_SetString(PyExc_TypeError, "address must be a (str, int) tuple");
        return NULL;
    }
    long port = PyLong_AsLong(port_obj);
    if (port == -1 && PyErr_Occurred()) return NULL;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_OverflowError, "port must be 0-65535");
        return NULL;
    }
    Py_hash_t h = PyObject_Hash(host);
    if (h == -1) return NULL;
    Dest *entry = &dests[((size_t)h ^ (size_t)port * 2654435761u ^ (size_t)family) & (DESTS - 1)];
    if (entry->host != NULL && entry->port == port && entry->family == family
            && (entry->host == host || PyUnicode_Compare(entry->host, host) == 0))
        return entry;
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(host, &n);
    if (text == NULL) return NULL;
    struct sockaddr_storage sa;
    socklen_t len;
    memset(&sa, 0, sizeof sa);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&sa;
        if ((size_t)n != strlen(text) || inet_pton(AF_INET, text, &sin->sin_addr) != 1) goto refused;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        len = sizeof *sin;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&sa;
        /* a link-local address may name its zone (fe80::1%eth0, fe80::1%2), as uv_ip6_addr takes it */
        char host6[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
        if ((size_t)n != strlen(text) || (size_t)n >= sizeof host6) goto refused;
        memcpy(host6, text, (size_t)n + 1);
        char *zone = strchr(host6, '%');
        if (zone != NULL) {
            *zone++ = '\0';
            char *end;
            unsigned long index = strtoul(zone, &end, 10);
            sin6->sin6_scope_id = (*zone && !*end) ? (uint32_t)index : if_nametoindex(zone);
            if (sin6->sin6_scope_id == 0) goto refused;
        }
        if (inet_pton(AF_INET6, host6, &sin6->sin6_addr) != 1) goto refused;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        len = sizeof *sin6;
    } else {
        PyErr_SetString(PyExc_ValueError, "not an IPv4 or IPv6 socket");
        return NULL;
    }
    Py_INCREF(host);
    Py_XSETREF(entry->host, host);
    entry->port = port;
    entry->family = family;
    entry->len = len;
    entry->addr = sa;
    return entry;
refused:
    PyErr_Format(PyExc_ValueError, "%R: socket family mismatch or a DNS lookup is required", addr);
    return NULL;
}

static PyObject *udp_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "send(fd, family, data, addr)");
        return NULL;
    }
    int fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    int family = PyLong_AsLong(args[1]);
    if (family == -1 && PyErr_Occurred()) return NULL;
    if (!PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    const Dest *dest = dest_of(family, args[3]);
    if (dest == NULL) return NULL;
    ssize_t sent = sendto(fd, PyBytes_AS_STRING(args[2]), (size_t)PyBytes_GET_SIZE(args[2]), MSG_DONTWAIT,
                          (const struct sockaddr *)&dest->addr, dest->len);
    return PyLong_FromLong(sent < 0 ? errno : 0);
}

PyDoc_STRVAR(send_doc,
"send(fd, family, data, addr) -> 0, or the errno of a failed send; ValueError for a host\n"
"that is not an address of the family (module doc)");

static PyMethodDef udp_methods[] = {
    {"send", (PyCFunction)(void (*)(void))udp_send, METH_FASTCALL, send_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef udp_module = {
    PyModuleDef_HEAD_INIT, "_udp",
    "UDP datagrams in (recvmmsg) and out (sendto) beside the event loop (sipguard/proxy/_udp.c).",
    -1, udp_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__udp(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *module = PyModule_Create(&udp_module);
    if (module == NULL) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(module, "Reader", (PyObject *)&ReaderType) < 0
            || PyModule_AddIntConstant(module, "BATCH", BATCH) < 0
            || PyModule_AddIntConstant(module, "ROUNDS", ROUNDS) < 0
            || PyModule_AddIntConstant(module, "BUFSIZE", BUFSIZE) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
