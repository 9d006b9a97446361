/*
 * nn_add: residual addition of two activations of equal shape.
 *   forward    y = a + b
 *   backward   da += dy;  db += dy       (da = dy when da is fresh, nn_layer.h)
 * The net may run it in place (y in a's buffers, nn_net_layout.c): a is then read only by this
 * layer, so da is dy itself (a's single writer) and R{a}'s copy is already there.
 *   rforward   Ry = Ra + Rb           (an input whose R is inactive contributes zero)
 *   rbackward  Rda += Rdy;  Rdb += Rdy
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

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_sum(l->out->y, l->in[0]->y, l->in[1]->y, s_len(l, ctx));
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t m = s_len(l, ctx);
    for (int j = 0; j < 2; j++)
        if (l->in[j]->need_dy && l->in[j]->dy != l->out->dy)
            s_acc(l->in[j]->dy, l->out->dy, m, nn_node_first_dy(l->in[j]));
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t m = s_len(l, ctx);
    const struct nn_node *a = l->in[0], *b = l->in[1];
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
    size_t m = s_len(l, ctx);
    for (int j = 0; j < 2; j++)
        if (l->in[j]->need_dy && l->in[j]->rdy != l->out->rdy)
            s_acc(l->in[j]->rdy, l->out->rdy, m, nn_node_first_rdy(l->in[j]));
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
