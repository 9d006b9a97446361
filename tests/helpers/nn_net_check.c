/*
 * nn_net_check: finite-difference, symmetry and block checks of whole nets (see nn_net_check.h).
 */
#include "nn_net_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eb_test.h"

static size_t s_input_len(const nn_net_t *net, int n)
{
    int c, h, w;
    nn_net_input_shape(net, &c, &h, &w);
    return (size_t)n * c * h * w;
}

static float *s_alloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static double s_dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static double s_relerr(const double *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}

/* An agreement good enough to stop trying smaller steps. */
#define NN_CHECK_GOOD 3e-3

/* NN_CHECK_VERBOSE=1 prints every check's details to stderr. */
static int s_verbose(void)
{
    const char *v = getenv("NN_CHECK_VERBOSE");
    return v && *v && strcmp(v, "0");
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Largest relative error over the parameter tensors that lie in [from, np), each computed after
 * dropping the floor(1%) entries with the largest discrepancy. A kink crossed by a finite
 * difference changes the gradient only in the few entries connected to the unit that flipped;
 * a wrong formula changes a whole tensor. Tensors under 100 entries are not trimmed. */
static double s_relerr_tensors(const nn_net_t *net, const double *a, const double *b, size_t from)
{
    double worst = 0;
    for (int t = 0; t < nn_net_tensor_count(net); t++) {
        const struct nn_tensor_info *ti = nn_net_tensor(net, t);
        if (ti->kind != NN_TENSOR_PARAM || ti->offset < from)
            continue;
        size_t m = ti->numel, drop = m / 100, o = ti->offset - from;
        double *d = malloc(m * sizeof *d), den = 0, num = 0, an = 0;
        assert_non_null(d);
        for (size_t i = 0; i < m; i++) {
            d[i] = (a[o + i] - b[o + i]) * (a[o + i] - b[o + i]);
            den += b[o + i] * b[o + i];
            an += a[o + i] * a[o + i];
        }
        qsort(d, m, sizeof *d, s_cmp_double);
        for (size_t i = 0; i < m - drop; i++)
            num += d[i];
        free(d);
        double e = sqrt(num) / fmax(sqrt(den), 1e-12);
        if (s_verbose())
            fprintf(stderr,
                    "    %-24s rel err %.2e (%zu entries, %zu dropped) |fd| %.3e |hv| %.3e\n",
                    ti->name, e, m, drop, sqrt(den), sqrt(an));
        worst = e > worst ? e : worst;
    }
    return worst;
}

void nn_net_check_data(const nn_net_t *net, int n, unsigned long long seed, float **x,
                       int32_t **labels)
{
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    size_t len = s_input_len(net, n);
    *x = s_alloc(len);
    *labels = calloc((size_t)n, sizeof **labels);
    assert_non_null(*labels);
    for (size_t i = 0; i < len; i++)
        (*x)[i] = nn_rng_normal(&rng);
    for (int i = 0; i < n; i++)
        (*labels)[i] = (int32_t)(nn_rng_next(&rng) % (unsigned)nn_net_classes(net));
}

void nn_net_check_perturb(nn_net_t *net, unsigned long long seed, float scale)
{
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    float *w = nn_net_params(net), *b = nn_net_buffers(net);
    for (int t = 0; t < nn_net_tensor_count(net); t++) {
        const struct nn_tensor_info *ti = nn_net_tensor(net, t);
        size_t len = strlen(ti->name);
        for (size_t i = 0; i < ti->numel; i++) {
            if (ti->kind == NN_TENSOR_PARAM)
                w[ti->offset + i] += scale * nn_rng_normal(&rng);
            else if (len > 4 && !strcmp(ti->name + len - 4, "mean"))
                b[ti->offset + i] = 0.1f * nn_rng_normal(&rng);
            else
                b[ti->offset + i] = 0.5f + nn_rng_uniform(&rng);
        }
    }
}

static double s_loss(nn_net_t *net, const float *x, const int32_t *labels, int n,
                     enum nn_bn_mode bn)
{
    float l = nn_net_forward(net, x, labels, n, bn, NULL, NULL);
    assert_false(isnan(l));
    return l;
}

/* Gradient of the mean loss into g (param_count floats). */
static void s_grad(nn_net_t *net, const float *x, const int32_t *labels, int n, enum nn_bn_mode bn,
                   float *g)
{
    nn_net_zero_grad(net);
    float l = nn_net_train_pass(net, x, labels, n, bn, NN_PASS_PARAM_GRAD, 1.0f, NULL, NULL);
    assert_false(isnan(l));
    memcpy(g, nn_net_grads(net), nn_net_param_count(net) * sizeof *g);
}

/* Central difference of the loss along d, which is zero outside [lo, hi), with step eps, using
 * the float32 points actually evaluated: returns (L(w+) - L(w-)) / (2 eps) and stores in *gd the
 * exact g.(w+ - w-) / (2 eps) for the gradient g, so that rounding of w +- eps d is not counted
 * as an error. */
static double s_fd_dir(nn_net_t *net, const float *x, const int32_t *labels, int n,
                       enum nn_bn_mode bn, const float *g, const float *d, size_t lo, size_t hi,
                       double eps, double *gd)
{
    float *w = nn_net_params(net), *w0 = s_alloc(hi - lo), *wp = s_alloc(hi - lo);
    memcpy(w0, w + lo, (hi - lo) * sizeof *w);
    for (size_t i = lo; i < hi; i++)
        w[i] = wp[i - lo] = (float)(w0[i - lo] + eps * d[i]);
    double lp = s_loss(net, x, labels, n, bn);
    for (size_t i = lo; i < hi; i++)
        w[i] = (float)(w0[i - lo] - eps * d[i]);
    double lm = s_loss(net, x, labels, n, bn);
    double acc = 0;
    for (size_t i = lo; i < hi; i++)
        acc += (double)g[i] * ((double)wp[i - lo] - w[i]);
    *gd = acc / (2 * eps);
    memcpy(w + lo, w0, (hi - lo) * sizeof *w);
    free(w0);
    free(wp);
    return (lp - lm) / (2 * eps);
}

double nn_net_check_param_grad(nn_net_t *net, const float *x, const int32_t *labels, int n,
                               enum nn_bn_mode bn, double eps, int per_layer)
{
    size_t np = nn_net_param_count(net);
    float *g = s_alloc(np), *w = nn_net_params(net);
    s_grad(net, x, labels, n, bn, g);
    struct nn_rng rng;
    nn_rng_seed(&rng, 99);
    double err = 0;

    /* (a) single coordinates, up to per_layer per parameter layer */
    int layers = nn_net_param_layers(net);
    size_t cap = (size_t)layers * per_layer + 1, m = 0;
    double *a = calloc(cap, sizeof *a), *b = calloc(cap, sizeof *b);
    assert_true(a && b);
    for (int li = 0; li < layers && per_layer > 0; li++) {
        size_t off = nn_net_param_layer_offset(net, li), sz = nn_net_param_layer_size(net, li);
        size_t cnt = sz < (size_t)per_layer ? sz : (size_t)per_layer;
        for (size_t j = 0; j < cnt; j++) {
            size_t i = off + (sz <= (size_t)per_layer ? j : nn_rng_next(&rng) % sz);
            float w0 = w[i];
            w[i] = (float)(w0 + eps);
            float wp = w[i];
            double lp = s_loss(net, x, labels, n, bn);
            w[i] = (float)(w0 - eps);
            double lm = s_loss(net, x, labels, n, bn);
            a[m] = g[i] * (((double)wp - w[i]) / (2 * eps));
            w[i] = w0;
            b[m] = (lp - lm) / (2 * eps);
            m++;
        }
    }
    if (m)
        err = s_relerr(a, b, m);
    if (s_verbose())
        fprintf(stderr, "  coordinates: %zu, rel err %.2e\n", m, err);

    /* (b) per parameter tensor, the derivative along d = g_t/|g_t| + r_t/|r_t| (r random, d zero
     * outside tensor t): a whole tensor's gradient norm is resolvable in float32 where single
     * small coordinates are not. The worst tensor counts, relative to the largest |g_t|. */
    float *d = s_alloc(np);
    double gmax = 0;
    int nt = nn_net_tensor_count(net);
    double *ta = calloc((size_t)nt, sizeof *ta), *tb = calloc((size_t)nt, sizeof *tb);
    assert_true(ta && tb);
    for (int t = 0; t < nt; t++) {
        const struct nn_tensor_info *ti = nn_net_tensor(net, t);
        if (ti->kind != NN_TENSOR_PARAM)
            continue;
        const float *gt = g + ti->offset;
        double gn = sqrt(s_dot(gt, gt, ti->numel)), rn = 0;
        for (size_t i = 0; i < ti->numel; i++) {
            d[ti->offset + i] = nn_rng_normal(&rng);
            rn += (double)d[ti->offset + i] * d[ti->offset + i];
        }
        for (size_t i = 0; i < ti->numel; i++)
            d[ti->offset + i] = (float)(gt[i] / fmax(gn, 1e-30) + d[ti->offset + i] / sqrt(rn));
        /* steps eps, eps/4, eps/16: keep the one that agrees best (rounding grows as the step
         * shrinks, curvature and kinks as it grows; a wrong gradient disagrees at every step) */
        double best = INFINITY, step = eps;
        for (int k = 0; k < 3 && best > NN_CHECK_GOOD; k++, step /= 4) {
            double gd, fd = s_fd_dir(net, x, labels, n, bn, g, d, ti->offset,
                                     ti->offset + ti->numel, step, &gd);
            double e = fabs(gd - fd) / fmax(fabs(fd), 1e-30);
            if (e < best) {
                best = e;
                ta[t] = gd;
                tb[t] = fd;
            }
        }
        gmax = fmax(gmax, fabs(ta[t]));
    }
    for (int t = 0; t < nt; t++) {
        const struct nn_tensor_info *ti = nn_net_tensor(net, t);
        if (ti->kind != NN_TENSOR_PARAM)
            continue;
        double e = fabs(ta[t] - tb[t]) / fmax(fabs(ta[t]), 1e-2 * gmax);
        if (s_verbose())
            fprintf(stderr, "  %-24s g.d %+.5e fd %+.5e rel err %.2e\n", ti->name, ta[t], tb[t], e);
        err = fmax(err, e);
    }
    free(ta);
    free(tb);
    free(d);
    free(a);
    free(b);
    free(g);
    return err;
}

/* Input-gradient errors at one step: coordinates (vector relative error) and the direction d. */
static void s_input_fd(nn_net_t *net, const float *x, const int32_t *labels, int n,
                       enum nn_bn_mode bn, const float *dx, const size_t *idx, size_t m,
                       const float *d, double eps, double *e_coord, double *e_dir)
{
    size_t len = s_input_len(net, n);
    float *xp = s_alloc(len), *xm = s_alloc(len);
    double *a = calloc(m + 1, sizeof *a), *b = calloc(m + 1, sizeof *b);
    assert_true(a && b);
    memcpy(xp, x, len * sizeof *xp);
    for (size_t j = 0; j < m; j++) {
        size_t i = idx[j];
        xp[i] = (float)(x[i] + eps);
        float hi = xp[i];
        double lp = s_loss(net, xp, labels, n, bn);
        xp[i] = (float)(x[i] - eps);
        double lm = s_loss(net, xp, labels, n, bn);
        a[j] = dx[i] * (((double)hi - xp[i]) / (2 * eps));
        xp[i] = x[i];
        b[j] = (lp - lm) / (2 * eps);
    }
    *e_coord = m ? s_relerr(a, b, m) : 0;
    for (size_t i = 0; i < len; i++) {
        xp[i] = (float)(x[i] + eps * d[i]);
        xm[i] = (float)(x[i] - eps * d[i]);
    }
    double lp = s_loss(net, xp, labels, n, bn), lm = s_loss(net, xm, labels, n, bn), gd = 0;
    for (size_t i = 0; i < len; i++)
        gd += (double)dx[i] * ((double)xp[i] - xm[i]) / (2 * eps);
    *e_dir = fabs(gd - (lp - lm) / (2 * eps)) / fmax(fabs(gd), 1e-12);
    free(a);
    free(b);
    free(xp);
    free(xm);
}

double nn_net_check_input_grad(nn_net_t *net, const float *x, const int32_t *labels, int n,
                               enum nn_bn_mode bn, double eps, int coords)
{
    size_t len = s_input_len(net, n);
    float *dx = s_alloc(len), *d = s_alloc(len);
    float l = nn_net_train_pass(net, x, labels, n, bn, NN_PASS_INPUT_GRAD, 1.0f, dx, NULL);
    assert_false(isnan(l));
    size_t m = len < (size_t)coords ? len : (size_t)coords;
    size_t *idx = calloc(m + 1, sizeof *idx);
    assert_non_null(idx);
    struct nn_rng rng;
    nn_rng_seed(&rng, 7);
    for (size_t j = 0; j < m; j++)
        idx[j] = len <= (size_t)coords ? j : nn_rng_next(&rng) % len;
    /* d = dx/|dx| + r/|r| over the whole input */
    double gn = sqrt(s_dot(dx, dx, len)), rn = 0;
    for (size_t i = 0; i < len; i++) {
        d[i] = nn_rng_normal(&rng);
        rn += (double)d[i] * d[i];
    }
    for (size_t i = 0; i < len; i++)
        d[i] = (float)(dx[i] / fmax(gn, 1e-30) + d[i] / sqrt(rn));
    /* steps eps, eps/4, eps/16; the best agreement of each kind counts */
    double ec = INFINITY, ed = INFINITY;
    for (int t = 0; t < 3 && fmax(ec, ed) > NN_CHECK_GOOD; t++, eps /= 4) {
        double c, e;
        s_input_fd(net, x, labels, n, bn, dx, idx, m, d, eps, &c, &e);
        if (s_verbose())
            fprintf(stderr, "  input step %.2e: %zu coordinates %.2e, direction %.2e\n", eps, m, c,
                    e);
        ec = fmin(ec, c);
        ed = fmin(ed, e);
    }
    free(idx);
    free(d);
    free(dx);
    return fmax(ec, ed);
}

/* First parameter of the block of the last k layers (0: everything). */
static size_t s_block_start(const nn_net_t *net, int k)
{
    int layers = nn_net_param_layers(net);
    if (k <= 0 || k >= layers)
        return 0;
    return nn_net_param_layer_offset(net, layers - k);
}

/* Random unit vector, zero below `from`. */
static void s_direction(float *v, size_t np, size_t from, unsigned long long seed)
{
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    double norm = 0;
    for (size_t i = 0; i < np; i++) {
        v[i] = i < from ? 0.0f : nn_rng_normal(&rng);
        norm += (double)v[i] * v[i];
    }
    for (size_t i = from; i < np; i++)
        v[i] = (float)(v[i] / sqrt(norm));
}

/* Relative error (s_relerr_tensors) over entries [from, np) of H u against (g(a) - g(b)) / h,
 * where u = (a - b) / h is the direction actually taken between the float32 points a and b (so the
 * rounding of w +- eps v does not count as an error). */
static double s_hvp_diff_err(nn_net_t *net, const float *x, const int32_t *labels, int n,
                             enum nn_bn_mode bn, int k, const float *a, const float *b,
                             const float *ga, const float *gb, double h, size_t from)
{
    size_t np = nn_net_param_count(net), m = np - from;
    float *u = s_alloc(np), *hu = s_alloc(np);
    for (size_t i = 0; i < np; i++)
        u[i] = (float)(((double)a[i] - b[i]) / h);
    assert_false(isnan(nn_net_hvp(net, x, labels, n, bn, k, u, hu)));
    double *ea = calloc(m ? m : 1, sizeof *ea), *eb = calloc(m ? m : 1, sizeof *eb);
    assert_true(ea && eb);
    for (size_t i = 0; i < m; i++) {
        ea[i] = hu[from + i];
        eb[i] = ((double)ga[from + i] - gb[from + i]) / h;
    }
    double err = s_relerr_tensors(net, ea, eb, from);
    free(ea);
    free(eb);
    free(u);
    free(hu);
    return err;
}

/* Best agreement of the HVP with the central, forward and backward differences of gradients with
 * step eps along v. A ReLU input lying within eps of its kink makes the gradient jump on one side;
 * the difference on the other side is still clean. */
static double s_hvp_fd_err(nn_net_t *net, const float *x, const int32_t *labels, int n,
                           enum nn_bn_mode bn, int k, const float *v, size_t from, double eps)
{
    size_t np = nn_net_param_count(net);
    float *w = nn_net_params(net), *w0 = s_alloc(np), *wp = s_alloc(np), *wm = s_alloc(np);
    float *g0 = s_alloc(np), *gp = s_alloc(np), *gm = s_alloc(np);
    memcpy(w0, w, np * sizeof *w);
    for (size_t i = 0; i < np; i++) {
        wp[i] = (float)(w0[i] + eps * v[i]);
        wm[i] = (float)(w0[i] - eps * v[i]);
    }
    s_grad(net, x, labels, n, bn, g0);
    memcpy(w, wp, np * sizeof *w);
    s_grad(net, x, labels, n, bn, gp);
    memcpy(w, wm, np * sizeof *w);
    s_grad(net, x, labels, n, bn, gm);
    memcpy(w, w0, np * sizeof *w);
    double ec = s_hvp_diff_err(net, x, labels, n, bn, k, wp, wm, gp, gm, 2 * eps, from);
    double ef = INFINITY, eb = INFINITY;
    if (ec > NN_CHECK_GOOD) {
        ef = s_hvp_diff_err(net, x, labels, n, bn, k, wp, w0, gp, g0, eps, from);
        eb = s_hvp_diff_err(net, x, labels, n, bn, k, w0, wm, g0, gm, eps, from);
    }
    if (s_verbose())
        fprintf(stderr, "  hvp step %.2e: central %.2e forward %.2e backward %.2e\n", eps, ec, ef,
                eb);
    free(w0);
    free(wp);
    free(wm);
    free(g0);
    free(gp);
    free(gm);
    return fmin(ec, fmin(ef, eb));
}

double nn_net_check_hvp(nn_net_t *net, const float *x, const int32_t *labels, int n,
                        enum nn_bn_mode bn, int k, double eps)
{
    size_t np = nn_net_param_count(net), from = s_block_start(net, k);
    float *v = s_alloc(np);
    s_direction(v, np, from, 1234);
    /* Steps eps, eps/4, eps/16, keeping the best agreement: rounding grows as the step shrinks,
     * curvature and kinks crossed as it grows. A wrong HVP disagrees at every step. */
    double err = INFINITY;
    for (int t = 0; t < 3 && err > NN_CHECK_GOOD; t++, eps /= 4)
        err = fmin(err, s_hvp_fd_err(net, x, labels, n, bn, k, v, from, eps));
    free(v);
    return err;
}

double nn_net_check_hvp_symmetry(nn_net_t *net, const float *x, const int32_t *labels, int n,
                                 enum nn_bn_mode bn)
{
    size_t np = nn_net_param_count(net);
    float *u = s_alloc(np), *v = s_alloc(np), *hu = s_alloc(np), *hv = s_alloc(np);
    s_direction(u, np, 0, 11);
    s_direction(v, np, 0, 12);
    assert_false(isnan(nn_net_hvp(net, x, labels, n, bn, 0, v, hv)));
    assert_false(isnan(nn_net_hvp(net, x, labels, n, bn, 0, u, hu)));
    double uhv = s_dot(u, hv, np), vhu = s_dot(v, hu, np);
    double err = fabs(uhv - vhu) / fmax(sqrt(s_dot(hv, hv, np)), 1e-12);
    free(u);
    free(v);
    free(hu);
    free(hv);
    return err;
}

double nn_net_check_block(nn_net_t *net, const float *x, const int32_t *labels, int n,
                          enum nn_bn_mode bn, int k)
{
    size_t np = nn_net_param_count(net), from = s_block_start(net, k);
    float *v = s_alloc(np), *vm = s_alloc(np), *hb = s_alloc(np), *hf = s_alloc(np);
    s_direction(v, np, 0, 77);
    memcpy(vm + from, v + from, (np - from) * sizeof *v);
    for (size_t i = 0; i < np; i++)
        hb[i] = NAN; /* must be overwritten with zeros outside the block */
    assert_false(isnan(nn_net_hvp(net, x, labels, n, bn, k, v, hb)));
    assert_false(isnan(nn_net_hvp(net, x, labels, n, bn, 0, vm, hf)));
    double err = 0;
    for (size_t i = 0; i < from; i++)
        if (hb[i] != 0.0f)
            err = 1.0;
    size_t m = np - from;
    double *a = calloc(m ? m : 1, sizeof *a), *b = calloc(m ? m : 1, sizeof *b);
    assert_true(a && b);
    for (size_t i = 0; i < m; i++) {
        a[i] = hb[from + i];
        b[i] = hf[from + i];
    }
    err = fmax(err, s_relerr(a, b, m));
    free(a);
    free(b);
    free(v);
    free(vm);
    free(hb);
    free(hf);
    return err;
}
