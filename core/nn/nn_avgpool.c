/*
 * nn_avgpool: AdaptiveAvgPool2d((oh, ow)) on CNHW, with PyTorch's windows: output row oy averages
 * input rows [floor(oy*ih/oh), ceil((oy+1)*ih/oh)), likewise columns. Windows may overlap (ih not
 * a multiple of oh) and an input smaller than the output repeats its elements (AlexNet's 6x6 pool
 * after a 1x1 or 2x2 map at small inputs). With a = |window|:
 *   forward    y[q,oy,ox] = (1/a) sum_{window} x[q,iy,ix]        (q: plane = channel x sample)
 *   backward   dx[q,iy,ix] += dy[q,oy,ox] / a    for every window holding (iy, ix)
 *   rforward   R{y} = the same average of R{x}   (linear: the same map)
 *   rbackward  R{dx} += the same spread of R{dy}
 */
#include <stdlib.h>

#include "nn_layer.h"

#define NN_AVGPOOL_OMP_MIN 65536 /* input elements below which a loop stays on one thread */

struct nn_avgpool {
    struct nn_layer base; /* common header; first */
    int oh, ow;           /* output height and width */
    int ih, iw;           /* input height and width (fixed at setup) */
    int *y0, *y1;         /* input rows [y0[oy], y1[oy]) of output row oy */
    int *x0, *x1;         /* input columns [x0[ox], x1[ox]) of output column ox */
};

/* PyTorch's adaptive window of output index o of `out` over `in` elements. */
static void s_window(int o, int in, int out, int *lo, int *hi)
{
    *lo = (int)(((long long)o * in) / out);
    *hi = (int)(((long long)(o + 1) * in + out - 1) / out);
}

static int s_setup(struct nn_layer *l, int max_batch)
{
    struct nn_avgpool *p = (struct nn_avgpool *)l;
    (void)max_batch;
    if (l->n_in != 1)
        return NN_ERR_SHAPE;
    const struct nn_shape *is = &l->in[0]->shape;
    p->ih = is->h;
    p->iw = is->w;
    free(p->y0);
    p->y0 = malloc(sizeof(int) * 2 * ((size_t)p->oh + p->ow));
    if (!p->y0)
        return NN_ERR_NOMEM;
    p->y1 = p->y0 + p->oh;
    p->x0 = p->y1 + p->oh;
    p->x1 = p->x0 + p->ow;
    for (int o = 0; o < p->oh; o++)
        s_window(o, p->ih, p->oh, &p->y0[o], &p->y1[o]);
    for (int o = 0; o < p->ow; o++)
        s_window(o, p->iw, p->ow, &p->x0[o], &p->x1[o]);
    l->out->shape = (struct nn_shape){is->c, p->oh, p->ow};
    l->n_decl = 0;
    l->work_per_sample = 0;
    return NN_OK;
}

/* y = window averages of x, over every plane of the pass. */
static void s_pool(const struct nn_avgpool *p, int planes, const float *x, float *y)
{
    const size_t ip = (size_t)p->ih * p->iw, op = (size_t)p->oh * p->ow;
#pragma omp parallel for if (planes * ip > NN_AVGPOOL_OMP_MIN)
    for (int q = 0; q < planes; q++) {
        const float *xp = x + q * ip;
        float *yp = y + q * op;
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                float sum = 0.0f;
                for (int iy = p->y0[oy]; iy < p->y1[oy]; iy++)
                    for (int ix = p->x0[ox]; ix < p->x1[ox]; ix++)
                        sum += xp[iy * p->iw + ix];
                const int a = (p->y1[oy] - p->y0[oy]) * (p->x1[ox] - p->x0[ox]);
                yp[oy * p->ow + ox] = sum / (float)a;
            }
    }
}

/* dx += the transpose of s_pool applied to dy. A plane's windows stay in that plane, so planes go
 * to threads and overlapping windows are summed serially. */
static void s_spread(const struct nn_avgpool *p, int planes, const float *dy, float *dx)
{
    const size_t ip = (size_t)p->ih * p->iw, op = (size_t)p->oh * p->ow;
#pragma omp parallel for if (planes * ip > NN_AVGPOOL_OMP_MIN)
    for (int q = 0; q < planes; q++) {
        float *xp = dx + q * ip;
        const float *yp = dy + q * op;
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                const int a = (p->y1[oy] - p->y0[oy]) * (p->x1[ox] - p->x0[ox]);
                const float g = yp[oy * p->ow + ox] / (float)a;
                for (int iy = p->y0[oy]; iy < p->y1[oy]; iy++)
                    for (int ix = p->x0[ox]; ix < p->x1[ox]; ix++)
                        xp[iy * p->iw + ix] += g;
            }
    }
}

static int s_planes(const struct nn_layer *l, const struct nn_ctx *ctx)
{
    return l->in[0]->shape.c * ctx->n;
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_pool((struct nn_avgpool *)l, s_planes(l, ctx), l->in[0]->y, l->out->y);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_spread((struct nn_avgpool *)l, s_planes(l, ctx), l->out->dy, l->in[0]->dy);
}

/* Called only when the input carries an R-direction (the layer has no parameters). */
static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_pool((struct nn_avgpool *)l, s_planes(l, ctx), l->in[0]->ry, l->out->ry);
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_spread((struct nn_avgpool *)l, s_planes(l, ctx), l->out->rdy, l->in[0]->rdy);
}

static double s_flops(const struct nn_layer *l)
{
    const struct nn_avgpool *p = (const struct nn_avgpool *)l;
    double adds = 0;
    for (int oy = 0; oy < p->oh; oy++)
        for (int ox = 0; ox < p->ow; ox++)
            adds += (double)(p->y1[oy] - p->y0[oy]) * (p->x1[ox] - p->x0[ox]);
    return adds * l->in[0]->shape.c;
}

static void s_destroy(struct nn_layer *l)
{
    struct nn_avgpool *p = (struct nn_avgpool *)l;
    free(p->y0);
    p->y0 = p->y1 = p->x0 = p->x1 = NULL;
}

static const struct nn_layer_ops s_ops = {
    .kind = "adaptive_avgpool2d",
    .setup = s_setup,
    .forward = s_forward,
    .backward = s_backward,
    .rforward = s_rforward,
    .rbackward = s_rbackward,
    .init = NULL,
    .flops = s_flops,
    .destroy = s_destroy,
};

struct nn_layer *nn_avgpool_new(int oh, int ow)
{
    if (oh < 1 || ow < 1) {
        nn_report(3, "adaptive_avgpool2d: invalid output size %dx%d", oh, ow);
        return NULL;
    }
    struct nn_avgpool *p = nn_layer_alloc(sizeof *p, &s_ops, NULL, 1);
    if (!p)
        return NULL;
    p->oh = oh;
    p->ow = ow;
    p->base.hp = (struct nn_layer_hp){.oh = oh, .ow = ow};
    return &p->base;
}
