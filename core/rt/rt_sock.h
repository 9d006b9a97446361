/*
 * rt_sock: thin ZeroMQ helpers for the parameter-server roles: contexts, ROUTER/DEALER sockets with
 * the project's options (high-water marks, linger, size limits), endpoint strings for the three
 * transports, multipart receive into reusable messages, and sends of one protocol message (header
 * + raw float frames) with zero-copy payloads.
 *
 * Zero-copy: payload frames are handed to ZeroMQ with zmq_msg_init_data and no copy; the memory
 * must stay valid and unchanged until ZeroMQ releases it. A struct rt_sock_zc counts those messages
 * in flight, and at the end takes the owner's buffers over (rt_sock_zc_release): they are freed
 * with the last frame ZeroMQ releases, which for a peer that never reads is when the context ends,
 * so no owner frees memory ZeroMQ still holds and none leaks it.
 *
 * Receiving: rt_sock_recv_msg receives a whole message, gathers its frames and decodes them
 * (rt_wire_decode) into a struct rt_sock_in; a malformed message is logged with its sender and
 * dropped there, so that callers only see valid ones. rt_sock_recv_until waits for one up to a
 * deadline, and rt_sock_request sends a request and waits for its reply up to a deadline.
 *
 * Security: when rt_curve_configure has set keys, rt_sock_bind (and rt_sock_router) makes every
 * tcp:// or ipc:// bind a CURVE server and rt_sock_connect (rt_sock_dealer) every such connect a
 * CURVE client; inproc:// is never encrypted. The first CURVE bind in a context starts that
 * context's ZAP handler thread (rt_curve.h), which rt_sock_ctx_destroy ends: contexts that bind
 * with keys must be made by rt_sock_ctx_new and ended by rt_sock_ctx_destroy.
 */
#ifndef RT_SOCK_H
#define RT_SOCK_H

#include <stdatomic.h>
#include <stddef.h>
#include <zmq.h>

#include "rt_wire.h"

#define RT_SOCK_MAX_PARTS 5        /* routing id + header + payloads, plus one to detect extra */
#define RT_SOCK_ROUTE_MAX 256      /* bytes of a ZeroMQ routing id */
#define RT_SOCK_ZC_MIN_BYTES 65536 /* smaller payloads are copied, not worth the bookkeeping */
#define RT_SOCK_ENDPOINT_MAX 256   /* bytes of an endpoint string */
#define RT_SOCK_ROUTE_HEX 28       /* bytes of a routing id shown in logs (24 hex digits, NUL) */

/* Zero-copy payload frames still owned by ZeroMQ, and the buffers they point into (opaque). */
struct rt_sock_zc;
#define RT_SOCK_ZC_BUFS 4 /* buffers one rt_sock_zc_release hands over at most */

/* A received multipart message; the zmq_msg_t are reused from message to message. */
struct rt_sock_parts {
    zmq_msg_t msg[RT_SOCK_MAX_PARTS]; /* the frames, valid until the next recv or close */
    int n;                            /* frames stored */
    int total;                        /* frames the message had (> n when it had too many) */
};

/* A received protocol message and how to receive the next one. The first three fields are set by
 * rt_sock_in_init and read-only afterwards (lim may be changed between receives); the others
 * describe the last message received and are valid until the next receive, release or close. */
struct rt_sock_in {
    const char *who;            /* the receiver, tag of its logs (borrowed, must outlive it) */
    int routed;                 /* ROUTER socket: the first frame is the sender's routing id */
    struct rt_wire_limits lim;  /* decode limits (slices must fit, largest payload frame) */
    struct rt_sock_parts parts; /* the frames */
    const uint8_t *route;       /* routed: the sender's routing id (in parts), else NULL */
    size_t route_len;           /* bytes of route */
    struct rt_wire_msg m;       /* the decoded header */
    const void *params;         /* parameter payload (in parts, maybe unaligned), or NULL */
    const void *buffers;        /* buffer payload (in parts, maybe unaligned), or NULL */
    uint64_t dropped;           /* malformed messages dropped so far */
};

/* Process-wide malloc tuning for the roles: ZeroMQ allocates every received frame; with glibc's
 * defaults, megabyte frames are mmapped or trimmed away and every step pays page faults on them.
 * Raises the mmap and trim thresholds so that freed frames are reused. EB_NO_MALLOC_TUNING in the
 * environment turns it off. Call once at start-up, before the roles run. */
void rt_sock_tune_malloc(void);

/* New ZeroMQ context with `io_threads` I/O threads (>= 1). Returns NULL on failure (detail set).
 * Caller owns it; free with rt_sock_ctx_destroy. */
void *rt_sock_ctx_new(int io_threads);

/* Terminate a context (all its sockets must be closed), join its ZAP handler if it has one, and
 * null the pointer; accepts NULL. */
void rt_sock_ctx_destroy(void **ctx_p);

/* Bind socket s (of context ctx) to endpoint; with security configured and a tcp/ipc endpoint, as
 * a CURVE server whose clients the context's ZAP handler checks (started here when needed).
 * Returns 0 or RT_ERR_ZMQ naming the endpoint. */
int rt_sock_bind(void *ctx, void *s, const char *endpoint);

/* Connect socket s to endpoint; with security configured and a tcp/ipc endpoint, as a CURVE
 * client of the servers' public key. Returns 0 or RT_ERR_ZMQ naming the endpoint. */
int rt_sock_connect(void *s, const char *endpoint);

/* A ROUTER bound to `endpoint`. max_frame_bytes > 0 makes the transport drop peers that send a
 * frame larger than that (tcp/ipc only; encrypted, plus RT_CURVE_FRAME_OVERHEAD). Returns 0 and
 * *out, or RT_ERR_ZMQ naming the endpoint. Caller owns *out; close with rt_sock_close. */
int rt_sock_router(void *ctx, const char *endpoint, long max_frame_bytes, void **out);

/* A DEALER connected to `endpoint`. Caller owns *out; close with rt_sock_close. */
int rt_sock_dealer(void *ctx, const char *endpoint, void **out);

/* Close a socket with the given linger (ms) and null the pointer; accepts NULL. */
void rt_sock_close(void **sock_p, int linger_ms);

/* Endpoint of role `index` (shard number) for a transport:
 *   inproc: inproc://<where>-<index>      (where: a name unique in the process)
 *   ipc:    ipc://<where>/shard-<index>.sock   (where: a directory)
 *   tcp:    tcp://<where>:<port+index>    (where: host or address)
 * Returns 0 or RT_ERR_ARG for an unknown transport / too long a string. */
int rt_sock_endpoint(char *buf, size_t cap, const char *transport, const char *where, int port,
                     int index);

void rt_sock_parts_init(struct rt_sock_parts *p);
void rt_sock_parts_close(struct rt_sock_parts *p);

/* Release the frames of the last received message now (large payloads go back to ZeroMQ and
 * zero-copy senders see their frames released). */
void rt_sock_parts_release(struct rt_sock_parts *p);

/* Receive one whole multipart message (flags: 0 or ZMQ_DONTWAIT). Frames beyond RT_SOCK_MAX_PARTS
 * are read and discarded (p->total counts them). Returns 0, RT_ERR_TIMEOUT when nothing was
 * available (EAGAIN), RT_ERR_INTERRUPTED on context termination, RT_ERR_ZMQ otherwise. */
int rt_sock_recv(void *sock, struct rt_sock_parts *p, int flags);

static inline const void *rt_sock_part_data(struct rt_sock_parts *p, int i)
{
    return zmq_msg_data(&p->msg[i]);
}
static inline size_t rt_sock_part_size(struct rt_sock_parts *p, int i)
{
    return zmq_msg_size(&p->msg[i]);
}

/* Prepare a receiver: who names it in logs (borrowed), routed says whether its socket is a
 * ROUTER, lim (NULL: all zero, no payloads accepted) is copied. Close with rt_sock_in_close. */
void rt_sock_in_init(struct rt_sock_in *in, const char *who, int routed,
                     const struct rt_wire_limits *lim);

/* Free the frames; the receiver may be initialised again. Safe after rt_sock_in_init only. */
void rt_sock_in_close(struct rt_sock_in *in);

/* Release the last message's frames now (large payloads go back to ZeroMQ, zero-copy senders
 * see their frames released); in->m stays, route and payloads become NULL. */
void rt_sock_in_release(struct rt_sock_in *in);

/* Receive one whole message on sock and decode it (flags: 0, or ZMQ_DONTWAIT not to wait). A
 * malformed message (too many frames, no header, a routing id too long, a header or payload that
 * rt_wire_decode refuses) is logged as "dropped message from <from> (peer <routing id>): <why>",
 * counted in in->dropped and dropped, and the next one is read. from names the peer in that log
 * (NULL on a ROUTER: the routing id does). Returns 0 with the message in *in, RT_ERR_TIMEOUT when
 * nothing (more) is queued (ZMQ_DONTWAIT), RT_ERR_INTERRUPTED on context termination, or
 * RT_ERR_ZMQ. */
int rt_sock_recv_msg(void *sock, struct rt_sock_in *in, int flags, const char *from);

/* rt_sock_recv_msg that waits for a message up to `deadline` (seconds on rt_clock_now's clock),
 * polling sock; a signal resumes the wait. Returns 0 with the message in *in, RT_ERR_TIMEOUT
 * once the deadline has passed (detail names from), or a receive error. */
int rt_sock_recv_until(void *sock, struct rt_sock_in *in, double deadline, const char *from);

/* Whether a reply answers the request: 1 takes it, 0 skips it (an answer to an earlier request
 * that gave up, a message of another kind). arg is rt_sock_request's. */
typedef int rt_sock_reply_fn(const struct rt_wire_msg *reply, void *arg);

/* Send request q on sock (a DEALER: no routing id) and wait up to `deadline` (seconds on
 * rt_clock_now's clock) for its reply: the first message that match takes (match NULL: the first
 * message). Skipped messages are ignored; malformed ones are logged with from and dropped. Returns
 * 0 with the reply in *in, RT_ERR_TIMEOUT once the deadline has passed, or a send or receive
 * error. */
int rt_sock_request(void *sock, struct rt_wire_msg *q, struct rt_sock_in *in, double deadline,
                    rt_sock_reply_fn *match, void *arg, const char *from);

/* A routing id for logs: hex digits of its first bytes (at most RT_SOCK_ROUTE_HEX - 4 digits)
 * into out (cap >= 1 bytes, NUL-terminated). Returns out. */
char *rt_sock_route_hex(const uint8_t *route, size_t len, char *out, size_t cap);

/* Send one protocol message: [route] header [params] [buffers]. route (may be NULL) is the ROUTER
 * routing id of the peer. The header is encoded and, when m->checksum is set and m->sealed is not,
 * the payload checksums are computed here. Payloads of at least RT_SOCK_ZC_MIN_BYTES go zero-copy
 * when zc != NULL (they must stay valid until zc's frames in flight drop back); others are copied.
 * Returns 0 or RT_ERR_ZMQ / RT_ERR_TOOBIG. */
int rt_sock_send(void *sock, const void *route, size_t route_len, struct rt_wire_msg *m,
                 const float *params, const float *buffers, struct rt_sock_zc *zc);

/* Send one ready-encoded frame (a STATUS reply, rt_wire_status.h), after the routing id `route`
 * when not NULL. len bytes of data are copied. Returns 0 or RT_ERR_ZMQ. */
int rt_sock_send_frame(void *sock, const void *route, size_t route_len, const void *data,
                       size_t len);

/* A counter of zero-copy frames for one owner (NULL when out of memory). */
struct rt_sock_zc *rt_sock_zc_new(void);
/* Frames of zc that ZeroMQ still holds. */
long rt_sock_zc_in_flight(struct rt_sock_zc *zc);
/* The owner's end of zc: bufs[0..n) (n <= RT_SOCK_ZC_BUFS; NULL entries skipped) are freed with
 * free_fn once ZeroMQ has released every frame of zc, at once when none is in flight, and zc with
 * them. Returns the frames still in flight then. zc NULL: the buffers are freed now. */
long rt_sock_zc_release(struct rt_sock_zc *zc, void (*free_fn)(void *), void *const *bufs, int n);

#endif
