/*
 * eigensvc: the eigen service (see eigensvc.h).
 *
 * Loop: poll the shards for the latest epoch-start snapshot (eig_observer). A snapshot of the
 * start of epoch e >= 1 holds the weights at the end of epoch e - 1: while the ABS rule wants
 * measurements, compute the top Hessian eigenvalue on a fresh Hessian batch (the first
 * hessian_batch positions of the loader's permutation of epoch e - 1 for the service's seed, with
 * the evaluation transform: no augmentation), feed the rule, send the decision to the coordinator
 * (which stamps the step it applies from), publish it over PUB when the coordinator accepted it
 * (a refused, stale, superseded or no-change decision is never published nor served as current:
 * no subscriber can act on it), and write a metrics event "eig" with the verdict either way. Epochs
 * whose snapshot the service missed (it was busy) are fed to the rule as "no measurement" first, so
 * the kappa timer still counts them. Optionally the snapshot is evaluated on the test set (event
 * "eval"). Between polls, "current decision" queries of late joiners are answered on the query
 * endpoint, and so are heartbeats (the status probe of `eigenbatch ping`).
 *
 * With `decisions: sync` the coordinator holds the start of epoch e until the decision of epoch
 * e - 1 arrived, so the service sends one for every epoch (without a measurement once B_max is
 * reached), and it is stamped exactly at the epoch start, as in the reference.
 *
 * The rule's state (struct rt_wire_abs) travels with each decision; the coordinator keeps the
 * latest and writes it into checkpoints. Before its first epoch end the service asks the
 * coordinator for the state it holds (eig_observer_abs_state) and continues from it: a run
 * resumed from a checkpoint, or a restarted service, goes on with lambda_ref, duration, B and lr
 * where they were.
 *
 * Sequence numbers are epoch + 1, so a restarted service sends the same numbers for the same
 * epochs and the coordinator sees duplicates rather than superseded decisions. When the
 * coordinator answers "stale" or "superseded" (another service instance decided meanwhile), it
 * sends the latest decision it holds and the rule resumes from it (s_resume).
 */
#include "eigensvc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "app_model.h"
#include "eig_hvp.h"
#include "nn_backend.h"
#include "rt_decsub.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_loader.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "eig_observer.h"

#define S_NAME "eigensvc"
#define S_POLL_MS_DEFAULT 20             /* between snapshot polls */
#define S_SNAPSHOT_WAIT_MS 2000          /* one snapshot request's patience */
#define S_DECIDE_WAIT_MS 5000            /* the coordinator's answer to a decision */
#define S_TIMEOUT_DEFAULT 30000          /* shards silent this long: training is over */
#define S_SEED_MIX 0x9E3779B97F4A7C15ull /* spreads epochs over power-iteration seeds */

struct eigensvc {
    struct eigensvc_cfg cfg; /* configuration (strings borrowed) */
    void *ctx;               /* ZeroMQ context */
    int own_ctx;             /* created here */
    eig_observer_t *obs;     /* snapshots and decisions */
    void *pub;               /* PUB socket, or NULL */
    void *query;             /* ROUTER answering CURRENT, or NULL */
    struct rt_sock_in in;    /* the query being answered */
    rt_loader_t *train;      /* Hessian batches */
    rt_loader_t *test;       /* test set, or NULL */
    nn_net_t *net;           /* the model; its params/buffers receive each snapshot */
    eig_power_t *pw;         /* power iteration */
    eig_abs_t *abs;          /* the ABS rule */
    float *x;                /* Hessian (and eval) batch inputs */
    int32_t *y;              /* labels */
    size_t sample;           /* floats per sample */
    uint64_t seq_offset;     /* added to epoch + 1 to form sequence numbers (see s_resume) */
    int have_current;        /* a decision has been published */
    int asked_state;         /* the coordinator was asked for the ABS state it holds */
    struct rt_wire_decision current; /* the last one published (accepted by the coordinator) */
};

static int s_check_cfg(const struct eigensvc_cfg *c)
{
    if (c->n_shards < 1 || !c->endpoints)
        return rt_err_set(RT_ERR_CONFIG, "eigensvc: %d shards / no endpoints", c->n_shards);
    for (int i = 0; i < c->n_shards; i++)
        if (!c->endpoints[i])
            return rt_err_set(RT_ERR_CONFIG, "eigensvc: shard %d has no endpoint", i);
    if (!c->model || !c->train_db)
        return rt_err_set(RT_ERR_CONFIG, "eigensvc: model and train_db are required");
    if (c->classes < 1)
        return rt_err_set(RT_ERR_CONFIG, "eigensvc: classes %d", c->classes);
    if (c->hessian_batch < 1)
        return rt_err_set(RT_ERR_CONFIG, "eigensvc: hessian_batch %d", c->hessian_batch);
    if (c->block_last_k < 0)
        return rt_err_set(RT_ERR_CONFIG, "eigensvc: block_last_k %d", c->block_last_k);
    if (c->bn != NN_BN_EVAL && c->bn != NN_BN_TRAIN)
        return rt_err_set(RT_ERR_CONFIG, "eigensvc: BatchNorm mode %d", (int)c->bn);
    if (c->epochs < 0 || c->timeout_ms < 0 || c->poll_ms < 0 || c->threads < 0)
        return rt_err_set(RT_ERR_CONFIG, "eigensvc: negative epochs, timeout, poll or threads");
    return eig_abs_config_check(&c->abs);
}

/* A loader of path for Hessian batches or evaluation: the run's loader options when given (with
 * no threads: records are read one by one), else the records as stored. */
static int s_open_data(const struct eigensvc_cfg *cfg, const char *path, rt_loader_t **out)
{
    size_t hb = (size_t)cfg->hessian_batch;
    if (!cfg->use_loader)
        return app_model_open_plain(path, cfg->seed, hb, out);
    struct rt_loader_opts lo = cfg->loader;
    lo.threads = 0;
    lo.seed = cfg->seed;
    if (lo.max_batch < hb)
        lo.max_batch = hb;
    return rt_loader_new(path, &lo, out);
}

int eigensvc_new(const struct eigensvc_cfg *cfg, eigensvc_t **out)
{
    *out = NULL;
    int rc = s_check_cfg(cfg);
    if (rc)
        return rc;
    eigensvc_t *s = calloc(1, sizeof *s);
    if (!s)
        return rt_err_set(RT_ERR_NOMEM, "eigensvc");
    s->cfg = *cfg;
    if (!s->cfg.timeout_ms)
        s->cfg.timeout_ms = S_TIMEOUT_DEFAULT;
    if (!s->cfg.poll_ms)
        s->cfg.poll_ms = S_POLL_MS_DEFAULT;
    rt_sock_in_init(&s->in, S_NAME, 1, NULL); /* queries carry no payload */
    if (cfg->threads > 0)
        nn_set_threads(cfg->threads);
    size_t hb = (size_t)cfg->hessian_batch;
    if ((rc = s_open_data(cfg, cfg->train_db, &s->train)))
        goto out_destroy;
    if ((size_t)cfg->hessian_batch > rt_loader_count(s->train)) {
        rc = rt_err_set(RT_ERR_CONFIG, "eigensvc: hessian_batch %d but %s holds %zu records",
                        cfg->hessian_batch, cfg->train_db, rt_loader_count(s->train));
        goto out_destroy;
    }
    int c, h, w;
    rt_loader_shape(s->train, &c, &h, &w);
    if (cfg->test_db) {
        if ((rc = s_open_data(cfg, cfg->test_db, &s->test)))
            goto out_destroy;
        int tc, th, tw;
        rt_loader_shape(s->test, &tc, &th, &tw);
        if (tc != c || th != h || tw != w) {
            rc =
                rt_err_set(RT_ERR_SHAPE, "eigensvc: test set %s is %dx%dx%d, training set %dx%dx%d",
                           cfg->test_db, tc, th, tw, c, h, w);
            goto out_destroy;
        }
    }
    if ((rc = app_model_net(cfg->model, s->train, cfg->classes, cfg->hessian_batch, 0, &s->net))) {
        rc = rt_err_set(rc, "eigensvc: %s", rt_err_msg());
        goto out_destroy;
    }
    if (cfg->device && strcmp(cfg->device, "cpu") &&
        nn_net_to_backend(s->net, cfg->device, cfg->model) != NN_OK) {
        rc = rt_err_set(RT_ERR_ARG, "eigensvc: eigensvc.device %s: %s", cfg->device,
                        *nn_backend_why() ? nn_backend_why() : "the model does not fit the device");
        goto out_destroy;
    }
    if (cfg->block_last_k > nn_net_param_layers(s->net)) {
        rc = rt_err_set(RT_ERR_CONFIG, "eigensvc: block of the last %d layers, %s has %d",
                        cfg->block_last_k, cfg->model, nn_net_param_layers(s->net));
        goto out_destroy;
    }
    s->sample = (size_t)c * (size_t)h * (size_t)w;
    s->x = malloc(hb * s->sample * sizeof(float));
    s->y = malloc(hb * sizeof(int32_t));
    if (!s->x || !s->y) {
        rc = rt_err_set(RT_ERR_NOMEM, "eigensvc: batch of %zu samples", hb);
        goto out_destroy;
    }
    if (!(s->pw = eig_power_new(nn_net_param_count(s->net), &cfg->power)) ||
        !(s->abs = eig_abs_new(&cfg->abs))) {
        rc = RT_ERR_CONFIG;
        goto out_destroy;
    }
    if (cfg->zmq_ctx) {
        s->ctx = cfg->zmq_ctx;
    } else {
        if (!(s->ctx = rt_sock_ctx_new(1))) {
            rc = RT_ERR_ZMQ;
            goto out_destroy;
        }
        s->own_ctx = 1;
    }
    rc = eig_observer_new(s->ctx, cfg->n_shards, cfg->endpoints, nn_net_param_count(s->net),
                          nn_net_buffer_count(s->net), &s->obs);
    if (rc)
        goto out_destroy;
    if (cfg->pub_endpoint) {
        s->pub = zmq_socket(s->ctx, ZMQ_PUB);
        if (!s->pub) {
            rc = rt_err_set(RT_ERR_ZMQ, "eigensvc: PUB socket for %s: %s", cfg->pub_endpoint,
                            zmq_strerror(zmq_errno()));
            goto out_destroy;
        }
        if ((rc = rt_sock_bind(s->ctx, s->pub, cfg->pub_endpoint)))
            goto out_destroy;
    }
    if (cfg->query_endpoint && (rc = rt_sock_router(s->ctx, cfg->query_endpoint, 0, &s->query)))
        goto out_destroy;
    *out = s;
    return RT_OK;
out_destroy:
    eigensvc_destroy(&s);
    return rc;
}

void eigensvc_destroy(eigensvc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    eigensvc_t *s = *self_p;
    rt_sock_in_close(&s->in);
    rt_sock_close(&s->query, 0);
    rt_sock_close(&s->pub, 0);
    eig_observer_destroy(&s->obs);
    if (s->own_ctx)
        rt_sock_ctx_destroy(&s->ctx);
    eig_abs_destroy(&s->abs);
    eig_power_destroy(&s->pw);
    nn_net_destroy(&s->net);
    rt_loader_destroy(&s->test);
    rt_loader_destroy(&s->train);
    free(s->x);
    free(s->y);
    free(s);
    *self_p = NULL;
}

/* Answer every pending CURRENT query (non-blocking). */
static void s_serve_queries(eigensvc_t *s)
{
    while (s->query && rt_sock_recv_msg(s->query, &s->in, ZMQ_DONTWAIT, "a late joiner") == RT_OK) {
        struct rt_wire_msg r;
        if (s->in.m.type == RT_WIRE_HEARTBEAT) {
            /* a status probe (eigenbatch ping): the service is alive between its polls */
            rt_wire_msg_init(&r, RT_WIRE_HEARTBEAT, -1, S_NAME);
            if (rt_sock_send(s->query, s->in.route, s->in.route_len, &r, NULL, NULL, NULL))
                RT_WARN(S_NAME, "heartbeat reply failed: %s", rt_err_msg());
            continue;
        }
        if (s->in.m.type != RT_WIRE_CURRENT) {
            RT_WARN(S_NAME, "dropped a query: %s", rt_wire_type_name(s->in.m.type));
            continue;
        }
        if (s->have_current) {
            rt_wire_msg_init(&r, RT_WIRE_PUBLISH, -1, S_NAME);
            r.decision = s->current;
            r.epoch = (uint64_t)s->current.epoch;
            r.step = s->current.snapshot_version;
            r.sched_version = s->current.sched_version;
        } else {
            rt_wire_msg_init(&r, RT_WIRE_ERROR, -1, S_NAME);
            r.err_code = RT_ERR_STATE;
            snprintf(r.text, sizeof r.text, "no decision yet");
        }
        if (rt_sock_send(s->query, s->in.route, s->in.route_len, &r, NULL, NULL, NULL))
            RT_WARN(S_NAME, "query reply failed: %s", rt_err_msg());
    }
}

/* Load the Hessian batch of epoch e: positions [0, hessian_batch) of its permutation. */
static int s_hessian_batch(eigensvc_t *s, uint64_t epoch)
{
    for (int i = 0; i < s->cfg.hessian_batch; i++) {
        size_t idx = rt_loader_perm_index(s->train, epoch, (size_t)i);
        int rc = rt_loader_read(s->train, idx, 1, s->x + (size_t)i * s->sample, s->y + i);
        if (rc)
            return rc;
        if (s->y[i] < 0 || s->y[i] >= s->cfg.classes)
            return rt_err_set(RT_ERR_FORMAT,
                              "eigensvc: %s record %zu has label %d, outside "
                              "[0, %d)",
                              s->cfg.train_db, idx, (int)s->y[i], s->cfg.classes);
    }
    return RT_OK;
}

/* Test-set accuracy and loss of the snapshot in the net (metrics event "eval"). */
static int s_evaluate(eigensvc_t *s, uint64_t epoch, uint64_t version)
{
    double t0 = rt_clock_now(), accuracy, loss;
    uint64_t n;
    int rc = app_model_evaluate(s->net, s->test, s->x, s->y, &accuracy, &loss, &n);
    if (rc)
        return rt_err_set(rc, "eigensvc: %s: %s", s->cfg.test_db, rt_err_msg());
    if (s->cfg.metrics) {
        rt_metrics_begin(s->cfg.metrics, "eval");
        rt_metrics_int(s->cfg.metrics, "epoch", (long long)epoch - 1);
        rt_metrics_int(s->cfg.metrics, "snapshot_version", (long long)version);
        rt_metrics_num(s->cfg.metrics, "accuracy", accuracy);
        rt_metrics_num(s->cfg.metrics, "loss", loss);
        rt_metrics_int(s->cfg.metrics, "samples", (long long)n);
        rt_metrics_num(s->cfg.metrics, "seconds", rt_clock_now() - t0);
        rt_metrics_end(s->cfg.metrics);
    }
    RT_INFO(S_NAME, "epoch %llu: test accuracy %.4f loss %.4f", (unsigned long long)epoch - 1,
            accuracy, loss);
    return RT_OK;
}

/* Resume the rule from the coordinator's latest decision h, after our decision for epoch `ended`
 * was stale or superseded: its B, base lr and gamma are in force; lambda_ref becomes its
 * eigenvalue (when it had one) and the kappa timer counts from its epoch. Later sequence numbers
 * follow its own. */
static int s_resume(eigensvc_t *s, const struct rt_wire_decision *h, int32_t ended)
{
    struct rt_wire_abs st;
    eig_abs_get_state(s->abs, &st);
    st.batch = h->batch;
    st.lr_base = h->lr_base;
    st.gamma_base = h->gamma_base;
    if (isfinite(h->lambda)) {
        st.lambda_ref = h->lambda;
        st.has_ref = 1;
    }
    st.duration = ended > h->epoch ? ended - h->epoch : 0;
    st.measuring = h->batch < s->cfg.abs.batch_max;
    st.increases = (int32_t)h->sched_version;
    st.last_epoch = ended;
    int rc = eig_abs_set_state(s->abs, &st);
    if (rc)
        return rc;
    if (h->seq >= (uint64_t)ended + 1 + s->seq_offset)
        s->seq_offset = h->seq - (uint64_t)ended;
    RT_WARN(S_NAME,
            "epoch %d: resumed from the coordinator's decision %llu (epoch %d, B %lld, "
            "lr %g)",
            (int)ended, (unsigned long long)h->seq, (int)h->epoch, (long long)h->batch, h->lr_base);
    return RT_OK;
}

/* L2 norms of the snapshot's parameters: all of them, and the convolution kernels alone (every
 * zoo convolution feeds a BatchNorm, so the BN-eval Hessian in those weights scales with the
 * inverse square of their norm while the training loss does not depend on it: a diagnostic for
 * eigenvalues that grow as weight decay shrinks the kernels). */
static void s_weight_norms(const nn_net_t *net, const float *params, double *all, double *conv)
{
    double sa = 0, sc = 0;
    for (int i = 0; i < nn_net_tensor_count(net); i++) {
        const struct nn_tensor_info *t = nn_net_tensor(net, i);
        if (t->kind != NN_TENSOR_PARAM)
            continue;
        double ss = 0;
        for (size_t k = 0; k < t->numel; k++)
            ss += (double)params[t->offset + k] * params[t->offset + k];
        sa += ss;
        if (t->ndim == 4)
            sc += ss;
    }
    *all = sqrt(sa);
    *conv = sqrt(sc);
}

/* The epoch's `eig` event: the measurement, the rule's outcome d (as sent, with the verdict). */
static void s_eig_event(eigensvc_t *s, int32_t ended, int measured,
                        const struct eig_power_result *res, double secs,
                        const struct eig_abs_decision *dec, const struct rt_wire_decision *d)
{
    rt_metrics_t *mt = s->cfg.metrics;
    if (!mt)
        return;
    rt_metrics_begin(mt, "eig");
    rt_metrics_int(mt, "epoch", ended);
    if (measured)
        rt_metrics_num(mt, "eigenvalue", res->eigenvalue);
    rt_metrics_bool(mt, "measured", measured);
    rt_metrics_str(mt, "method", s->cfg.lanczos ? "lanczos" : "power");
    rt_metrics_int(mt, "iterations", res->iterations);
    if (measured) { /* the relative residual, and whether it met the tolerance */
        rt_metrics_num(mt, "residual", res->residual);
        rt_metrics_bool(mt, "converged", res->converged);
    }
    rt_metrics_num(mt, "seconds", secs);
    double wn, cn;
    s_weight_norms(s->net, nn_net_params(s->net), &wn, &cn);
    rt_metrics_num(mt, "weight_norm", wn);
    rt_metrics_num(mt, "conv_weight_norm", cn);
    rt_metrics_num(mt, "lambda_ref", dec->lambda_ref);
    rt_metrics_int(mt, "batch_size", dec->batch);
    rt_metrics_int(mt, "batch_prev", dec->batch_prev);
    rt_metrics_num(mt, "lr", dec->lr);
    rt_metrics_num(mt, "gamma", dec->gamma);
    rt_metrics_bool(mt, "changed", dec->changed);
    rt_metrics_str(mt, "reason", dec->reason);
    rt_metrics_int(mt, "snapshot_version", (long long)d->snapshot_version);
    rt_metrics_int(mt, "seq", (long long)d->seq);
    rt_metrics_str(mt, "verdict", d->verdict >= 0 ? rt_wire_verdict_str(d->verdict) : "refused");
    rt_metrics_int(mt, "apply_step", (long long)d->apply_step);
    rt_metrics_int(mt, "sched_version", (long long)d->sched_version);
    rt_metrics_end(mt);
}

/* The end of epoch `ended` on the snapshot in the net (taken at `version`): measure, decide, send,
 * publish, record. */
static int s_epoch(eigensvc_t *s, int32_t ended, uint64_t version)
{
    struct rt_wire_abs st;
    eig_abs_get_state(s->abs, &st);
    /* epochs missed while busy count as epochs without a measurement */
    struct eig_abs_decision dec;
    for (int32_t e = st.last_epoch + 1; e < ended; e++) {
        int rc = eig_abs_epoch_end(s->abs, e, 0, 0, &dec);
        if (rc)
            return rc;
        RT_WARN(S_NAME, "epoch %d: snapshot missed, no measurement", (int)e);
    }
    struct eig_power_result res = {0};
    double secs = 0;
    int measured = eig_abs_wants_measurement(s->abs);
    if (measured) {
        int rc = s_hessian_batch(s, (uint64_t)ended);
        if (rc)
            return rc;
        eig_power_reseed(s->pw, s->cfg.power.seed ^ ((uint64_t)ended + 1) * S_SEED_MIX);
        struct eig_hvp hv = {.net = s->net,
                             .x = s->x,
                             .y = s->y,
                             .n = s->cfg.hessian_batch,
                             .bn = s->cfg.bn,
                             .block_last_k = s->cfg.block_last_k};
        rc = s->cfg.lanczos ? eig_hvp_top_lanczos(&s->cfg.power, &hv, &res, &secs)
                            : eig_hvp_top(s->pw, &hv, &res, &secs);
        if (rc)
            return rc;
    }
    int rc = eig_abs_epoch_end(s->abs, ended, measured, res.eigenvalue, &dec);
    if (rc)
        return rc;

    struct rt_wire_decision d = {.seq = (uint64_t)ended + 1 + s->seq_offset,
                                 .snapshot_version = version,
                                 .epoch = ended,
                                 .batch = dec.batch,
                                 .lr_base = dec.lr_base,
                                 .gamma_base = dec.gamma_base,
                                 .lambda = measured ? res.eigenvalue : NAN,
                                 .has_abs = 1};
    /* the rule's state travels with the decision: the coordinator keeps it for checkpoints */
    eig_abs_get_state(s->abs, &d.abs);
    /* ... and so does its reason, which `eigenbatch status` lists */
    if (!dec.reason[0])
        snprintf(dec.reason, sizeof dec.reason, "%s",
                 measured ? "no change" : "B_max reached: no measurement");
    snprintf(d.reason, sizeof d.reason, "%s", dec.reason);
    uint64_t apply = 0, sv = 0;
    struct rt_wire_decision held;
    int has_held = 0;
    int verdict =
        eig_observer_decide_held(s->obs, &d, &apply, &sv, &held, &has_held, S_DECIDE_WAIT_MS);
    if (verdict < 0)
        RT_WARN(S_NAME, "epoch %d: the coordinator refused the decision: %s", (int)ended,
                rt_err_msg());
    else if (verdict != RT_WIRE_VERDICT_ACCEPTED && verdict != RT_WIRE_VERDICT_NOCHANGE)
        RT_WARN(S_NAME, "epoch %d: decision %s", (int)ended, rt_wire_verdict_str(verdict));
    if (has_held && (verdict == RT_WIRE_VERDICT_STALE || verdict == RT_WIRE_VERDICT_SUPERSEDED) &&
        (rc = s_resume(s, &held, ended)))
        return rc;
    d.lr = dec.lr;
    d.gamma = dec.gamma;
    d.apply_step = verdict == RT_WIRE_VERDICT_ACCEPTED ? apply : 0;
    d.sched_version = verdict == RT_WIRE_VERDICT_ACCEPTED ? (uint32_t)sv : 0;
    d.verdict = verdict;
    d.iterations = res.iterations;
    d.seconds = secs;
    /* only a decision the coordinator accepted is in force: a refused, stale, superseded or
     * no-change one is never published nor served to late joiners (metrics still record it) */
    int in_force = rt_decsub_in_force(&d);
    if (in_force) {
        s->current = d;
        s->have_current = 1;
    } else {
        RT_DEBUG(S_NAME, "epoch %d: decision not published (%s)", (int)ended,
                 verdict < 0 ? "refused" : rt_wire_verdict_str(verdict));
    }
    if (s->pub && in_force) {
        struct rt_wire_msg m;
        rt_wire_msg_init(&m, RT_WIRE_PUBLISH, -1, S_NAME);
        m.decision = d;
        m.epoch = (uint64_t)ended;
        m.step = version;
        m.sched_version = d.sched_version;
        if (rt_sock_send(s->pub, NULL, 0, &m, NULL, NULL, NULL))
            RT_WARN(S_NAME, "publish failed: %s", rt_err_msg());
    }
    s_eig_event(s, ended, measured, &res, secs, &dec, &d);
    RT_INFO(S_NAME, "epoch %d: lambda %g (%d it, %.2fs) -> B %lld lr %g gamma %g: %s", (int)ended,
            measured ? res.eigenvalue : NAN, (int)res.iterations, secs, (long long)dec.batch,
            dec.lr, dec.gamma, dec.reason);
    return RT_OK;
}

/* Before the first epoch end: take over the ABS state the coordinator holds (a run resumed from a
 * checkpoint, or this service restarted mid-run), so that the rule continues where it was. */
static int s_take_state(eigensvc_t *s)
{
    s->asked_state = 1;
    struct rt_wire_abs a;
    int rc = eig_observer_abs_state(s->obs, &a, S_DECIDE_WAIT_MS);
    if (rc == RT_ERR_STATE)
        return RT_OK; /* none: a fresh start */
    if (rc) {
        RT_WARN(S_NAME, "ABS state of the coordinator unavailable (%s): starting fresh",
                rt_err_msg());
        return RT_OK;
    }
    if ((rc = eig_abs_set_state(s->abs, &a)))
        return rt_err_set(rc, "eigensvc: the coordinator's ABS state: %s", rt_err_msg());
    RT_INFO(S_NAME,
            "continuing the ABS rule after epoch %d: B %lld, lr %g, lambda_ref %g, duration %d",
            (int)a.last_epoch, (long long)a.batch, a.lr_base, a.has_ref ? a.lambda_ref : NAN,
            (int)a.duration);
    return RT_OK;
}

int eigensvc_run(eigensvc_t *s, const atomic_int *stop)
{
    if (nn_net_bind_thread(s->net) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "eigensvc: %s", nn_backend_why());
    size_t nb = nn_net_buffer_count(s->net);
    float *params = nn_net_params(s->net), *buffers = nb ? nn_net_buffers(s->net) : NULL;
    int64_t done_epoch = 0; /* snapshots of epochs <= this one are handled (epoch 0: initial) */
    int seen = 0;
    uint64_t have = UINT64_MAX; /* snapshot version the net holds (polls transfer no weights) */
    double last_heard = rt_clock_now();
    for (;;) {
        if (stop && atomic_load(stop))
            return rt_err_set(RT_ERR_INTERRUPTED, "eigensvc: stopped");
        s_serve_queries(s);
        if (s->cfg.epochs > 0 && done_epoch >= s->cfg.epochs - 1)
            return RT_OK;
        if (!eig_abs_wants_measurement(s->abs) && !s->test && !s->cfg.sync)
            return RT_OK; /* B_max reached: nothing left to do (sync: every epoch is held) */
        uint64_t version = 0, epoch = 0;
        int wait_ms =
            s->cfg.timeout_ms / 2 < S_SNAPSHOT_WAIT_MS ? s->cfg.timeout_ms / 2 : S_SNAPSHOT_WAIT_MS;
        uint64_t had = have;
        int rc = eig_observer_snapshot_since(s->obs, have, params, buffers, &version, &epoch,
                                             wait_ms > 0 ? wait_ms : 1);
        /* the net holds that snapshot now (until an error leaves a mix of versions); a new one
         * goes to the device once (nothing on the CPU) */
        have = rc == RT_OK ? version : UINT64_MAX;
        if (rc == RT_OK && version != had &&
            nn_net_sync(s->net, NN_SYNC_PARAMS_TO_DEVICE | NN_SYNC_BUFFERS_TO_DEVICE) != NN_OK)
            return rt_err_set(RT_ERR_ARG, "eigensvc: uploading snapshot %llu to %s failed",
                              (unsigned long long)version, s->cfg.device);
        if (rc == RT_OK || rc == RT_ERR_STATE) {
            last_heard = rt_clock_now();
            seen |= rc == RT_OK;
        } else if (rc != RT_ERR_TIMEOUT) {
            return rc;
        } else if ((rt_clock_now() - last_heard) * 1000 >= s->cfg.timeout_ms) {
            if (seen && s->cfg.epochs > 0 && done_epoch < s->cfg.epochs - 1)
                return rt_err_set(RT_ERR_TIMEOUT,
                                  "eigensvc: the shards (the coordinator among them) have been "
                                  "silent for %d ms before the last epoch (epoch %lld of %d): "
                                  "stopping",
                                  s->cfg.timeout_ms, (long long)done_epoch, s->cfg.epochs);
            if (seen) {
                RT_INFO(S_NAME, "shards silent for %d ms: training is over", s->cfg.timeout_ms);
                return RT_OK;
            }
            return rt_err_set(RT_ERR_TIMEOUT, "eigensvc: no shard answered in %d ms",
                              s->cfg.timeout_ms);
        }
        if (rc == RT_OK && (int64_t)epoch > done_epoch) {
            if (!s->asked_state && (rc = s_take_state(s)))
                return rc;
            /* a restarted service may take over a state that already decided this epoch */
            struct rt_wire_abs st;
            eig_abs_get_state(s->abs, &st);
            int decided = (int64_t)epoch - 1 <= (int64_t)st.last_epoch;
            if (!decided && (eig_abs_wants_measurement(s->abs) || s->cfg.sync) &&
                (rc = s_epoch(s, (int32_t)epoch - 1, version)))
                return rc;
            if (s->test && (rc = s_evaluate(s, epoch, version)))
                return rc;
            done_epoch = (int64_t)epoch;
            continue;
        }
        struct timespec ts = {s->cfg.poll_ms / 1000, (long)(s->cfg.poll_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}
