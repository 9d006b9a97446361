/*
 * nn_add: residual addition of two activations of equal shape.
 *   forward    y = a + b
 *   backward   da += dy;  db += dy       (da = dy when da is fresh, nn_layer.h)
 * The net may run it in place (y in a's buffers, nn_net_layout.c): a is then read only by this
 * layer, so da is dy itself (a's single writer) and R{a}'s copy is already there.
 *   rforward   Ry = Ra + Rb           (an input whose R is inactive contributes zero)
 *   rbackward  Rda += Rdy;  Rdb += Rdy
 * On blocked nodes it also runs the passes of an in-place ReLU after it (nn_node.relu): y and Ry
 * are masked where y > 0 as they are written, and dy, R{dy} are masked in place (the ReLU's
 * backward) in the sweep that passes them on to the inputs.
 */
#include <string.h>

#include "nn_layer.h"

#define NN_ADD_OMP_MIN 65536 /* elements below which a loop stays on one thread */

struct nn_add {
    struct nn_layer base; /* common header; first */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    (void)max_batch;
    if (l->n_in != 2)
        return NN_ERR_SHAPE;
    const struct nn_shape *a = &l->in[0]->shape, *b = &l->in[1]->shape;
    if (a->c != b->c || a->h != b->h || a->w != b->w)
        return NN_ERR_SHAPE;
    l->out->shape = *a;
    l->n_decl = 0;
    l->layout = NN_LAYOUT_IN_BLK | NN_LAYOUT_OUT_BLK | NN_LAYOUT_SAME; /* elementwise */
    l->dx_set = 1;
    l->in_place = NN_IN_PLACE_YES; /* then da is dy itself: nothing to write for input 0 */
    l->fuses_relu = 1;
    return NN_OK;
}

static size_t s_len(const struct nn_layer *l, const struct nn_ctx *ctx)
{
    return (size_t)ctx->n * nn_shape_numel(&l->out->shape);
}

static void s_sum(float *y, const float *a, const float *b, size_t m)
{
#pragma omp parallel for simd if (m > NN_ADD_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        y[i] = a[i] + b[i];
}

/* dst += src, or dst = src when set (dst held nothing yet). */
static void s_acc(float *dst, const float *src, size_t m, int set)
{
    if (set) {
        memcpy(dst, src, m * sizeof(float));
        return;
    }
#pragma omp parallel for simd if (m > NN_ADD_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        dst[i] += src[i];
}

/* The in-place ReLU after this add runs here (nn_node.relu, blocked nodes only). */
static int s_relu(const struct nn_layer *l)
{
    return l->out->relu && l->out->blk;
}

/* dst = a + b (b may be NULL) where y > 0, else 0 (y may be dst: it is read first). */
static void s_sum_relu(float *dst, const float *a, const float *b, const float *y, size_t m)
{
#pragma omp parallel for simd if (m > NN_ADD_OMP_MIN)
    for (size_t i = 0; i < m; i++) {
        const float v = a[i] + (b ? b[i] : 0.0f);
        dst[i] = y[i] > 0.0f ? v : 0.0f;
    }
}

/* The ReLU's backward and the add's in one sweep: g = dy where y > 0, else 0, written back into
 * dy (the ReLU's input gradient, which input 0 may share) and passed on to the inputs that do not
 * share it: d[j] = g when set[j] (a fresh gradient), d[j] += g otherwise; d[j] may be NULL. */
static void s_mask_spread(float *dy, const float *y, float *d0, int set0, float *d1, int set1,
                          size_t m)
{
    if (!d0 && d1 && set1) { /* the usual case: in place on input 0, the shortcut's first writer */
#pragma omp parallel for simd if (m > NN_ADD_OMP_MIN)
        for (size_t i = 0; i < m; i++) {
            const float g = y[i] > 0.0f ? dy[i] : 0.0f;
            dy[i] = g;
            d1[i] = g;
        }
        return;
    }
#pragma omp parallel for simd if (m > NN_ADD_OMP_MIN)
    for (size_t i = 0; i < m; i++) {
        const float g = y[i] > 0.0f ? dy[i] : 0.0f;
        dy[i] = g;
        if (d0)
            d0[i] = (set0 ? 0.0f : d0[i]) + g;
        if (d1)
            d1[i] = (set1 ? 0.0f : d1[i]) + g;
    }
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (s_relu(l)) {
        const size_t m = s_len(l, ctx);
        const float *a = l->in[0]->y, *b = l->in[1]->y;
        float *y = l->out->y;
#pragma omp parallel for simd if (m > NN_ADD_OMP_MIN)
        for (size_t i = 0; i < m; i++) {
            const float v = a[i] + b[i];
            y[i] = v > 0.0f ? v : 0.0f;
        }
        return;
    }
    s_sum(l->out->y, l->in[0]->y, l->in[1]->y, s_len(l, ctx));
}

/* Both passes of the gradient g (dy or R{dy}) of the output; `r` picks rdy and the R flags. */
static void s_pass_back(struct nn_layer *l, const struct nn_ctx *ctx, int r)
{
    const size_t m = s_len(l, ctx);
    float *g = r ? l->out->rdy : l->out->dy;
    float *d[2] = {NULL, NULL};
    int set[2] = {0, 0};
    for (int j = 0; j < 2; j++) {
        struct nn_node *x = l->in[j];
        float *dx = r ? x->rdy : x->dy;
        if (!x->need_dy || dx == g)
            continue; /* not needed, or it is g itself (in place) */
        d[j] = dx;
        set[j] = r ? nn_node_first_rdy(x) : nn_node_first_dy(x);
    }
    if (s_relu(l)) {
        s_mask_spread(g, l->out->y, d[0], set[0], d[1], set[1], m);
        return;
    }
    for (int j = 0; j < 2; j++)
        if (d[j])
            s_acc(d[j], g, m, set[j]);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_pass_back(l, ctx, 0);
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t m = s_len(l, ctx);
    const struct nn_node *a = l->in[0], *b = l->in[1];
    if (s_relu(l) && (a->r_active || b->r_active)) {
        const float *ra = a->r_active ? a->ry : b->ry;
        s_sum_relu(l->out->ry, ra, a->r_active && b->r_active ? b->ry : NULL, l->out->y, m);
        return;
    }
    if (a->r_active && b->r_active)
        s_sum(l->out->ry, a->ry, b->ry, m);
    else if ((a->r_active || b->r_active) && l->out->ry != (a->r_active ? a->ry : b->ry))
        memcpy(l->out->ry, a->r_active ? a->ry : b->ry, m * sizeof(float));
    else if (a->r_active || b->r_active)
        return; /* in place: Ry is Ra already */
    else
        memset(l->out->ry, 0, m * sizeof(float));
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_pass_back(l, ctx, 1);
}

static double s_flops(const struct nn_layer *l)
{
    return (double)nn_shape_numel(&l->out->shape);
}

static void s_destroy(struct nn_layer *l)
{
    (void)l;
}

static const struct nn_layer_ops s_ops = {
    "add", s_setup, s_forward, s_backward, s_rforward, s_rbackward, NULL, s_flops, s_destroy,
};

struct nn_layer *nn_add_new(void)
{
    struct nn_add *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &s_ops;
    return &s->base;
}
