/*
 * test_nn_dnnl: oneDNN's convolution behind nn_dnnl.h against a direct loop in double, on the
 * net's layouts (CNHW activations, (out, in, k, k) weights): forward overwriting and adding,
 * the transposed convolution adding into dx, the filter gradient adding scale times into dw. Shapes
 * with channel counts that are not multiples of oneDNN's block of 16, stride 2, a 1x1 shortcut and
 * a one-channel input. Skipped when the build has no oneDNN (nn_dnnl_conv_new returns NULL).
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_base.h"
#include "nn_dnnl.h"

/* float results of a sum of at most in_c*k*k (or n*oh*ow) products of values in [-1, 1]: far
 * below what a wrong index or a lost term would give (an O(1) error) */
#define TEST_TOL 1e-4

struct s_case {
    struct nn_dnnl_conv_shape s;
    float *x, *w, *y, *dy, *dx, *dw; /* operands and results */
    double *ry, *rdx, *rdw;          /* references */
    size_t nx, nw, ny;               /* element counts */
};

static float *s_fill(size_t n, struct nn_rng *rng)
{
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = 2.0f * nn_rng_uniform(rng) - 1.0f;
    return p;
}

/* The three references by one loop over every (output element, kernel tap) pair. The starting
 * values of y, dx and dw (what the calls add to) are part of the reference. */
static void s_reference(struct s_case *t, float y0, float scale)
{
    const struct nn_dnnl_conv_shape *s = &t->s;
    for (size_t j = 0; j < t->ny; j++)
        t->ry[j] = y0;
    for (size_t j = 0; j < t->nx; j++)
        t->rdx[j] = t->dx[j];
    for (size_t j = 0; j < t->nw; j++)
        t->rdw[j] = t->dw[j];
    for (int o = 0; o < s->out_c; o++)
        for (int i = 0; i < s->n; i++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    size_t yi = (((size_t)o * s->n + i) * s->oh + oy) * s->ow + ox;
                    for (int c = 0; c < s->in_c; c++)
                        for (int ki = 0; ki < s->k; ki++)
                            for (int kj = 0; kj < s->k; kj++) {
                                int iy = oy * s->stride - s->pad + ki;
                                int ix = ox * s->stride - s->pad + kj;
                                if (iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw)
                                    continue;
                                size_t xi = (((size_t)c * s->n + i) * s->ih + iy) * s->iw + ix;
                                size_t wi = (((size_t)o * s->in_c + c) * s->k + ki) * s->k + kj;
                                t->ry[yi] += (double)t->w[wi] * t->x[xi];
                                t->rdx[xi] += (double)t->w[wi] * t->dy[yi];
                                t->rdw[wi] += (double)scale * t->dy[yi] * t->x[xi];
                            }
                }
}

static double s_maxerr(const float *got, const double *want, size_t n)
{
    double m = 0.0;
    for (size_t j = 0; j < n; j++)
        m = fmax(m, fabs(got[j] - want[j]));
    return m;
}

static void s_run(int n, int in_c, int h, int out_c, int k, int stride, int pad, int add,
                  unsigned long long seed)
{
    struct s_case t;
    memset(&t, 0, sizeof t);
    const int oh = (h + 2 * pad - k) / stride + 1;
    t.s = (struct nn_dnnl_conv_shape){n, in_c, h, h, out_c, oh, oh, k, stride, pad};
    nn_dnnl_conv_t *c = nn_dnnl_conv_new(&t.s);
    if (!c)
        skip(); /* built without oneDNN */
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    t.nx = (size_t)n * in_c * h * h;
    t.nw = (size_t)out_c * in_c * k * k;
    t.ny = (size_t)n * out_c * oh * oh;
    t.x = s_fill(t.nx, &rng);
    t.w = s_fill(t.nw, &rng);
    t.dy = s_fill(t.ny, &rng);
    t.dx = s_fill(t.nx, &rng);
    t.dw = s_fill(t.nw, &rng);
    t.y = malloc(t.ny * sizeof *t.y);
    t.ry = malloc(t.ny * sizeof *t.ry);
    t.rdx = malloc(t.nx * sizeof *t.rdx);
    t.rdw = malloc(t.nw * sizeof *t.rdw);
    float *work = nn_alloc(nn_dnnl_conv_work_floats(c) * sizeof(float));
    assert_true(t.y && t.ry && t.rdx && t.rdw && work);
    const float y0 = add ? 0.5f : 0.0f, scale = add ? 0.25f : 1.0f;
    for (size_t j = 0; j < t.ny; j++)
        t.y[j] = add ? y0 : NAN; /* an overwriting forward must not read y */
    s_reference(&t, y0, scale);

    nn_dnnl_conv_forward(c, t.x, t.w, t.y, add, 0, work);
    nn_dnnl_conv_backward(c, t.dy, t.x, scale, t.dw, t.w, t.dx, 0, work);
    double ey = s_maxerr(t.y, t.ry, t.ny), ex = s_maxerr(t.dx, t.rdx, t.nx);
    double ew = s_maxerr(t.dw, t.rdw, t.nw);
    if (ey > TEST_TOL || ex > TEST_TOL || ew > TEST_TOL)
        print_error("n %d in %d h %d out %d k %d s %d p %d add %d: y %g dx %g dw %g\n", n, in_c, h,
                    out_c, k, stride, pad, add, ey, ex, ew);
    assert_true(ey <= TEST_TOL && ex <= TEST_TOL && ew <= TEST_TOL);

    nn_free(work);
    free(t.x), free(t.w), free(t.y), free(t.dy), free(t.dx), free(t.dw);
    free(t.ry), free(t.rdx), free(t.rdw);
    nn_dnnl_conv_destroy(&c);
    assert_null(c);
    nn_dnnl_conv_destroy(&c); /* safe twice */
}

static void test_dnnl_k3(void **state)
{
    (void)state;
    s_run(3, 5, 9, 6, 3, 1, 1, 0, 1);   /* channels not a multiple of 16 */
    s_run(3, 5, 9, 6, 3, 2, 1, 1, 2);   /* stride 2, adding */
    s_run(2, 16, 8, 32, 3, 1, 1, 1, 3); /* whole blocks */
    s_run(4, 1, 7, 8, 3, 1, 0, 0, 4);   /* one-channel input, no padding */
}

static void test_dnnl_k1(void **state)
{
    (void)state;
    s_run(3, 16, 8, 32, 1, 2, 0, 0, 5); /* ResNet shortcut */
    s_run(2, 7, 5, 3, 1, 1, 0, 1, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dnnl_k3),
        cmocka_unit_test(test_dnnl_k1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
