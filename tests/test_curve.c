/*
 * test_curve: CurveZMQ security (rt_curve, rt_sock). A keypair written by keygen reads back (the
 * secret file mode 0600, never overwritten); bad key files are errors naming the file; two rt_sock
 * peers exchange messages over encrypted tcp loopback; a client whose key is not allowed is
 * rejected by the ZAP handler (nothing delivered, the rejection logged with its address and key)
 * and so is a client without keys, while an allowed client still gets through; failed handshakes
 * (a plaintext client, a wrong server key, a key not admitted) are each logged once per address;
 * `eigenbatch launch` over tcp with keys trains to the same weights as without, also with the eigen
 * service (ABS, decisions over PUB/SUB and the query socket, all encrypted); a missing key file
 * stops it with a message naming the file. Skipped (77) when libzmq has no CURVE.
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rt_curve.h"
#include "rt_err.h"
#include "rt_sock.h"

#define S_PATH 4200
#define S_RECV_MS 400       /* how long "nothing delivered" waits */
#define S_HANDSHAKE_MS 5000 /* upper bound for a handshake or a ZAP rejection on loopback */
#define S_RETRY_MS 1500     /* how long a refused client keeps retrying in the logging test */
#define S_GREETING 64       /* bytes of a ZMTP 3.0 greeting */

/* ---- helpers ------------------------------------------------------------------------------ */

static char *s_dir;
static char s_a[S_PATH], s_b[S_PATH]; /* key prefixes: a is the cluster's, b an outsider's */

static void s_path(char *buf, const char *prefix, const char *ext)
{
    snprintf(buf, S_PATH, "%.4000s%.8s", prefix, ext);
}

static void s_write(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* The whole file, NUL-terminated; *len (may be NULL) its size. Caller frees. */
static char *s_read(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

static char *s_slurp(const char *path)
{
    return s_read(path, NULL);
}

/* stderr into a file while a block runs (rt_log writes to fd 2). */
static int s_saved_fd = -1;
static void s_capture_begin(const char *path)
{
    fflush(stderr);
    s_saved_fd = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0 && s_saved_fd >= 0);
    assert_true(dup2(fd, 2) >= 0);
    close(fd);
}
static void s_capture_end(void)
{
    fflush(stderr);
    dup2(s_saved_fd, 2);
    close(s_saved_fd);
    s_saved_fd = -1;
}

static void s_tcp(char *ep, int port)
{
    snprintf(ep, RT_SOCK_ENDPOINT_MAX, "tcp://127.0.0.1:%d", port);
}

static void s_timeouts(void *sock, int ms)
{
    assert_int_equal(zmq_setsockopt(sock, ZMQ_RCVTIMEO, &ms, sizeof ms), 0);
    assert_int_equal(zmq_setsockopt(sock, ZMQ_SNDTIMEO, &ms, sizeof ms), 0);
}

static int s_mechanism(void *sock)
{
    int m = -1;
    size_t len = sizeof m;
    assert_int_equal(zmq_getsockopt(sock, ZMQ_MECHANISM, &m, &len), 0);
    return m;
}

/* The ROUTER receives [routing id]["text"] within ms; returns 1, or 0 when nothing came. The
 * routing id goes into id/id_len. */
static int s_router_recv(void *router, const char *text, int ms, char *id, int *id_len)
{
    s_timeouts(router, ms);
    int n = zmq_recv(router, id, RT_SOCK_ROUTE_MAX, 0);
    if (n < 0) {
        assert_int_equal(zmq_errno(), EAGAIN);
        return 0;
    }
    *id_len = n;
    char buf[64];
    int m = zmq_recv(router, buf, sizeof buf - 1, 0);
    assert_true(m >= 0);
    buf[m] = '\0';
    assert_string_equal(buf, text);
    return 1;
}

/* configure a keyed setting: own key, servers' key, allowed list (NULLs: defaults) */
static void s_config(const char *key_prefix, const char *server_prefix, const char *allowed)
{
    char key[S_PATH], srv[S_PATH];
    s_path(key, key_prefix, ".key");
    if (server_prefix)
        s_path(srv, server_prefix, ".pub");
    int rc = rt_curve_configure(key, server_prefix ? srv : NULL, allowed);
    if (rc)
        fail_msg("rt_curve_configure: %s", rt_err_msg());
    assert_true(rt_curve_enabled());
}

static int s_setup(void **state)
{
    (void)state;
    s_dir = eb_test_tmpdir();
    snprintf(s_a, sizeof s_a, "%s/a", s_dir);
    snprintf(s_b, sizeof s_b, "%s/b", s_dir);
    if (rt_curve_keygen(s_a) || rt_curve_keygen(s_b)) {
        fprintf(stderr, "keygen: %s\n", rt_err_msg());
        return -1;
    }
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    rt_curve_clear();
    eb_test_rmtree(s_dir);
    free(s_dir);
    return 0;
}

/* ---- keys --------------------------------------------------------------------------------- */

static void test_keygen_round_trip(void **state)
{
    (void)state;
    char key[S_PATH], pub[S_PATH];
    s_path(key, s_a, ".key");
    s_path(pub, s_a, ".pub");
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char sec_z[RT_CURVE_Z85_LEN + 1], derived[RT_CURVE_Z85_LEN + 1], pub_z[RT_CURVE_Z85_LEN + 1];
    assert_int_equal(rt_curve_read_secret(key, sec_z, derived), 0);
    assert_int_equal(rt_curve_read_public(pub, pub_z), 0);
    assert_int_equal(strlen(pub_z), RT_CURVE_Z85_LEN);
    assert_string_equal(derived, pub_z);
    /* b is another key */
    char pub_b[S_PATH], b_z[RT_CURVE_Z85_LEN + 1];
    s_path(pub_b, s_b, ".pub");
    assert_int_equal(rt_curve_read_public(pub_b, b_z), 0);
    assert_string_not_equal(b_z, pub_z);
    /* never overwritten; the key stays what it was */
    assert_int_equal(rt_curve_keygen(s_a), RT_ERR_EXISTS);
    assert_non_null(strstr(rt_err_msg(), key));
    char again[RT_CURVE_Z85_LEN + 1];
    assert_int_equal(rt_curve_read_secret(key, again, NULL), 0);
    assert_string_equal(again, sec_z);
    /* the command writes the same format */
    char cmd[3 * S_PATH], prefix[S_PATH], cpub[S_PATH], ckey[S_PATH];
    snprintf(prefix, sizeof prefix, "%s/keys/new/cmd", s_dir); /* directories made as needed */
    snprintf(cmd, sizeof cmd, "'%s' keygen --out '%s' >/dev/null", eb_test_binary(), prefix);
    assert_int_equal(system(cmd), 0);
    s_path(ckey, prefix, ".key");
    s_path(cpub, prefix, ".pub");
    assert_int_equal(rt_curve_read_secret(ckey, sec_z, derived), 0);
    assert_int_equal(rt_curve_read_public(cpub, pub_z), 0);
    assert_string_equal(derived, pub_z);
    int st2 = system(cmd);
    assert_true(WIFEXITED(st2) && WEXITSTATUS(st2) == 1);
}

static void test_bad_key_files(void **state)
{
    (void)state;
    char path[S_PATH], z[RT_CURVE_Z85_LEN + 1];
    snprintf(path, sizeof path, "%s/missing.pub", s_dir);
    assert_int_equal(rt_curve_read_public(path, z), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), path));
    snprintf(path, sizeof path, "%s/short.pub", s_dir);
    s_write(path, "# a comment\nabcdef\n", 0644);
    assert_int_equal(rt_curve_read_public(path, z), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), path));
    assert_non_null(strstr(rt_err_msg(), "6 characters"));
    snprintf(path, sizeof path, "%s/badchar.pub", s_dir);
    s_write(path, "0123456789012345678901234567890123456 89\n", 0644);
    assert_int_equal(rt_curve_read_public(path, z), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "not Z85"));
    snprintf(path, sizeof path, "%s/empty.pub", s_dir);
    s_write(path, "# nothing\n\n", 0644);
    assert_int_equal(rt_curve_read_public(path, z), RT_ERR_FORMAT);
    /* configure: the culprit is named, and security stays off */
    char key[S_PATH];
    s_path(key, s_a, ".key");
    assert_int_equal(rt_curve_configure(key, NULL, path), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), path));
    assert_false(rt_curve_enabled());
    snprintf(path, sizeof path, "%s/no-such-dir", s_dir);
    assert_int_equal(rt_curve_configure(key, NULL, path), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), path));
    assert_int_not_equal(rt_curve_configure(NULL, NULL, path), 0); /* allowed without a key */
    /* a directory without .pub files */
    snprintf(path, sizeof path, "%s/emptydir", s_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(rt_curve_configure(key, NULL, path), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), "no .pub file"));
    /* a secret key readable by others: a warning naming it, still usable */
    char loose[S_PATH], log[S_PATH];
    snprintf(loose, sizeof loose, "%s/loose.key", s_dir);
    snprintf(log, sizeof log, "%s/loose.log", s_dir);
    char *text = s_slurp(key);
    s_write(loose, text, 0644);
    free(text);
    s_capture_begin(log);
    int rc = rt_curve_read_secret(loose, z, NULL);
    s_capture_end();
    assert_int_equal(rc, 0);
    text = s_slurp(log);
    assert_non_null(strstr(text, loose));
    assert_non_null(strstr(text, "chmod 600"));
    free(text);
    rt_curve_clear();
}

/* ---- sockets ------------------------------------------------------------------------------ */

static void test_encrypted_exchange(void **state)
{
    (void)state;
    char allowed[S_PATH];
    s_path(allowed, s_a, ".pub");
    s_config(s_a, NULL, allowed);
    void *ctx = rt_sock_ctx_new(1);
    assert_non_null(ctx);
    char ep[RT_SOCK_ENDPOINT_MAX];
    s_tcp(ep, eb_test_free_port());
    void *router = NULL, *dealer = NULL;
    assert_int_equal(rt_sock_router(ctx, ep, 0, &router), 0);
    assert_int_equal(rt_sock_dealer(ctx, ep, &dealer), 0);
    assert_int_equal(s_mechanism(router), ZMQ_CURVE);
    assert_int_equal(s_mechanism(dealer), ZMQ_CURVE);
    s_timeouts(dealer, S_HANDSHAKE_MS);
    assert_int_equal(zmq_send(dealer, "ping", 4, 0), 4);
    char id[RT_SOCK_ROUTE_MAX];
    int id_len = 0;
    assert_true(s_router_recv(router, "ping", S_HANDSHAKE_MS, id, &id_len));
    assert_int_equal(zmq_send(router, id, (size_t)id_len, ZMQ_SNDMORE), id_len);
    assert_int_equal(zmq_send(router, "pong", 4, 0), 4);
    char buf[8] = {0};
    assert_int_equal(zmq_recv(dealer, buf, sizeof buf - 1, 0), 4);
    assert_string_equal(buf, "pong");
    /* inproc is never encrypted */
    void *r2 = NULL, *d2 = NULL;
    assert_int_equal(rt_sock_router(ctx, "inproc://curve-test", 0, &r2), 0);
    assert_int_equal(rt_sock_dealer(ctx, "inproc://curve-test", &d2), 0);
    assert_int_equal(s_mechanism(r2), ZMQ_NULL);
    rt_sock_close(&d2, 0);
    rt_sock_close(&r2, 0);
    rt_sock_close(&dealer, 0);
    rt_sock_close(&router, 0);
    rt_sock_ctx_destroy(&ctx);
    assert_null(ctx);
    rt_curve_clear();
}

/* A server (key a, admits a) in its own context and an intruder in a second one: b's keys
 * (with_keys) or none. Nothing of the intruder's is delivered; an allowed client still gets
 * through afterwards. */
static void s_rejection(int with_keys)
{
    char allowed[S_PATH], log[S_PATH];
    s_path(allowed, s_a, ".pub");
    snprintf(log, sizeof log, "%s/reject-%d.log", s_dir, with_keys);
    s_config(s_a, NULL, allowed);
    void *sctx = rt_sock_ctx_new(1), *cctx = rt_sock_ctx_new(1);
    assert_non_null(sctx);
    assert_non_null(cctx);
    char ep[RT_SOCK_ENDPOINT_MAX];
    s_tcp(ep, eb_test_free_port());
    void *router = NULL, *intruder = NULL, *friend = NULL;
    assert_int_equal(rt_sock_router(sctx, ep, 0, &router), 0);
    /* the intruder: b's keys (it knows the server's public key), or no keys at all */
    if (with_keys)
        s_config(s_b, s_a, NULL);
    else
        rt_curve_clear();
    long before = rt_curve_rejected();
    s_capture_begin(log);
    assert_int_equal(rt_sock_dealer(cctx, ep, &intruder), 0);
    s_timeouts(intruder, S_RECV_MS);
    assert_int_equal(zmq_send(intruder, "intrusion", 9, 0), 9);
    if (with_keys)
        for (int ms = 0; rt_curve_rejected() == before && ms < S_HANDSHAKE_MS; ms += 10)
            usleep(10000);
    char id[RT_SOCK_ROUTE_MAX];
    int id_len = 0, got = s_router_recv(router, "intrusion", S_RECV_MS, id, &id_len);
    s_capture_end();
    assert_false(got);
    if (with_keys) {
        assert_true(rt_curve_rejected() > before);
        char b_pub[S_PATH], b_z[RT_CURVE_Z85_LEN + 1];
        s_path(b_pub, s_b, ".pub");
        assert_int_equal(rt_curve_read_public(b_pub, b_z), 0);
        char *text = s_slurp(log);
        assert_non_null(strstr(text, "rejected peer 127.0.0.1"));
        assert_non_null(strstr(text, b_z));
        free(text);
    } else {
        assert_int_equal(s_mechanism(intruder), ZMQ_NULL);
    }
    /* an allowed client on the same server gets through */
    s_config(s_a, NULL, allowed);
    assert_int_equal(rt_sock_dealer(cctx, ep, &friend), 0);
    s_timeouts(friend, S_HANDSHAKE_MS);
    assert_int_equal(zmq_send(friend, "hello", 5, 0), 5);
    assert_true(s_router_recv(router, "hello", S_HANDSHAKE_MS, id, &id_len));
    /* and the intruder's message never arrives */
    assert_false(s_router_recv(router, "intrusion", S_RECV_MS / 2, id, &id_len));
    rt_sock_close(&friend, 0);
    rt_sock_close(&intruder, 0);
    rt_sock_close(&router, 0);
    rt_sock_ctx_destroy(&cctx);
    rt_sock_ctx_destroy(&sctx);
    rt_curve_clear();
}

/* ---- failed handshakes: logged once per address and reason ---------------------------------- */

/* A plaintext (NULL mechanism) ZMTP 3.0 client on a raw TCP socket: it connects, waits a little
 * (so that the server's monitor reads its address before the handshake fails), sends its greeting
 * and waits until the server hangs up. */
static void s_plaintext_attempt(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    usleep(200 * 1000);
    unsigned char g[S_GREETING] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
    assert_int_equal(send(fd, g, sizeof g, MSG_NOSIGNAL), (ssize_t)sizeof g);
    struct timeval tv = {.tv_sec = S_HANDSHAKE_MS / 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    char buf[256];
    while (recv(fd, buf, sizeof buf, 0) > 0)
        ;
    close(fd);
}

/* A CURVE client with `own`'s keypair that takes server_pub's key for the server's: it tries (and
 * retries) for S_RETRY_MS. The keys are set on the socket directly, not through rt_curve_configure,
 * which would reset the server's record of what it logged. */
static void s_curve_attempt(void *ctx, const char *ep, const char *own, const char *server)
{
    char path[S_PATH], sec[RT_CURVE_Z85_LEN + 1], pub[RT_CURVE_Z85_LEN + 1];
    char srv[RT_CURVE_Z85_LEN + 1];
    s_path(path, own, ".key");
    assert_int_equal(rt_curve_read_secret(path, sec, pub), 0);
    s_path(path, server, ".pub");
    assert_int_equal(rt_curve_read_public(path, srv), 0);
    void *c = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(c);
    int linger = 0;
    assert_int_equal(zmq_setsockopt(c, ZMQ_LINGER, &linger, sizeof linger), 0);
    assert_int_equal(zmq_setsockopt(c, ZMQ_CURVE_SERVERKEY, srv, sizeof srv), 0);
    assert_int_equal(zmq_setsockopt(c, ZMQ_CURVE_PUBLICKEY, pub, sizeof pub), 0);
    assert_int_equal(zmq_setsockopt(c, ZMQ_CURVE_SECRETKEY, sec, sizeof sec), 0);
    assert_int_equal(zmq_connect(c, ep), 0);
    usleep(S_RETRY_MS * 1000);
    assert_int_equal(zmq_close(c), 0);
}

/* Lines of text that contain both a and b. */
static int s_lines_with(const char *text, const char *a, const char *b)
{
    int n = 0;
    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), l);
        n += strstr(line, a) && strstr(line, b);
        l += len + (e ? 1 : 0);
    }
    return n;
}

/* A plaintext client, a client holding a wrong server key and a client whose key is not admitted
 * each produce exactly one warning naming the reason (and the address, 127.0.0.1), however often
 * they try: each tries twice, and the CURVE clients retry on their own meanwhile. */
static void test_handshake_failures_logged_once(void **state)
{
    (void)state;
    char allowed[S_PATH], log[S_PATH];
    s_path(allowed, s_a, ".pub");
    snprintf(log, sizeof log, "%s/handshakes.log", s_dir);
    s_config(s_a, NULL, allowed);
    void *sctx = rt_sock_ctx_new(1), *cctx = zmq_ctx_new();
    assert_non_null(sctx);
    assert_non_null(cctx);
    char ep[RT_SOCK_ENDPOINT_MAX];
    int port = eb_test_free_port();
    s_tcp(ep, port);
    void *router = NULL;
    assert_int_equal(rt_sock_router(sctx, ep, 0, &router), 0);
    long before = rt_curve_rejected();
    s_capture_begin(log);
    for (int i = 0; i < 2; i++) {
        s_plaintext_attempt(port);
        s_curve_attempt(cctx, ep, s_b, s_b); /* b's own key taken for the server's */
        s_curve_attempt(cctx, ep, s_b, s_a); /* the right server key, but b is not admitted */
    }
    usleep((useconds_t)(RT_CURVE_HOLD_S * 1e6) + 500 * 1000); /* failures held for an address */
    s_capture_end();
    char *text = s_slurp(log);
    fprintf(stderr, "%s", text);
    assert_int_equal(s_lines_with(text, "rejected peer", "plaintext client"), 1);
    assert_int_equal(s_lines_with(text, "rejected peer 127.0.0.1", "plaintext client"), 1);
    assert_int_equal(s_lines_with(text, "rejected peer", "wrong server key"), 1);
    assert_int_equal(s_lines_with(text, "rejected peer", "client key not admitted"), 1);
    assert_int_equal(s_lines_with(text, "rejected peer 127.0.0.1", "client key not admitted"), 1);
    assert_int_equal(s_lines_with(text, "rejected peer", ""), 3);
    assert_true(rt_curve_rejected() - before >= 6); /* every attempt counted */
    free(text);
    rt_sock_close(&router, 0);
    assert_int_equal(zmq_ctx_term(cctx), 0);
    rt_sock_ctx_destroy(&sctx);
    rt_curve_clear();
}

static void test_unknown_key_rejected(void **state)
{
    (void)state;
    s_rejection(1);
}

static void test_client_without_keys_rejected(void **state)
{
    (void)state;
    s_rejection(0);
}

/* ---- the binary --------------------------------------------------------------------------- */

static void s_launch(const char *security, const char *out, const char *err)
{
    char cmd[6 * S_PATH];
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' launch --model synth --transport tcp --shards 2 --workers 2 "
             "--balance static "
             "--params 1001 "
             "--buffers 7 --batch 24 --steps 6 --samples 48 --seed 42 --timeout-ms 20000 "
             "--out '%s' %s 2>'%s'",
             eb_test_binary(), out, security, err);
    int rc = eb_test_run(cmd);
    if (rc) {
        char *text = s_slurp(err);
        fail_msg("launch (%s) exited %d:\n%s", security, rc, text);
    }
}

static void test_launch_with_keys(void **state)
{
    (void)state;
    char plain[S_PATH], enc[S_PATH], err[S_PATH], sec[3 * S_PATH], adir[S_PATH], key[S_PATH];
    snprintf(plain, sizeof plain, "%s/plain.bin", s_dir);
    snprintf(enc, sizeof enc, "%s/enc.bin", s_dir);
    snprintf(err, sizeof err, "%s/launch.err", s_dir);
    snprintf(adir, sizeof adir, "%s/allowed", s_dir);
    s_path(key, s_a, ".key");
    assert_int_equal(mkdir(adir, 0700), 0);
    char cmd[3 * S_PATH];
    snprintf(cmd, sizeof cmd, "cp '%s.pub' '%s/'", s_a, adir);
    assert_int_equal(eb_test_run(cmd), 0);
    /* the configuration path (--set): security.key and security.allowed (a directory); both
     * runs keep their output (config.yaml) in the temporary directory, no checkpoints */
    snprintf(sec, sizeof sec,
             "--set model.name=synth --set checkpoint.every_epochs=0 --set output.dir='%s/enc' "
             "--set security.key='%s' --set security.allowed='%s'",
             s_dir, key, adir);
    s_launch(sec, enc, err);
    snprintf(sec, sizeof sec,
             "--set model.name=synth --set checkpoint.every_epochs=0 --set output.dir='%s/plain'",
             s_dir);
    s_launch(sec, plain, err);
    long na, nb;
    char *a = s_read(plain, &na), *b = s_read(enc, &nb);
    assert_int_equal(nb, (1001 + 7) * (long)sizeof(float));
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)nb);
    free(a);
    free(b);
    /* a missing key file stops the run with a message naming it */
    snprintf(
        cmd, sizeof cmd,
        "'%s' launch --model synth --transport tcp --steps 1 --security-key '%s/nope.key' 2>'%s'",
        eb_test_binary(), s_dir, err);
    assert_int_equal(eb_test_run(cmd), 1);
    char *text = s_slurp(err);
    assert_non_null(strstr(text, "nope.key"));
    free(text);
}

/* ABS with the eigen service as a process (launch hands it the keys through the environment):
 * decisions arrive (sync: each epoch waits for one) and the weights equal a plain run's. */
static void test_launch_abs_with_keys(void **state)
{
    (void)state;
    char db[S_PATH], key[S_PATH], cmd[6 * S_PATH], err[S_PATH];
    snprintf(db, sizeof db, "%s/db", s_dir);
    snprintf(err, sizeof err, "%s/abs.err", s_dir);
    s_path(key, s_a, ".key");
    eb_test_make_raw_db(db, 40, 1, 8, 8);
    for (int run = 0; run < 2; run++) {
        snprintf(
            cmd, sizeof cmd,
            "EB_LOG=warn timeout 120 '%s' launch --transport tcp --shards 2 --workers 2 --balance "
            "static "
            "--model cnn --data '%s' --classes 40 --batch 8 --micro-batch 4 --lr 0.05 "
            "--method ABS --epochs 3 --batch-max 32 --kappa 1 --hessian-batch 16 --decisions sync "
            "--timeout-ms 20000 --eig-metrics '%s/abs%d.jsonl' --out '%s/abs%d.bin' "
            "%s%s%s 2>'%s'",
            eb_test_binary(), db, s_dir, run, s_dir, run, run ? "" : "--security-key '",
            run ? "" : key, run ? "" : "'", err);
        int rc = eb_test_run(cmd);
        if (rc) {
            char *text = s_slurp(err);
            fail_msg("ABS launch (%s) exited %d:\n%s", run ? "plain" : "keys", rc, text);
        }
    }
    char path[S_PATH];
    snprintf(path, sizeof path, "%s/abs0.jsonl", s_dir);
    char *m = s_slurp(path);
    assert_non_null(strstr(m, "\"event\":\"eig\""));
    free(m);
    long na, nb;
    snprintf(path, sizeof path, "%s/abs0.bin", s_dir);
    char *a = s_read(path, &na);
    snprintf(path, sizeof path, "%s/abs1.bin", s_dir);
    char *b = s_read(path, &nb);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na);
    free(a);
    free(b);
}

int main(void)
{
    if (!rt_curve_available()) {
        fprintf(stderr, "test_curve: libzmq without CURVE (zmq_has(\"curve\") is false)\n");
        return EB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen_round_trip),
        cmocka_unit_test(test_bad_key_files),
        cmocka_unit_test(test_encrypted_exchange),
        cmocka_unit_test(test_unknown_key_rejected),
        cmocka_unit_test(test_client_without_keys_rejected),
        cmocka_unit_test(test_handshake_failures_logged_once),
        cmocka_unit_test(test_launch_with_keys),
        cmocka_unit_test(test_launch_abs_with_keys),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
