/*
 * rt_curve: CurveZMQ key files and the process-wide security setting (see rt_curve.h).
 */
#include "rt_curve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "rt_err.h"
#include "rt_log.h"

#define S_NAME "curve"
#define S_FILE_MAX 4096 /* bytes read of a key file */
#define S_PATH_MAX 4096 /* bytes of a path */

static const char s_z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/* The security setting of the process. */
static struct {
    int on;                            /* security configured */
    char secret[RT_CURVE_Z85_LEN + 1]; /* this role's secret key (Z85) */
    char public[RT_CURVE_Z85_LEN + 1]; /* its public key (Z85) */
    char server[RT_CURVE_Z85_LEN + 1]; /* the servers' public key for connects (Z85) */
    unsigned char *allowed;            /* n_allowed raw keys admitted by the ZAP handlers */
    int n_allowed;                     /* keys in allowed */
} s_cfg;
static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER; /* guards s_cfg and s_reported */

/* (address, reason) pairs already logged; s_reported_next is the slot reused next. */
static struct {
    char address[RT_CURVE_ADDR_MAX]; /* peer address ("": unknown) */
    enum rt_curve_fail why;          /* reason */
    int used;                        /* slot holds a pair */
} s_reported[RT_CURVE_REPORTED_MAX];
static int s_reported_next;
static atomic_long s_rejected;

int rt_curve_available(void)
{
    return zmq_has("curve") ? 1 : 0;
}

/* ---- key files ------------------------------------------------------------------------------ */

/* Write data to path through a temporary file in the same directory: mode, fsync, then link into
 * place (no_replace: fails with RT_ERR_EXISTS when path exists) or rename over it. */
static int s_write_atomic(const char *path, const char *data, mode_t mode, int no_replace)
{
    char tmp[S_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return rt_err_set(RT_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return rt_err_set(RT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t len = strlen(data), done = 0;
    int rc = RT_OK;
    if (fchmod(fd, mode))
        rc = rt_err_set(RT_ERR_IO, "%s: chmod: %s", tmp, strerror(errno));
    while (!rc && done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = rt_err_set(RT_ERR_IO, "%s: write: %s", tmp, strerror(errno));
        else
            done += (size_t)w;
    }
    if (!rc && fsync(fd))
        rc = rt_err_set(RT_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
    if (close(fd) && !rc)
        rc = rt_err_set(RT_ERR_IO, "%s: close: %s", tmp, strerror(errno));
    if (rc)
        goto out_unlink;
    if (no_replace) {
        if (link(tmp, path)) {
            int e = errno;
            rc = e == EEXIST ? rt_err_set(RT_ERR_EXISTS, "%s exists; not overwriting a key", path)
                             : rt_err_set(RT_ERR_IO, "%s: %s", path, strerror(e));
        }
    } else if (rename(tmp, path)) {
        rc = rt_err_set(RT_ERR_IO, "%s: rename into place: %s", path, strerror(errno));
    }
    if (rc)
        goto out_unlink;
    unlink(tmp);
    /* the directory entry must be durable too */
    char dir[S_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd)) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return rt_err_set(RT_ERR_IO, "%s: fsync of the directory: %s", dir, strerror(e));
    }
    close(dfd);
    return RT_OK;
out_unlink:
    unlink(tmp);
    return rc;
}

int rt_curve_keygen(const char *prefix)
{
    if (!rt_curve_available())
        return rt_err_set(RT_ERR_UNSUPPORTED, "this libzmq was built without CURVE security "
                                              "(zmq_has(\"curve\") is false)");
    if (!prefix || !*prefix)
        return rt_err_set(RT_ERR_ARG, "keygen: an output prefix is required");
    char pub[RT_CURVE_Z85_LEN + 1], sec[RT_CURVE_Z85_LEN + 1];
    if (zmq_curve_keypair(pub, sec) != 0)
        return rt_err_set(RT_ERR_ZMQ, "zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    char path[S_PATH_MAX], text[256];
    if (snprintf(path, sizeof path, "%s.key", prefix) >= (int)sizeof path - 16)
        return rt_err_set(RT_ERR_ARG, "%s: path too long", prefix);
    snprintf(text, sizeof text,
             "# eigenbatch CURVE secret key: keep private (public key in %s.pub)\n%s\n",
             strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix, sec);
    int rc = s_write_atomic(path, text, 0600, 1);
    memset(sec, 0, sizeof sec);
    memset(text, 0, sizeof text);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s.pub", prefix);
    snprintf(text, sizeof text, "# eigenbatch CURVE public key\n%s\n", pub);
    return s_write_atomic(path, text, 0644, 0);
}

/* A line to skip: blank, or a comment ('#' then a blank or the end; a key may start with '#'). */
static int s_skip_line(const char *l, size_t n)
{
    size_t i = 0;
    while (i < n && (l[i] == ' ' || l[i] == '\t' || l[i] == '\r'))
        i++;
    if (i == n)
        return 1;
    return l[i] == '#' && (i + 1 == n || l[i + 1] == ' ' || l[i + 1] == '\t' || l[i + 1] == '\r');
}

/* Read the key of a key file into z85 (41 bytes) and, when raw != NULL, decode it. what names
 * the kind of key for messages. */
static int s_read_key(const char *path, const char *what, char *z85, unsigned char *raw)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return rt_err_set(errno == ENOENT ? RT_ERR_NOTFOUND : RT_ERR_IO, "%s file %s: %s", what,
                          path, strerror(errno));
    char buf[S_FILE_MAX + 1];
    size_t n = fread(buf, 1, S_FILE_MAX, f);
    int err = ferror(f);
    fclose(f);
    if (err)
        return rt_err_set(RT_ERR_IO, "%s file %s: read error", what, path);
    buf[n] = '\0';
    const char *line = NULL;
    size_t len = 0;
    for (const char *p = buf; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (!s_skip_line(p, l)) {
            line = p;
            len = l;
            break;
        }
        p += l + (e ? 1 : 0);
    }
    if (!line)
        return rt_err_set(RT_ERR_FORMAT, "%s file %s: no key in it", what, path);
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    while (len && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    if (len != RT_CURVE_Z85_LEN)
        return rt_err_set(RT_ERR_FORMAT,
                          "%s file %s: the key has %zu characters, a Z85 CURVE key has %d", what,
                          path, len, RT_CURVE_Z85_LEN);
    for (size_t i = 0; i < len; i++)
        if (!strchr(s_z85_chars, line[i]) || line[i] == '\0')
            return rt_err_set(RT_ERR_FORMAT, "%s file %s: character %zu ('%c') is not Z85", what,
                              path, i + 1, line[i] >= 32 && line[i] < 127 ? line[i] : '?');
    memcpy(z85, line, RT_CURVE_Z85_LEN);
    z85[RT_CURVE_Z85_LEN] = '\0';
    unsigned char tmp[RT_CURVE_KEY_BYTES];
    if (!zmq_z85_decode(raw ? raw : tmp, z85))
        return rt_err_set(RT_ERR_FORMAT, "%s file %s: not a valid Z85 key", what, path);
    return RT_OK;
}

int rt_curve_read_public(const char *path, char *z85)
{
    return s_read_key(path, "public key", z85, NULL);
}

int rt_curve_read_secret(const char *path, char *secret_z85, char *public_z85)
{
    int rc = s_read_key(path, "secret key", secret_z85, NULL);
    if (rc)
        return rc;
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        RT_WARN(S_NAME,
                "secret key file %s is accessible by group or others (mode %03o); "
                "chmod 600 it",
                path, (unsigned)(st.st_mode & 0777));
    if (public_z85 && zmq_curve_public(public_z85, secret_z85) != 0) {
        memset(secret_z85, 0, RT_CURVE_Z85_LEN + 1);
        return rt_err_set(RT_ERR_FORMAT, "secret key file %s: cannot derive the public key: %s",
                          path, zmq_strerror(zmq_errno()));
    }
    return RT_OK;
}

/* ---- the setting ---------------------------------------------------------------------------- */

/* Append the key of one .pub file to the list (*keys, *n, growing *cap). */
static int s_add_pub(const char *path, unsigned char **keys, int *n, int *cap)
{
    char z85[RT_CURVE_Z85_LEN + 1];
    unsigned char raw[RT_CURVE_KEY_BYTES];
    int rc = s_read_key(path, "allowed public key", z85, raw);
    if (rc)
        return rc;
    if (*n >= RT_CURVE_MAX_ALLOWED)
        return rt_err_set(RT_ERR_TOOBIG, "security.allowed: more than %d keys (at %s)",
                          RT_CURVE_MAX_ALLOWED, path);
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        unsigned char *k = realloc(*keys, (size_t)nc * RT_CURVE_KEY_BYTES);
        if (!k)
            return rt_err_set(RT_ERR_NOMEM, "security.allowed: out of memory");
        *keys = k;
        *cap = nc;
    }
    memcpy(*keys + (size_t)*n * RT_CURVE_KEY_BYTES, raw, RT_CURVE_KEY_BYTES);
    (*n)++;
    return RT_OK;
}

/* One entry of the allowed list: a .pub file, or a directory whose *.pub files are read. */
static int s_add_allowed(const char *entry, unsigned char **keys, int *n, int *cap)
{
    struct stat st;
    if (stat(entry, &st))
        return rt_err_set(errno == ENOENT ? RT_ERR_NOTFOUND : RT_ERR_IO, "security.allowed: %s: %s",
                          entry, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return s_add_pub(entry, keys, n, cap);
    DIR *d = opendir(entry);
    if (!d)
        return rt_err_set(RT_ERR_IO, "security.allowed: %s: %s", entry, strerror(errno));
    int rc = RT_OK, found = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 4 || strcmp(de->d_name + l - 4, ".pub"))
            continue;
        char path[S_PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", entry, de->d_name) >= (int)sizeof path)
            rc =
                rt_err_set(RT_ERR_ARG, "security.allowed: %s/%s: path too long", entry, de->d_name);
        else
            rc = s_add_pub(path, keys, n, cap);
        found++;
    }
    closedir(d);
    if (!rc && !found)
        rc = rt_err_set(RT_ERR_NOTFOUND, "security.allowed: no .pub file in directory %s", entry);
    return rc;
}

int rt_curve_configure(const char *key_file, const char *server_pub, const char *allowed)
{
    if (!key_file || !*key_file) {
        if ((server_pub && *server_pub) || (allowed && *allowed))
            return rt_err_set(RT_ERR_CONFIG, "security.server_pub and security.allowed need "
                                             "security.key (this role's secret key file)");
        rt_curve_clear();
        return RT_OK;
    }
    rt_curve_clear();
    if (!rt_curve_available())
        return rt_err_set(RT_ERR_UNSUPPORTED,
                          "security.key is set but this libzmq was built without CURVE "
                          "(zmq_has(\"curve\") is false)");
    char sec[RT_CURVE_Z85_LEN + 1], pub[RT_CURVE_Z85_LEN + 1], srv[RT_CURVE_Z85_LEN + 1];
    unsigned char *keys = NULL;
    int n = 0, cap = 0;
    int rc = rt_curve_read_secret(key_file, sec, pub);
    if (rc)
        goto out;
    if (server_pub && *server_pub) {
        if ((rc = rt_curve_read_public(server_pub, srv)))
            goto out;
    } else {
        memcpy(srv, pub, sizeof srv);
    }
    if (allowed && *allowed) {
        char *list = strdup(allowed), *save = NULL;
        if (!list) {
            rc = rt_err_set(RT_ERR_NOMEM, "security.allowed: out of memory");
            goto out;
        }
        for (char *t = strtok_r(list, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            size_t l = strlen(t);
            while (l && t[l - 1] == ' ')
                t[--l] = '\0';
            if (l)
                rc = s_add_allowed(t, &keys, &n, &cap);
        }
        free(list);
        if (!rc && !n)
            rc = rt_err_set(RT_ERR_CONFIG, "security.allowed '%s' names no key", allowed);
        if (rc)
            goto out;
    } else {
        keys = malloc(RT_CURVE_KEY_BYTES);
        if (!keys) {
            rc = rt_err_set(RT_ERR_NOMEM, "security.allowed: out of memory");
            goto out;
        }
        zmq_z85_decode(keys, pub);
        n = 1;
    }
    pthread_mutex_lock(&s_mu);
    memcpy(s_cfg.secret, sec, sizeof sec);
    memcpy(s_cfg.public, pub, sizeof pub);
    memcpy(s_cfg.server, srv, sizeof srv);
    s_cfg.allowed = keys;
    s_cfg.n_allowed = n;
    s_cfg.on = 1;
    pthread_mutex_unlock(&s_mu);
    keys = NULL;
    RT_DEBUG(S_NAME, "CURVE on: public key %s, %d allowed key(s)", pub, n);
out:
    memset(sec, 0, sizeof sec);
    free(keys);
    return rc;
}

void rt_curve_clear(void)
{
    pthread_mutex_lock(&s_mu);
    free(s_cfg.allowed);
    memset(&s_cfg, 0, sizeof s_cfg);
    memset(s_reported, 0, sizeof s_reported);
    s_reported_next = 0;
    pthread_mutex_unlock(&s_mu);
}

int rt_curve_enabled(void)
{
    pthread_mutex_lock(&s_mu);
    int on = s_cfg.on;
    pthread_mutex_unlock(&s_mu);
    return on;
}

int rt_curve_wants(const char *endpoint)
{
    if (!endpoint || !strncmp(endpoint, "inproc://", 9))
        return 0;
    return rt_curve_enabled();
}

int rt_curve_apply(void *sock, const char *endpoint, int server)
{
    if (!endpoint || !strncmp(endpoint, "inproc://", 9))
        return RT_OK;
    char sec[RT_CURVE_Z85_LEN + 1], pub[RT_CURVE_Z85_LEN + 1], srv[RT_CURVE_Z85_LEN + 1];
    pthread_mutex_lock(&s_mu);
    int on = s_cfg.on;
    memcpy(sec, s_cfg.secret, sizeof sec);
    memcpy(pub, s_cfg.public, sizeof pub);
    memcpy(srv, s_cfg.server, sizeof srv);
    pthread_mutex_unlock(&s_mu);
    if (!on)
        return RT_OK;
    int rc = RT_OK, one = 1;
    const char *opt = NULL;
    if (server) {
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one))
            opt = "ZMQ_CURVE_SERVER";
        else if (zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, RT_CURVE_Z85_LEN + 1))
            opt = "ZMQ_CURVE_SECRETKEY";
        else if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, RT_CURVE_ZAP_DOMAIN,
                                strlen(RT_CURVE_ZAP_DOMAIN)))
            opt = "ZMQ_ZAP_DOMAIN";
    } else {
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, srv, RT_CURVE_Z85_LEN + 1))
            opt = "ZMQ_CURVE_SERVERKEY";
        else if (zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, RT_CURVE_Z85_LEN + 1))
            opt = "ZMQ_CURVE_PUBLICKEY";
        else if (zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, RT_CURVE_Z85_LEN + 1))
            opt = "ZMQ_CURVE_SECRETKEY";
    }
    if (opt)
        rc = rt_err_set(RT_ERR_ZMQ, "%s: %s: %s", endpoint, opt, zmq_strerror(zmq_errno()));
    memset(sec, 0, sizeof sec);
    return rc;
}

int rt_curve_allowed_copy(unsigned char **keys)
{
    *keys = NULL;
    pthread_mutex_lock(&s_mu);
    int n = s_cfg.on ? s_cfg.n_allowed : 0;
    if (n) {
        *keys = malloc((size_t)n * RT_CURVE_KEY_BYTES);
        if (*keys)
            memcpy(*keys, s_cfg.allowed, (size_t)n * RT_CURVE_KEY_BYTES);
    }
    pthread_mutex_unlock(&s_mu);
    if (n && !*keys)
        return rt_err_set(RT_ERR_NOMEM, "ZAP handler: out of memory");
    return n;
}

long rt_curve_rejected(void)
{
    return atomic_load(&s_rejected);
}

int rt_curve_check(const unsigned char *allowed, int n, const unsigned char *key,
                   const char *address)
{
    for (int i = 0; i < n; i++)
        if (!memcmp(allowed + (size_t)i * RT_CURVE_KEY_BYTES, key, RT_CURVE_KEY_BYTES))
            return 1;
    char z85[RT_CURVE_Z85_LEN + 1], detail[RT_CURVE_Z85_LEN + 64];
    if (!zmq_z85_encode(z85, key, RT_CURVE_KEY_BYTES))
        snprintf(z85, sizeof z85, "?");
    snprintf(detail, sizeof detail, "public key %s is not in security.allowed", z85);
    rt_curve_report(address, RT_CURVE_FAIL_CLIENT_KEY, detail);
    return 0;
}

/* ---- failed handshakes ---------------------------------------------------------------------- */

static const char *const s_fail_text[RT_CURVE_FAIL_COUNT] = {
    [RT_CURVE_FAIL_PLAINTEXT] = "plaintext client: it does not use CURVE (no security.key set?)",
    [RT_CURVE_FAIL_SERVER_KEY] = ("wrong server key: its CURVE HELLO does not decrypt "
                                  "(check its security.server_pub)"),
    [RT_CURVE_FAIL_CLIENT_KEY] = "client key not admitted",
    [RT_CURVE_FAIL_PROTOCOL] = "CURVE handshake failed",
};

/* Is (address, why) in the logged set? address NULL: for any address. Caller holds s_mu. */
static int s_reported_has(const char *address, enum rt_curve_fail why)
{
    for (int i = 0; i < RT_CURVE_REPORTED_MAX; i++)
        if (s_reported[i].used && s_reported[i].why == why &&
            (!address || !strcmp(s_reported[i].address, address)))
            return 1;
    return 0;
}

/* rt_curve_report without counting the failure. */
static int s_log_once(const char *address, enum rt_curve_fail why, const char *detail)
{
    RT_ASSERT((unsigned)why < RT_CURVE_FAIL_COUNT);
    char a[RT_CURVE_ADDR_MAX];
    snprintf(a, sizeof a, "%s", address ? address : "");
    pthread_mutex_lock(&s_mu);
    int seen = s_reported_has(a, why);
    if (!seen) {
        int k = s_reported_next;
        snprintf(s_reported[k].address, sizeof s_reported[k].address, "%s", a);
        s_reported[k].why = why;
        s_reported[k].used = 1;
        s_reported_next = (k + 1) % RT_CURVE_REPORTED_MAX;
    }
    pthread_mutex_unlock(&s_mu);
    if (seen)
        return 0;
    RT_WARN(S_NAME, "rejected peer %s: %s%s%s (logged once per address and reason)",
            a[0] ? a : "(address unknown)", s_fail_text[why], detail ? ": " : "",
            detail ? detail : "");
    return 1;
}

int rt_curve_report(const char *address, enum rt_curve_fail why, const char *detail)
{
    atomic_fetch_add(&s_rejected, 1);
    return s_log_once(address, why, detail);
}

void rt_curve_peers_init(struct rt_curve_peers *p)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < RT_CURVE_PEERS; i++)
        p->fd[i] = -1;
}

int rt_curve_peers_events(void)
{
    return ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
}

/* The peer address of connection fd into buf ("" when it is gone already). */
static void s_peer_address(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    buf[0] = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &len))
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)cap);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)cap);
    else if (ss.ss_family == AF_UNIX)
        snprintf(buf, cap, "a local (ipc) process");
}

/* The detail of a failure: libzmq's code, for the reasons that have no text of their own. */
static const char *s_detail(enum rt_curve_fail why, unsigned code, char *buf, size_t cap)
{
    if (why != RT_CURVE_FAIL_PROTOCOL)
        return NULL;
    snprintf(buf, cap, "libzmq code 0x%08x", code);
    return buf;
}

/* The DISCONNECTED that ends a failed handshake: log it, or hold it when the address is gone. */
static void s_peers_failed(struct rt_curve_peers *p, const char *addr, double now)
{
    char detail[64];
    p->failed = 0;
    if (addr[0]) {
        rt_curve_report(addr, p->why, s_detail(p->why, p->code, detail, sizeof detail));
        p->held[p->why] = 0; /* a held failure of the same reason is probably this client's */
        return;
    }
    atomic_fetch_add(&s_rejected, 1);
    if (p->held[p->why] == 0) {
        p->held[p->why] = now;
        p->held_code[p->why] = p->code;
    }
}

void rt_curve_peers_event(struct rt_curve_peers *p, int event, unsigned value, double now)
{
    int slot = -1;
    switch (event) {
    case ZMQ_EVENT_ACCEPTED:
        slot = p->next;
        p->next = (p->next + 1) % RT_CURVE_PEERS;
        p->fd[slot] = (int)value;
        s_peer_address((int)value, p->addr[slot], sizeof p->addr[slot]);
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        p->failed = 1;
        p->code = value;
        p->why = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? RT_CURVE_FAIL_PLAINTEXT
                 : value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC    ? RT_CURVE_FAIL_SERVER_KEY
                                                                     : RT_CURVE_FAIL_PROTOCOL;
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        /* value is an errno: a client that hangs up mid-handshake (it closed its socket) did
         * nothing wrong */
        if (value == EPIPE || value == ECONNRESET || value == ECONNABORTED)
            break;
        p->failed = 1;
        p->code = value;
        p->why = RT_CURVE_FAIL_PROTOCOL;
        break;
    case ZMQ_EVENT_DISCONNECTED:
        for (int i = 0; i < RT_CURVE_PEERS; i++)
            if (p->fd[i] == (int)value)
                slot = i;
        if (p->failed)
            s_peers_failed(p, slot >= 0 ? p->addr[slot] : "", now);
        if (slot >= 0)
            p->fd[slot] = -1;
        break;
    default:
        break;
    }
}

void rt_curve_peers_tick(struct rt_curve_peers *p, double now)
{
    for (int w = 0; w < RT_CURVE_FAIL_COUNT; w++) {
        if (p->held[w] == 0 || now - p->held[w] < RT_CURVE_HOLD_S)
            continue;
        p->held[w] = 0;
        pthread_mutex_lock(&s_mu);
        int known = s_reported_has(NULL, (enum rt_curve_fail)w);
        pthread_mutex_unlock(&s_mu);
        char detail[64];
        if (!known)
            s_log_once("", (enum rt_curve_fail)w,
                       s_detail((enum rt_curve_fail)w, p->held_code[w], detail, sizeof detail));
    }
}
