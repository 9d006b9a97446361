/*
 * gpu_layers: every layer kind's four passes (forward, R-forward, backward, R-backward), the
 * softmax cross-entropy, SGD and FGSM's sign step, on a device backend against the CPU backend.
 *
 * One rig serves both sides: it runs a layer outside a net as the net would (nn_layer.h's
 * protocol), with every tensor allocated, uploaded and read back through the backend's own table
 * (the CPU table is plain host memory), so the two sides see bit-identical inputs: the same
 * parameters (the kind's init plus noise), running statistics, inputs, R-inputs, directions,
 * upstream dL/dy and R{dL/dy}, and the same junk pre-filled into every accumulated output (dy, rdy
 * of the inputs, g, hv), which checks "add, do not overwrite" on the device too. The passes run on
 * n = GL_BATCH samples of nodes sized for GL_BATCH + 1, so a write beyond n shows up as a
 * difference. What each pass wrote (its output minus the pre-filled value) is compared as a
 * relative error of the whole vector in the 2-norm.
 *
 * Tolerance GL_TOL = 1e-4 (the fp32 bound): both sides compute in fp32 (cuDNN with
 * CUDNN_FMA_MATH, cuBLAS without TF32) and differ only in summation order; the longest sums here
 * (a weight gradient over n*h*w = 648 terms, a BatchNorm statistic over as many) give relative
 * rounding differences of a few 1e-7 .. 1e-6, while a wrong index or formula gives O(1) errors.
 * SGD and the sign step are elementwise: one rounding (FMA contraction) apart, GL_TOL_ELEM.
 */
#include "gpu_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_loss.h"
#include "nn_net.h"

#define GL_BATCH 8          /* samples of a pass */
#define GL_TOL 1e-4         /* relative error of a layer pass (see the banner) */
#define GL_TOL_ELEM 1e-6    /* elementwise operations */
#define GL_GRAD_SCALE 0.5f  /* ctx.grad_scale of the backward pass */
#define GL_PARAM_NOISE 0.3f /* std of the noise added to the kind's init */
#define GL_SEED 1234567ull  /* data seed; the dropout seed is GL_SEED too */
#define GL_VEC_LEN 100003   /* floats of the SGD and sign-step checks (not a multiple of blocks) */
#define GL_CLASSES 10       /* classes of the loss check */
#define GL_LOSS_N 37        /* samples of the loss check */

/* Slots of the rig: per input (y, dy, ry, rdy), the output's four, then w, g, v, hv, buf. */
enum gl_slot {
    GL_IN_Y,
    GL_IN_DY,
    GL_IN_RY,
    GL_IN_RDY, /* + 4 * input index */
    GL_OUT_Y = 4 * NN_LAYER_MAX_IN,
    GL_OUT_DY,
    GL_OUT_RY,
    GL_OUT_RDY,
    GL_W,
    GL_G,
    GL_V,
    GL_HV,
    GL_BUF,
    GL_SLOTS
};

/* One case: a layer made by `make`, its input shapes and the BatchNorm/dropout mode. */
struct gl_case {
    const char *label;
    struct nn_layer *(*make)(void);
    int n_in;
    struct nn_shape in[NN_LAYER_MAX_IN];
    int eval; /* ctx.bn_eval = 1 and dropout off; else train mode, statistics updated */
};

static struct nn_layer *s_conv_a(void)
{
    return nn_conv_new("c", 8, 3, 1, 1, 0);
}
static struct nn_layer *s_conv_b(void)
{
    return nn_conv_new("c", 6, 3, 2, 1, 1);
}
static struct nn_layer *s_conv_c(void)
{
    return nn_conv_new("c", 8, 1, 2, 0, 0);
}
static struct nn_layer *s_linear(void)
{
    return nn_linear_new("f", 7);
}
static struct nn_layer *s_bn(void)
{
    return nn_bn_new("bn");
}
static struct nn_layer *s_maxpool(void)
{
    return nn_maxpool_new(3, 2, 1);
}
static struct nn_layer *s_maxpool2(void)
{
    return nn_maxpool_new(2, 2, 0);
}
static struct nn_layer *s_avgpool(void)
{
    return nn_avgpool_new(3, 3);
}
static struct nn_layer *s_dropout(void)
{
    return nn_dropout_new("drop", 0.3f);
}

static const struct gl_case s_cases[] = {
    {"conv2d 3x3 s1 p1", s_conv_a, 1, {{3, 9, 9}}, 0},
    {"conv2d 3x3 s2 p1 bias", s_conv_b, 1, {{4, 9, 9}}, 0},
    {"conv2d 1x1 s2", s_conv_c, 1, {{4, 8, 8}}, 0},
    {"linear", s_linear, 1, {{20, 1, 1}}, 0},
    {"batchnorm2d train", s_bn, 1, {{5, 6, 6}}, 0},
    {"batchnorm2d eval", s_bn, 1, {{5, 6, 6}}, 1},
    {"relu", nn_relu_new, 1, {{4, 5, 5}}, 0},
    {"add", nn_add_new, 2, {{3, 4, 4}, {3, 4, 4}}, 0},
    {"flatten", nn_flatten_new, 1, {{3, 4, 4}}, 0},
    {"maxpool2d 3 s2 p1", s_maxpool, 1, {{3, 8, 8}}, 0},
    {"maxpool2d 2 s2", s_maxpool2, 1, {{3, 7, 7}}, 0},
    {"gap", nn_gap_new, 1, {{5, 4, 4}}, 0},
    {"avgpool 3x3 of 7x7", s_avgpool, 1, {{5, 7, 7}}, 0},
    {"dropout train", s_dropout, 1, {{4, 5, 5}}, 0},
    {"dropout eval", s_dropout, 1, {{4, 5, 5}}, 1},
};

/* Host data of one case: initial contents of every slot and their sizes. */
struct gl_data {
    size_t len[GL_SLOTS];  /* floats per slot */
    float *init[GL_SLOTS]; /* initial contents (host) */
};

static double s_relerr_delta(const float *a, const float *b, const float *base, size_t n)
{
    double d = 0.0, nb = 0.0;
    for (size_t i = 0; i < n; i++) {
        double da = (double)a[i] - base[i], db = (double)b[i] - base[i];
        d += (da - db) * (da - db);
        nb += db * db;
    }
    return sqrt(d) / (nb > 0.0 ? sqrt(nb) : 1.0);
}

/* Shapes, tensor sizes and initial data of a case, from a CPU instance of its layer. */
static int s_data_new(const struct gl_case *c, struct gl_data *d)
{
    struct nn_layer *l = c->make();
    struct nn_node in[NN_LAYER_MAX_IN] = {0}, out = {0};
    memset(d, 0, sizeof *d);
    if (!l)
        return -1;
    l->n_in = c->n_in;
    for (int i = 0; i < c->n_in; i++) {
        in[i].shape = c->in[i];
        l->in[i] = &in[i];
    }
    l->out = &out;
    int rc = l->ops->setup(l, GL_BATCH + 1);
    size_t nw = 0, nb = 0;
    for (int t = 0; !rc && t < l->n_decl; t++) {
        size_t numel = 1;
        for (int k = 0; k < l->decl[t].ndim; k++)
            numel *= (size_t)l->decl[t].shape[k];
        *(l->decl[t].is_buffer ? &nb : &nw) += numel;
    }
    for (int i = 0; i < c->n_in; i++)
        for (int s = 0; s < 4; s++)
            d->len[4 * i + s] = nn_shape_numel(&c->in[i]) * (GL_BATCH + 1);
    for (int s = GL_OUT_Y; s <= GL_OUT_RDY; s++)
        d->len[s] = nn_shape_numel(&out.shape) * (GL_BATCH + 1);
    for (int s = GL_W; s <= GL_HV; s++)
        d->len[s] = nw;
    d->len[GL_BUF] = nb;
    struct nn_rng rng;
    nn_rng_seed(&rng, GL_SEED);
    for (int s = 0; !rc && s < GL_SLOTS; s++) {
        if (!(d->init[s] = calloc(d->len[s] + 1, sizeof(float))))
            rc = -1;
        for (size_t k = 0; !rc && k < d->len[s]; k++)
            d->init[s][k] = s == GL_OUT_Y || s == GL_OUT_RY ? 0.0f : nn_rng_normal(&rng);
    }
    if (!rc && nw && l->ops->init) {
        l->w = d->init[GL_W];
        l->buf = d->init[GL_BUF];
        l->n_w = nw;
        l->n_buf = nb;
        l->ops->init(l, &rng);
        for (size_t k = 0; k < nw; k++)
            d->init[GL_W][k] += GL_PARAM_NOISE * nn_rng_normal(&rng);
    }
    for (size_t k = 0; !rc && k < nb; k++)
        d->init[GL_BUF][k] = 0.5f + nn_rng_uniform(&rng); /* variances must be positive */
    if (l->ops->destroy)
        l->ops->destroy(l);
    free(l);
    return rc;
}

static void s_data_free(struct gl_data *d)
{
    for (int s = 0; s < GL_SLOTS; s++)
        free(d->init[s]);
}

/* Run the case's four passes on backend `be`; res[s] (host, d->len[s] floats) receives every
 * slot afterwards. Returns 0, or -1 when the backend failed (reported through nn_report). */
static int s_run_side(const struct nn_backend_ops *be, const struct gl_case *c,
                      const struct gl_data *d, float **res)
{
    struct nn_layer *l = c->make();
    struct nn_node in[NN_LAYER_MAX_IN] = {0}, out = {0};
    float *mem[GL_SLOTS] = {0}, *work = NULL;
    int rc = -1, dev_setup = 0;
    if (!l)
        return -1;
    l->n_in = c->n_in;
    for (int i = 0; i < c->n_in; i++) {
        in[i].shape = c->in[i];
        in[i].need_dy = in[i].r_active = 1;
        l->in[i] = &in[i];
    }
    l->out = &out;
    if (l->ops->setup(l, GL_BATCH + 1) != NN_OK)
        goto out_free;
    for (int s = 0; s < GL_SLOTS; s++) {
        if (!(mem[s] = be->alloc((d->len[s] + 1) * sizeof(float))) ||
            be->upload(mem[s], d->init[s], d->len[s] * sizeof(float)) != NN_OK)
            goto out_free;
    }
    for (int i = 0; i < c->n_in; i++) {
        in[i].y = mem[4 * i + GL_IN_Y];
        in[i].dy = mem[4 * i + GL_IN_DY];
        in[i].ry = mem[4 * i + GL_IN_RY];
        in[i].rdy = mem[4 * i + GL_IN_RDY];
    }
    out.y = mem[GL_OUT_Y];
    out.dy = mem[GL_OUT_DY];
    out.ry = mem[GL_OUT_RY];
    out.rdy = mem[GL_OUT_RDY];
    l->n_w = d->len[GL_W];
    l->n_buf = d->len[GL_BUF];
    l->w = l->n_w ? mem[GL_W] : NULL;
    l->g = l->n_w ? mem[GL_G] : NULL;
    l->v = l->n_w ? mem[GL_V] : NULL;
    l->hv = l->n_w ? mem[GL_HV] : NULL;
    l->buf = l->n_buf ? mem[GL_BUF] : NULL;
    l->in_block = l->n_w > 0;
    struct nn_ctx ctx = {.n = GL_BATCH,
                         .bn_eval = c->eval,
                         .update_stats = !c->eval,
                         .param_grad = 1,
                         .grad_scale = GL_GRAD_SCALE,
                         .dropout = !c->eval,
                         .seed = GL_SEED};
    const struct nn_layer_ops *dev = be->layer_ops(l->ops->kind);
    if (dev) {
        /* as nn_net_to_backend: the device table's setup after the CPU setup fixed the shapes */
        l->cpu_ops = l->ops;
        l->ops = dev;
        if (dev->setup && dev->setup(l, GL_BATCH + 1) != NN_OK)
            goto out_free;
        dev_setup = 1;
    } else {
        ctx.work_floats = l->work_per_sample * (GL_BATCH + 1);
        if (!(work = nn_alloc(ctx.work_floats * sizeof(float) + sizeof(float))))
            goto out_free;
        ctx.work = work;
    }
    l->ops->forward(l, &ctx);
    l->ops->rforward(l, &ctx);
    l->ops->backward(l, &ctx);
    l->ops->rbackward(l, &ctx);
    if (be->sync() != NN_OK)
        goto out_free;
    rc = 0;
    for (int s = 0; !rc && s < GL_SLOTS; s++)
        if (be->download(res[s], mem[s], d->len[s] * sizeof(float)) != NN_OK)
            rc = -1;
out_free:
    if (dev_setup && l->ops->destroy)
        l->ops->destroy(l);
    if (l->cpu_ops)
        l->ops = l->cpu_ops;
    if (l->ops->destroy)
        l->ops->destroy(l);
    free(l);
    for (int s = 0; s < GL_SLOTS; s++)
        be->free(mem[s]);
    nn_free(work);
    return rc;
}

/* Largest relative error over the slots [from, to] of every input (per-input slots) or plain. */
static double s_err(const struct gl_data *d, float **dev, float **cpu, const int *slots, int n)
{
    double worst = 0.0;
    for (int k = 0; k < n; k++) {
        int s = slots[k];
        if (!d->len[s])
            continue;
        double e = s_relerr_delta(dev[s], cpu[s], d->init[s], d->len[s]);
        worst = e > worst || isnan(e) ? e : worst;
    }
    return worst;
}

static int s_layer_case(const struct nn_backend_ops *be, const struct gl_case *c)
{
    struct gl_data d;
    float *cpu[GL_SLOTS] = {0}, *dev[GL_SLOTS] = {0};
    int bad = 1;
    if (s_data_new(c, &d))
        goto out_free;
    for (int s = 0; s < GL_SLOTS; s++)
        if (!(cpu[s] = calloc(d.len[s] + 1, sizeof(float))) ||
            !(dev[s] = calloc(d.len[s] + 1, sizeof(float))))
            goto out_free;
    if (s_run_side(nn_backend_cpu(), c, &d, cpu) || s_run_side(be, c, &d, dev)) {
        gpu_check_row(c->label, "run", NAN, GL_TOL);
        goto out_free;
    }
    int fwd[] = {GL_OUT_Y, GL_BUF}, rfwd[] = {GL_OUT_RY};
    int bwd[] = {GL_IN_DY, GL_IN_DY + 4, GL_G}, rbwd[] = {GL_IN_RDY, GL_IN_RDY + 4, GL_HV};
    bad = 0;
    bad |= gpu_check_row(c->label, "forward", s_err(&d, dev, cpu, fwd, 2), GL_TOL);
    bad |= gpu_check_row(c->label, "rforward", s_err(&d, dev, cpu, rfwd, 1), GL_TOL);
    bad |= gpu_check_row(c->label, "backward", s_err(&d, dev, cpu, bwd, 3), GL_TOL);
    bad |= gpu_check_row(c->label, "rbackward", s_err(&d, dev, cpu, rbwd, 3), GL_TOL);
out_free:
    for (int s = 0; s < GL_SLOTS; s++) {
        free(cpu[s]);
        free(dev[s]);
    }
    s_data_free(&d);
    return bad;
}

/* Upload n floats to a new device buffer; NULL on failure. */
static float *s_dev_copy(const struct nn_backend_ops *be, const float *src, size_t n)
{
    float *p = be->alloc(n * sizeof(float) + sizeof(float));
    if (p && be->upload(p, src, n * sizeof(float)) != NN_OK) {
        be->free(p);
        p = NULL;
    }
    return p;
}

/* SGD with momentum and weight decay, and FGSM's sign step (with zero gradients and clamping). */
static int s_elementwise(const struct nn_backend_ops *be)
{
    const size_t n = GL_VEC_LEN;
    float *w = malloc(n * 4), *buf = malloc(n * 4), *g = malloc(n * 4), *out = malloc(n * 4);
    float *w0 = malloc(n * 4), *b0 = malloc(n * 4);
    float *dw = NULL, *dbuf = NULL, *dg = NULL;
    int bad = 1;
    if (!w || !buf || !g || !out || !w0 || !b0)
        goto out_free;
    struct nn_rng rng;
    nn_rng_seed(&rng, GL_SEED + 1);
    for (size_t i = 0; i < n; i++) {
        w0[i] = w[i] = nn_rng_normal(&rng);
        b0[i] = buf[i] = nn_rng_normal(&rng);
        g[i] = i % 7 == 0 ? 0.0f : nn_rng_normal(&rng); /* sign(0) = 0 in the sign step */
    }
    if (!(dw = s_dev_copy(be, w, n)) || !(dbuf = s_dev_copy(be, buf, n)) ||
        !(dg = s_dev_copy(be, g, n)))
        goto out_free;
    nn_sgd_step(w, buf, g, n, 0.1f, 0.9f, 5e-4f);
    be->sgd(dw, dbuf, dg, n, 0.1f, 0.9f, 5e-4f);
    bad = be->download(out, dw, n * 4) != NN_OK;
    bad |= gpu_check_row("sgd", "weights", s_relerr_delta(out, w, w0, n), GL_TOL_ELEM);
    bad |= be->download(out, dbuf, n * 4) != NN_OK;
    bad |= gpu_check_row("sgd", "momentum", s_relerr_delta(out, buf, b0, n), GL_TOL_ELEM);
    /* sign step on the updated weights, clamped to [-1, 1] (most of them hit a bound) */
    nn_backend_cpu()->sign_step(w, g, n, 0.05f, -1.0f, 1.0f);
    be->sign_step(dw, dg, n, 0.05f, -1.0f, 1.0f);
    bad |= be->download(out, dw, n * 4) != NN_OK;
    bad |= gpu_check_row("fgsm sign step", "x", s_relerr_delta(out, w, w0, n), GL_TOL_ELEM);
out_free:
    be->free(dw);
    be->free(dbuf);
    be->free(dg);
    free(w);
    free(buf);
    free(g);
    free(out);
    free(w0);
    free(b0);
    return bad;
}

/* Softmax cross-entropy: loss, dz and R{dz} from logits z and R{z} [classes x n]. */
static int s_loss(const struct nn_backend_ops *be)
{
    const size_t len = (size_t)GL_CLASSES * GL_LOSS_N;
    float *z = malloc(len * 4), *rz = malloc(len * 4), *p = malloc(len * 4), *dz = malloc(len * 4);
    float *rdz = malloc(len * 4), *out = malloc(len * 4), *zero = calloc(len, 4);
    float *dz_ = NULL, *drz = NULL, *dp = NULL, *ddz = NULL, *drdz = NULL;
    int32_t y[GL_LOSS_N];
    int bad = 1, hit_c = 0, hit_d = 0;
    if (!z || !rz || !p || !dz || !rdz || !out || !zero)
        goto out_free;
    struct nn_rng rng;
    nn_rng_seed(&rng, GL_SEED + 2);
    for (size_t i = 0; i < len; i++) {
        z[i] = 3.0f * nn_rng_normal(&rng);
        rz[i] = nn_rng_normal(&rng);
    }
    for (int i = 0; i < GL_LOSS_N; i++)
        y[i] = (int32_t)(nn_rng_next(&rng) % GL_CLASSES);
    if (!(dz_ = s_dev_copy(be, z, len)) || !(drz = s_dev_copy(be, rz, len)) ||
        !(dp = s_dev_copy(be, zero, len)) || !(ddz = s_dev_copy(be, zero, len)) ||
        !(drdz = s_dev_copy(be, zero, len)))
        goto out_free;
    const struct nn_backend_ops *cpu = nn_backend_cpu();
    double lc = cpu->loss_forward(z, y, GL_CLASSES, GL_LOSS_N, p, &hit_c);
    cpu->loss_backward(p, GL_CLASSES, GL_LOSS_N, dz);
    cpu->loss_rbackward(p, rz, GL_CLASSES, GL_LOSS_N, rdz);
    double ld = be->loss_forward(dz_, y, GL_CLASSES, GL_LOSS_N, dp, &hit_d);
    be->loss_backward(dp, GL_CLASSES, GL_LOSS_N, ddz);
    be->loss_rbackward(dp, drz, GL_CLASSES, GL_LOSS_N, drdz);
    bad = gpu_check_row("softmax ce", "loss", fabs(ld - lc) / fabs(lc), GL_TOL);
    bad |= gpu_check_row("softmax ce", "correct", hit_c == hit_d ? 0.0 : 1.0, GL_TOL);
    bad |= be->download(out, ddz, len * 4) != NN_OK;
    bad |= gpu_check_row("softmax ce", "backward", s_relerr_delta(out, dz, zero, len), GL_TOL);
    bad |= be->download(out, drdz, len * 4) != NN_OK;
    bad |= gpu_check_row("softmax ce", "rbackward", s_relerr_delta(out, rdz, zero, len), GL_TOL);
out_free:
    be->free(dz_);
    be->free(drz);
    be->free(dp);
    be->free(ddz);
    be->free(drdz);
    free(z);
    free(rz);
    free(p);
    free(dz);
    free(rdz);
    free(out);
    free(zero);
    return bad;
}

int gpu_check_layers(const struct nn_backend_ops *be)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++)
        bad |= s_layer_case(be, &s_cases[i]);
    bad |= s_loss(be);
    bad |= s_elementwise(be);
    return bad;
}
