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
        double *d = malloc(m * sizeof *d), den = 0, num = 0;
        assert_non_null(d);
        for (size_t i = 0; i < m; i++) {
            d[i] = (a[o + i] - b[o + i]) * (a[o + i] - b[o + i]);
            den += b[o + i] * b[o + i];
        }
        qsort(d, m, sizeof *d, s_cmp_double);
        for (size_t i = 0; i < m - drop; i++)
            num += d[i];
        free(d);
        double e = sqrt(num) / fmax(sqrt(den), 1e-12);
        if (getenv("NN_CHECK_VERBOSE")) fprintf(stderr, "    %s %.2e\n", ti->name, e);
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
static void s_grad(nn_net_t *net, const float *x, const int32_t *labels, int n,
                   enum nn_bn_mode bn, float *g)
{
    nn_net_zero_grad(net);
    float l = nn_net_train_pass(net, x, labels, n, bn, NN_PASS_PARAM_GRAD, 1.0f, NULL, NULL);
    assert_false(isnan(l));
    memcpy(g, nn_net_grads(net), nn_net_param_count(net) * sizeof *g);
}

double nn_net_check_param_grad(nn_net_t *net, const float *x, const int32_t *labels, int n,
                               enum nn_bn_mode bn, double eps, int per_layer)
{
    size_t np = nn_net_param_count(net);
    float *g = s_alloc(np), *w = nn_net_params(net);
    s_grad(net, x, labels, n, bn, g);
    int layers = nn_net_param_layers(net);
    size_t cap = (size_t)layers * per_layer + 1, m = 0;
    double *a = calloc(cap, sizeof *a), *b = calloc(cap, sizeof *b);
    assert_true(a && b);
    struct nn_rng rng;
    nn_rng_seed(&rng, 99);
    for (int li = 0; li < layers; li++) {
        size_t off = nn_net_param_layer_offset(net, li), sz = nn_net_param_layer_size(net, li);
        size_t cnt = sz < (size_t)per_layer ? sz : (size_t)per_layer;
        for (size_t j = 0; j < cnt; j++) {
            size_t i = off + (sz <= (size_t)per_layer ? j : nn_rng_next(&rng) % sz);
            float w0 = w[i];
            w[i] = (float)(w0 + eps);
            double lp = s_loss(net, x, labels, n, bn);
            w[i] = (float)(w0 - eps);
            double lm = s_loss(net, x, labels, n, bn);
            w[i] = w0;
            a[m] = g[i];
            b[m] = (lp - lm) / (2 * eps);
            m++;
        }
    }
    /* Directional derivative along d = g/|g| + r/|r| (r random): large enough to resolve. */
    float *d = s_alloc(np), *w0 = s_alloc(np);
    double gn = sqrt(s_dot(g, g, np)), rn = 0;
    for (size_t i = 0; i < np; i++) {
        d[i] = nn_rng_normal(&rng);
        rn += (double)d[i] * d[i];
    }
    rn = sqrt(rn);
    for (size_t i = 0; i < np; i++)
        d[i] = (float)(g[i] / fmax(gn, 1e-30) + d[i] / rn);
    memcpy(w0, w, np * sizeof *w);
    for (size_t i = 0; i < np; i++)
        w[i] = (float)(w0[i] + eps * d[i]);
    double lp = s_loss(net, x, labels, n, bn);
    for (size_t i = 0; i < np; i++)
        w[i] = (float)(w0[i] - eps * d[i]);
    double lm = s_loss(net, x, labels, n, bn);
    memcpy(w, w0, np * sizeof *w);
    double err_dir = fabs(s_dot(g, d, np) - (lp - lm) / (2 * eps)) / fmax(fabs(s_dot(g, d, np)), 1e-12);
    double err = s_relerr(a, b, m);
    free(d);
    free(w0);
    free(a);
    free(b);
    free(g);
    return fmax(err, err_dir);
}

double nn_net_check_input_grad(nn_net_t *net, const float *x, const int32_t *labels, int n,
                               enum nn_bn_mode bn, double eps, int coords)
{
    size_t len = s_input_len(net, n);
    float *dx = s_alloc(len), *xx = s_alloc(len);
    memcpy(xx, x, len * sizeof *xx);
    float l = nn_net_train_pass(net, x, labels, n, bn, NN_PASS_INPUT_GRAD, 1.0f, dx, NULL);
    assert_false(isnan(l));
    size_t m = len < (size_t)coords ? len : (size_t)coords;
    double *a = calloc(m, sizeof *a), *b = calloc(m, sizeof *b);
    assert_true(a && b);
    struct nn_rng rng;
    nn_rng_seed(&rng, 7);
    for (size_t j = 0; j < m; j++) {
        size_t i = len <= (size_t)coords ? j : nn_rng_next(&rng) % len;
        float x0 = xx[i];
        xx[i] = (float)(x0 + eps);
        double lp = s_loss(net, xx, labels, n, bn);
        xx[i] = (float)(x0 - eps);
        double lm = s_loss(net, xx, labels, n, bn);
        xx[i] = x0;
        a[j] = dx[i];
        b[j] = (lp - lm) / (2 * eps);
    }
    double err = s_relerr(a, b, m);
    free(a);
    free(b);
    free(dx);
    free(xx);
    return err;
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

/* Relative error over entries [from, np) of H v' against the central difference of gradients
 * (g(w+) - g(w-)) / (2 eps), where w+- = fl(w -+ eps v) are the float32 points actually evaluated
 * and v' = (w+ - w-) / (2 eps) is the direction actually taken (so the rounding of w +- eps v does
 * not count as an error). */
static double s_hvp_fd_err(nn_net_t *net, const float *x, const int32_t *labels, int n,
                           enum nn_bn_mode bn, int k, const float *v, size_t from, double eps)
{
    size_t np = nn_net_param_count(net);
    float *gp = s_alloc(np), *gm = s_alloc(np), *w = nn_net_params(net), *w0 = s_alloc(np);
    float *wp = s_alloc(np), *ve = s_alloc(np), *hv = s_alloc(np);
    memcpy(w0, w, np * sizeof *w);
    for (size_t i = 0; i < np; i++)
        w[i] = wp[i] = (float)(w0[i] + eps * v[i]);
    s_grad(net, x, labels, n, bn, gp);
    for (size_t i = 0; i < np; i++) {
        w[i] = (float)(w0[i] - eps * v[i]);
        ve[i] = (float)(((double)wp[i] - w[i]) / (2 * eps));
    }
    s_grad(net, x, labels, n, bn, gm);
    memcpy(w, w0, np * sizeof *w);
    assert_false(isnan(nn_net_hvp(net, x, labels, n, bn, k, ve, hv)));
    size_t m = np - from;
    double *a = calloc(m ? m : 1, sizeof *a), *b = calloc(m ? m : 1, sizeof *b);
    assert_true(a && b);
    for (size_t i = 0; i < m; i++) {
        a[i] = hv[from + i];
        b[i] = ((double)gp[from + i] - gm[from + i]) / (2 * eps);
    }
    double err = s_relerr_tensors(net, a, b, from);
    free(a);
    free(b);
    free(gp);
    free(gm);
    free(w0);
    free(wp);
    free(ve);
    free(hv);
    return err;
}

double nn_net_check_hvp(nn_net_t *net, const float *x, const int32_t *labels, int n,
                        enum nn_bn_mode bn, int k, double eps)
{
    size_t np = nn_net_param_count(net), from = s_block_start(net, k);
    float *v = s_alloc(np);
    s_direction(v, np, from, 1234);
    /* A ReLU or max-pool kink between w - eps v and w + eps v makes the gradient jump, and with
     * thousands of units one such crossing is likely for some step: try three steps and keep the
     * best agreement. A wrong HVP disagrees at every step. */
    double err = INFINITY;
    for (int t = 0; t < 3 && err > 1e-4; t++, eps /= 4)
        { double e_ = s_hvp_fd_err(net, x, labels, n, bn, k, v, from, eps); if (getenv("NN_CHECK_VERBOSE")) fprintf(stderr, "  eps %.2e err %.2e\n", eps, e_); err = fmin(err, e_); }
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
