/*
 * cmd_bench_ps: `eigenbatch bench ps` times push+pull rounds of the parameter-server transport:
 * W workers and S shards as threads of this process, over tcp loopback (or ipc, inproc), a model
 * of N floats whose gradient costs nothing, so the rounds measure the transport, the averaging
 * and the SGD update. For the same bytes it measures a raw TCP loopback exchange with preallocated
 * buffers (two threads, plain send/recv) so that the ratio can be reported. With --curve, each
 * repeat also runs the same rounds with CurveZMQ encryption (a fresh keypair in a temporary
 * directory) so that the encrypted/plain ratio is measured side by side. The last line printed is
 * a JSON object.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eb_cli.h"
#include "nn_base.h"
#include "rt_curve.h"
#include "rt_err.h"
#include "rt_log.h"
#include "cluster_embed.h"
#include "server_fixsched.h"
#include "server_shard.h"
#include "worker_nn.h"

#define S_DEFAULT_FLOATS 11200000L /* resnet18-sized */
#define S_DEFAULT_ROUNDS 10
#define S_MAX_WORKERS 64
#define S_CMD "bench ps" /* the command, in messages */

static double s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- the parameter-server rounds -------------------------------------------------------- */

/* A worker that computes nothing: it records when each step's weights arrived. */
struct s_null {
    double *t;       /* rounds + 1 timestamps: weights of step i received */
    uint64_t rounds; /* steps */
};

static int s_null_compute(void *user, const struct worker_step *st, const float *params,
                          float *grads, float *buffers, uint32_t *samples, float *loss)
{
    (void)params;
    (void)grads;
    (void)buffers;
    struct s_null *n = user;
    if (st->step <= n->rounds)
        n->t[st->step] = s_now();
    *samples = st->share_count;
    *loss = 0;
    return RT_OK;
}

static void s_null_finish(void *user, uint64_t steps, const float *params, const float *buffers)
{
    (void)params;
    (void)buffers;
    struct s_null *n = user;
    if (steps <= n->rounds)
        n->t[steps] = s_now();
}

/* ---- raw TCP baseline ------------------------------------------------------------------- */

struct s_raw {
    int listen_fd; /* bound, listening */
    size_t bytes;  /* per direction per round */
    long rounds;   /* rounds */
    int rc;        /* server result */
};

static int s_full_io(int fd, char *buf, size_t n, int writing)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = writing ? send(fd, buf + done, n - done, MSG_NOSIGNAL)
                            : recv(fd, buf + done, n - done, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

/* Server side: receive the "push", send back the "weights". */
static void *s_raw_server(void *arg)
{
    struct s_raw *r = arg;
    r->rc = -1;
    int fd = accept(r->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char *buf = nn_alloc(r->bytes);
    if (buf) {
        memset(buf, 1, r->bytes);
        r->rc = 0;
        for (long i = 0; i <= r->rounds && r->rc == 0; i++)
            if (s_full_io(fd, buf, r->bytes, 0) || s_full_io(fd, buf, r->bytes, 1))
                r->rc = -1;
    }
    nn_free(buf);
    close(fd);
    return NULL;
}

/* Time `rounds` push+pull exchanges of `bytes` each way over one loopback TCP connection (plus one
 * warm-up round). Returns seconds, or a negative value on failure. */
static double s_raw_tcp(size_t bytes, long rounds)
{
    struct s_raw r = {.bytes = bytes, .rounds = rounds, .rc = -1};
    double secs = -1;
    r.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (r.listen_fd < 0 || bind(r.listen_fd, (struct sockaddr *)&a, sizeof a) ||
        listen(r.listen_fd, 1) || getsockname(r.listen_fd, (struct sockaddr *)&a, &len)) {
        if (r.listen_fd >= 0)
            close(r.listen_fd);
        return -1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, s_raw_server, &r)) {
        close(r.listen_fd);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *buf = nn_alloc(bytes);
    int one = 1;
    if (fd >= 0 && buf && !connect(fd, (struct sockaddr *)&a, sizeof a)) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        memset(buf, 2, bytes);
        double t0 = 0;
        int ok = 1;
        for (long i = 0; i <= rounds && ok; i++) {
            if (i == 1)
                t0 = s_now();
            ok = !s_full_io(fd, buf, bytes, 1) && !s_full_io(fd, buf, bytes, 0);
        }
        if (ok)
            secs = s_now() - t0;
    }
    if (fd >= 0)
        close(fd);
    pthread_join(th, NULL);
    close(r.listen_fd);
    nn_free(buf);
    return r.rc == 0 ? secs : -1;
}

/* ---- training throughput: W workers + S shards vs one worker without servers ------------- */

#define S_POOL 512       /* distinct random samples, reused cyclically */
#define S_TRAIN_LR 0.01f /* SGD settings (their values do not matter for the timing) */
#define S_TRAIN_MOMENTUM 0.9f
#define S_TRAIN_WD 5e-4f

/* A pool of random samples standing in for the loader (identical cost in both runs). */
struct s_pool {
    float *x;   /* S_POOL samples */
    int32_t *y; /* S_POOL labels */
    size_t len; /* floats per sample */
};

static int s_pool_read(void *user, uint64_t epoch, uint64_t first, uint32_t n, float *x, int32_t *y)
{
    (void)epoch;
    const struct s_pool *p = user;
    for (uint32_t k = 0; k < n; k++) {
        size_t i = (size_t)((first + k) % S_POOL);
        memcpy(x + k * p->len, p->x + i * p->len, p->len * sizeof(float));
        y[k] = p->y[i];
    }
    return 0;
}

/* A worker thread's NN compute, timed: t[step] = when its compute of `step` began. */
struct s_timed {
    struct worker_compute inner; /* worker_nn */
    double *t;                   /* steps + 1 stamps */
    uint64_t steps;              /* total steps */
    int threads;                 /* math threads of this worker thread */
};

static int s_timed_compute(void *user, const struct worker_step *st, const float *params,
                           float *grads, float *buffers, uint32_t *samples, float *loss)
{
    struct s_timed *tm = user;
    if (st->step == 0)
        nn_set_threads(tm->threads);
    if (st->step <= tm->steps)
        tm->t[st->step] = s_now();
    return tm->inner.compute(tm->inner.user, st, params, grads, buffers, samples, loss);
}

static int s_timed_init(void *user, float *params, float *buffers)
{
    struct s_timed *tm = user;
    return tm->inner.init(tm->inner.user, params, buffers);
}

static void s_timed_finish(void *user, uint64_t steps, const float *params, const float *buffers)
{
    struct s_timed *tm = user;
    if (steps <= tm->steps)
        tm->t[steps] = s_now();
    (void)params;
    (void)buffers;
}

struct s_train_opts {
    const char *model;     /* zoo model */
    int c, h, w, classes;  /* input shape and classes */
    long batch, micro;     /* global batch, micro-batch */
    long steps;            /* timed steps (one warm-up step more) */
    long workers, shards;  /* cluster shape */
    long threads;          /* math threads per worker (the single worker gets workers x this) */
    const char *transport; /* transport of the cluster */
    const char *where;     /* its address */
    long repeat;           /* best of */
};

/* One worker, no server: the same micro-batches and SGD, `threads` math threads. Returns the
 * seconds of `steps` steps after one warm-up step, or < 0. */
static double s_train_single(const struct s_train_opts *o, struct s_pool *pool, int threads)
{
    nn_set_threads(threads);
    nn_net_t *net = nn_zoo_new(o->model, o->c, o->h, o->w, o->classes, (int)o->micro, NULL);
    if (!net)
        return -1;
    size_t np = nn_net_param_count(net);
    float *mom = nn_alloc(np * sizeof(float));
    float *x = nn_alloc((size_t)o->micro * pool->len * sizeof(float));
    int32_t *y = nn_alloc((size_t)o->micro * sizeof(int32_t));
    double t0 = 0, secs = -1;
    if (mom && x && y) {
        memset(mom, 0, np * sizeof(float));
        for (long t = 0; t <= o->steps; t++) {
            if (t == 1)
                t0 = s_now();
            nn_net_zero_grad(net);
            for (long k = 0; k < o->batch; k += o->micro) {
                long n = o->batch - k < o->micro ? o->batch - k : o->micro;
                s_pool_read(pool, 0, (uint64_t)(t * o->batch + k), (uint32_t)n, x, y);
                nn_net_train_pass(net, x, y, (int)n, NN_BN_TRAIN,
                                  NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS,
                                  (float)n / (float)o->batch, NULL, NULL);
            }
            nn_sgd_step(nn_net_params(net), mom, nn_net_grads(net), np, S_TRAIN_LR,
                        S_TRAIN_MOMENTUM, S_TRAIN_WD);
        }
        secs = s_now() - t0;
    }
    nn_free(mom);
    nn_free(x);
    nn_free(y);
    nn_net_destroy(&net);
    return secs;
}

/* W workers and S shards as threads: seconds of `steps` steps after one warm-up step, or < 0. */
static double s_train_cluster(const struct s_train_opts *o, struct s_pool *pool)
{
    int W = (int)o->workers;
    double secs = -1;
    nn_net_t *nets[S_MAX_WORKERS] = {0};
    worker_nn_t *nns[S_MAX_WORKERS] = {0};
    struct s_timed tms[S_MAX_WORKERS];
    struct worker_compute cbs[S_MAX_WORKERS];
    double *stamps = calloc((size_t)W * (size_t)(o->steps + 2), sizeof(double));
    struct worker_nn_source src = {.user = pool, .read = s_pool_read};
    struct worker_nn_cfg ncfg = {.micro_batch = (int)o->micro, .init_seed = 1};
    struct server_fixsched_cfg fc = {.batch = (uint32_t)o->batch,
                                     .lr = S_TRAIN_LR,
                                     .n_samples = 1u << 30,
                                     .steps = (uint64_t)o->steps + 1};
    struct server_coord_sched sched = {0};
    int ok = stamps && !server_fixsched_new(&fc, &sched);
    for (int i = 0; ok && i < W; i++) {
        nets[i] = nn_zoo_new(o->model, o->c, o->h, o->w, o->classes, (int)o->micro, NULL);
        nns[i] = nets[i] ? worker_nn_new(nets[i], &src, &ncfg, NULL) : NULL;
        ok = nns[i] != NULL;
        if (ok) {
            tms[i] = (struct s_timed){worker_nn_compute(nns[i]), stamps + i * (o->steps + 2),
                                      (uint64_t)o->steps + 1, (int)o->threads};
            cbs[i] = (struct worker_compute){.user = &tms[i],
                                             .init = s_timed_init,
                                             .compute = s_timed_compute,
                                             .finish = s_timed_finish};
        }
    }
    if (ok) {
        struct cluster_embed_cfg cc = {
            .n_shards = (int)o->shards,
            .n_workers = W,
            .transport = o->transport,
            .where = o->where,
            .n_params = nn_net_param_count(nets[0]),
            .n_buffers = nn_net_buffer_count(nets[0]),
            .momentum = S_TRAIN_MOMENTUM,
            .weight_decay = S_TRAIN_WD,
            .sched = &sched,
            .compute = cbs,
            .checksum = RT_WIRE_CK_FLETCHER64,
        };
        nn_set_threads((int)o->threads);
        if (cluster_embed_run(&cc, NULL, NULL, NULL) == RT_OK) {
            /* from the first worker starting step 1 to the last one holding the final weights */
            double start = 0, end = 0;
            for (int i = 0; i < W; i++) {
                double *t = tms[i].t;
                if (i == 0 || t[1] < start)
                    start = t[1];
                if (t[o->steps + 1] > end)
                    end = t[o->steps + 1];
            }
            secs = end - start;
        } else {
            fprintf(stderr, "eigenbatch bench ps: %s\n", rt_err_msg());
        }
    }
    for (int i = 0; i < W; i++) {
        worker_nn_destroy(&nns[i]);
        nn_net_destroy(&nets[i]);
    }
    server_fixsched_destroy(&sched);
    free(stamps);
    return secs;
}

static int s_bench_train_ps(const struct s_train_opts *o)
{
    struct s_pool pool = {0};
    pool.len = (size_t)o->c * (size_t)o->h * (size_t)o->w;
    pool.x = nn_alloc(S_POOL * pool.len * sizeof(float));
    pool.y = nn_alloc(S_POOL * sizeof(int32_t));
    if (!pool.x || !pool.y) {
        fprintf(stderr, "eigenbatch bench ps: out of memory\n");
        nn_free(pool.x);
        nn_free(pool.y);
        return 1;
    }
    struct nn_rng rng;
    nn_rng_seed(&rng, 7);
    for (size_t i = 0; i < S_POOL * pool.len; i++)
        pool.x[i] = nn_rng_uniform(&rng);
    for (size_t i = 0; i < S_POOL; i++)
        pool.y[i] = (int32_t)(nn_rng_next(&rng) % (uint64_t)o->classes);
    double single = -1, cluster = -1;
    int all_threads = (int)(o->workers * o->threads);
    for (long r = 0; r < o->repeat; r++) {
        double a = s_train_single(o, &pool, all_threads);
        double b = s_train_cluster(o, &pool);
        if (a > 0 && (single < 0 || a < single))
            single = a;
        if (b > 0 && (cluster < 0 || b < cluster))
            cluster = b;
    }
    nn_free(pool.x);
    nn_free(pool.y);
    if (single <= 0 || cluster <= 0) {
        fprintf(stderr, "eigenbatch bench ps: training run failed\n");
        return 1;
    }
    double img = (double)o->batch * (double)o->steps;
    double ips_single = img / single, ips_cluster = img / cluster;
    double overhead = 1.0 - ips_cluster / ips_single;
    printf("%s batch %ld (micro-batch %ld): one worker, no server, %d threads: %.1f images/s\n",
           o->model, o->batch, o->micro, all_threads, ips_single);
    printf("%s batch %ld: %ld workers x %ld threads + %ld shards over %s: %.1f images/s "
           "(overhead %.1f%%)\n",
           o->model, o->batch, o->workers, o->threads, o->shards, o->transport, ips_cluster,
           100.0 * overhead);
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "bench", "ps-train",
        "model", o->model, "transport", o->transport, "batch", (json_int_t)o->batch, "micro_batch",
        (json_int_t)o->micro, "workers", (json_int_t)o->workers, "shards", (json_int_t)o->shards,
        "threads_per_worker", (json_int_t)o->threads, "steps", (json_int_t)o->steps, "images_per_s",
        ips_cluster, "single_images_per_s", ips_single, "overhead", overhead);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!line) {
        json_decref(j);
        return 1;
    }
    printf("%s\n", line);
    free(line);
    json_decref(j);
    return 0;
}

/* ---- command ------------------------------------------------------------------------------ */

static void s_usage(FILE *f)
{
    fprintf(
        f,
        "usage: eigenbatch bench ps [--floats N] [--shards S] [--workers W]\n"
        "                           [--transport tcp|ipc|inproc] [--rounds R] [--chunk FLOATS]\n"
        "                           [--checksum none|crc32|fletcher64] [--io-threads N]\n"
        "                           [--repeat K] [--no-baseline] [--curve]\n"
        "       eigenbatch bench ps --model M [--input CxHxW] [--classes N] [--batch B]\n"
        "                           [--micro-batch m] [--steps K] [--workers W] [--shards S]\n"
        "                           [--threads T] [--transport tcp|inproc] [--repeat K]\n"
        "Times push+pull rounds of W workers and S shards (threads, one process) for a model\n"
        "of N floats (default %ld, resnet18-sized), and a raw TCP loopback exchange of the\n"
        "same bytes with preallocated buffers. The last line is a JSON object with\n"
        "gbytes_per_s (model bytes pushed plus pulled per second, all workers),\n"
        "raw_tcp_gbytes_per_s and ratio. Both are measured K times (default 3), interleaved,\n"
        "and the best of each is reported (the machine may be shared). --curve (tcp, ipc) also\n"
        "runs every repeat encrypted (CurveZMQ, ZAP) and reports curve_gbytes_per_s and\n"
        "curve_ratio (encrypted / plain).\n"
        "With --model: training throughput (images/s) of W workers (T math threads each) and\n"
        "S shards in this process against one worker with W x T threads and no server, the\n"
        "same micro-batches and SGD on random data; the JSON has images_per_s,\n"
        "single_images_per_s and overhead.\n",
        S_DEFAULT_FLOATS);
}

/* The command's options, as parsed. */
struct s_ps_opts {
    long floats;              /* --floats: model size of the transport rounds */
    long shards;              /* --shards */
    long workers;             /* --workers */
    long rounds;              /* --rounds: push+pull rounds per run */
    long chunk;               /* --chunk: floats per frame, 0 for the default */
    long io_threads;          /* --io-threads of the ZeroMQ context */
    long repeat;              /* --repeat: runs, the best reported */
    long batch;               /* --batch (training mode) */
    long micro;               /* --micro-batch (training mode) */
    long steps;               /* --steps (training mode) */
    long threads;             /* --threads per worker (training mode) */
    long classes;             /* --classes (training mode) */
    const char *model;        /* --model: training mode when set */
    const char *input;        /* --input CxHxW (training mode) */
    const char *transport;    /* --transport: tcp, ipc or inproc */
    const char *ck_name;      /* --checksum, as given */
    enum rt_wire_checksum ck; /* ck_name parsed */
    int baseline;             /* raw TCP baseline (not --no-baseline) */
    int curve;                /* --curve: also run encrypted */
};

/* Parse the value v of option o into *p. Returns 0, or 2 with the reason printed. */
static int s_parse_value(struct s_ps_opts *p, const char *o, const char *v)
{
    const struct {
        const char *flag; /* option */
        long *var;        /* its field */
    } longs[] = {
        {"--floats", &p->floats},     {"--shards", &p->shards}, {"--workers", &p->workers},
        {"--rounds", &p->rounds},     {"--chunk", &p->chunk},   {"--batch", &p->batch},
        {"--micro-batch", &p->micro}, {"--steps", &p->steps},   {"--threads", &p->threads},
        {"--classes", &p->classes},   {"--repeat", &p->repeat}, {"--io-threads", &p->io_threads},
    };
    for (size_t k = 0; k < sizeof longs / sizeof longs[0]; k++)
        if (!strcmp(o, longs[k].flag))
            return rt_opt_long(S_CMD, o, v, longs[k].var) ? 2 : 0;
    if (!strcmp(o, "--model")) {
        p->model = v;
    } else if (!strcmp(o, "--input")) {
        p->input = v;
    } else if (!strcmp(o, "--transport")) {
        p->transport = v;
    } else if (!strcmp(o, "--checksum")) {
        p->ck_name = v;
        if (!strcmp(v, "none"))
            p->ck = RT_WIRE_CK_NONE;
        else if (!strcmp(v, "crc32"))
            p->ck = RT_WIRE_CK_CRC32;
        else if (!strcmp(v, "fletcher64"))
            p->ck = RT_WIRE_CK_FLETCHER64;
        else {
            fprintf(stderr, "eigenbatch %s: unknown checksum '%s'\n", S_CMD, v);
            return 2;
        }
    } else {
        fprintf(stderr, "eigenbatch %s: unknown option '%s'\n", S_CMD, o);
        s_usage(stderr);
        return 2;
    }
    return 0;
}

/*
 * Parse argv into *p (defaults first) and check the ranges, the transport and --curve's
 * conditions. Returns -1 to go on, else the command's exit status: 0 after --help, 2 on a bad
 * command line (the reason printed on stderr).
 */
static int s_parse(int argc, char **argv, struct s_ps_opts *p)
{
    *p = (struct s_ps_opts){.floats = S_DEFAULT_FLOATS,
                            .shards = 1,
                            .workers = 1,
                            .rounds = S_DEFAULT_ROUNDS,
                            .io_threads = 1,
                            .repeat = 3,
                            .batch = 256,
                            .micro = 128,
                            .steps = 10,
                            .threads = 1,
                            .classes = 10,
                            .input = "1x28x28",
                            .transport = "tcp",
                            .ck_name = "fletcher64",
                            .ck = RT_WIRE_CK_FLETCHER64,
                            .baseline = 1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(o, "--no-baseline")) {
            p->baseline = 0;
            continue;
        } else if (!strcmp(o, "--curve")) {
            p->curve = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "eigenbatch %s: %s needs a value\n", S_CMD, o);
            return 2;
        }
        i++;
        if (s_parse_value(p, o, v))
            return 2;
    }
    if (p->floats < p->shards || p->shards < 1 || p->shards > 256 || p->workers < 1 ||
        p->workers > S_MAX_WORKERS || p->rounds < 1 || p->repeat < 1 || p->repeat > 100 ||
        p->chunk < 0 || p->chunk > UINT32_MAX || p->io_threads < 1 || p->io_threads > 64) {
        fprintf(stderr,
                "eigenbatch %s: out-of-range option (floats >= shards >= 1, 1 <= workers "
                "<= %d, rounds >= 1, 1 <= io-threads <= 64)\n",
                S_CMD, S_MAX_WORKERS);
        return 2;
    }
    if (strcmp(p->transport, "tcp") && strcmp(p->transport, "ipc") &&
        strcmp(p->transport, "inproc")) {
        fprintf(stderr, "eigenbatch %s: unknown transport '%s' (tcp, ipc or inproc)\n", S_CMD,
                p->transport);
        return 2;
    }
    if (p->curve && (p->model || !strcmp(p->transport, "inproc") || !rt_curve_available())) {
        fprintf(stderr,
                "eigenbatch %s: --curve needs --transport tcp or ipc, no --model, and a "
                "libzmq with CURVE\n",
                S_CMD);
        return 2;
    }
    return -1;
}

/* Training mode (--model): check its options and run s_bench_train_ps. Returns the status. */
static int s_train_mode(const struct s_ps_opts *p)
{
    struct s_train_opts to = {.model = p->model,
                              .classes = (int)p->classes,
                              .batch = p->batch,
                              .micro = p->micro,
                              .steps = p->steps,
                              .workers = p->workers,
                              .shards = p->shards,
                              .threads = p->threads,
                              .transport = p->transport,
                              .where = "127.0.0.1",
                              .repeat = p->repeat};
    if (sscanf(p->input, "%dx%dx%d", &to.c, &to.h, &to.w) != 3 || to.c < 1 || to.h < 1 ||
        to.w < 1 || p->batch < 1 || p->micro < 1 || p->steps < 1 || p->threads < 1 ||
        p->classes < 2 || !strcmp(p->transport, "ipc")) {
        fprintf(stderr,
                "eigenbatch %s: training mode needs --input CxHxW, positive --batch, "
                "--micro-batch, --steps, --threads, --classes >= 2, and tcp or "
                "inproc\n",
                S_CMD);
        return 2;
    }
    if (!strcmp(p->transport, "inproc"))
        to.where = "bench-ps-train";
    return s_bench_train_ps(&to);
}

/* Seconds of the last run's rounds: from step 0's weights to the final weights (R pushes and R
 * pulls); the slowest worker defines the round. */
static double s_slowest(const struct s_null *nulls, long workers, long rounds)
{
    double d_run = 0;
    for (long i = 0; i < workers; i++) {
        double d = nulls[i].t[rounds] - nulls[i].t[0];
        if (d > d_run)
            d_run = d;
    }
    return d_run;
}

/* The best times so far of the three measurements (seconds; < 0: none yet). */
struct s_best {
    double secs;       /* the plain rounds */
    double raw_secs;   /* the raw TCP baseline */
    double curve_secs; /* the rounds with CurveZMQ */
};

/*
 * One repeat: the rounds encrypted with the keys in key_file (with --curve, before the plain
 * ones), the plain rounds, then the raw TCP baseline of the same bytes; each keeps its best time
 * in *b. Returns 0, or 1 with the reason printed.
 */
static int s_repeat_once(const struct s_ps_opts *p, const struct cluster_embed_cfg *cc,
                         const struct s_null *nulls, const char *key_file, struct s_best *b)
{
    if (p->curve) {
        int rc = rt_curve_configure(key_file, NULL, NULL);
        if (!rc)
            rc = cluster_embed_run(cc, NULL, NULL, NULL);
        rt_curve_clear();
        if (rc) {
            fprintf(stderr, "eigenbatch %s: --curve: %s\n", S_CMD, rt_err_msg());
            return 1;
        }
        double d_run = s_slowest(nulls, p->workers, p->rounds);
        if (b->curve_secs < 0 || d_run < b->curve_secs)
            b->curve_secs = d_run;
    }
    int rc = cluster_embed_run(cc, NULL, NULL, NULL);
    if (rc) {
        fprintf(stderr, "eigenbatch %s: %s\n", S_CMD, rt_err_msg());
        return 1;
    }
    double d_run = s_slowest(nulls, p->workers, p->rounds);
    if (b->secs < 0 || d_run < b->secs)
        b->secs = d_run;
    if (p->baseline) {
        double d = s_raw_tcp((size_t)p->floats * sizeof(float), p->rounds);
        if (d > 0 && (b->raw_secs < 0 || d < b->raw_secs))
            b->raw_secs = d;
    }
    return 0;
}

/* Print the best times as text lines, then the JSON object. Returns 0, or 1 with the reason. */
static int s_report_rounds(const struct s_ps_opts *p, const struct s_best *b)
{
    double model_bytes = (double)p->floats * sizeof(float), rounds = (double)p->rounds;
    double secs = b->secs, raw_secs = b->raw_secs, curve_secs = b->curve_secs;
    double gbps = 2.0 * model_bytes * (double)p->workers * rounds / secs / 1e9;
    double raw_gbps = raw_secs > 0 ? 2.0 * model_bytes * rounds / raw_secs / 1e9 : 0;
    printf("ps %-6s floats %ld shards %ld workers %ld rounds %ld: %.2f ms/round, %.3f GB/s\n",
           p->transport, p->floats, p->shards, p->workers, p->rounds, 1e3 * secs / rounds, gbps);
    if (raw_gbps > 0)
        printf("raw tcp loopback, same bytes, preallocated buffers: %.2f ms/round, %.3f GB/s; "
               "ratio %.2f\n",
               1e3 * raw_secs / rounds, raw_gbps, gbps / raw_gbps);
    json_t *j = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:f, s:f, s:f}", "bench", "ps", "transport",
        p->transport, "floats", (json_int_t)p->floats, "shards", (json_int_t)p->shards, "workers",
        (json_int_t)p->workers, "rounds", (json_int_t)p->rounds, "repeat", (json_int_t)p->repeat,
        "chunk_floats", (json_int_t)(p->chunk ? p->chunk : SERVER_CHUNK_FLOATS_DEFAULT), "checksum",
        p->ck_name, "ms_per_round", 1e3 * secs / rounds, "gbytes_per_s", gbps,
        "raw_tcp_gbytes_per_s", raw_gbps);
    if (j && raw_gbps > 0)
        json_object_set_new(j, "ratio", json_real(gbps / raw_gbps));
    if (curve_secs > 0) {
        double c_gbps = 2.0 * model_bytes * (double)p->workers * rounds / curve_secs / 1e9;
        printf("same rounds with CurveZMQ: %.2f ms/round, %.3f GB/s; encrypted/plain %.3f\n",
               1e3 * curve_secs / rounds, c_gbps, c_gbps / gbps);
        if (j) {
            json_object_set_new(j, "curve_ms_per_round", json_real(1e3 * curve_secs / rounds));
            json_object_set_new(j, "curve_gbytes_per_s", json_real(c_gbps));
            json_object_set_new(j, "curve_ratio", json_real(c_gbps / gbps));
        }
    }
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!line) {
        fprintf(stderr, "eigenbatch %s: cannot format the result\n", S_CMD);
        json_decref(j);
        return 1;
    }
    printf("%s\n", line);
    free(line);
    json_decref(j);
    return 0;
}

/*
 * Transport mode: set up the keys (--curve), the ipc directory, a fixed schedule and the null
 * workers, run the rounds --repeat times (s_repeat_once) and report the best. Returns the status.
 */
static int s_rounds_mode(const struct s_ps_opts *p)
{
    int status = 1;
    long workers = p->workers, rounds = p->rounds;
    char ipc_dir[] = "/tmp/eb-bench-XXXXXX", key_dir[] = "/tmp/eb-bench-keys-XXXXXX";
    char key_prefix[sizeof key_dir + 8], key_file[sizeof key_prefix + 8];
    if (p->curve) {
        snprintf(key_prefix, sizeof key_prefix, "%s/k", mkdtemp(key_dir) ? key_dir : "");
        snprintf(key_file, sizeof key_file, "%s.key", key_prefix);
        if (!key_dir[0] || rt_curve_keygen(key_prefix)) {
            fprintf(stderr, "eigenbatch %s: keys for --curve: %s\n", S_CMD, rt_err_msg());
            return 1;
        }
    }
    const char *where = "127.0.0.1";
    if (!strcmp(p->transport, "ipc")) {
        if (!mkdtemp(ipc_dir)) {
            fprintf(stderr, "eigenbatch %s: mkdtemp: %s\n", S_CMD, strerror(errno));
            return 1;
        }
        where = ipc_dir;
    } else if (!strcmp(p->transport, "inproc")) {
        where = "bench-ps";
    }
    struct server_fixsched_cfg fc = {.batch = (uint32_t)workers * 8,
                                     .lr = 0.0f,
                                     .n_samples = 1u << 30,
                                     .steps = (uint64_t)rounds};
    struct server_coord_sched sched;
    float *init = nn_alloc((size_t)p->floats * sizeof(float));
    struct s_null nulls[S_MAX_WORKERS];
    struct worker_compute cbs[S_MAX_WORKERS];
    double *stamps = calloc((size_t)workers * (size_t)(rounds + 1), sizeof(double));
    if (!init || !stamps || server_fixsched_new(&fc, &sched)) {
        fprintf(stderr, "eigenbatch %s: out of memory\n", S_CMD);
        goto out;
    }
    for (long i = 0; i < workers; i++) {
        nulls[i] = (struct s_null){stamps + i * (rounds + 1), (uint64_t)rounds};
        cbs[i] = (struct worker_compute){
            .user = &nulls[i], .compute = s_null_compute, .finish = s_null_finish};
    }
    struct cluster_embed_cfg cc = {
        .n_shards = (int)p->shards,
        .n_workers = (int)workers,
        .transport = p->transport,
        .where = where,
        .n_params = (uint64_t)p->floats,
        .momentum = 0.9f,
        .sched = &sched,
        .init_params = init,
        .compute = cbs,
        .chunk_floats = (uint32_t)p->chunk,
        .checksum = p->ck,
        .io_threads = (int)p->io_threads,
    };
    struct s_best best = {.secs = -1, .raw_secs = -1, .curve_secs = -1};
    for (long r = 0; r < p->repeat; r++)
        if (s_repeat_once(p, &cc, nulls, key_file, &best)) {
            server_fixsched_destroy(&sched);
            goto out;
        }
    server_fixsched_destroy(&sched);
    status = s_report_rounds(p, &best);
out:
    if (!strcmp(p->transport, "ipc"))
        rmdir(ipc_dir);
    if (p->curve) {
        unlink(key_file);
        snprintf(key_file, sizeof key_file, "%s.pub", key_prefix);
        unlink(key_file);
        rmdir(key_dir);
    }
    nn_free(init);
    free(stamps);
    return status;
}

int eb_bench_ps(int argc, char **argv)
{
    struct s_ps_opts p;
    int rc = s_parse(argc, argv, &p);
    if (rc >= 0)
        return rc;
    if (!getenv("EB_LOG"))
        rt_log_set_level(RT_LOG_WARN);
    if (p.model)
        return s_train_mode(&p);
    return s_rounds_mode(&p);
}
