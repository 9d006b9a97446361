/*
 * cmd_eigensvc: `eigenbatch eigensvc`: the eigen service alone, as a process, against running
 * shards (started by `eigenbatch server` / `launch`):
 *
 *   eigenbatch eigensvc --connect EP0,EP1,... --model M --data DIR [--classes N] [--pub EP]
 *       [--query EP] [--test-data DIR] [--method ABS|ABSA] [--epochs E] [--batch B]
 *       [--batch-max B] [--lr LR] [--lr-cap C] [--alpha A] [--beta B] [--kappa K]
 *       [--hessian-batch N] [--block-last K] [--bn eval|train] [--preset paper|accurate]
 *       [--seed S] [--threads T] [--metrics FILE] [--timeout-ms MS] [--decay E1,E2,...]
 *       [--rho R] [--sync 0|1] [--omega W] [--gamma G] [--tau T] [--security-key FILE]
 *       [--security-server-pub FILE] [--security-allowed LIST]
 *
 * Every option can also come from the environment: EB_ and the option's name in upper case with
 * '-' as '_' (EB_CONNECT, EB_PUB, ...); a flag wins over the environment. The ABS settings must be
 * those of the coordinator's schedule (same batch, batch_max, lr), as `launch` passes them.
 */
#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_cli.h"
#include "eigensvc.h"
#include "rt_curve.h"
#include "rt_err.h"

#define S_CMD "eigensvc"

/* Option indices, in s_opts order. */
enum s_opt {
    O_CONNECT,
    O_PUB,
    O_QUERY,
    O_MODEL,
    O_DATA,
    O_TEST_DATA,
    O_CLASSES,
    O_METHOD,
    O_EPOCHS,
    O_BATCH,
    O_BATCH_MAX,
    O_LR,
    O_LR_CAP,
    O_ALPHA,
    O_BETA,
    O_KAPPA,
    O_HESSIAN_BATCH,
    O_BLOCK_LAST,
    O_BN,
    O_PRESET,
    O_SEED,
    O_THREADS,
    O_METRICS,
    O_TIMEOUT_MS,
    O_DECAY,
    O_HELP,
    O_RHO,
    O_SYNC,
    O_POLL_MS,
    O_OMEGA,
    O_GAMMA,
    O_TAU,
    O_SEC_KEY,
    O_SEC_SERVER_PUB,
    O_SEC_ALLOWED,
    S_N_OPTS
};

static atomic_int s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    atomic_store(&s_stop, 1);
}

static const struct option s_opts[S_N_OPTS + 1] = {{"connect", required_argument, NULL, 0},
                                                   {"pub", required_argument, NULL, 0},
                                                   {"query", required_argument, NULL, 0},
                                                   {"model", required_argument, NULL, 0},
                                                   {"data", required_argument, NULL, 0},
                                                   {"test-data", required_argument, NULL, 0},
                                                   {"classes", required_argument, NULL, 0},
                                                   {"method", required_argument, NULL, 0},
                                                   {"epochs", required_argument, NULL, 0},
                                                   {"batch", required_argument, NULL, 0},
                                                   {"batch-max", required_argument, NULL, 0},
                                                   {"lr", required_argument, NULL, 0},
                                                   {"lr-cap", required_argument, NULL, 0},
                                                   {"alpha", required_argument, NULL, 0},
                                                   {"beta", required_argument, NULL, 0},
                                                   {"kappa", required_argument, NULL, 0},
                                                   {"hessian-batch", required_argument, NULL, 0},
                                                   {"block-last", required_argument, NULL, 0},
                                                   {"bn", required_argument, NULL, 0},
                                                   {"preset", required_argument, NULL, 0},
                                                   {"seed", required_argument, NULL, 0},
                                                   {"threads", required_argument, NULL, 0},
                                                   {"metrics", required_argument, NULL, 0},
                                                   {"timeout-ms", required_argument, NULL, 0},
                                                   {"decay", required_argument, NULL, 0},
                                                   {"help", no_argument, NULL, 0},
                                                   {"rho", required_argument, NULL, 0},
                                                   {"sync", required_argument, NULL, 0},
                                                   {"poll-ms", required_argument, NULL, 0},
                                                   {"omega", required_argument, NULL, 0},
                                                   {"gamma", required_argument, NULL, 0},
                                                   {"tau", required_argument, NULL, 0},
                                                   {"security-key", required_argument, NULL, 0},
                                                   {"security-server-pub", required_argument,
                                                    NULL, 0},
                                                   {"security-allowed", required_argument, NULL,
                                                    0},
                                                   {NULL, 0, NULL, 0}};

static void s_usage(FILE *f)
{
    fprintf(f, "usage: eigenbatch eigensvc --connect EP0,EP1,... --model M --data DIR [options]\n"
               "options (or environment EB_<NAME>):");
    for (int i = 0; i < S_N_OPTS; i++)
        fprintf(f, "%s--%s", i % 6 ? " " : "\n  ", s_opts[i].name);
    fprintf(f, "\n");
}

int eb_eigensvc_parse(int argc, char **argv, struct eb_eigensvc_opts *o, int *help)
{
    memset(o, 0, sizeof *o);
    *help = 0;
    struct eigensvc_cfg *out = &o->cfg;
    const char *val[S_N_OPTS] = {0};
    /* environment first, flags override */
    for (int i = 0; i < S_N_OPTS; i++) {
        char env[64] = "EB_";
        size_t k = 3;
        for (const char *p = s_opts[i].name; *p && k < sizeof env - 1; p++)
            env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[k] = '\0';
        val[i] = getenv(env);
    }
    optind = 1;
    opterr = 0;
    int idx = -1, ch;
    while ((ch = getopt_long(argc, argv, "", s_opts, &idx)) != -1) {
        if (ch != 0) {
            fprintf(stderr, "eigenbatch eigensvc: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            s_usage(stderr);
            return 2;
        }
        if (strcmp(s_opts[idx].name, "help") == 0) {
            *help = 1;
            return 0;
        }
        val[idx] = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "eigenbatch eigensvc: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    const char *connect = val[O_CONNECT], *pub = val[O_PUB], *query = val[O_QUERY],
               *model = val[O_MODEL], *data = val[O_DATA], *test = val[O_TEST_DATA],
               *method = val[O_METHOD] ? val[O_METHOD] : "ABS",
               *bn_name = val[O_BN] ? val[O_BN] : "eval",
               *preset_name = val[O_PRESET] ? val[O_PRESET] : "paper",
               *metrics_path = val[O_METRICS];
    if (!connect || !model || !data) {
        fprintf(stderr, "eigenbatch eigensvc: --connect, --model and --data are required\n");
        s_usage(stderr);
        return 2;
    }
    long classes = 10, epochs = 0, batch = 128, batch_max = 16384, kappa = 10, hb = 128, block = 0,
         seed = 0, threads = 1, timeout_ms = 0, tau = -1;
    double lr = 0.1, lr_cap = 0, alpha = 2, beta = 2, rho = -1, omega = 2, gamma = -1;
    long sync = 0, poll_ms = 0;
    struct {
        int i;
        long *out;
    } ints[] = {{O_CLASSES, &classes},  {O_EPOCHS, &epochs},
                {O_BATCH, &batch},      {O_BATCH_MAX, &batch_max},
                {O_KAPPA, &kappa},      {O_HESSIAN_BATCH, &hb},
                {O_BLOCK_LAST, &block}, {O_SEED, &seed},
                {O_THREADS, &threads},  {O_TIMEOUT_MS, &timeout_ms},
                {O_SYNC, &sync},        {O_POLL_MS, &poll_ms},
                {O_TAU, &tau}};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
        if (val[ints[k].i] &&
            eb_cli_int(S_CMD, s_opts[ints[k].i].name, val[ints[k].i], ints[k].out))
            return 2;
    struct {
        int i;
        double *out;
    } dbls[] = {{O_LR, &lr},   {O_LR_CAP, &lr_cap}, {O_ALPHA, &alpha}, {O_BETA, &beta},
                {O_RHO, &rho}, {O_OMEGA, &omega},   {O_GAMMA, &gamma}};
    for (size_t k = 0; k < sizeof dbls / sizeof dbls[0]; k++)
        if (val[dbls[k].i] &&
            eb_cli_double(S_CMD, s_opts[dbls[k].i].name, val[dbls[k].i], dbls[k].out))
            return 2;
    int adversarial;
    if (strcasecmp(method, "ABS") == 0) {
        adversarial = 0;
    } else if (strcasecmp(method, "ABSA") == 0) {
        adversarial = 1;
    } else {
        fprintf(stderr, "eigenbatch eigensvc: --method '%s': ABS or ABSA\n", method);
        return 2;
    }
    if (classes < 1 || epochs < 0 || batch < 1 || hb < 1 || block < 0 || seed < 0 || threads < 0 ||
        timeout_ms < 0 || kappa < 0) {
        fprintf(stderr, "eigenbatch eigensvc: a count option is out of range\n");
        return 2;
    }
    enum nn_bn_mode bn;
    if (strcasecmp(bn_name, "eval") == 0) {
        bn = NN_BN_EVAL;
    } else if (strcasecmp(bn_name, "train") == 0) {
        bn = NN_BN_TRAIN;
    } else {
        fprintf(stderr, "eigenbatch eigensvc: --bn '%s': eval or train\n", bn_name);
        return 2;
    }
    enum eig_power_preset preset;
    if (eig_power_preset_parse(preset_name, &preset)) {
        fprintf(stderr, "eigenbatch eigensvc: %s\n", rt_err_msg());
        return 2;
    }

    o->sec_key = val[O_SEC_KEY];
    o->sec_server_pub = val[O_SEC_SERVER_PUB];
    o->sec_allowed = val[O_SEC_ALLOWED];

    /* shard endpoints */
    char *list = o->list = strdup(connect);
    const char **eps = o->eps;
    int n_shards = 0;
    if (!list) {
        fprintf(stderr, "eigenbatch eigensvc: out of memory\n");
        return 2;
    }
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n_shards == EB_EIGENSVC_MAX_SHARDS) {
            fprintf(stderr, "eigenbatch eigensvc: more than %d endpoints\n",
                    EB_EIGENSVC_MAX_SHARDS);
            return 2;
        }
        eps[n_shards++] = t;
    }
    o->metrics = metrics_path;
    struct eigensvc_cfg cfg = {.n_shards = n_shards,
                               .endpoints = eps,
                               .pub_endpoint = pub,
                               .query_endpoint = query,
                               .model = model,
                               .classes = (int)classes,
                               .train_db = data,
                               .test_db = test,
                               .hessian_batch = (int)hb,
                               .seed = (uint64_t)seed,
                               .block_last_k = (int)block,
                               .bn = bn,
                               .threads = (int)threads,
                               .timeout_ms = (int)timeout_ms,
                               .epochs = (int)epochs};
    eig_power_config_preset(&cfg.power, preset);
    cfg.power.seed = (uint64_t)seed;
    eig_abs_config_default(&cfg.abs, epochs > 0 ? (int32_t)epochs : 2, adversarial);
    cfg.abs.batch0 = batch;
    cfg.abs.batch_max = batch_max;
    cfg.abs.lr0 = lr;
    cfg.abs.lr_cap = lr_cap;
    cfg.abs.alpha = alpha;
    cfg.abs.beta = beta;
    cfg.abs.kappa = (int32_t)kappa;
    cfg.abs.omega = omega;
    if (gamma >= 0)
        cfg.abs.gamma0 = gamma;
    if (tau >= 0)
        cfg.abs.tau = (int32_t)tau;
    if (rho > 0)
        cfg.abs.rho = rho;
    cfg.sync = sync != 0;
    cfg.poll_ms = (int)poll_ms;
    if (val[O_DECAY]) { /* --decay E1,E2,...: the schedule's decay epochs */
        char *d = strdup(val[O_DECAY]);
        for (char *save = NULL, *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            long e;
            if (cfg.abs.n_decay == EIG_ABS_MAX_DECAY || eb_cli_int(S_CMD, "decay", t, &e)) {
                free(d);
                return 2;
            }
            cfg.abs.decay_epochs[cfg.abs.n_decay++] = (int32_t)e;
        }
        free(d);
    }
    *out = cfg;
    return 0;
}

void eb_eigensvc_opts_free(struct eb_eigensvc_opts *o)
{
    free(o->list);
    o->list = NULL;
}

int eb_cmd_eigensvc(int argc, char **argv)
{
    struct eb_eigensvc_opts *o = calloc(1, sizeof *o);
    int help = 0;
    if (!o) {
        fprintf(stderr, "eigenbatch eigensvc: out of memory\n");
        return 1;
    }
    int status = eb_eigensvc_parse(argc, argv, o, &help);
    if (status || help) {
        if (help)
            s_usage(stdout);
        eb_eigensvc_opts_free(o);
        free(o);
        return status;
    }
    struct eigensvc_cfg cfg = o->cfg;
    const char *metrics_path = o->metrics;
    status = 1;
    rt_metrics_t *mt = NULL;
    eigensvc_t *svc = NULL;
    if (metrics_path && rt_metrics_open(metrics_path, 1, &mt)) {
        fprintf(stderr, "eigenbatch eigensvc: %s\n", rt_err_msg());
        goto out;
    }
    cfg.metrics = mt;
    /* CURVE security (rt_curve.h), as the roles of `launch` have it */
    if (rt_curve_configure(o->sec_key, o->sec_server_pub, o->sec_allowed)) {
        fprintf(stderr, "eigenbatch eigensvc: %s\n", rt_err_msg());
        goto out;
    }
    if (eigensvc_new(&cfg, &svc)) {
        fprintf(stderr, "eigenbatch eigensvc: %s\n", rt_err_msg());
        goto out;
    }
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    int rc = eigensvc_run(svc, &s_stop);
    if (rc && rc != RT_ERR_INTERRUPTED) {
        fprintf(stderr, "eigenbatch eigensvc: %s\n", rt_err_msg());
        goto out;
    }
    status = 0;
out:
    eigensvc_destroy(&svc);
    rt_metrics_close(&mt);
    eb_eigensvc_opts_free(o);
    free(o);
    return status;
}
