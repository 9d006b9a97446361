/*
 * rt_sock: ZeroMQ socket helpers (see rt_sock.h).
 */
#include "rt_sock.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "rt_clock.h"
#include "rt_curve.h"
#include "rt_err.h"
#include "rt_log.h"

#define S_HWM 100000                /* messages queued per peer before ZeroMQ blocks or drops */
#define S_BUF_BYTES (4 << 20)       /* kernel socket buffers for tcp/ipc */
#define S_MMAP_THRESHOLD (32 << 20) /* glibc's largest: frames below it come from the heap */
#define S_TRIM_THRESHOLD (1L << 30) /* keep freed frame memory for the next frames */
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01" /* where libzmq asks a context's ZAP handler */
#define S_ZAP_FRAMES 8                          /* frames of a ZAP request kept (7 for CURVE) */
#define S_MON_MAX 16        /* CURVE server sockets of one context whose handshakes are monitored */
#define S_POLL_MS 100       /* the handler's tick: new monitors, held failures */
#define S_MON_EVENT_BYTES 6 /* a monitor event frame: uint16 event, uint32 value */

#define S_ZMQ_CHECK(expr, what)                                                                    \
    do {                                                                                           \
        if ((expr) != 0)                                                                           \
            return rt_err_set(RT_ERR_ZMQ, "%s: %s: %s", what, #expr, zmq_strerror(zmq_errno()));   \
    } while (0)

void rt_sock_tune_malloc(void)
{
    if (getenv("EB_NO_MALLOC_TUNING"))
        return;
    mallopt(M_MMAP_THRESHOLD, S_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, S_TRIM_THRESHOLD);
}

void *rt_sock_ctx_new(int io_threads)
{
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        rt_err_set(RT_ERR_ZMQ, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    if (zmq_ctx_set(ctx, ZMQ_IO_THREADS, io_threads < 1 ? 1 : io_threads) != 0) {
        rt_err_set(RT_ERR_ZMQ, "ZMQ_IO_THREADS=%d: %s", io_threads, zmq_strerror(zmq_errno()));
        zmq_ctx_term(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- ZAP handlers ---------------------------------------------------------------------------- */

/* A monitored CURVE server socket: its events arrive on a PAIR socket of the handler's thread. */
struct s_mon {
    void *pair;                  /* connected to the socket's monitor endpoint */
    struct rt_curve_peers peers; /* the connections it knows and their failures */
};

/* The ZAP handler of one context: a REP socket on S_ZAP_ENDPOINT served by a thread, which also
 * reads the monitor events of the context's CURVE server sockets (failed handshakes that never
 * reach ZAP: plaintext clients, wrong server keys; see rt_curve.h). */
struct s_zap {
    void *ctx;                   /* the context (borrowed) */
    void *sock;                  /* REP socket, owned by the thread once it runs */
    pthread_t thread;            /* serves sock until the context terminates */
    unsigned char *keys;         /* n raw public keys admitted (snapshot of rt_curve's list) */
    int n;                       /* keys */
    struct s_mon mon[S_MON_MAX]; /* monitors; the thread owns those below n_mon */
    int n_mon;                   /* monitors handed to the thread (guarded by s_zap_mu) */
    struct s_zap *next;          /* next handler in s_zaps */
};
static struct s_zap *s_zaps;                                 /* handlers of live contexts */
static pthread_mutex_t s_zap_mu = PTHREAD_MUTEX_INITIALIZER; /* guards s_zaps, n_mon */
static atomic_uint s_mon_seq;                                /* names monitor endpoints */

static int s_zap_send(void *sock, const void *data, size_t n, int more)
{
    return zmq_send(sock, data, n, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

/* Serve one ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism,
 * credentials; reply version, request id, status code, status text, user id, metadata. Only
 * CURVE requests with an allowed client key get 200. fr: S_ZAP_FRAMES initialised messages.
 * Returns -1 when the context is ending. */
static int s_zap_serve(struct s_zap *z, zmq_msg_t *fr)
{
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t *m = &fr[n < S_ZAP_FRAMES ? n : S_ZAP_FRAMES - 1];
        if (zmq_msg_recv(m, z->sock, 0) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return -1; /* ETERM: the context is ending */
        }
        more = zmq_msg_more(m);
        if (n < S_ZAP_FRAMES)
            n++;
    }
    const char *status = "400", *text = "unknown client key";
    char addr[RT_SOCK_ENDPOINT_MAX] = "";
    if (n >= 4) {
        size_t al = zmq_msg_size(&fr[3]);
        al = al < sizeof addr - 1 ? al : sizeof addr - 1;
        memcpy(addr, zmq_msg_data(&fr[3]), al);
        addr[al] = '\0';
    }
    if (n < 7 || zmq_msg_size(&fr[0]) != 3 || memcmp(zmq_msg_data(&fr[0]), "1.0", 3)) {
        status = "500";
        text = "malformed ZAP request";
    } else if (zmq_msg_size(&fr[5]) != 5 || memcmp(zmq_msg_data(&fr[5]), "CURVE", 5) ||
               zmq_msg_size(&fr[6]) != RT_CURVE_KEY_BYTES) {
        text = "CURVE required";
        rt_curve_report(addr, RT_CURVE_FAIL_PLAINTEXT, NULL);
    } else if (rt_curve_check(z->keys, z->n, zmq_msg_data(&fr[6]), addr)) {
        status = "200";
        text = "OK";
    }
    const void *rid = n >= 2 ? zmq_msg_data(&fr[1]) : "";
    size_t rid_len = n >= 2 ? zmq_msg_size(&fr[1]) : 0;
    if (s_zap_send(z->sock, "1.0", 3, 1) || s_zap_send(z->sock, rid, rid_len, 1) ||
        s_zap_send(z->sock, status, 3, 1) || s_zap_send(z->sock, text, strlen(text), 1) ||
        s_zap_send(z->sock, "", 0, 1) || s_zap_send(z->sock, "", 0, 0)) {
        if (zmq_errno() == ETERM)
            return -1;
        RT_WARN("curve", "ZAP reply: %s", zmq_strerror(zmq_errno()));
    }
    return 0;
}

/* Read the events waiting on a monitor (event frame, then the endpoint frame). Returns -1 when
 * the context is ending. */
static int s_mon_read(struct s_mon *mon)
{
    for (;;) {
        zmq_msg_t ev, ep;
        zmq_msg_init(&ev);
        zmq_msg_init(&ep);
        int rc = zmq_msg_recv(&ev, mon->pair, ZMQ_DONTWAIT);
        if (rc >= 0 && zmq_msg_more(&ev))
            rc = zmq_msg_recv(&ep, mon->pair, 0);
        int err = rc < 0 ? zmq_errno() : 0;
        if (!err && zmq_msg_size(&ev) == S_MON_EVENT_BYTES) {
            uint16_t event;
            uint32_t value;
            memcpy(&event, zmq_msg_data(&ev), sizeof event);
            memcpy(&value, (const uint8_t *)zmq_msg_data(&ev) + sizeof event, sizeof value);
            rt_curve_peers_event(&mon->peers, event, value, rt_clock_now());
        }
        zmq_msg_close(&ev);
        zmq_msg_close(&ep);
        if (err == EAGAIN)
            return 0;
        if (err && err != EINTR)
            return -1;
    }
}

/* The handler's thread: ZAP requests and monitor events until the context terminates. */
static void *s_zap_main(void *arg)
{
    struct s_zap *z = arg;
    zmq_msg_t fr[S_ZAP_FRAMES];
    for (int i = 0; i < S_ZAP_FRAMES; i++)
        zmq_msg_init(&fr[i]);
    int n_mon = 0;
    for (;;) {
        pthread_mutex_lock(&s_zap_mu);
        n_mon = z->n_mon;
        pthread_mutex_unlock(&s_zap_mu);
        zmq_pollitem_t items[1 + S_MON_MAX] = {{.socket = z->sock, .events = ZMQ_POLLIN}};
        for (int i = 0; i < n_mon; i++)
            items[1 + i] = (zmq_pollitem_t){.socket = z->mon[i].pair, .events = ZMQ_POLLIN};
        if (zmq_poll(items, 1 + n_mon, S_POLL_MS) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break; /* ETERM */
        }
        if ((items[0].revents & ZMQ_POLLIN) && s_zap_serve(z, fr))
            break;
        int ending = 0;
        for (int i = 0; i < n_mon && !ending; i++)
            if (items[1 + i].revents & ZMQ_POLLIN)
                ending = s_mon_read(&z->mon[i]);
        if (ending)
            break;
        double now = rt_clock_now();
        for (int i = 0; i < n_mon; i++)
            rt_curve_peers_tick(&z->mon[i].peers, now);
    }
    for (int i = 0; i < S_ZAP_FRAMES; i++)
        zmq_msg_close(&fr[i]);
    pthread_mutex_lock(&s_zap_mu);
    n_mon = z->n_mon;
    z->n_mon = S_MON_MAX; /* no more monitors: the context is ending */
    pthread_mutex_unlock(&s_zap_mu);
    for (int i = 0; i < n_mon; i++)
        zmq_close(z->mon[i].pair);
    zmq_close(z->sock);
    return NULL;
}

/* Monitor CURVE server socket s of ctx for failed handshakes: its events go to a PAIR socket
 * handed to ctx's ZAP handler (started already). Beyond S_MON_MAX sockets, or when the monitor
 * cannot be set up, the socket works unmonitored (the ZAP handler still logs key rejections). */
static void s_mon_add(void *ctx, void *s)
{
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://eb-curve-monitor-%u", atomic_fetch_add(&s_mon_seq, 1));
    pthread_mutex_lock(&s_zap_mu);
    struct s_zap *z = s_zaps;
    while (z && z->ctx != ctx)
        z = z->next;
    void *pair = NULL;
    int linger = 0;
    if (!z || z->n_mon >= S_MON_MAX)
        goto out_unlock;
    if (zmq_socket_monitor(s, ep, rt_curve_peers_events()) || !(pair = zmq_socket(ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(pair, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(pair, ep)) {
        RT_WARN("curve",
                "monitor of a CURVE server socket: %s (failed handshakes that do not "
                "reach ZAP are not logged)",
                zmq_strerror(zmq_errno()));
        zmq_socket_monitor(s, NULL, 0);
        if (pair)
            zmq_close(pair);
        goto out_unlock;
    }
    rt_curve_peers_init(&z->mon[z->n_mon].peers);
    z->mon[z->n_mon].pair =
        pair; /* the thread owns it from here (the mutex orders the hand-over) */
    z->n_mon++;
out_unlock:
    pthread_mutex_unlock(&s_zap_mu);
}

/* Start the ZAP handler of ctx unless it runs already. */
static int s_zap_start(void *ctx)
{
    int rc = RT_OK;
    pthread_mutex_lock(&s_zap_mu);
    for (struct s_zap *z = s_zaps; z; z = z->next)
        if (z->ctx == ctx)
            goto out_unlock;
    struct s_zap *z = calloc(1, sizeof *z);
    if (!z) {
        rc = rt_err_set(RT_ERR_NOMEM, "ZAP handler: out of memory");
        goto out_unlock;
    }
    z->ctx = ctx;
    int n = rt_curve_allowed_copy(&z->keys);
    if (n < 0) {
        rc = n;
        goto out_free;
    }
    z->n = n;
    int linger = 0;
    z->sock = zmq_socket(ctx, ZMQ_REP);
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_bind(z->sock, S_ZAP_ENDPOINT)) {
        rc = rt_err_set(RT_ERR_ZMQ, "ZAP handler: bind %s: %s", S_ZAP_ENDPOINT,
                        zmq_strerror(zmq_errno()));
        goto out_close;
    }
    if (pthread_create(&z->thread, NULL, s_zap_main, z)) {
        rc = rt_err_set(RT_ERR_NOMEM, "ZAP handler: cannot start its thread");
        goto out_close;
    }
    z->next = s_zaps;
    s_zaps = z;
    goto out_unlock;
out_close:
    if (z->sock)
        zmq_close(z->sock);
    free(z->keys);
out_free:
    free(z);
out_unlock:
    pthread_mutex_unlock(&s_zap_mu);
    return rc;
}

/* After ctx terminated: join its ZAP handler (which closed its socket on ETERM) and free it. */
static void s_zap_join(void *ctx)
{
    pthread_mutex_lock(&s_zap_mu);
    struct s_zap **pp = &s_zaps, *z = NULL;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->ctx == ctx) {
            z = *pp;
            *pp = z->next;
            break;
        }
    pthread_mutex_unlock(&s_zap_mu);
    if (!z)
        return;
    pthread_join(z->thread, NULL);
    free(z->keys);
    free(z);
}

void rt_sock_ctx_destroy(void **ctx_p)
{
    if (!ctx_p || !*ctx_p)
        return;
    /* a ZAP handler blocked in recv gets ETERM, closes its socket, and the term completes */
    while (zmq_ctx_term(*ctx_p) != 0 && zmq_errno() == EINTR)
        ;
    s_zap_join(*ctx_p);
    *ctx_p = NULL;
}

int rt_sock_bind(void *ctx, void *s, const char *endpoint)
{
    int rc;
    if (rt_curve_wants(endpoint)) {
        if ((rc = s_zap_start(ctx)) || (rc = rt_curve_apply(s, endpoint, 1)))
            return rc;
        s_mon_add(ctx, s);
    }
    if (zmq_bind(s, endpoint) != 0)
        return rt_err_set(RT_ERR_ZMQ, "bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
    return RT_OK;
}

int rt_sock_connect(void *s, const char *endpoint)
{
    int rc = rt_curve_apply(s, endpoint, 0);
    if (rc)
        return rc;
    if (zmq_connect(s, endpoint) != 0)
        return rt_err_set(RT_ERR_ZMQ, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
    return RT_OK;
}

/* Options shared by every socket. */
static int s_common(void *s, const char *ep)
{
    int hwm = S_HWM, buf = S_BUF_BYTES, linger = 0;
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_SNDBUF, &buf, sizeof buf), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_RCVBUF, &buf, sizeof buf), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger), ep);
    return RT_OK;
}

int rt_sock_router(void *ctx, const char *endpoint, long max_frame_bytes, void **out)
{
    *out = NULL;
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    if (!s)
        return rt_err_set(RT_ERR_ZMQ, "ROUTER socket for %s: %s", endpoint,
                          zmq_strerror(zmq_errno()));
    int rc = s_common(s, endpoint);
    if (rc)
        goto out_close;
    if (max_frame_bytes > 0) {
        /* the limit applies to the frame on the wire: CURVE adds its MESSAGE command */
        int64_t mx = max_frame_bytes + (rt_curve_wants(endpoint) ? RT_CURVE_FRAME_OVERHEAD : 0);
        if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &mx, sizeof mx) != 0) {
            rc = rt_err_set(RT_ERR_ZMQ, "%s: ZMQ_MAXMSGSIZE: %s", endpoint,
                            zmq_strerror(zmq_errno()));
            goto out_close;
        }
    }
    if ((rc = rt_sock_bind(ctx, s, endpoint)))
        goto out_close;
    *out = s;
    return RT_OK;
out_close:
    zmq_close(s);
    return rc;
}

int rt_sock_dealer(void *ctx, const char *endpoint, void **out)
{
    *out = NULL;
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s)
        return rt_err_set(RT_ERR_ZMQ, "DEALER socket for %s: %s", endpoint,
                          zmq_strerror(zmq_errno()));
    int rc = s_common(s, endpoint);
    if (rc)
        goto out_close;
    if ((rc = rt_sock_connect(s, endpoint)))
        goto out_close;
    *out = s;
    return RT_OK;
out_close:
    zmq_close(s);
    return rc;
}

void rt_sock_close(void **sock_p, int linger_ms)
{
    if (!sock_p || !*sock_p)
        return;
    zmq_setsockopt(*sock_p, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(*sock_p);
    *sock_p = NULL;
}

int rt_sock_endpoint(char *buf, size_t cap, const char *transport, const char *where, int port,
                     int index)
{
    int n;
    if (!transport || !where)
        return rt_err_set(RT_ERR_ARG, "endpoint: transport and address are required");
    if (!strcmp(transport, "inproc"))
        n = snprintf(buf, cap, "inproc://%s-%d", where, index);
    else if (!strcmp(transport, "ipc"))
        n = snprintf(buf, cap, "ipc://%s/shard-%d.sock", where, index);
    else if (!strcmp(transport, "tcp")) {
        if (port <= 0 || port + index > 65535)
            return rt_err_set(RT_ERR_ARG, "tcp endpoint: port %d+%d out of range", port, index);
        n = snprintf(buf, cap, "tcp://%s:%d", where, port + index);
    } else
        return rt_err_set(RT_ERR_ARG, "unknown transport '%s' (inproc, ipc or tcp)", transport);
    if (n < 0 || (size_t)n >= cap)
        return rt_err_set(RT_ERR_ARG, "endpoint for '%s' too long", where);
    return RT_OK;
}

void rt_sock_parts_init(struct rt_sock_parts *p)
{
    for (int i = 0; i < RT_SOCK_MAX_PARTS; i++)
        zmq_msg_init(&p->msg[i]);
    p->n = 0;
    p->total = 0;
}

void rt_sock_parts_close(struct rt_sock_parts *p)
{
    for (int i = 0; i < RT_SOCK_MAX_PARTS; i++)
        zmq_msg_close(&p->msg[i]);
    p->n = 0;
    p->total = 0;
}

void rt_sock_parts_release(struct rt_sock_parts *p)
{
    for (int i = 0; i < p->n; i++) {
        zmq_msg_close(&p->msg[i]);
        zmq_msg_init(&p->msg[i]);
    }
    p->n = 0;
    p->total = 0;
}

int rt_sock_recv(void *sock, struct rt_sock_parts *p, int flags)
{
    rt_sock_parts_release(p);
    for (;;) {
        zmq_msg_t *m;
        zmq_msg_t spill;
        int spilled = p->n >= RT_SOCK_MAX_PARTS;
        if (spilled) {
            zmq_msg_init(&spill);
            m = &spill;
        } else {
            m = &p->msg[p->n];
        }
        int rc = zmq_msg_recv(m, sock, p->total == 0 ? flags : 0);
        if (rc < 0) {
            int e = zmq_errno();
            if (spilled)
                zmq_msg_close(&spill);
            if (e == EAGAIN)
                return RT_ERR_TIMEOUT;
            if (e == ETERM || e == EINTR)
                return rt_err_set(RT_ERR_INTERRUPTED, "recv: %s", zmq_strerror(e));
            return rt_err_set(RT_ERR_ZMQ, "recv: %s", zmq_strerror(e));
        }
        p->total++;
        int more = zmq_msg_more(m);
        if (spilled)
            zmq_msg_close(&spill);
        else
            p->n++;
        if (!more)
            return RT_OK;
    }
}

/* ---- receiving protocol messages ------------------------------------------------------------ */

void rt_sock_in_init(struct rt_sock_in *in, const char *who, int routed,
                     const struct rt_wire_limits *lim)
{
    memset(in, 0, sizeof *in);
    in->who = who;
    in->routed = routed;
    if (lim)
        in->lim = *lim;
    rt_sock_parts_init(&in->parts);
}

void rt_sock_in_close(struct rt_sock_in *in)
{
    rt_sock_parts_close(&in->parts);
    in->route = NULL;
    in->params = NULL;
    in->buffers = NULL;
}

void rt_sock_in_release(struct rt_sock_in *in)
{
    rt_sock_parts_release(&in->parts);
    in->route = NULL;
    in->route_len = 0;
    in->params = NULL;
    in->buffers = NULL;
}

char *rt_sock_route_hex(const uint8_t *route, size_t len, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 3 < cap && k + 4 < RT_SOCK_ROUTE_HEX; i++)
        k += (size_t)snprintf(out + k, cap - k, "%02x", route[i]);
    out[k] = '\0';
    return out;
}

/* Decode the message in in->parts; on a malformed one, log it with its sender and return the
 * reason's code (the message is to be dropped). */
static int s_decode(struct rt_sock_in *in, const char *from)
{
    struct rt_sock_parts *p = &in->parts;
    int first = in->routed ? 1 : 0, rc = RT_OK;
    const char *why = NULL;
    in->route = NULL;
    in->route_len = 0;
    if (in->routed) {
        in->route = rt_sock_part_data(p, 0);
        in->route_len = rt_sock_part_size(p, 0);
    }
    if (in->route_len > RT_SOCK_ROUTE_MAX) {
        in->route_len = RT_SOCK_ROUTE_MAX;
        why = "routing id too long";
    } else if (p->total != p->n) {
        why = "too many frames";
    } else if (p->n <= first) {
        why = "no header frame";
    } else {
        const void *f[RT_SOCK_MAX_PARTS];
        size_t sz[RT_SOCK_MAX_PARTS];
        for (int i = first; i < p->n; i++) {
            f[i - first] = rt_sock_part_data(p, i);
            sz[i - first] = rt_sock_part_size(p, i);
        }
        rc = rt_wire_decode(f, sz, p->n - first, &in->lim, &in->m, &in->params, &in->buffers);
        if (rc == RT_OK)
            return RT_OK;
        why = rt_err_msg();
    }
    char hex[RT_SOCK_ROUTE_HEX];
    in->dropped++;
    if (in->routed)
        RT_WARN(in->who, "dropped message from %s%speer %s: %s", from ? from : "", from ? " " : "",
                rt_sock_route_hex(in->route, in->route_len, hex, sizeof hex), why);
    else
        RT_WARN(in->who, "dropped message from %s: %s", from ? from : "a peer", why);
    return rc ? rc : RT_ERR_FORMAT;
}

int rt_sock_recv_msg(void *sock, struct rt_sock_in *in, int flags, const char *from)
{
    for (;;) {
        in->params = NULL;
        in->buffers = NULL;
        int rc = rt_sock_recv(sock, &in->parts, flags);
        if (rc)
            return rc;
        if (s_decode(in, from) == RT_OK)
            return RT_OK;
    }
}

int rt_sock_recv_until(void *sock, struct rt_sock_in *in, double deadline, const char *from)
{
    for (;;) {
        int left = rt_clock_left_ms(deadline);
        if (left <= 0)
            return rt_err_set(RT_ERR_TIMEOUT, "%s: no answer from %s in time", in->who,
                              from ? from : "the peer");
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, left);
        if (n < 0 && zmq_errno() != EINTR)
            return rt_err_set(RT_ERR_ZMQ, "%s: poll %s: %s", in->who, from ? from : "a peer",
                              zmq_strerror(zmq_errno()));
        if (n <= 0)
            continue;
        int rc = rt_sock_recv_msg(sock, in, ZMQ_DONTWAIT, from);
        if (rc != RT_ERR_TIMEOUT)
            return rc; /* a message, or a failure (TIMEOUT: only malformed ones were queued) */
    }
}

int rt_sock_request(void *sock, struct rt_wire_msg *q, struct rt_sock_in *in, double deadline,
                    rt_sock_reply_fn *match, void *arg, const char *from)
{
    int rc = rt_sock_send(sock, NULL, 0, q, NULL, NULL, NULL);
    if (rc)
        return rc;
    for (;;) {
        if ((rc = rt_sock_recv_until(sock, in, deadline, from)))
            return rc;
        if (!match || match(&in->m, arg))
            return RT_OK;
    }
}

/* The counter: frames in flight plus one for the owner until rt_sock_zc_release, and what the
 * last reference frees. */
struct rt_sock_zc {
    atomic_long refs;
    void (*free_fn)(void *);
    void *bufs[RT_SOCK_ZC_BUFS];
    int n;
};

struct rt_sock_zc *rt_sock_zc_new(void)
{
    struct rt_sock_zc *zc = calloc(1, sizeof *zc);
    if (zc)
        atomic_init(&zc->refs, 1);
    return zc;
}

long rt_sock_zc_in_flight(struct rt_sock_zc *zc)
{
    return atomic_load(&zc->refs) - 1;
}

/* Drop one reference; the last frees the buffers handed over and zc. */
static void s_zc_unref(struct rt_sock_zc *zc)
{
    if (atomic_fetch_sub_explicit(&zc->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < zc->n; i++)
        if (zc->bufs[i])
            zc->free_fn(zc->bufs[i]);
    free(zc);
}

long rt_sock_zc_release(struct rt_sock_zc *zc, void (*free_fn)(void *), void *const *bufs, int n)
{
    if (n > RT_SOCK_ZC_BUFS)
        n = RT_SOCK_ZC_BUFS;
    if (!zc) {
        for (int i = 0; i < n; i++)
            if (bufs[i])
                free_fn(bufs[i]);
        return 0;
    }
    zc->free_fn = free_fn;
    for (int i = 0; i < n; i++)
        zc->bufs[i] = bufs[i];
    zc->n = n;
    long left = rt_sock_zc_in_flight(zc);
    s_zc_unref(zc); /* zc may be gone from here on */
    return left;
}

/* ZeroMQ releases a zero-copy frame (in its I/O thread, or the sender's on a failed send). */
static void s_zc_free(void *data, void *hint)
{
    (void)data;
    s_zc_unref(hint);
}

static int s_send_bytes(void *sock, const void *data, size_t n, int more, struct rt_sock_zc *zc)
{
    zmq_msg_t msg;
    int flags = more ? ZMQ_SNDMORE : 0;
    if (zc && n >= RT_SOCK_ZC_MIN_BYTES) {
        atomic_fetch_add(&zc->refs, 1);
        if (zmq_msg_init_data(&msg, (void *)data, n, s_zc_free, zc) != 0) {
            atomic_fetch_sub(&zc->refs, 1); /* the owner's reference remains */
            return rt_err_set(RT_ERR_ZMQ, "zmq_msg_init_data: %s", zmq_strerror(zmq_errno()));
        }
    } else {
        if (zmq_msg_init_size(&msg, n) != 0)
            return rt_err_set(RT_ERR_NOMEM, "zmq_msg_init_size(%zu)", n);
        if (n)
            memcpy(zmq_msg_data(&msg), data, n);
    }
    for (;;) {
        if (zmq_msg_send(&msg, sock, flags) >= 0)
            return RT_OK;
        if (zmq_errno() != EINTR)
            break;
    }
    int e = zmq_errno();
    zmq_msg_close(&msg); /* releases a zero-copy frame through s_zc_free */
    return rt_err_set(RT_ERR_ZMQ, "send: %s", zmq_strerror(e));
}

int rt_sock_send(void *sock, const void *route, size_t route_len, struct rt_wire_msg *m,
                 const float *params, const float *buffers, struct rt_sock_zc *zc)
{
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    size_t hlen = 0;
    if (m->checksum != RT_WIRE_CK_NONE && !m->sealed)
        rt_wire_seal(m, params, buffers);
    int rc = rt_wire_encode(m, hdr, sizeof hdr, &hlen);
    if (rc)
        return rc;
    int has_p = m->has_params && params, has_b = m->has_buffers && buffers;
    if (route) {
        rc = s_send_bytes(sock, route, route_len, 1, NULL);
        if (rc)
            return rc;
    }
    rc = s_send_bytes(sock, hdr, hlen, has_p || has_b, NULL);
    if (rc)
        return rc;
    if (has_p) {
        rc = s_send_bytes(sock, params, (size_t)m->params.count * sizeof(float), has_b, zc);
        if (rc)
            return rc;
    }
    if (has_b)
        rc = s_send_bytes(sock, buffers, (size_t)m->buffers.count * sizeof(float), 0, zc);
    return rc;
}

int rt_sock_send_frame(void *sock, const void *route, size_t route_len, const void *data,
                       size_t len)
{
    if (route) {
        int rc = s_send_bytes(sock, route, route_len, 1, NULL);
        if (rc)
            return rc;
    }
    return s_send_bytes(sock, data, len, 0, NULL);
}
