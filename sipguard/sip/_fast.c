/* sipguard.sip._fast: the byte-level pieces of reading a SIP message, in C.
 *
 * Cutting a head into lines and looking up their names (relay.split, parser.known_keys), the
 * SIP-URI check of a name-addr (address._usual_uri), a CSeq value (message.cseq_value), a
 * Via value of the usual shape (address.parse_via), a parameter list (address.parse_params),
 * a header line's value (relay.line_value) and a header's values (message.values_py), a response
 * and an in-dialog request of the usual shape read for the relay (relay.response_py,
 * relay.request_py), a request of the usual shape parsed whole (parser.parse_py), the worker
 * that owns a request's transaction (proxy/steer.owner_of_py), and a telephone number of the
 * usual forms (numbers._direct_py). Every function here has a Python
 * definition it must match exactly, named in its comment: the Python is the specification and
 * the fallback when this module is absent; tests/property/test_sip_c.py (test_steer_c.py for
 * the owner, test_numbers_direct.py for the number) compares both on arbitrary, generated and RFC 4475 input. Nothing here raises on bad input: a malformed or
 * unusual message or value gives None, and the caller takes the Python path that reports it.
 *
 * Hostile input: every index is checked against the buffer's length before it is read,
 * the number of lines is bounded (MAX_LINES, as the parser's), and no function allocates
 * more than a list of at most MAX_LINES items and slices of its input.
 *
 * Written for sipguard against the CPython C API only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_LINES 256            /* parser.MAX_LINES: bounds the work per datagram */

/* The header keys relay.split must find (parser._REQUIRED), as bits. */
enum { K_VIA = 1, K_FROM = 2, K_TO = 4, K_CALL_ID = 8, K_CSEQ = 16, K_ALL = 31 };

static PyObject *s_via, *s_from, *s_to, *s_call_id, *s_cseq, *s_content_length, *s_max_forwards;

/* Python's bytes.strip() white space (ASCII only): space, \t, \n, \r, \x0b, \x0c. */
static int is_bytes_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0b || c == 0x0c;
}

/* Which of the required keys ``key`` is (0: none). The keys are the parser's own str
 * objects (hdr.key), compared by value as Python's ``in`` and ``count`` compare them. */
/* Whether the str ``key`` is ``s`` (an ASCII constant below), by value: the same object, or
 * the same length and the same characters (a str of another kind never equals an ASCII one). */
static int key_is(PyObject *key, PyObject *s) {
    if (key == s) return 1;
    if (!PyUnicode_Check(key) || PyUnicode_READY(key) < 0) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    return PyUnicode_GET_LENGTH(key) == n && PyUnicode_KIND(key) == PyUnicode_1BYTE_KIND
        && memcmp(PyUnicode_1BYTE_DATA(key), PyUnicode_1BYTE_DATA(s), (size_t)n) == 0;
}

static int required_bit(PyObject *key) {
    if (key_is(key, s_via)) return K_VIA;
    if (key_is(key, s_from)) return K_FROM;
    if (key_is(key, s_to)) return K_TO;
    if (key_is(key, s_call_id)) return K_CALL_ID;
    if (key_is(key, s_cseq)) return K_CSEQ;
    return 0;
}

static int is_content_length(PyObject *key) {
    return key_is(key, s_content_length);
}

/* Find "\r\n" in p[from:to); -1 if none. */
static Py_ssize_t find_crlf(const char *p, Py_ssize_t from, Py_ssize_t to) {
    while (from + 1 < to) {
        const char *cr = memchr(p + from, '\r', (size_t)(to - 1 - from));
        if (cr == NULL) return -1;
        Py_ssize_t at = cr - p;
        if (p[at + 1] == '\n') return at;
        from = at + 1;
    }
    return -1;
}

/* The lookup key of the header line p[start:end) (one line, no CR LF in it) as
 * parser.known_keys reads it: the bytes before the first colon, provided no CR comes first
 * (its regex ``\n([^:\r\n]*):``), looked up in ``names`` (parser._NAMES, the names
 * validated and learnt by the careful loop). A borrowed reference, or NULL: no such name
 * (the caller gives None; NULL with an exception set only when the look-up itself failed). */
static PyObject *line_key(const char *p, Py_ssize_t start, Py_ssize_t end, PyObject *names) {
    Py_ssize_t i = start;
    while (i < end && p[i] != ':' && p[i] != '\r' && p[i] != '\n') i++;
    if (i >= end || p[i] != ':') return NULL;
    PyObject *name = PyBytes_FromStringAndSize(p + start, i - start);
    if (name == NULL) return NULL;
    PyObject *key = PyDict_GetItemWithError(names, name);
    Py_DECREF(name);
    return key;
}

/* parser.known_keys(head, count) for a head whose lines all end in CR LF: ``count`` header
 * lines after the start line, every LF ending one of them (``head.count(b"\n") == count``),
 * each with a learnt name. Fills ``keys`` (a new list) or returns 0 (None). -1: error. */
static int keys_of(const char *p, Py_ssize_t len, Py_ssize_t count, PyObject *names, PyObject **keys) {
    *keys = NULL;
    Py_ssize_t lfs = 0;
    for (const char *q = p; (q = memchr(q, '\n', (size_t)(p + len - q))) != NULL; q++) lfs++;
    if (lfs != count) return 0;
    PyObject *out = PyList_New(count);
    if (out == NULL) return -1;
    /* each line begins after an LF and ends before the next LF (or the end of the head) */
    Py_ssize_t n = 0;
    const char *q = memchr(p, '\n', (size_t)len);
    while (q != NULL) {
        Py_ssize_t start = q - p + 1;
        const char *next = start < len ? memchr(p + start, '\n', (size_t)(len - start)) : NULL;
        Py_ssize_t end = next != NULL ? next - p : len;
        PyObject *key = line_key(p, start, end, names);
        if (key == NULL) {
            Py_DECREF(out);
            return PyErr_Occurred() ? -1 : 0;
        }
        Py_INCREF(key);
        PyList_SET_ITEM(out, n, key);
        n++;
        q = next;
    }
    *keys = out;
    return 1;
}

PyDoc_STRVAR(known_keys_doc,
"known_keys(head, count, names) -> list[str] | None\n\n"
"parser.known_keys with the parser's learnt names (parser._NAMES) passed in.");

static PyObject *fast_known_keys(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "known_keys(head: bytes, count: int, names: dict)");
        return NULL;
    }
    Py_ssize_t count = PyLong_AsSsize_t(args[1]);
    if (count == -1 && PyErr_Occurred()) return NULL;
    PyObject *keys;
    int found = keys_of(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), count, args[2], &keys);
    if (found < 0) return NULL;
    if (found == 0) Py_RETURN_NONE;
    return keys;
}

/* RFC 3261 7.5 / 18.3 for relay.split: a message of the common shape is its start line,
 * its header lines (CRLF-ended, none folded, names learnt), an empty line and a body of
 * exactly the one Content-Length's size, with Via, From, To, Call-ID and CSeq present. */
PyDoc_STRVAR(split_doc,
"split(data, max_size, names) -> (start, lines, keys, body) | None\n\n"
"relay.split's result as a tuple (the fields of relay.Lines), None where it gives None.");

static PyObject *fast_split(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "split(data: bytes, max_size: int, names: dict)");
        return NULL;
    }
    PyObject *data = args[0], *names = args[2];
    const char *p = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    Py_ssize_t max_size = PyLong_AsSsize_t(args[1]);
    if (max_size == -1 && PyErr_Occurred()) return NULL;
    if (size > max_size) Py_RETURN_NONE;

    /* the head ends at the first CRLFCRLF; none at 0 (a CRLF before the start line) */
    Py_ssize_t end = -1;
    for (Py_ssize_t at = 0; (at = find_crlf(p, at, size)) >= 0; at++) {
        if (at + 3 < size && p[at + 2] == '\r' && p[at + 3] == '\n') {
            end = at;
            break;
        }
    }
    if (end <= 0) Py_RETURN_NONE;
    /* the start line is not empty, and every LF of the head ends a line (a bare LF, or an
     * LF LF, anywhere in it: None, as the Python's count and find give) */
    Py_ssize_t first = find_crlf(p, 0, end);
    if (first == 0) Py_RETURN_NONE;
    Py_ssize_t crlfs = 0;
    for (Py_ssize_t at = 0; (at = find_crlf(p, at, end)) >= 0; at += 2) crlfs++;
    if (crlfs + 1 > MAX_LINES) Py_RETURN_NONE;

    PyObject *keys = NULL;
    int found = keys_of(p, end, crlfs, names, &keys);
    if (found <= 0) return found < 0 ? NULL : Py_NewRef(Py_None);

    PyObject *lines = NULL, *start = NULL, *body = NULL, *result = NULL;
    Py_ssize_t cl_index = -1, cl_count = 0;
    int present = 0;
    for (Py_ssize_t i = 0; i < crlfs; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (is_content_length(key)) {
            cl_count++;
            cl_index = i;
        }
        present |= required_bit(key);
    }
    Py_ssize_t body_len = size - (end + 4);
    if (cl_count != 1 || present != K_ALL) goto none;

    lines = PyList_New(crlfs);
    if (lines == NULL) goto error;
    Py_ssize_t at = first;
    start = PyBytes_FromStringAndSize(p, first);
    if (start == NULL) goto error;
    for (Py_ssize_t i = 0; i < crlfs; i++) {
        Py_ssize_t from = at + 2;
        Py_ssize_t next = i + 1 < crlfs ? find_crlf(p, from, end) : end;
        if (next < 0) goto none;  /* cannot happen: crlfs counted them */
        if (i == cl_index) {
            /* Content-Length: its value, bytes-stripped, ASCII digits, at most 9 of them,
             * equal to the body's length */
            Py_ssize_t v = from;
            while (v < next && p[v] != ':') v++;
            v++;
            Py_ssize_t e = next;
            while (v < e && is_bytes_space((unsigned char)p[v])) v++;
            while (e > v && is_bytes_space((unsigned char)p[e - 1])) e--;
            if (e == v || e - v > 9) goto none;
            Py_ssize_t length = 0;
            for (Py_ssize_t k = v; k < e; k++) {
                if (p[k] < '0' || p[k] > '9') goto none;
                length = length * 10 + (p[k] - '0');
            }
            if (length != body_len) goto none;
        }
        PyObject *line = PyBytes_FromStringAndSize(p + from, next - from);
        if (line == NULL) goto error;
        PyList_SET_ITEM(lines, i, line);
        at = next;
    }
    body = PyBytes_FromStringAndSize(p + end + 4, body_len);
    if (body == NULL) goto error;
    result = PyTuple_Pack(4, start, lines, keys, body);
    goto done;
none:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(start);
    Py_XDECREF(lines);
    Py_XDECREF(keys);
    Py_XDECREF(body);
    return result;
}


/* -- address._usual_uri: a sip or sips URI of the common shape ------------------------------
 * RFC 3261 25.1 SIP-URI as address._SIP_URI reads it (its one regular expression, case-blind):
 *   (sips?) ":" [userinfo "@"] host [":" port] [";" params] ["?" headers] $
 * with userinfo [^@\s<>]+, host an IPv6 reference \[[0-9A-Fa-f:.]+\] or a hostname
 * [A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\.?, port \d{1,5}, params [^?\s<>]*, headers [^\s<>]*,
 * and "$" also before one final LF. ASCII text only: a str regular expression gives other
 * characters Unicode meanings (\s, \d, case folding), so any other text is the regex's. */

/* str.isspace() for ASCII: what the regex's \s matches there. */
static int is_str_space(unsigned char c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
}

static int is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* At the end, as the regex's "$" sees it: the end, or one final LF. */
static int at_end(const unsigned char *t, Py_ssize_t i, Py_ssize_t n) {
    return i == n || (i == n - 1 && t[i] == '\n');
}

/* Match host [":" port] [params] ["?" headers] $ from t[i:]; 1 if it does, with the port's
 * digits (or no port) and whether the params hold ";=" (what _usual_uri reads of the groups).
 * Every run below is the longest possible: the character that ends one is never one the
 * same run could take, so the regex has no other way to match. */
static int hostport_rest(const unsigned char *t, Py_ssize_t i, Py_ssize_t n, long *port, int *semi_eq) {
    *port = -1;
    *semi_eq = 0;
    if (i < n && t[i] == '[') {
        Py_ssize_t j = i + 1;
        while (j < n && (is_hex(t[j]) || t[j] == ':' || t[j] == '.')) j++;
        if (j == i + 1 || j >= n || t[j] != ']') return 0;
        i = j + 1;
    } else {
        /* the longest run of host characters, one final '.' aside, begins and ends alnum */
        Py_ssize_t j = i;
        while (j < n && (is_alnum(t[j]) || t[j] == '-' || t[j] == '.')) j++;
        Py_ssize_t last = j - 1;
        if (last >= i && t[last] == '.') last--;
        if (last < i || !is_alnum(t[i]) || !is_alnum(t[last])) return 0;
        i = j;
    }
    if (i < n && t[i] == ':') {
        Py_ssize_t j = i + 1;
        long value = 0;
        while (j < n && j - (i + 1) < 5 && t[j] >= '0' && t[j] <= '9') value = value * 10 + (t[j++] - '0');
        if (j == i + 1) return 0;
        *port = value;
        i = j;
    }
    if (i < n && t[i] == ';') {
        Py_ssize_t j = i;
        while (j < n && t[j] != '?' && t[j] != '<' && t[j] != '>' && !is_str_space(t[j])) {
            if (t[j] == ';' && j + 1 < n && t[j + 1] == '=') *semi_eq = 1;
            j++;
        }
        i = j;
    }
    if (i < n && t[i] == '?') {
        Py_ssize_t j = i + 1;
        while (j < n && t[j] != '<' && t[j] != '>' && !is_str_space(t[j])) j++;
        i = j;
    }
    return at_end(t, i, n);
}

PyDoc_STRVAR(usual_uri_doc,
"usual_uri(text) -> bool | None\n\n"
"address._usual_uri(text) for ASCII text; None for any other text (the regex decides).");

/* address.usual_uri_re on the ASCII text t[0:n) (also a slice of a longer text: nothing past
 * t[n - 1] is read). */
static int is_usual_uri(const unsigned char *t, Py_ssize_t n) {
    /* the scheme, sip or sips in any case, and its colon */
    if (n < 4 || (t[0] | 0x20) != 's' || (t[1] | 0x20) != 'i' || (t[2] | 0x20) != 'p') return 0;
    Py_ssize_t i = 3;
    if ((t[i] | 0x20) == 's') i++;
    if (i >= n || t[i] != ':') return 0;
    i++;
    long port = -1;
    int semi_eq = 0, matched = 0;
    /* with a userinfo first (the regex tries it first): it runs to the first '@' */
    Py_ssize_t at = i;
    while (at < n && t[at] != '@' && t[at] != '<' && t[at] != '>' && !is_str_space(t[at])) at++;
    if (at > i && at < n && t[at] == '@') matched = hostport_rest(t, at + 1, n, &port, &semi_eq);
    if (!matched) matched = hostport_rest(t, i, n, &port, &semi_eq);
    return matched && !(port == 0 || port >= 65536 || semi_eq);
}

static PyObject *fast_usual_uri(PyObject *self, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "usual_uri(text: str)");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    return PyBool_FromLong(is_usual_uri(PyUnicode_1BYTE_DATA(arg), PyUnicode_GET_LENGTH(arg)));
}

/* -- message.cseq_value: RFC 3261 20.16 CSeq = 1*DIGIT LWS Method ------------------------------
 * As the Python reads it: the value split at white space into exactly two parts, a number of
 * at most 10 ASCII digits below 2**31 and a token (message.METHOD). ASCII text only; None for
 * anything else, valid or not: the Python then answers, or raises its SipParseError. */

/* RFC 3261 25.1 token characters (message.METHOD's class). */
static int is_token(unsigned char c) {
    return is_alnum(c) || (c != 0 && strchr("-.!%*_+`'~", c) != NULL);
}

PyDoc_STRVAR(cseq_doc,
"cseq(text) -> (int, str) | None\n\n"
"message.cseq_value(text) for a valid ASCII value; None otherwise (the Python decides).");

static PyObject *fast_cseq(PyObject *self, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "cseq(text: str)");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    const unsigned char *t = PyUnicode_1BYTE_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg), i = 0;
    while (i < n && is_str_space(t[i])) i++;
    Py_ssize_t d0 = i;
    long long number = 0;
    while (i < n && t[i] >= '0' && t[i] <= '9') {
        if (i - d0 >= 10) Py_RETURN_NONE;
        number = number * 10 + (t[i++] - '0');
    }
    if (i == d0 || i >= n || !is_str_space(t[i]) || number >= 2147483648LL) Py_RETURN_NONE;
    while (i < n && is_str_space(t[i])) i++;
    Py_ssize_t m0 = i;
    while (i < n && is_token(t[i])) i++;
    Py_ssize_t m1 = i;
    while (i < n && is_str_space(t[i])) i++;
    if (m1 == m0 || i != n) Py_RETURN_NONE;
    PyObject *method = PyUnicode_FromStringAndSize((const char *)t + m0, m1 - m0);
    if (method == NULL) return NULL;
    PyObject *out = Py_BuildValue("(LN)", number, method);
    return out;
}

/* -- address.parse_via's usual shape: RFC 3261 20.42 ---------------------------------------------
 *   "SIP/2.0/" transport SP host [":" port] *(";" param)
 * with the transport one of UDP TCP TLS SCTP WS WSS, one space, a hostname or IPv4 address
 * (address.is_hostname) and ASCII digits for the port: the Python's first branch, which takes
 * no regular expression; its parameters as address.parse_params reads them (names stripped
 * and lower-cased, values stripped, a later one replacing an earlier one of the same name).
 * ASCII text only. None for anything else and for every value the Python refuses (port out
 * of range, an empty parameter name, an rport that is not a number): the Python then takes
 * its other branch or raises its SipParseError. */

/* The ASCII text p[0:len) as a new str, without decoding it (a str of one character is
 * CPython's shared one, as the decoder gives it). */
static PyObject *ascii_str(const unsigned char *p, Py_ssize_t len) {
    if (len <= 1) return PyUnicode_FromStringAndSize((const char *)p, len);
    PyObject *out = PyUnicode_New(len, 127);
    if (out != NULL) memcpy(PyUnicode_1BYTE_DATA(out), p, (size_t)len);
    return out;
}

/* t[from:to) stripped of str white space, as a new str (ASCII text only). */
static PyObject *stripped(const unsigned char *t, Py_ssize_t from, Py_ssize_t to) {
    while (from < to && is_str_space(t[from])) from++;
    while (to > from && is_str_space(t[to - 1])) to--;
    return ascii_str(t + from, to - from);
}

/* The parameter names nearly every value carries (From/To, Route, Via), made once and
 * interned: a name read is one of them without a new str (nor its hash computed again). */
static const char *const PARAM_NAMES[] = {"tag", "user", "lr", "transport", "branch", "rport", "received", "maddr",
                                          "ttl", "sgrr", NULL};
static PyObject *param_names[sizeof(PARAM_NAMES) / sizeof(PARAM_NAMES[0])];

/* A new reference to the interned ``lower[0:len)`` when it is one of PARAM_NAMES, else NULL
 * (no exception: the caller makes the str). */
static PyObject *known_param_name(const char *lower, Py_ssize_t len) {
    for (int k = 0; PARAM_NAMES[k] != NULL; k++) {
        if ((Py_ssize_t)strlen(PARAM_NAMES[k]) != len || memcmp(PARAM_NAMES[k], lower, (size_t)len) != 0) continue;
        if (param_names[k] == NULL) {
            param_names[k] = PyUnicode_InternFromString(PARAM_NAMES[k]);
            if (param_names[k] == NULL) {
                PyErr_Clear();
                return NULL;
            }
        }
        return Py_NewRef(param_names[k]);
    }
    return NULL;
}

/* One parameter of address.parse_params's reading of t[*from:to): its name t[*na:*nb) and its
 * value (*v0 < 0: no '='; else the value's bounds t[*v0:*v1), not yet stripped), *from moved past
 * it. 1 for a parameter, 0 at the end of the text, -1 for a refused text (an empty name, which
 * the Python refuses). Empty segments (";;") are skipped, as the Python skips them. */
static int next_param(const unsigned char *t, Py_ssize_t *from, Py_ssize_t to, Py_ssize_t *na, Py_ssize_t *nb,
                      Py_ssize_t *v0, Py_ssize_t *v1) {
    while (*from <= to) {
        const unsigned char *semi = memchr(t + *from, ';', (size_t)(to - *from));
        Py_ssize_t end = semi != NULL ? semi - t : to;
        Py_ssize_t a = *from, b = end;
        *from = end + 1;
        while (a < b && is_str_space(t[a])) a++;
        while (b > a && is_str_space(t[b - 1])) b--;
        if (a >= b) continue;
        const unsigned char *eq = memchr(t + a, '=', (size_t)(b - a));
        Py_ssize_t name_end = eq != NULL ? eq - t : b;
        *na = a;
        *nb = name_end;
        while (*na < *nb && is_str_space(t[*na])) (*na)++;
        while (*nb > *na && is_str_space(t[*nb - 1])) (*nb)--;
        if (*na == *nb) return -1;
        *v0 = eq != NULL ? name_end + 1 : -1;
        *v1 = b;
        return 1;
    }
    return 0;
}

/* address.parse_params on t[from:to) into ``params``: 1, or 0 for a refused text (an empty
 * name, which the Python refuses), -1 on error. */
static int read_params(const unsigned char *t, Py_ssize_t from, Py_ssize_t to, PyObject *params) {
    Py_ssize_t na, nb, v0, v1;
    int found;
    while ((found = next_param(t, &from, to, &na, &nb, &v0, &v1)) > 0) {
        char lower[64];
        PyObject *name;
        if (nb - na <= (Py_ssize_t)sizeof(lower)) {
            for (Py_ssize_t k = na; k < nb; k++)
                lower[k - na] = (char)(t[k] >= 'A' && t[k] <= 'Z' ? t[k] + 32 : t[k]);
            name = known_param_name(lower, nb - na);
            if (name == NULL) name = PyUnicode_FromStringAndSize(lower, nb - na);
        } else {
            PyObject *raw = PyUnicode_FromStringAndSize((const char *)t + na, nb - na);
            name = raw != NULL ? PyObject_CallMethod(raw, "lower", NULL) : NULL;
            Py_XDECREF(raw);
        }
        if (name == NULL) return -1;
        PyObject *value = v0 >= 0 ? stripped(t, v0, v1) : Py_NewRef(Py_None);
        if (value == NULL || PyDict_SetItem(params, name, value) < 0) {
            Py_DECREF(name);
            Py_XDECREF(value);
            return -1;
        }
        Py_DECREF(name);
        Py_DECREF(value);
    }
    return found < 0 ? 0 : 1;
}

PyDoc_STRVAR(params_doc,
"params(text) -> dict[str, str | None] | None\n\n"
"address.parse_params(text) for ASCII text it accepts; None for any other text and for the\n"
"text it refuses (an empty parameter name): the Python then answers or raises.");

static PyObject *fast_params(PyObject *self, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "params(text: str)");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    PyObject *params = PyDict_New();
    if (params == NULL) return NULL;
    int ok = read_params(PyUnicode_1BYTE_DATA(arg), 0, PyUnicode_GET_LENGTH(arg), params);
    if (ok > 0) return params;
    Py_DECREF(params);
    if (ok < 0) return NULL;
    Py_RETURN_NONE;
}

static const char *const TRANSPORTS[] = {"UDP", "TCP", "TLS", "SCTP", "WS", "WSS", NULL};

PyDoc_STRVAR(via_doc,
"via(text) -> (transport, host, port | None, params) | None\n\n"
"address.parse_via(text)'s fields (all but raw) when its first branch takes the text and\n"
"accepts it; None otherwise (the Python decides).");

static PyObject *fast_via(PyObject *self, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "via(text: str)");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    const unsigned char *t = PyUnicode_1BYTE_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    if (n < 8 || memcmp(t, "SIP/2.0/", 8) != 0) Py_RETURN_NONE;
    const unsigned char *sp = memchr(t + 8, ' ', (size_t)(n - 8));
    if (sp == NULL) Py_RETURN_NONE;
    Py_ssize_t space = sp - t;
    const char *transport = NULL;
    for (int k = 0; TRANSPORTS[k] != NULL; k++) {
        size_t len = strlen(TRANSPORTS[k]);
        if ((Py_ssize_t)len == space - 8 && memcmp(t + 8, TRANSPORTS[k], len) == 0) transport = TRANSPORTS[k];
    }
    if (transport == NULL) Py_RETURN_NONE;
    /* sent-by up to the first ';', host up to its first ':' */
    Py_ssize_t sb = space + 1;
    const unsigned char *semi = memchr(t + sb, ';', (size_t)(n - sb));
    Py_ssize_t sb_end = semi != NULL ? semi - t : n;
    const unsigned char *colon = memchr(t + sb, ':', (size_t)(sb_end - sb));
    Py_ssize_t host_end = colon != NULL ? colon - t : sb_end;
    /* address.is_hostname: host characters, one final '.' aside, not beginning or ending
     * with '.' or '-' */
    Py_ssize_t last = host_end - 1;
    if (last >= sb && t[last] == '.') last--;
    if (last < sb || t[sb] == '.' || t[sb] == '-' || t[last] == '.' || t[last] == '-') Py_RETURN_NONE;
    for (Py_ssize_t k = sb; k <= last; k++)
        if (!is_alnum(t[k]) && t[k] != '-' && t[k] != '.') Py_RETURN_NONE;
    PyObject *port;
    if (colon != NULL) {
        /* ASCII digits (else the Python's regex branch), then address._port: at most 5 of
         * them, 1..65535 (else SipParseError) */
        Py_ssize_t d = host_end + 1;
        if (d == sb_end || sb_end - d > 5) Py_RETURN_NONE;
        long value = 0;
        for (Py_ssize_t k = d; k < sb_end; k++) {
            if (t[k] < '0' || t[k] > '9') Py_RETURN_NONE;
            value = value * 10 + (t[k] - '0');
        }
        if (value <= 0 || value >= 65536) Py_RETURN_NONE;
        port = PyLong_FromLong(value);
    } else {
        port = Py_NewRef(Py_None);
    }
    if (port == NULL) return NULL;
    PyObject *params = PyDict_New(), *host = NULL, *kind = NULL;
    if (params == NULL) goto error;
    if (semi != NULL) {
        int ok = read_params(t, sb_end + 1, n, params);
        if (ok < 0) goto error;
        if (ok == 0) goto none;
        /* RFC 3581: an rport with a value holds a port number (address._via) */
        PyObject *rport = PyDict_GetItemString(params, "rport");
        if (rport != NULL && rport != Py_None && PyUnicode_GET_LENGTH(rport) > 0) {
            const unsigned char *r = PyUnicode_1BYTE_DATA(rport);
            for (Py_ssize_t k = 0; k < PyUnicode_GET_LENGTH(rport); k++)
                if (r[k] < '0' || r[k] > '9') goto none;
        }
    }
    host = PyUnicode_FromStringAndSize((const char *)t + sb, host_end - sb);
    kind = PyUnicode_FromString(transport);
    if (host == NULL || kind == NULL) goto error;
    return Py_BuildValue("(NNNN)", kind, host, port, params);
none:
    Py_DECREF(port);
    Py_XDECREF(params);
    Py_RETURN_NONE;
error:
    Py_DECREF(port);
    Py_XDECREF(params);
    Py_XDECREF(host);
    Py_XDECREF(kind);
    return NULL;
}

/* -- address._parse_name_addr: a name-addr of the usual shape ----------------------------------
 * RFC 3261 20.10 / 25.1 name-addr as address.parse_name_addr_py reads it, for ASCII text:
 *   1. its first branch: "<" uri ">" [";" params], the URI up to the first '>', not empty,
 *      not ending in LF, a usual SIP URI (is_usual_uri); raw is the value str-stripped;
 *   2. its regular expression _NAME_ADDR (DOTALL), when the first does not take the value:
 *        ^\s* ( "quoted" \s* | token *([ \t]+ token) \s* )? "<" [^<>\s]+ ">" \s* (";" .*)? $
 *      with check_uri's cheap answer: the URI a usual SIP URI (else parse_uri decides: None);
 *      the display name the quoted string unescaped (_unquote) or the tokens as written;
 * and the parameters as address.parse_params reads them (read_params). Every run the regex
 * makes is the longest possible and ends at a character that none of the alternatives after
 * it could take, so scanning once finds its only match. None for anything else (non-ASCII
 * text, another shape, another scheme, an empty parameter name, which the Python refuses):
 * the Python then answers or raises its SipParseError. */

typedef struct {
    Py_ssize_t d0, d1;      /* the display name's text (d0 < 0: none) */
    int quoted;             /* ... a quoted string's content (escapes to undo) */
    Py_ssize_t u0, u1;      /* the URI */
    Py_ssize_t p0;          /* the parameters' text, t[p0:n) (p0 < 0: none, {}) */
    Py_ssize_t r0, r1;      /* the value stripped (NameAddr.raw) */
} name_addr_spans;

/* The spans of the name-addr t[0:n) (ASCII); 1, or 0 where the Python decides. The parameters
 * are not checked here (name_addr_params_ok, read_params). */
static int name_addr_spans_of(const unsigned char *t, Py_ssize_t n, name_addr_spans *s) {
    s->d0 = s->d1 = -1;
    s->quoted = 0;
    s->p0 = -1;
    s->r0 = 0;
    s->r1 = n;
    while (s->r0 < n && is_str_space(t[s->r0])) s->r0++;
    while (s->r1 > s->r0 && is_str_space(t[s->r1 - 1])) s->r1--;
    if (n > 0 && t[0] == '<') {
        /* the first branch: gt = value.find(">"), gt > 1, after[:1] in ("", ";"),
         * inner[-1] != "\n", _usual_uri(inner) */
        const unsigned char *gt = memchr(t, '>', (size_t)n);
        Py_ssize_t g = gt != NULL ? gt - t : -1;
        if (g > 1 && (g + 1 == n || t[g + 1] == ';') && t[g - 1] != '\n' && is_usual_uri(t + 1, g - 1)) {
            s->u0 = 1;
            s->u1 = g;
            if (g + 1 < n) s->p0 = g + 2;
            return 1;
        }
    }
    Py_ssize_t i = 0;
    while (i < n && is_str_space(t[i])) i++;
    if (i < n && t[i] == '"') {
        /* (?:[^"\\]|\\.)* then '"': the first quote not escaped ends it */
        Py_ssize_t j = i + 1;
        while (j < n && t[j] != '"') {
            if (t[j] == '\\') {
                if (j + 1 >= n) return 0;
                j += 2;
            } else {
                j++;
            }
        }
        if (j >= n) return 0;
        s->d0 = i + 1;
        s->d1 = j;
        s->quoted = 1;
        i = j + 1;
        while (i < n && is_str_space(t[i])) i++;
    } else if (i < n && is_token(t[i])) {
        /* tokens apart by runs of [ \t] only, then \s* and '<' */
        s->d0 = i;
        for (;;) {
            while (i < n && is_token(t[i])) i++;
            s->d1 = i;
            Py_ssize_t k = i;
            int blanks = 1;
            while (k < n && is_str_space(t[k])) {
                if (t[k] != ' ' && t[k] != '\t') blanks = 0;
                k++;
            }
            if (k < n && t[k] == '<') {
                i = k;
                break;
            }
            if (k > i && blanks && k < n && is_token(t[k])) {
                i = k;
                continue;
            }
            return 0;
        }
    }
    if (i >= n || t[i] != '<') return 0;
    Py_ssize_t u = i + 1, j = u;
    while (j < n && t[j] != '<' && t[j] != '>' && !is_str_space(t[j])) j++;
    if (j == u || j >= n || t[j] != '>') return 0;
    if (!is_usual_uri(t + u, j - u)) return 0;  /* check_uri: parse_uri decides */
    s->u0 = u;
    s->u1 = j;
    i = j + 1;
    while (i < n && is_str_space(t[i])) i++;
    if (i < n) {
        if (t[i] != ';') return 0;
        s->p0 = i + 1;
    }
    return 1;
}

/* read_params's parameters of t[from:to) without building them: 0 where parse_params refuses
 * the text (an empty name), else 1 with the last parameter named ``name`` (lower case, as
 * the names are lower-cased) in *v0 (its value stripped, t[*v0:*v1); *v0 == -1: no '=';
 * *v0 == -2: no such parameter). */
static int params_find(const unsigned char *t, Py_ssize_t from, Py_ssize_t to, const char *name,
                       Py_ssize_t *v0, Py_ssize_t *v1) {
    Py_ssize_t name_len = (Py_ssize_t)strlen(name);
    Py_ssize_t na, nb, va, vb;
    int found;
    *v0 = -2;
    *v1 = -2;
    while ((found = next_param(t, &from, to, &na, &nb, &va, &vb)) > 0) {
        int same = nb - na == name_len;
        for (Py_ssize_t k = 0; same && k < name_len; k++) {
            unsigned char c = t[na + k];
            same = (c >= 'A' && c <= 'Z' ? c + 32 : c) == (unsigned char)name[k];
        }
        if (!same) continue;
        if (va < 0) {
            *v0 = *v1 = -1;
            continue;
        }
        while (va < vb && is_str_space(t[va])) va++;
        while (vb > va && is_str_space(t[vb - 1])) vb--;
        *v0 = va;
        *v1 = vb;
    }
    return found < 0 ? 0 : 1;
}

/* The ASCII text of ``arg`` in *t, *n: 1; 0 for other text (the Python decides); -1 on error. */
static int ascii_text(PyObject *arg, const char *usage, const unsigned char **t, Py_ssize_t *n) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (PyUnicode_READY(arg) < 0) return -1;
    if (!PyUnicode_IS_ASCII(arg)) return 0;
    *t = PyUnicode_1BYTE_DATA(arg);
    *n = PyUnicode_GET_LENGTH(arg);
    return 1;
}

/* address._unquote on t[from:to): each backslash drops, the character after it stays. */
static PyObject *unquoted(const unsigned char *t, Py_ssize_t from, Py_ssize_t to) {
    if (memchr(t + from, '\\', (size_t)(to - from)) == NULL)
        return ascii_str(t + from, to - from);
    char *w = PyMem_Malloc((size_t)(to - from));
    if (w == NULL) return PyErr_NoMemory();
    Py_ssize_t len = 0;
    for (Py_ssize_t i = from; i < to; i++) {
        if (t[i] == '\\' && i + 1 < to) i++;
        w[len++] = (char)t[i];
    }
    PyObject *text = PyUnicode_FromStringAndSize(w, len);
    PyMem_Free(w);
    return text;
}

/* The ASCII text of ``arg`` (*t, *n) and the spans of the name-addr it holds: 1; 0 where the
 * Python decides (other text, another shape); -1 on error (``arg`` not a str). */
static int spans_of_arg(PyObject *arg, const char *usage, const unsigned char **t, Py_ssize_t *n,
                        name_addr_spans *s) {
    int ok = ascii_text(arg, usage, t, n);
    if (ok <= 0) return ok;
    return name_addr_spans_of(*t, *n, s);
}

PyDoc_STRVAR(name_addr_doc,
"name_addr(value) -> (display, uri, params, raw) | None\n\n"
"address.parse_name_addr_py(value)'s fields for the usual ASCII name-addr it accepts; None\n"
"for anything else (the Python decides).");

static PyObject *fast_name_addr(PyObject *self, PyObject *arg) {
    const unsigned char *t;
    Py_ssize_t n;
    name_addr_spans s;
    int ok = spans_of_arg(arg, "name_addr(value: str)", &t, &n, &s);
    if (ok <= 0) return ok < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *params = PyDict_New();
    if (params == NULL) return NULL;
    if (s.p0 >= 0) {
        ok = read_params(t, s.p0, n, params);
        if (ok <= 0) {
            Py_DECREF(params);
            return ok < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
    PyObject *display;
    if (s.d0 < 0) display = Py_NewRef(Py_None);
    else if (s.quoted) display = unquoted(t, s.d0, s.d1);
    else display = ascii_str(t + s.d0, s.d1 - s.d0);
    PyObject *uri = ascii_str(t + s.u0, s.u1 - s.u0);
    PyObject *raw = s.r0 == 0 && s.r1 == n && PyUnicode_CheckExact(arg) ? Py_NewRef(arg)
        : ascii_str(t + s.r0, s.r1 - s.r0);
    PyObject *out = display != NULL && uri != NULL && raw != NULL ? PyTuple_New(4) : NULL;
    if (out == NULL) {
        Py_DECREF(params);
        Py_XDECREF(display);
        Py_XDECREF(uri);
        Py_XDECREF(raw);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, display);
    PyTuple_SET_ITEM(out, 1, uri);
    PyTuple_SET_ITEM(out, 2, params);
    PyTuple_SET_ITEM(out, 3, raw);
    return out;
}

PyDoc_STRVAR(name_addr_tag_doc,
"name_addr_tag(value) -> str | None\n\n"
"address.tag_of(value), parse_name_addr_py(value).tag or \"\", for the usual ASCII name-addr it\n"
"accepts; None for anything else (the Python decides).");

static PyObject *fast_name_addr_tag(PyObject *self, PyObject *arg) {
    const unsigned char *t;
    Py_ssize_t n;
    name_addr_spans s;
    int ok = spans_of_arg(arg, "name_addr_tag(value: str)", &t, &n, &s);
    if (ok <= 0) return ok < 0 ? NULL : Py_NewRef(Py_None);
    Py_ssize_t v0 = -2, v1 = -2;
    if (s.p0 >= 0 && !params_find(t, s.p0, n, "tag", &v0, &v1)) Py_RETURN_NONE;
    if (v0 < 0) return PyUnicode_FromStringAndSize(NULL, 0);
    return ascii_str(t + v0, v1 - v0);
}

PyDoc_STRVAR(name_addr_uri_doc,
"name_addr_uri(value) -> str | None\n\n"
"address.uri_of(value), parse_name_addr_py(value).uri, for the usual ASCII name-addr it\n"
"accepts; None for anything else (the Python decides).");

static PyObject *fast_name_addr_uri(PyObject *self, PyObject *arg) {
    const unsigned char *t;
    Py_ssize_t n;
    name_addr_spans s;
    int ok = spans_of_arg(arg, "name_addr_uri(value: str)", &t, &n, &s);
    if (ok <= 0) return ok < 0 ? NULL : Py_NewRef(Py_None);
    Py_ssize_t v0, v1;  /* no parameter is named "": the look-up only checks them */
    if (s.p0 >= 0 && !params_find(t, s.p0, n, "", &v0, &v1)) Py_RETURN_NONE;
    return ascii_str(t + s.u0, s.u1 - s.u0);
}

/* -- relay.Lines.value: a header line's value as the full path reads it ----------------------------
 * line_value(line): the bytes after the first colon, decoded as UTF-8 with surrogateescape (any
 * byte survives), str-stripped. ASCII bytes decode to themselves whatever their neighbours, so
 * the ASCII white space at either end is cut before decoding; only when a non-ASCII byte is then
 * at an end can str.strip() find more (U+00A0, U+2028 ...), and it is asked. None without a
 * colon (the Python raises ValueError). */
PyDoc_STRVAR(value_doc,
"value(line) -> str | None\n\n"
"relay.line_value(line); None for a line without a colon (the Python raises).");

static PyObject *fast_value(PyObject *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "value(line: bytes)");
        return NULL;
    }
    const unsigned char *t = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    const unsigned char *colon = memchr(t, ':', (size_t)n);
    if (colon == NULL) Py_RETURN_NONE;
    Py_ssize_t a = colon - t + 1, b = n;
    while (a < b && is_str_space(t[a])) a++;
    while (b > a && is_str_space(t[b - 1])) b--;
    if (a == b) return PyUnicode_FromStringAndSize(NULL, 0);
    int ascii = 1;
    for (Py_ssize_t k = a; k < b; k++)
        if (t[k] >= 0x80) {
            ascii = 0;
            break;
        }
    if (ascii) return PyUnicode_DecodeASCII((const char *)t + a, b - a, NULL);
    PyObject *text = PyUnicode_DecodeUTF8((const char *)t + a, b - a, "surrogateescape");
    if (text == NULL || (t[a] < 0x80 && t[b - 1] < 0x80)) return text;
    PyObject *out = PyObject_CallMethod(text, "strip", NULL);
    Py_DECREF(text);
    return out;
}

/* -- message.Message._values: the values of one header, one per line ------------------------------
 * values(lines, positions): for each position, the value of the line ``lines[pos][1]`` as
 * fast_value reads it (message.values_py's decode and strip). Message._values also unfolds
 * (``_FOLD``), which can change a value only where a LF is left after the strip: such a value
 * gives None, as do a line without a colon and anything not of the expected types (the Python
 * then reads them all). Positions out of range: None. */
PyDoc_STRVAR(values_doc,
"values(lines, positions) -> list[str] | None\n\n"
"message.values_py(lines, positions); None where it leaves the answer to the Python.");

static PyObject *fast_values(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "values(lines: list, positions: list)");
        return NULL;
    }
    PyObject *lines = args[0], *positions = args[1];
    Py_ssize_t count = PyList_GET_SIZE(positions);
    PyObject *out = PyList_New(count);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *at = PyList_GET_ITEM(positions, i);
        if (!PyLong_CheckExact(at)) goto none;
        Py_ssize_t pos = PyLong_AsSsize_t(at);
        if (pos == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto none;
        }
        if (pos < 0 || pos >= PyList_GET_SIZE(lines)) goto none;
        PyObject *pair = PyList_GET_ITEM(lines, pos);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1)))
            goto none;
        PyObject *value = fast_value(self, PyTuple_GET_ITEM(pair, 1));
        if (value == NULL) goto error;
        if (value == Py_None) goto none;
        PyList_SET_ITEM(out, i, value);
        Py_ssize_t lf = PyUnicode_FindChar(value, '\n', 0, PyUnicode_GET_LENGTH(value), 1);
        if (lf == -2) goto error;
        if (lf >= 0) goto none;
    }
    return out;
none:
    Py_DECREF(out);
    Py_RETURN_NONE;
error:
    Py_DECREF(out);
    return NULL;
}

/* fast_cseq of a CSeq line's value (fast_value): the (number, method) tuple, None where the
 * Python decides, NULL with an exception set. */
static PyObject *line_cseq(PyObject *self, PyObject *line) {
    PyObject *text = fast_value(self, line);
    if (text == NULL || text == Py_None) return text;
    PyObject *cseq = fast_cseq(self, text);
    Py_DECREF(text);
    return cseq;
}

/* The first ``keep`` non-empty items of the comma list ``tl[from:len]``, stripped, as
 * message.without_first writes them after "name:": " a, b, c". Returns the length; writes the
 * bytes at ``w`` unless it is NULL (the caller sizes the buffer with a first call). */
static Py_ssize_t put_items(const char *tl, Py_ssize_t len, Py_ssize_t from, Py_ssize_t keep, char *w) {
    Py_ssize_t seen = 0, size = 0;
    while (from <= len && seen < keep) {
        const char *comma = memchr(tl + from, ',', (size_t)(len - from));
        Py_ssize_t end = comma != NULL ? comma - tl : len, a = from, b = end;
        while (a < b && is_str_space((unsigned char)tl[a])) a++;
        while (b > a && is_str_space((unsigned char)tl[b - 1])) b--;
        if (a < b) {
            Py_ssize_t lead = seen++ > 0 ? 2 : 1;
            if (w != NULL) {
                if (lead == 2) *w++ = ',';
                *w++ = ' ';
                memcpy(w, tl + a, (size_t)(b - a));
                w += b - a;
            }
            size += lead + (b - a);
        }
        from = end + 1;
    }
    return size;
}

/* -- relay.response: a response of the usual shape, read for the relay -----------------------------
 * relay.response_py's result, as the tuple (status, method, top, second, relayed, cseq), for a
 * response relay.split takes whose CSeq line is one and reads in C, with at most ``max_values``
 * Via lines, none holding a comma, the top one not empty. ``relayed`` is the input without the
 * top Via line and its CR LF: what Lines.join gives for the other lines (split cut the head at
 * every CR LF, so the lines lie back to back in ``data``). None for everything else, valid or
 * not: the Python then answers (its list case) or raises. */
PyDoc_STRVAR(response_doc,
"response(data, max_size, names, max_values) -> (status, method, top, second, relayed, cseq) | None\n\n"
"relay.response_py's fields for the usual response; None where the Python decides.");

static PyObject *fast_response(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "response(data: bytes, max_size: int, names: dict, max_values: int)");
        return NULL;
    }
    Py_ssize_t max_values = PyLong_AsSsize_t(args[3]);
    if (max_values == -1 && PyErr_Occurred()) return NULL;
    if (PyBytes_Check(args[0]) && (PyBytes_GET_SIZE(args[0]) < 8 || memcmp(PyBytes_AS_STRING(args[0]), "SIP/2.0 ", 8) != 0))
        Py_RETURN_NONE;
    PyObject *parts = fast_split(self, args, 3);
    if (parts == NULL || parts == Py_None) return parts;
    PyObject *start = PyTuple_GET_ITEM(parts, 0), *lines = PyTuple_GET_ITEM(parts, 1);
    PyObject *keys = PyTuple_GET_ITEM(parts, 2);
    PyObject *cseq = NULL, *top = NULL, *second = NULL, *relayed = NULL, *result = NULL;
    /* the status line: "SIP/2.0 " three digits, then a space or the end, 100..699 */
    const char *st = PyBytes_AS_STRING(start);
    Py_ssize_t st_len = PyBytes_GET_SIZE(start);
    if (st_len < 11 || (st_len > 11 && st[11] != ' ')) goto none;
    long status = 0;
    for (int k = 8; k < 11; k++) {
        if (st[k] < '0' || st[k] > '9') goto none;
        status = status * 10 + (st[k] - '0');
    }
    if (status < 100 || status > 699) goto none;
    /* the one CSeq line, and the Via lines (at most MAX_LINES: split bounds the head) */
    Py_ssize_t count = PyList_GET_SIZE(keys), cseq_at = -1, vias = 0, commas = 0;
    Py_ssize_t via_at[MAX_LINES];
    for (Py_ssize_t i = 0; i < count && i < MAX_LINES; i++) {
        int bit = required_bit(PyList_GET_ITEM(keys, i));
        if (bit == K_CSEQ) {
            if (cseq_at >= 0) goto none;
            cseq_at = i;
        } else if (bit == K_VIA) {
            PyObject *line = PyList_GET_ITEM(lines, i);
            commas |= memchr(PyBytes_AS_STRING(line), ',', (size_t)PyBytes_GET_SIZE(line)) != NULL;
            via_at[vias++] = i;
        }
    }
    if (cseq_at < 0 || vias == 0 || vias > max_values) goto none;
    cseq = line_cseq(self, PyList_GET_ITEM(lines, cseq_at));
    if (cseq == NULL) goto error;
    if (cseq == Py_None) goto none;
    Py_ssize_t first = via_at[0];
    PyObject *top_line = PyList_GET_ITEM(lines, first);
    const char *tl = PyBytes_AS_STRING(top_line);
    Py_ssize_t tl_len = PyBytes_GET_SIZE(top_line), keep = 0, keep_from = 0;
    if (!commas) {
        top = fast_value(self, top_line);
        if (top == NULL) goto error;
        if (top == Py_None || PyUnicode_GET_LENGTH(top) == 0) goto none;
        second = vias > 1 ? fast_value(self, PyList_GET_ITEM(lines, via_at[1])) : Py_NewRef(Py_None);
        if (second == NULL) goto error;
    } else {
        /* relay._listed: every Via line's value split at its commas, items stripped, empty ones
         * dropped (address.split_list's plain case: ASCII values without '"' or '<' only; else
         * the Python); ``keep`` items of the top line after its first, from ``keep_from`` */
        Py_ssize_t items = 0;
        for (Py_ssize_t v = 0; v < vias; v++) {
            PyObject *line = PyList_GET_ITEM(lines, via_at[v]);
            const unsigned char *t = (const unsigned char *)PyBytes_AS_STRING(line);
            Py_ssize_t n = PyBytes_GET_SIZE(line);
            const unsigned char *colon = memchr(t, ':', (size_t)n);
            if (colon == NULL) goto none;
            Py_ssize_t from = colon - t + 1;
            for (Py_ssize_t k = from; k < n; k++)
                if (t[k] >= 0x80 || t[k] == '"' || t[k] == '<') goto none;
            Py_ssize_t line_items = 0;
            while (from <= n) {
                const unsigned char *comma = memchr(t + from, ',', (size_t)(n - from));
                Py_ssize_t end = comma != NULL ? comma - t : n, a = from, b = end;
                while (a < b && is_str_space(t[a])) a++;
                while (b > a && is_str_space(t[b - 1])) b--;
                if (a < b) {
                    items++;
                    line_items++;
                    if (items > max_values) goto none;
                    if (v == 0 && line_items == 2) keep_from = a;
                    if (v == 0 && line_items >= 2) keep++;
                    if (items <= 2) {
                        PyObject *item = PyUnicode_DecodeASCII((const char *)t + a, b - a, NULL);
                        if (item == NULL) goto error;
                        if (items == 1) top = item;
                        else second = item;
                    }
                }
                from = end + 1;
            }
            if (v == 0 && line_items == 0) goto none;
        }
        if (second == NULL) second = Py_NewRef(Py_None);
    }
    /* the input with the top Via line (and its CR LF) cut, or, when items of it are left, that
     * line rewritten as message.without_first writes it: "name: item, item" */
    Py_ssize_t cut = st_len + 2;
    for (Py_ssize_t i = 0; i < first; i++) cut += PyBytes_GET_SIZE(PyList_GET_ITEM(lines, i)) + 2;
    Py_ssize_t cut_len = tl_len + 2, name_len = 0, put_len = 0;
    const char *p = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (cut + cut_len > size) goto none;  /* cannot happen: the lines are the input's */
    if (keep > 0) {
        name_len = (const char *)memchr(tl, ':', (size_t)tl_len) - tl;
        put_len = name_len + 1 + 2;  /* "name: " ... CR LF */
        put_len += put_items(tl, tl_len, keep_from, keep, NULL);
    }
    relayed = PyBytes_FromStringAndSize(NULL, size - cut_len + put_len);
    if (relayed == NULL) goto error;
    char *w = PyBytes_AS_STRING(relayed);
    memcpy(w, p, (size_t)cut);
    w += cut;
    if (keep > 0) {
        memcpy(w, tl, (size_t)name_len);
        w += name_len;
        *w++ = ':';
        w += put_items(tl, tl_len, keep_from, keep, w);
        *w++ = '\r';
        *w++ = '\n';
    }
    memcpy(w, p + cut + cut_len, (size_t)(size - cut - cut_len));
    result = Py_BuildValue("(lOOOOO)", status, PyTuple_GET_ITEM(cseq, 1), top, second, relayed,
                           PyTuple_GET_ITEM(cseq, 0));
    goto done;
none:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_DECREF(parts);
    Py_XDECREF(cseq);
    Py_XDECREF(top);
    Py_XDECREF(second);
    Py_XDECREF(relayed);
    return result;
}

/* A request line of the usual shape: "METHOD SP uri SP SIP/2.0", exactly two spaces, a URI not in
 * <> holding a colon, a method ``methods`` knows. 1 with *method_b (a new reference), *method
 * (borrowed from ``methods``) and the two spaces; 0 when the line is not of that shape (the Python
 * decides); -1 with an exception set. */
static int request_line(PyObject *start, PyObject *methods, PyObject **method_b, PyObject **method,
                        const char **sp1_out, const char **sp2_out) {
    const char *st = PyBytes_AS_STRING(start);
    Py_ssize_t st_len = PyBytes_GET_SIZE(start);
    const char *sp1 = memchr(st, ' ', (size_t)st_len);
    if (sp1 == NULL) return 0;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(st + st_len - sp1 - 1));
    if (sp2 == NULL || memchr(sp2 + 1, ' ', (size_t)(st + st_len - sp2 - 1)) != NULL) return 0;
    if (st + st_len - sp2 - 1 != 7 || memcmp(sp2 + 1, "SIP/2.0", 7) != 0 || sp2 == sp1 + 1) return 0;
    if (sp1[1] == '<' || memchr(sp1 + 1, ':', (size_t)(sp2 - sp1 - 1)) == NULL) return 0;
    *method_b = PyBytes_FromStringAndSize(st, sp1 - st);
    if (*method_b == NULL) return -1;
    *method = PyDict_GetItemWithError(methods, *method_b);
    if (*method == NULL) return PyErr_Occurred() ? -1 : 0;
    *sp1_out = sp1;
    *sp2_out = sp2;
    return 1;
}

/* -- relay.request: an in-dialog request of the usual shape, read for the relay --------------------
 * relay.request_py's result for a request relay.split takes: "METHOD SP uri SP SIP/2.0" with a
 * known method (``methods``: parser._METHODS) and a URI not in <> holding a colon, one CSeq line
 * read in C naming that method, a top Via line without a comma and not empty, one Max-Forwards
 * of ASCII digits (at most 10, value 0..255). As the tuple (start, lines, keys, body, method, uri,
 * cseq, via, max_forwards, mf_line); None for everything else, valid or not: the Python answers. */
PyDoc_STRVAR(request_doc,
"request(data, max_size, names, methods) -> (start, lines, keys, body, method, uri, cseq, via, mf, mf_line) | None\n\n"
"relay.request_py's fields for the usual request; None where the Python decides.");

static PyObject *fast_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "request(data: bytes, max_size: int, names: dict, methods: dict)");
        return NULL;
    }
    PyObject *parts = fast_split(self, args, 3);
    if (parts == NULL || parts == Py_None) return parts;
    PyObject *start = PyTuple_GET_ITEM(parts, 0), *lines = PyTuple_GET_ITEM(parts, 1);
    PyObject *keys = PyTuple_GET_ITEM(parts, 2);
    PyObject *method_b = NULL, *uri = NULL, *cseq = NULL, *top = NULL, *mf = NULL;
    PyObject *result = NULL;
    /* the request line: exactly two spaces, "SIP/2.0" last, a URI between */
    const char *sp1, *sp2;
    PyObject *method;   /* borrowed */
    int line_ok = request_line(start, args[3], &method_b, &method, &sp1, &sp2);
    if (line_ok < 0) goto error;
    if (line_ok == 0) goto none;
    uri = PyUnicode_DecodeUTF8(sp1 + 1, sp2 - sp1 - 1, "surrogateescape");
    if (uri == NULL) goto error;
    /* the one CSeq, naming this method; the first Via; the one Max-Forwards */
    Py_ssize_t count = PyList_GET_SIZE(keys), cseq_at = -1, via = -1, mf_at = -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        int bit = required_bit(key);
        if (bit == K_CSEQ) {
            if (cseq_at >= 0) goto none;
            cseq_at = i;
        } else if (bit == K_VIA) {
            if (via < 0) via = i;
        } else if (key_is(key, s_max_forwards)) {
            if (mf_at >= 0) goto none;
            mf_at = i;
        }
    }
    if (cseq_at < 0 || via < 0 || mf_at < 0) goto none;
    cseq = line_cseq(self, PyList_GET_ITEM(lines, cseq_at));
    if (cseq == NULL) goto error;
    if (cseq == Py_None) goto none;
    int same = PyUnicode_Compare(PyTuple_GET_ITEM(cseq, 1), method);
    if (same == -1 && PyErr_Occurred()) goto error;
    if (same != 0) goto none;
    PyObject *via_line = PyList_GET_ITEM(lines, via);
    if (memchr(PyBytes_AS_STRING(via_line), ',', (size_t)PyBytes_GET_SIZE(via_line)) != NULL) goto none;
    top = fast_value(self, via_line);
    if (top == NULL) goto error;
    if (top == Py_None || PyUnicode_GET_LENGTH(top) == 0) goto none;
    /* message.max_forwards_value: ASCII digits only here (str.isdigit's others: the Python) */
    mf = fast_value(self, PyList_GET_ITEM(lines, mf_at));
    if (mf == NULL) goto error;
    if (mf == Py_None || !PyUnicode_IS_ASCII(mf)) goto none;
    Py_ssize_t mf_len = PyUnicode_GET_LENGTH(mf);
    const unsigned char *m = PyUnicode_1BYTE_DATA(mf);
    if (mf_len == 0 || mf_len > 10) goto none;
    long long hops = 0;
    for (Py_ssize_t k = 0; k < mf_len; k++) {
        if (m[k] < '0' || m[k] > '9') goto none;
        hops = hops * 10 + (m[k] - '0');
    }
    if (hops > 255) goto none;
    result = Py_BuildValue("(OOOOOOOnLn)", start, lines, keys, PyTuple_GET_ITEM(parts, 3), method, uri,
                           PyTuple_GET_ITEM(cseq, 0), via, hops, mf_at);
    goto done;
none:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_DECREF(parts);
    Py_XDECREF(method_b);
    Py_XDECREF(uri);
    Py_XDECREF(cseq);
    Py_XDECREF(top);
    Py_XDECREF(mf);
    return result;
}

/* -- parser.parse: a request of the usual shape, parsed whole ------------------------------------
 * What parser.parse_py builds for a request relay.split takes (CRLF lines, none folded, names
 * learnt, one Content-Length equal to the body, Via, From, To, Call-ID and CSeq present) whose
 * request line is "METHOD SP uri SP SIP/2.0" with a known method (``methods``: parser._METHODS)
 * and a URI not in <> holding a colon, and whose one CSeq line reads in C naming that method:
 * the start line, the (key, line) pairs, the body, the method, the URI, the header index
 * (Message._idx: key -> line positions, keys in order of first line), the CSeq value text and
 * the CSeq (number, method). The same checks as the Python's on such a message all pass (so the
 * Content-Length is exact, Message._cl_ok). None for everything else, valid or not: the Python
 * then parses it, and raises its SipParseError for what is malformed. */
PyDoc_STRVAR(parsed_doc,
"parsed(data, max_size, names, methods) -> (start, lines, body, method, uri, index, cseq_text, cseq) | None\n\n"
"parser.parse_py's Request fields for the usual request; None where the Python decides.");

static PyObject *fast_parsed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "parsed(data: bytes, max_size: int, names: dict, methods: dict)");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) Py_RETURN_NONE;  /* a bytearray ...: the Python reads it */
    if (PyBytes_GET_SIZE(args[0]) >= 4 && memcmp(PyBytes_AS_STRING(args[0]), "SIP/", 4) == 0) Py_RETURN_NONE;
    PyObject *parts = fast_split(self, args, 3);
    if (parts == NULL || parts == Py_None) return parts;
    PyObject *start = PyTuple_GET_ITEM(parts, 0), *lines = PyTuple_GET_ITEM(parts, 1);
    PyObject *keys = PyTuple_GET_ITEM(parts, 2);
    PyObject *method_b = NULL, *uri = NULL, *text = NULL, *cseq = NULL, *pairs = NULL, *index = NULL;
    PyObject *result = NULL;
    /* the request line: exactly two spaces, "SIP/2.0" last, a URI between */
    const char *sp1, *sp2;
    PyObject *method;   /* borrowed */
    int line_ok = request_line(start, args[3], &method_b, &method, &sp1, &sp2);
    if (line_ok < 0) goto error;
    if (line_ok == 0) goto none;
    /* the one CSeq line, naming this method */
    Py_ssize_t count = PyList_GET_SIZE(keys), cseq_at = -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (required_bit(PyList_GET_ITEM(keys, i)) == K_CSEQ) {
            if (cseq_at >= 0) goto none;
            cseq_at = i;
        }
    }
    if (cseq_at < 0) goto none;
    text = fast_value(self, PyList_GET_ITEM(lines, cseq_at));
    if (text == NULL) goto error;
    if (text == Py_None) goto none;
    cseq = fast_cseq(self, text);
    if (cseq == NULL) goto error;
    if (cseq == Py_None) goto none;
    int same = PyUnicode_Compare(PyTuple_GET_ITEM(cseq, 1), method);
    if (same == -1 && PyErr_Occurred()) goto error;
    if (same != 0) goto none;
    uri = PyUnicode_DecodeUTF8(sp1 + 1, sp2 - sp1 - 1, "surrogateescape");
    if (uri == NULL) goto error;
    /* the (key, line) pairs and Message._idx's index */
    pairs = PyList_New(count);
    index = PyDict_New();
    if (pairs == NULL || index == NULL) goto error;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *pair = PyTuple_Pack(2, key, PyList_GET_ITEM(lines, i));
        if (pair == NULL) goto error;
        PyList_SET_ITEM(pairs, i, pair);
        PyObject *pos = PyLong_FromSsize_t(i);
        if (pos == NULL) goto error;
        PyObject *positions = PyDict_GetItemWithError(index, key);  /* borrowed */
        int failed;
        if (positions != NULL) {
            failed = PyList_Append(positions, pos);
        } else if (PyErr_Occurred()) {
            failed = 1;
        } else {
            positions = PyList_New(1);
            if (positions == NULL) {
                failed = 1;
            } else {
                PyList_SET_ITEM(positions, 0, Py_NewRef(pos));
                failed = PyDict_SetItem(index, key, positions) < 0;
                Py_DECREF(positions);
            }
        }
        Py_DECREF(pos);
        if (failed) goto error;
    }
    result = PyTuple_Pack(8, start, pairs, PyTuple_GET_ITEM(parts, 3), method, uri, index, text, cseq);
    goto done;
none:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_DECREF(parts);
    Py_XDECREF(method_b);
    Py_XDECREF(uri);
    Py_XDECREF(text);
    Py_XDECREF(cseq);
    Py_XDECREF(pairs);
    Py_XDECREF(index);
    return result;
}

/* -- steer.owner_of: the worker that owns a request's transaction (its top Via's branch) ---------
 * owner(data, workers) gives what steer.owner_of_py gives, -1 standing for its None (no branch):
 * the regex ``_BRANCH`` searched in data[:4096] (the whole match, value included, must lie
 * there: endpos cuts the subject), then ``branch_hash`` of the value's first MAXLEN bytes
 * modulo 2**32, modulo ``workers``. The regex read by hand: at every LF (the end of any line,
 * the body's included), "via" or "v" in any ASCII case, blanks (space, tab), a colon; then on
 * the rest of that line (up to the next LF) the first ';' that is followed by blanks, "branch"
 * in any case, blanks, '=', blanks and at least one byte of the value (none of ';', ',' or the
 * bytes pattern's \s: space, \t, \n, \r, \v, \f); the value runs as far as such bytes go. A line
 * whose header is Via but that holds no such branch lets the search go on at the next LF.
 * None (the Python answers) for data that is not bytes, or workers that is not an int from 1
 * to LONG_MAX (the Python's modulo then raises or counts differently). */
#define BRANCH_SCAN 4096         /* steer.owner_of_py: _BRANCH.search(data, 0, 4096) */
#define BRANCH_MAXLEN 32         /* steer.MAXLEN: bytes of the value hashed */

static int is_blank(unsigned char c) {
    return c == ' ' || c == '\t';
}

/* A byte of the branch value: the regex's [^;,\s] for bytes. */
static int is_branch_byte(unsigned char c) {
    return c != ';' && c != ',' && !is_bytes_space(c);
}

/* Whether t[i:] starts with ``word`` (lower-case ASCII letters) in any ASCII case, within t[:n). */
static int word_at(const unsigned char *t, Py_ssize_t i, Py_ssize_t n, const char *word, Py_ssize_t len) {
    if (n - i < len) return 0;
    for (Py_ssize_t k = 0; k < len; k++)
        if ((t[i + k] | 0x20) != (unsigned char)word[k]) return 0;
    return 1;
}

/* The branch value the regex finds in t[:n): its start (*len its length), or -1. */
static Py_ssize_t branch_value(const unsigned char *t, Py_ssize_t n, Py_ssize_t *len) {
    Py_ssize_t from = 0;
    const unsigned char *lf;
    while (from < n && (lf = memchr(t + from, '\n', (size_t)(n - from))) != NULL) {
        Py_ssize_t i = lf - t + 1;
        from = i;                             /* the next search: the next LF */
        if (i >= n || (t[i] | 0x20) != 'v') continue;
        i = word_at(t, i, n, "via", 3) ? i + 3 : i + 1;   /* "via" or else "v" */
        while (i < n && is_blank(t[i])) i++;
        if (i >= n || t[i] != ':') continue;
        i++;
        const unsigned char *next = memchr(t + i, '\n', (size_t)(n - i));
        Py_ssize_t end = next != NULL ? next - t : n;
        /* each ';' of the line in turn (the lazy [^\n]*?), until one leads to a value */
        const unsigned char *semi;
        while (i < end && (semi = memchr(t + i, ';', (size_t)(end - i))) != NULL) {
            Py_ssize_t k = semi - t + 1;
            i = k;
            while (k < end && is_blank(t[k])) k++;
            if (!word_at(t, k, end, "branch", 6)) continue;
            k += 6;
            while (k < end && is_blank(t[k])) k++;
            if (k >= end || t[k] != '=') continue;
            k++;
            while (k < end && is_blank(t[k])) k++;
            Py_ssize_t start = k;
            while (k < end && is_branch_byte(t[k])) k++;
            if (k > start) {
                *len = k - start;
                return start;
            }
        }
        from = end;                           /* no branch on this line: the LF that ends it */
    }
    return -1;
}

PyDoc_STRVAR(owner_doc,
"owner(data, workers) -> int | None\n\n"
"steer.owner_of_py(data, workers), -1 for its None (no branch); None for data that is not\n"
"bytes or workers that is not an int from 1 (the Python answers).");

static PyObject *fast_owner(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "owner(data: bytes, workers: int)");
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || !PyLong_Check(args[1])) Py_RETURN_NONE;
    int overflow = 0;
    long workers = PyLong_AsLongAndOverflow(args[1], &overflow);
    if (workers == -1 && PyErr_Occurred()) return NULL;
    if (overflow || workers < 1) Py_RETURN_NONE;
    const unsigned char *t = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (n > BRANCH_SCAN) n = BRANCH_SCAN;
    Py_ssize_t len = 0;
    Py_ssize_t start = branch_value(t, n, &len);
    if (start < 0) return PyLong_FromLong(-1);
    if (len > BRANCH_MAXLEN) len = BRANCH_MAXLEN;
    uint32_t h = 0;                           /* steer.branch_hash: h * 31 + byte, modulo 2**32 */
    for (Py_ssize_t k = 0; k < len; k++) h = h * 31u + t[start + k];
    return PyLong_FromUnsignedLong((unsigned long)h % (unsigned long)workers);
}

/* -- numbers._direct_py: a telephone number of the usual forms --------------------------------------
 * tn(raw, table): what numbers._direct_py reads of ``raw`` (any str: every character is read as
 * a code point, so other scripts' digits, fullwidth signs and lone surrogates are simply not
 * the ASCII characters the rule names), up to the TN it builds, which numbers._direct builds
 * from the answer: None where _direct_py gives None, else (forms, code) with forms the TN's
 * forms (forms[0] its E.164 digits) and code R_* * 2 + us for an NANP number (the reason's
 * index in numbers._NANP_REASONS, R_NONE for a valid one, and us: 1 when its NPA's region is
 * one of US_REGIONS), TN_WORLD for an E.164 number outside the NANP whose country code is
 * known, TN_WORLD + 1 for one whose country code is not. ``table`` is numbers._TABLE, a byte
 * for each three digits "000" ... "999" (T_* bits, from the NPA table and the country codes
 * Python loaded): the data stays Python's, only the reading is here.
 * The steps, in _direct_py's order: uri_span (the first '<' and the '>' after it; None without
 * that '>'); a "sip:"/"sips:" URI (case as written) up to its '@' (None without one, or when
 * the 17 characters after it are "anonymous.invalid" in any ASCII case: no other character
 * lowers to those letters), "tel:", or a bare number starting with '+' or an ASCII digit; the
 * user part up to its first ';'; a leading '+'; the rest ASCII digits and the separators of
 * numbers._SEPARATORS ("-.() \t/"), at least one digit. With '+' and a first digit other than
 * 1: E.164, 7 to 15 digits; otherwise 11 digits starting with 1, or 10 not starting with 0 or 1
 * (E.164 "1" + the 10). No form is longer than 15 digits, so more give None at once (huge input
 * costs a scan, never an allocation). The NANP checks are numbers._nanp_check's, in its order. */
#define TN_MAX 15                /* the most digits _direct_py takes (E.164) */
#define TN_WORLD 16              /* numbers._WORLD */
enum { T_US = 1, T_RESERVED = 2, T_UNASSIGNED = 4, T_COUNTRY = 8 };   /* numbers._table's bits */
enum { R_NONE, R_INVALID_NPA, R_N11_NPA, R_INVALID_NXX, R_N11_NXX, R_RESERVED_NPA, R_UNASSIGNED_NPA,
       R_FICTIONAL };            /* numbers._NANP_REASONS, in its order */

/* Whether the characters of ``raw`` (kind, data) from ``at`` to ``end`` start with ``s`` (ASCII). */
static int tn_starts(int kind, const void *data, Py_ssize_t at, Py_ssize_t end, const char *s) {
    Py_ssize_t len = (Py_ssize_t)strlen(s);
    if (end - at < len) return 0;
    for (Py_ssize_t k = 0; k < len; k++)
        if (PyUnicode_READ(kind, data, at + k) != (Py_UCS4)(unsigned char)s[k]) return 0;
    return 1;
}

/* raw[at:at + 17].lower() == "anonymous.invalid" (17 characters there, each an ASCII letter of
 * the word in either case, or its '.'). */
static int tn_anonymous_host(int kind, const void *data, Py_ssize_t at, Py_ssize_t n) {
    static const char word[] = "anonymous.invalid";
    if (n - at < 17) return 0;
    for (Py_ssize_t k = 0; k < 17; k++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, at + k);
        if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
        if (c != (Py_UCS4)word[k]) return 0;
    }
    return 1;
}

static int tn_separator(Py_UCS4 c) {
    return c == '-' || c == '.' || c == '(' || c == ')' || c == ' ' || c == '\t' || c == '/';
}

/* numbers._nanp_check of the 11 digits e (e[0] == '1'): R_* * 2 + us. */
static long tn_nanp(const char *e, const unsigned char *table) {
    const char *npa = e + 1, *nxx = e + 4;
    unsigned char t = table[(npa[0] - '0') * 100 + (npa[1] - '0') * 10 + (npa[2] - '0')];
    long reason;
    if (npa[0] <= '1') reason = R_INVALID_NPA;
    else if (npa[1] == '1' && npa[2] == '1') reason = R_N11_NPA;
    else if (nxx[0] <= '1') reason = R_INVALID_NXX;
    else if (nxx[1] == '1' && nxx[2] == '1') reason = R_N11_NXX;
    else if (t & T_RESERVED) reason = R_RESERVED_NPA;
    else if (t & T_UNASSIGNED) reason = R_UNASSIGNED_NPA;
    else if (nxx[0] == '5' && nxx[1] == '5' && nxx[2] == '5' && e[7] == '0' && e[8] == '1') reason = R_FICTIONAL;
    else reason = R_NONE;
    return reason * 2 + ((t & T_US) ? 1 : 0);
}

PyDoc_STRVAR(tn_doc,
"tn(raw, table) -> (forms, code) | None\n\n"
"numbers._direct_py(raw) as numbers._direct builds it: None for its None, else the TN's forms\n"
"and a code for the rest (sipguard/sip/_fast.c). table: numbers._TABLE (1,000 bytes).");

static PyObject *fast_tn(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyBytes_Check(args[1]) || PyBytes_GET_SIZE(args[1]) != 1000) {
        PyErr_SetString(PyExc_TypeError, "tn(raw: str, table: bytes of 1000)");
        return NULL;
    }
    PyObject *raw = args[0];
    if (PyUnicode_READY(raw) < 0) return NULL;
    const unsigned char *table = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    int kind = PyUnicode_KIND(raw);
    const void *data = PyUnicode_DATA(raw);
    Py_ssize_t n = PyUnicode_GET_LENGTH(raw);
    Py_ssize_t start = 0, end = n;                                /* uri_span */
    Py_ssize_t lt = PyUnicode_FindChar(raw, '<', 0, n, 1);
    if (lt < -1) return NULL;
    if (lt >= 0) {
        start = lt + 1;
        end = PyUnicode_FindChar(raw, '>', lt, n, 1);
        if (end < -1) return NULL;
        if (end < 0) Py_RETURN_NONE;                             /* a < without its > */
    }
    Py_ssize_t first, stop;
    if (tn_starts(kind, data, start, end, "sip:") || tn_starts(kind, data, start, end, "sips:")) {
        first = start + (PyUnicode_READ(kind, data, start + 3) == ':' ? 4 : 5);
        Py_ssize_t at = PyUnicode_FindChar(raw, '@', first, end, 1);
        if (at < -1) return NULL;
        if (at < 0 || tn_anonymous_host(kind, data, at + 1, n)) Py_RETURN_NONE;
        stop = at;
    } else if (tn_starts(kind, data, start, end, "tel:")) {
        first = start + 4;
        stop = end;
    } else if (start < end) {
        Py_UCS4 c = PyUnicode_READ(kind, data, start);
        if (c != '+' && !(c >= '0' && c <= '9')) Py_RETURN_NONE;
        first = start;
        stop = end;
    } else {
        Py_RETURN_NONE;
    }
    Py_ssize_t semi = first < stop ? PyUnicode_FindChar(raw, ';', first, stop, 1) : -1;
    if (semi < -1) return NULL;
    int plus = first < stop && PyUnicode_READ(kind, data, first) == '+';
    Py_ssize_t to = semi >= 0 ? semi : stop;
    char e164[TN_MAX + 2];                                       /* "1" + up to 15 digits */
    char *digits = e164 + 1;
    Py_ssize_t count = 0;
    for (Py_ssize_t i = first + plus; i < to; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= '0' && c <= '9') {
            if (count == TN_MAX) Py_RETURN_NONE;                 /* longer than any form taken */
            digits[count++] = (char)c;
        } else if (!tn_separator(c)) {
            Py_RETURN_NONE;
        }
    }
    if (count == 0) Py_RETURN_NONE;
    const char *e = digits;                                      /* forms[0]: the E.164 digits */
    Py_ssize_t elen = count;
    int both = 0;                                                /* and the 10 as written */
    long code;
    if (plus && digits[0] != '1') {                              /* E.164 outside the NANP */
        if (count < 7) Py_RETURN_NONE;
        unsigned char t = table[(digits[0] - '0') * 100 + (digits[1] - '0') * 10 + (digits[2] - '0')];
        code = (t & T_COUNTRY) ? TN_WORLD : TN_WORLD + 1;
    } else if (count == 11 && digits[0] == '1') {
        code = tn_nanp(digits, table);
    } else if (count == 10 && digits[0] > '1') {                 /* no 1: both readings */
        e164[0] = '1';
        e = e164;
        elen = 11;
        both = 1;
        code = tn_nanp(e164, table);
    } else {
        Py_RETURN_NONE;
    }
    PyObject *forms = PyTuple_New(both ? 2 : 1);                 /* items NULL until set: safe to drop */
    if (forms == NULL) return NULL;
    PyObject *item = ascii_str((const unsigned char *)e, elen);
    if (item == NULL) {
        Py_DECREF(forms);
        return NULL;
    }
    PyTuple_SET_ITEM(forms, 0, item);
    if (both) {
        item = ascii_str((const unsigned char *)digits, count);
        if (item == NULL) {
            Py_DECREF(forms);
            return NULL;
        }
        PyTuple_SET_ITEM(forms, 1, item);
    }
    PyObject *out = PyTuple_New(2);
    PyObject *num = PyLong_FromLong(code);
    if (out == NULL || num == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(num);
        Py_DECREF(forms);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, forms);
    PyTuple_SET_ITEM(out, 1, num);
    return out;
}

static PyMethodDef fast_methods[] = {
    {"cseq", (PyCFunction)fast_cseq, METH_O, cseq_doc},
    {"via", (PyCFunction)fast_via, METH_O, via_doc},
    {"params", (PyCFunction)fast_params, METH_O, params_doc},
    {"value", (PyCFunction)fast_value, METH_O, value_doc},
    {"response", (PyCFunction)(void (*)(void))fast_response, METH_FASTCALL, response_doc},
    {"request", (PyCFunction)(void (*)(void))fast_request, METH_FASTCALL, request_doc},
    {"parsed", (PyCFunction)(void (*)(void))fast_parsed, METH_FASTCALL, parsed_doc},
    {"values", (PyCFunction)(void (*)(void))fast_values, METH_FASTCALL, values_doc},
    {"usual_uri", (PyCFunction)fast_usual_uri, METH_O, usual_uri_doc},
    /* address.parse_name_addr, tag_of, uri_of */
    {"name_addr", (PyCFunction)fast_name_addr, METH_O, name_addr_doc},
    {"name_addr_tag", (PyCFunction)fast_name_addr_tag, METH_O, name_addr_tag_doc},
    {"name_addr_uri", (PyCFunction)fast_name_addr_uri, METH_O, name_addr_uri_doc},
    {"split", (PyCFunction)(void (*)(void))fast_split, METH_FASTCALL, split_doc},
    {"known_keys", (PyCFunction)(void (*)(void))fast_known_keys, METH_FASTCALL, known_keys_doc},
    {"owner", (PyCFunction)(void (*)(void))fast_owner, METH_FASTCALL, owner_doc},
    {"tn", (PyCFunction)(void (*)(void))fast_tn, METH_FASTCALL, tn_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT, "_fast",
    "The byte-level pieces of reading a SIP message, in C (sipguard/sip/_fast.c); Python defines them.",
    -1, fast_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void) {
    s_via = PyUnicode_InternFromString("via");
    s_from = PyUnicode_InternFromString("from");
    s_to = PyUnicode_InternFromString("to");
    s_call_id = PyUnicode_InternFromString("call-id");
    s_cseq = PyUnicode_InternFromString("cseq");
    s_content_length = PyUnicode_InternFromString("content-length");
    s_max_forwards = PyUnicode_InternFromString("max-forwards");
    if (!s_via || !s_from || !s_to || !s_call_id || !s_cseq || !s_content_length || !s_max_forwards) return NULL;
    return PyModule_Create(&fast_module);
}
