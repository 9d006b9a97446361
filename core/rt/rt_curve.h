/*
 * rt_curve: CurveZMQ keys and the process-wide security settings that rt_sock applies.
 *
 * Key files hold one Z85 key (40 characters) on a line of its own; lines starting with '#' and
 * blank lines are ignored. `eigenbatch keygen --out PREFIX` writes PREFIX.key (the secret key,
 * mode 0600) and PREFIX.pub (the public key).
 *
 * With security configured (rt_curve_configure), every tcp:// or ipc:// bind made through rt_sock
 * is a CURVE server and every such connect a CURVE client; inproc:// endpoints are never encrypted
 * (they never leave the process). A ZAP handler (a thread bound to inproc://zeromq.zap.01 in the
 * socket's context, started by the first CURVE bind in that context and ended by
 * rt_sock_ctx_destroy) admits only the public keys of the allowed list. Every failed handshake
 * (a plaintext client, a wrong server key, a key not admitted) is logged once per peer address and
 * reason (rt_curve_report). Without security everything is plain ZeroMQ (NULL mechanism).
 */
#ifndef RT_CURVE_H
#define RT_CURVE_H

#include <stddef.h>

#define RT_CURVE_Z85_LEN 40              /* characters of a Z85-encoded key */
#define RT_CURVE_KEY_BYTES 32            /* bytes of a raw key */
#define RT_CURVE_MAX_ALLOWED 1024        /* public keys in an allowed list */
#define RT_CURVE_ZAP_DOMAIN "eigenbatch" /* ZAP domain of every CURVE server socket */
#define RT_CURVE_FRAME_OVERHEAD                                                                    \
    64 /* bytes CURVE adds to a frame on the wire (33 in ZeroMQ 4.3:                               \
          command name, nonce, MAC, flags), with slack */

/* 1 when libzmq was built with CURVE (zmq_has("curve")), else 0. */
int rt_curve_available(void);

/* Write a new keypair: prefix.key (secret, mode 0600, written atomically: temporary file, fsync,
 * rename) and prefix.pub. Refuses to overwrite an existing prefix.key (RT_ERR_EXISTS). Returns 0,
 * RT_ERR_UNSUPPORTED without CURVE, or RT_ERR_IO naming the file. */
int rt_curve_keygen(const char *prefix);

/* Read the Z85 public key of a .pub file into z85 (41 bytes with the NUL). Returns 0, or
 * RT_ERR_NOTFOUND / RT_ERR_IO / RT_ERR_FORMAT (not Z85, wrong length) naming the file. */
int rt_curve_read_public(const char *path, char *z85);

/* Read a secret key file into secret_z85 and derive its public key into public_z85 (41 bytes
 * each; public_z85 may be NULL). Logs a warning when the file is readable or writable by group or
 * others. Errors as rt_curve_read_public. */
int rt_curve_read_secret(const char *path, char *secret_z85, char *public_z85);

/* Configure the security of this process. key_file: this role's secret key file (NULL or "":
 * security off, the other arguments must be unset too). server_pub: the servers' public key file
 * for connects (NULL: the role's own public key, one keypair for the cluster). allowed: comma-
 * separated .pub files and directories (every *.pub in them) whose keys servers admit (NULL: the
 * role's own public key only). Replaces any earlier setting; sockets made before keep theirs.
 * Returns 0 or a negative rt_err code naming the file or key at fault (the setting is then off). */
int rt_curve_configure(const char *key_file, const char *server_pub, const char *allowed);

/* Switch security off (rt_sock makes plain sockets again). */
void rt_curve_clear(void);

/* 1 when security is configured. */
int rt_curve_enabled(void);

/* Apply the configured CURVE options to socket sock before it binds (server=1) or connects
 * (server=0) to endpoint: nothing for inproc:// or without security. Returns 0 or RT_ERR_ZMQ
 * naming the endpoint. Used by rt_sock; the ZAP handler is rt_sock's (it owns the contexts). */
int rt_curve_apply(void *sock, const char *endpoint, int server);

/* 1 when endpoint is encrypted under the current setting (security on and tcp:// or ipc://). */
int rt_curve_wants(const char *endpoint);

/* A snapshot of the allowed public keys (raw, RT_CURVE_KEY_BYTES each) for a ZAP handler: returns
 * the count and *keys (caller owns it; free()), or a negative rt_err code. */
int rt_curve_allowed_copy(unsigned char **keys);

/* Count of failed handshakes with the CURVE servers of this process so far (every attempt). */
long rt_curve_rejected(void);

/* Called by a ZAP handler: admit or reject a CURVE client key (raw) from address. allowed/n: the
 * handler's snapshot. A rejection is reported (rt_curve_report, RT_CURVE_FAIL_CLIENT_KEY, naming
 * the key). Returns 1 to admit, 0 to reject. */
int rt_curve_check(const unsigned char *allowed, int n, const unsigned char *key,
                   const char *address);

/* Why a client's handshake with a CURVE server failed. */
enum rt_curve_fail {
    RT_CURVE_FAIL_PLAINTEXT = 0, /* the client does not speak CURVE (no keys: NULL mechanism) */
    RT_CURVE_FAIL_SERVER_KEY,    /* its HELLO does not decrypt: it holds a wrong server key */
    RT_CURVE_FAIL_CLIENT_KEY,    /* its public key is not admitted (ZAP) */
    RT_CURVE_FAIL_PROTOCOL,      /* another handshake error (detail: libzmq's code) */
    RT_CURVE_FAIL_COUNT
};

#define RT_CURVE_REPORTED_MAX 64 /* (address, reason) pairs remembered as already logged */
#define RT_CURVE_ADDR_MAX 64     /* bytes of a peer address, with the terminator */
#define RT_CURVE_PEERS 32        /* open connections a server socket's monitor remembers */
#define RT_CURVE_HOLD_S 3.0      /* how long a failure of unknown address waits for a known one */

/* Count a failed handshake and log it once per (address, reason): a warning naming the peer's
 * address ("" or NULL: unknown), the reason and detail (may be NULL). A client retries every few
 * hundred ms, so later failures of the same pair are only counted. The set of logged pairs is
 * bounded (RT_CURVE_REPORTED_MAX, the oldest forgotten first) and emptied by rt_curve_clear (and
 * so by rt_curve_configure). Returns 1 when it logged. Thread-safe. */
int rt_curve_report(const char *address, enum rt_curve_fail why, const char *detail);

/*
 * Failures that never reach the ZAP handler (a plaintext client, a wrong server key) are seen
 * only by a monitor of the server socket (zmq_socket_monitor; rt_sock runs it in the ZAP
 * handler's thread). libzmq 4.3's events do not carry the peer's address: ACCEPTED carries the
 * connection's descriptor (its address is read then with getpeername), HANDSHAKE_FAILED_* the
 * reason, and the DISCONNECTED that follows the descriptor again, which ties the two together.
 * A connection can be closed before the monitor reads its address; such a failure is held for
 * RT_CURVE_HOLD_S in case a retry of the same client shows it, and logged with an unknown address
 * only when no failure of its reason has been logged for any address.
 */
struct rt_curve_peers {
    int fd[RT_CURVE_PEERS];                       /* accepted connections' descriptors (-1: free) */
    char addr[RT_CURVE_PEERS][RT_CURVE_ADDR_MAX]; /* their peers' addresses ("": unknown) */
    int next;                                     /* slot reused next */
    int failed;                                   /* a failure waits for its DISCONNECTED */
    enum rt_curve_fail why;                       /* its reason */
    unsigned code;                                /* its libzmq code (protocol error or errno) */
    double held[RT_CURVE_FAIL_COUNT]; /* first unlogged failure of unknown address (0: none) */
    unsigned held_code[RT_CURVE_FAIL_COUNT]; /* its code */
};

/* Start with no connection known. */
void rt_curve_peers_init(struct rt_curve_peers *p);

/* One monitor event of a CURVE server socket (ZMQ_EVENT_*, its value) at time now (rt_clock). */
void rt_curve_peers_event(struct rt_curve_peers *p, int event, unsigned value, double now);

/* Log the held failures whose time is up (call every few hundred ms). */
void rt_curve_peers_tick(struct rt_curve_peers *p, double now);

/* The monitor events rt_curve_peers_event needs (for zmq_socket_monitor). */
int rt_curve_peers_events(void);

#endif
