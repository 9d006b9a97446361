/*
 * nn_layer_check: one-layer rig and derivative checks (see nn_layer_check.h for the method and the
 * tolerances).
 */
#include "nn_layer_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN_CHECK_SENTINEL 12345.0f /* value of output floats beyond the pass's n samples */
#define NN_CHECK_JUNK_SCALE 3.0f   /* scale of the junk pre-filled into accumulated arrays */

/* ---- rig ----------------------------------------------------------------------------------- */

static float *s_falloc(size_t n)
{
    float *p = nn_alloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "nn_layer_check: out of memory (%zu floats)\n", n);
        abort();
    }
    return p;
}

static void s_fill_normal(float *x, size_t n, struct nn_rng *rng, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * nn_rng_normal(rng);
}

struct nn_check_rig *nn_check_rig_new(struct nn_layer *l, const struct nn_check_cfg *cfg)
{
    struct nn_check_rig *r = calloc(1, sizeof *r);
    if (!r || !l || cfg->n_in < 1 || cfg->n_in > NN_LAYER_MAX_IN || cfg->batch < 1)
        goto fail;
    r->l = l;
    r->max_batch = cfg->max_batch ? cfg->max_batch : cfg->batch + 1;
    struct nn_rng rng;
    nn_rng_seed(&rng, cfg->seed + 1);

    l->n_in = cfg->n_in;
    for (int i = 0; i < cfg->n_in; i++) {
        struct nn_node *nd = &r->in[i];
        nd->shape = cfg->in_shape[i];
        r->in_numel[i] = nn_shape_numel(&nd->shape);
        size_t tot = r->in_numel[i] * r->max_batch;
        nd->y = s_falloc(tot);
        nd->dy = s_falloc(tot);
        nd->ry = s_falloc(tot);
        nd->rdy = s_falloc(tot);
        nd->need_dy = 1;
        nd->r_active = 1;
        l->in[i] = nd;
    }
    l->out = &r->out;
    if (l->ops->setup(l, r->max_batch) != NN_OK)
        goto fail;
    r->out_numel = nn_shape_numel(&r->out.shape);
    size_t otot = r->out_numel * r->max_batch;
    r->out.y = s_falloc(otot);
    r->out.dy = s_falloc(otot);
    r->out.ry = s_falloc(otot);
    r->out.rdy = s_falloc(otot);

    l->n_w = l->n_buf = 0;
    for (int t = 0; t < l->n_decl; t++) {
        size_t numel = 1;
        for (int d = 0; d < l->decl[t].ndim; d++)
            numel *= (size_t)l->decl[t].shape[d];
        if (l->decl[t].is_buffer)
            l->n_buf += numel;
        else
            l->n_w += numel;
    }
    r->w = l->w = s_falloc(l->n_w);
    r->g = l->g = s_falloc(l->n_w);
    r->v = l->v = s_falloc(l->n_w);
    r->hv = l->hv = s_falloc(l->n_w);
    r->buf = l->buf = s_falloc(l->n_buf);
    l->in_block = 1;
    r->ctx.work_floats = l->work_per_sample * r->max_batch;
    r->work = r->ctx.work = s_falloc(r->ctx.work_floats);

    if (l->ops->init)
        l->ops->init(l, &rng);
    float ps = cfg->param_scale > 0 ? cfg->param_scale : 0.3f;
    for (size_t i = 0; i < l->n_w; i++)
        l->w[i] += ps * nn_rng_normal(&rng);
    for (size_t i = 0; i < l->n_buf; i++)
        l->buf[i] = 0.5f + nn_rng_uniform(&rng);
    for (int i = 0; i < cfg->n_in; i++) {
        if (cfg->fill_input)
            cfg->fill_input(r->in[i].y, r->in_numel[i] * cfg->batch, &rng);
        else
            s_fill_normal(r->in[i].y, r->in_numel[i] * cfg->batch, &rng, 1.0f);
    }
    r->ctx.n = cfg->batch;
    r->ctx.bn_eval = cfg->bn_eval;
    r->ctx.dropout = !cfg->bn_eval; /* train mode drops; one seed, so every pass draws one mask */
    r->ctx.seed = cfg->seed;
    r->ctx.update_stats = 0;
    r->ctx.param_grad = 1;
    r->ctx.grad_scale = 1.0f;
    return r;
fail:
    if (r) {
        nn_check_rig_destroy(&r);
    } else if (l) {
        if (l->ops && l->ops->destroy)
            l->ops->destroy(l);
        free(l);
    }
    return NULL;
}

void nn_check_rig_destroy(struct nn_check_rig **self_p)
{
    if (!self_p || !*self_p)
        return;
    struct nn_check_rig *r = *self_p;
    if (r->l) {
        if (r->l->ops && r->l->ops->destroy)
            r->l->ops->destroy(r->l);
        free(r->l);
    }
    for (int i = 0; i < NN_LAYER_MAX_IN; i++) {
        nn_free(r->in[i].y);
        nn_free(r->in[i].dy);
        nn_free(r->in[i].ry);
        nn_free(r->in[i].rdy);
    }
    nn_free(r->out.y);
    nn_free(r->out.dy);
    nn_free(r->out.ry);
    nn_free(r->out.rdy);
    nn_free(r->w);
    nn_free(r->g);
    nn_free(r->v);
    nn_free(r->hv);
    nn_free(r->buf);
    nn_free(r->work);
    free(r);
    *self_p = NULL;
}

/* ---- checks ---------------------------------------------------------------------------------- */

/* State shared by the checks of one layer. */
struct s_check {
    struct nn_check_rig *r; /* the rig */
    const struct nn_check_cfg *cfg;
    int n;                      /* batch of the passes */
    int n_in;                   /* inputs */
    size_t nx[NN_LAYER_MAX_IN]; /* floats of each input for n samples */
    size_t ny;                  /* floats of the output for n samples */
    size_t nw;                  /* parameter floats */
    float *x0[NN_LAYER_MAX_IN]; /* base inputs */
    float *w0;                  /* base parameters */
    float *c;                   /* objective's linear coefficients (ny) */
    float *yp, *ym;             /* outputs at +/- steps (ny) */
    double eps, tol, sym_tol;
    int failures;
    int verbose; /* print every check */
};

static double s_norm(const float *a, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}

/* |a - b| / max(|b|, 1e-12), 2-norms in double; NaN in a or b gives NaN. */
static double s_relerr(const float *a, const float *b, size_t n)
{
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        d += e * e;
    }
    double nb = s_norm(b, n);
    return sqrt(d) / (nb > 1e-12 ? nb : 1e-12);
}

static void s_report(struct s_check *k, const char *what, double err, double tol)
{
    int ok = err <= tol; /* false for NaN */
    if (!ok)
        k->failures++;
    if (!ok || k->verbose)
        printf("%s %s: %s: error %.3g (tolerance %.3g)\n", ok ? "ok  " : "FAIL", k->r->l->ops->kind,
               what, err, tol);
}

/* Set inputs and parameters to base + t * (du, dv) (du[i] / dv may be NULL: no move). */
static void s_set_point(struct s_check *k, float *const du[], const float *dv, double t)
{
    struct nn_check_rig *r = k->r;
    for (int i = 0; i < k->n_in; i++)
        for (size_t j = 0; j < k->nx[i]; j++)
            r->in[i].y[j] = k->x0[i][j] + (du && du[i] ? (float)(t * du[i][j]) : 0.0f);
    for (size_t j = 0; j < k->nw; j++)
        r->w[j] = k->w0[j] + (dv ? (float)(t * dv[j]) : 0.0f);
}

static void s_forward(struct s_check *k, float *y_out)
{
    struct nn_check_rig *r = k->r;
    r->l->ops->forward(r->l, &r->ctx);
    if (y_out)
        memcpy(y_out, r->out.y, sizeof(float) * k->ny);
}

/* (L(y+) - L(y-)) / (2 eps), exactly from the two outputs. */
static double s_dl(const struct s_check *k, const float *yp, const float *ym)
{
    double s = 0.0;
    for (size_t j = 0; j < k->ny; j++)
        s += ((double)k->c[j] + 0.5 * ((double)yp[j] + ym[j])) * ((double)yp[j] - ym[j]);
    return s / (2.0 * k->eps);
}

/* Forward + backward at the current point: gradient of L into gx[i] (NULL: not needed) and gw
 * (NULL: not needed), computed with scale 1 from zeroed accumulators. */
static void s_gradient(struct s_check *k, float *const gx[], float *gw)
{
    struct nn_check_rig *r = k->r;
    s_forward(k, NULL);
    for (size_t j = 0; j < k->ny; j++)
        r->out.dy[j] = k->c[j] + r->out.y[j];
    for (int i = 0; i < k->n_in; i++) {
        memset(r->in[i].dy, 0, sizeof(float) * k->nx[i]);
        r->in[i].need_dy = gx && gx[i] ? 1 : 0;
    }
    memset(r->g, 0, sizeof(float) * k->nw);
    r->ctx.param_grad = gw ? 1 : 0;
    r->ctx.grad_scale = 1.0f;
    r->l->ops->backward(r->l, &r->ctx);
    for (int i = 0; i < k->n_in; i++)
        if (gx && gx[i])
            memcpy(gx[i], r->in[i].dy, sizeof(float) * k->nx[i]);
    if (gw)
        memcpy(gw, r->g, sizeof(float) * k->nw);
    for (int i = 0; i < k->n_in; i++)
        r->in[i].need_dy = 1;
    r->ctx.param_grad = 1;
}

/* (a) gradients against per-component central differences, and the accumulate/skip contract. */
static void s_check_gradient(struct s_check *k, struct nn_rng *rng)
{
    struct nn_check_rig *r = k->r;
    const float gs = k->cfg->grad_scale != 0.0f ? k->cfg->grad_scale : 0.5f;
    float *junk_x[NN_LAYER_MAX_IN] = {0}, *junk_g = s_falloc(k->nw), *fd = NULL, *an = NULL;
    char what[96];

    s_set_point(k, NULL, NULL, 0.0);
    s_forward(k, NULL);
    /* Output beyond n untouched by forward. */
    size_t otot = r->out_numel * r->max_batch, bad = 0;
    for (size_t j = k->ny; j < otot; j++)
        bad += r->out.y[j] != NN_CHECK_SENTINEL;
    s_report(k, "forward writes nothing beyond n samples", (double)bad, 0.0);

    for (size_t j = 0; j < k->ny; j++)
        r->out.dy[j] = k->c[j] + r->out.y[j];
    for (int i = 0; i < k->n_in; i++) {
        junk_x[i] = s_falloc(k->nx[i]);
        s_fill_normal(junk_x[i], k->nx[i], rng, NN_CHECK_JUNK_SCALE);
        memcpy(r->in[i].dy, junk_x[i], sizeof(float) * k->nx[i]);
    }
    s_fill_normal(junk_g, k->nw, rng, NN_CHECK_JUNK_SCALE);
    memcpy(r->g, junk_g, sizeof(float) * k->nw);
    r->ctx.param_grad = 1;
    r->ctx.grad_scale = gs;
    r->l->ops->backward(r->l, &r->ctx);
    r->ctx.grad_scale = 1.0f;

    for (int i = 0; i < k->n_in; i++) {
        an = s_falloc(k->nx[i]);
        fd = s_falloc(k->nx[i]);
        for (size_t j = 0; j < k->nx[i]; j++)
            an[j] = r->in[i].dy[j] - junk_x[i][j];
        for (size_t j = 0; j < k->nx[i]; j++) {
            float save = r->in[i].y[j];
            r->in[i].y[j] = save + (float)k->eps;
            s_forward(k, k->yp);
            r->in[i].y[j] = save - (float)k->eps;
            s_forward(k, k->ym);
            r->in[i].y[j] = save;
            fd[j] = (float)s_dl(k, k->yp, k->ym);
        }
        snprintf(what, sizeof what, "dL/dx[%d] vs finite differences", i);
        s_report(k, what, s_relerr(an, fd, k->nx[i]), k->tol);
        nn_free(an);
        nn_free(fd);
    }
    if (k->nw) {
        an = s_falloc(k->nw);
        fd = s_falloc(k->nw);
        for (size_t j = 0; j < k->nw; j++)
            an[j] = (r->g[j] - junk_g[j]) / gs;
        for (size_t j = 0; j < k->nw; j++) {
            float save = r->w[j];
            r->w[j] = save + (float)k->eps;
            s_forward(k, k->yp);
            r->w[j] = save - (float)k->eps;
            s_forward(k, k->ym);
            r->w[j] = save;
            fd[j] = (float)s_dl(k, k->yp, k->ym);
        }
        s_report(k, "dL/dw (grad_scale applied) vs finite differences", s_relerr(an, fd, k->nw),
                 k->tol);
        nn_free(an);
        nn_free(fd);
    }

    /* need_dy = 0 and param_grad = 0: nothing may change. */
    s_forward(k, NULL);
    for (int i = 0; i < k->n_in; i++) {
        memcpy(r->in[i].dy, junk_x[i], sizeof(float) * k->nx[i]);
        r->in[i].need_dy = 0;
    }
    memcpy(r->g, junk_g, sizeof(float) * k->nw);
    r->ctx.param_grad = 0;
    r->l->ops->backward(r->l, &r->ctx);
    bad = 0;
    for (int i = 0; i < k->n_in; i++) {
        bad += memcmp(r->in[i].dy, junk_x[i], sizeof(float) * k->nx[i]) != 0;
        r->in[i].need_dy = 1;
    }
    bad += memcmp(r->g, junk_g, sizeof(float) * k->nw) != 0;
    r->ctx.param_grad = 1;
    s_report(k, "backward with need_dy = 0, param_grad = 0 leaves dy and g alone", (double)bad,
             0.0);

    for (int i = 0; i < k->n_in; i++)
        nn_free(junk_x[i]);
    nn_free(junk_g);
}

/* R-pass configurations: (inputs R-active, layer in the block). */
static const int s_modes[3][2] = {{1, 1}, {1, 0}, {0, 1}};
static const char *const s_mode_names[3] = {"input+params", "input only", "params only"};

/* Bind directions for a mode: active inputs get u, inactive NaN; in the block v, else NaN. */
static void s_bind_dirs(struct s_check *k, int mode, float *const u[], const float *v)
{
    struct nn_check_rig *r = k->r;
    for (int i = 0; i < k->n_in; i++) {
        r->in[i].r_active = s_modes[mode][0];
        for (size_t j = 0; j < k->nx[i]; j++)
            r->in[i].ry[j] = s_modes[mode][0] ? u[i][j] : NAN;
    }
    r->l->in_block = s_modes[mode][1];
    for (size_t j = 0; j < k->nw; j++)
        r->v[j] = s_modes[mode][1] ? v[j] : NAN;
}

/* HVP by the R-passes at the base point: R{dx} into hx[i] and R{dw} into hw (hw only in the block;
 * left as is otherwise). Returns the number of contract violations (hv changed outside the block).
 */
static int s_hvp(struct s_check *k, int mode, float *const u[], const float *v, float *const hx[],
                 float *hw, struct nn_rng *rng)
{
    struct nn_check_rig *r = k->r;
    int bad = 0;
    s_set_point(k, NULL, NULL, 0.0);
    s_bind_dirs(k, mode, u, v);
    s_forward(k, NULL);
    r->l->ops->rforward(r->l, &r->ctx);
    for (size_t j = 0; j < k->ny; j++) {
        r->out.dy[j] = k->c[j] + r->out.y[j];
        r->out.rdy[j] = r->out.ry[j];
    }
    float *junk_x[NN_LAYER_MAX_IN] = {0}, *junk_w = s_falloc(k->nw);
    for (int i = 0; i < k->n_in; i++) {
        junk_x[i] = s_falloc(k->nx[i]);
        s_fill_normal(junk_x[i], k->nx[i], rng, NN_CHECK_JUNK_SCALE);
        memcpy(r->in[i].rdy, junk_x[i], sizeof(float) * k->nx[i]);
    }
    s_fill_normal(junk_w, k->nw, rng, NN_CHECK_JUNK_SCALE);
    memcpy(r->hv, junk_w, sizeof(float) * k->nw);
    r->l->ops->rbackward(r->l, &r->ctx);
    for (int i = 0; i < k->n_in; i++) {
        for (size_t j = 0; j < k->nx[i]; j++)
            hx[i][j] = r->in[i].rdy[j] - junk_x[i][j];
        nn_free(junk_x[i]);
    }
    if (r->l->in_block) {
        for (size_t j = 0; j < k->nw; j++)
            hw[j] = r->hv[j] - junk_w[j];
    } else {
        bad += memcmp(r->hv, junk_w, sizeof(float) * k->nw) != 0;
    }
    nn_free(junk_w);
    for (int i = 0; i < k->n_in; i++)
        r->in[i].r_active = 1;
    r->l->in_block = 1;
    return bad;
}

/* (b) R-forward and (c) HVP against finite differences, for each R-pass configuration. */
static void s_check_rpasses(struct s_check *k, struct nn_rng *rng)
{
    struct nn_check_rig *r = k->r;
    float *u[NN_LAYER_MAX_IN] = {0}, *uz[NN_LAYER_MAX_IN] = {0};
    float *hx[NN_LAYER_MAX_IN] = {0}, *gp[NN_LAYER_MAX_IN] = {0}, *gm[NN_LAYER_MAX_IN] = {0};
    float *v = s_falloc(k->nw), *hw = s_falloc(k->nw), *gwp = s_falloc(k->nw),
          *gwm = s_falloc(k->nw), *ry = s_falloc(k->ny), *fd = s_falloc(k->ny);
    char what[128];
    for (int i = 0; i < k->n_in; i++) {
        u[i] = s_falloc(k->nx[i]);
        hx[i] = s_falloc(k->nx[i]);
        gp[i] = s_falloc(k->nx[i]);
        gm[i] = s_falloc(k->nx[i]);
        s_fill_normal(u[i], k->nx[i], rng, 1.0f);
    }
    s_fill_normal(v, k->nw, rng, 1.0f);

    for (int mode = 0; mode < 3; mode++) {
        if (!k->nw && s_modes[mode][0] == 0)
            continue; /* no parameters: "params only" is empty */
        const int ra = s_modes[mode][0], ib = s_modes[mode][1] && k->nw;
        float *const *du = ra ? u : uz;
        const float *dv = ib ? v : NULL;

        /* (b) R{y} vs (y(p + eps d) - y(p - eps d)) / (2 eps). */
        s_set_point(k, NULL, NULL, 0.0);
        s_bind_dirs(k, mode, u, v);
        s_forward(k, NULL);
        r->l->ops->rforward(r->l, &r->ctx);
        memcpy(ry, r->out.ry, sizeof(float) * k->ny);
        s_set_point(k, du, dv, k->eps);
        s_forward(k, k->yp);
        s_set_point(k, du, dv, -k->eps);
        s_forward(k, k->ym);
        for (size_t j = 0; j < k->ny; j++)
            fd[j] = (float)(((double)k->yp[j] - k->ym[j]) / (2.0 * k->eps));
        snprintf(what, sizeof what, "R{y} (%s) vs finite differences", s_mode_names[mode]);
        s_report(k, what, s_relerr(ry, fd, k->ny), k->tol);

        /* (c) HVP vs (grad(p + eps d) - grad(p - eps d)) / (2 eps). */
        int bad = s_hvp(k, mode, u, v, hx, hw, rng);
        snprintf(what, sizeof what, "rbackward (%s) leaves hv alone outside the block",
                 s_mode_names[mode]);
        s_report(k, what, (double)bad, 0.0);
        s_set_point(k, du, dv, k->eps);
        s_gradient(k, gp, gwp);
        s_set_point(k, du, dv, -k->eps);
        s_gradient(k, gm, gwm);
        for (int i = 0; i < k->n_in; i++) {
            for (size_t j = 0; j < k->nx[i]; j++)
                gp[i][j] = (float)(((double)gp[i][j] - gm[i][j]) / (2.0 * k->eps));
            snprintf(what, sizeof what, "R{dL/dx[%d]} (%s) vs finite differences of gradients", i,
                     s_mode_names[mode]);
            s_report(k, what, s_relerr(hx[i], gp[i], k->nx[i]), k->tol);
        }
        if (ib) {
            for (size_t j = 0; j < k->nw; j++)
                gwp[j] = (float)(((double)gwp[j] - gwm[j]) / (2.0 * k->eps));
            snprintf(what, sizeof what, "R{dL/dw} (%s) vs finite differences of gradients",
                     s_mode_names[mode]);
            s_report(k, what, s_relerr(hw, gwp, k->nw), k->tol);
        }
    }

    /* need_dy = 0: rbackward must leave rdy alone. */
    s_set_point(k, NULL, NULL, 0.0);
    s_bind_dirs(k, 0, u, v);
    s_forward(k, NULL);
    r->l->ops->rforward(r->l, &r->ctx);
    for (size_t j = 0; j < k->ny; j++) {
        r->out.dy[j] = k->c[j] + r->out.y[j];
        r->out.rdy[j] = r->out.ry[j];
    }
    size_t bad = 0;
    for (int i = 0; i < k->n_in; i++) {
        s_fill_normal(hx[i], k->nx[i], rng, 1.0f);
        memcpy(r->in[i].rdy, hx[i], sizeof(float) * k->nx[i]);
        r->in[i].need_dy = 0;
    }
    r->l->ops->rbackward(r->l, &r->ctx);
    for (int i = 0; i < k->n_in; i++) {
        bad += memcmp(r->in[i].rdy, hx[i], sizeof(float) * k->nx[i]) != 0;
        r->in[i].need_dy = 1;
    }
    s_report(k, "rbackward with need_dy = 0 leaves rdy alone", (double)bad, 0.0);

    for (int i = 0; i < k->n_in; i++) {
        nn_free(u[i]);
        nn_free(hx[i]);
        nn_free(gp[i]);
        nn_free(gm[i]);
    }
    nn_free(v);
    nn_free(hw);
    nn_free(gwp);
    nn_free(gwm);
    nn_free(ry);
    nn_free(fd);
}

/* (d) u2.(H (u1, v1)) = u1.(H (u2, v2)) over the joint (input, parameter) space. */
static void s_check_symmetry(struct s_check *k, struct nn_rng *rng)
{
    float *u[2][NN_LAYER_MAX_IN] = {{0}}, *h[2][NN_LAYER_MAX_IN] = {{0}}, *v[2], *hw[2];
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < k->n_in; i++) {
            u[d][i] = s_falloc(k->nx[i]);
            h[d][i] = s_falloc(k->nx[i]);
            s_fill_normal(u[d][i], k->nx[i], rng, 1.0f);
        }
        v[d] = s_falloc(k->nw);
        hw[d] = s_falloc(k->nw);
        s_fill_normal(v[d], k->nw, rng, 1.0f);
        s_hvp(k, 0, u[d], v[d], h[d], hw[d], rng);
    }
    double dot[2] = {0.0, 0.0}, nu = 0.0, nh = 0.0;
    for (int d = 0; d < 2; d++) {
        const int o = 1 - d;
        for (int i = 0; i < k->n_in; i++)
            for (size_t j = 0; j < k->nx[i]; j++)
                dot[d] += (double)u[o][i][j] * h[d][i][j];
        for (size_t j = 0; j < k->nw; j++)
            dot[d] += (double)v[o][j] * hw[d][j];
    }
    for (int i = 0; i < k->n_in; i++) {
        nu += s_norm(u[1][i], k->nx[i]) * s_norm(u[1][i], k->nx[i]);
        nh += s_norm(h[0][i], k->nx[i]) * s_norm(h[0][i], k->nx[i]);
    }
    nu += s_norm(v[1], k->nw) * s_norm(v[1], k->nw);
    nh += s_norm(hw[0], k->nw) * s_norm(hw[0], k->nw);
    double scale = sqrt(nu) * sqrt(nh);
    s_report(k, "symmetry u.(Hv) = v.(Hu)", fabs(dot[0] - dot[1]) / (scale > 1e-30 ? scale : 1e-30),
             k->sym_tol);
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < k->n_in; i++) {
            nn_free(u[d][i]);
            nn_free(h[d][i]);
        }
        nn_free(v[d]);
        nn_free(hw[d]);
    }
}

int nn_check_layer(struct nn_layer *l, const struct nn_check_cfg *cfg)
{
    struct nn_check_rig *r = nn_check_rig_new(l, cfg);
    if (!r) {
        printf("FAIL nn_check_layer: setup of the layer failed\n");
        return 1;
    }
    struct s_check k;
    memset(&k, 0, sizeof k);
    k.r = r;
    k.cfg = cfg;
    k.n = cfg->batch;
    k.n_in = cfg->n_in;
    for (int i = 0; i < k.n_in; i++) {
        k.nx[i] = r->in_numel[i] * k.n;
        k.x0[i] = s_falloc(k.nx[i]);
        memcpy(k.x0[i], r->in[i].y, sizeof(float) * k.nx[i]);
    }
    k.ny = r->out_numel * k.n;
    k.nw = r->l->n_w;
    k.w0 = s_falloc(k.nw);
    memcpy(k.w0, r->w, sizeof(float) * k.nw);
    k.c = s_falloc(k.ny);
    k.yp = s_falloc(k.ny);
    k.ym = s_falloc(k.ny);
    k.eps = cfg->eps > 0 ? cfg->eps : 1e-2;
    k.tol = cfg->tol > 0 ? cfg->tol : 2e-3;
    k.sym_tol = cfg->sym_tol > 0 ? cfg->sym_tol : 1e-4;
    k.verbose = cfg->verbose || getenv("EB_CHECK_VERBOSE") != NULL;

    struct nn_rng rng;
    nn_rng_seed(&rng, cfg->seed + 2);
    s_fill_normal(k.c, k.ny, &rng, 1.0f);
    size_t otot = r->out_numel * r->max_batch;
    for (size_t j = 0; j < otot; j++)
        r->out.y[j] = NN_CHECK_SENTINEL;

    s_check_gradient(&k, &rng);
    s_check_rpasses(&k, &rng);
    s_check_symmetry(&k, &rng);

    for (int i = 0; i < k.n_in; i++)
        nn_free(k.x0[i]);
    nn_free(k.w0);
    nn_free(k.c);
    nn_free(k.yp);
    nn_free(k.ym);
    nn_check_rig_destroy(&r);
    return k.failures;
}
