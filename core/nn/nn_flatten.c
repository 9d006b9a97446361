/*
 * nn_flatten: CNHW [c x n x hw] -> feature-major [(c*hw) x n] in PyTorch's flatten order (feature
 * f = k*h*w + y*w + x). Per channel k it is a transpose of the [n x hw] block into rows
 * k*hw .. k*hw+hw-1 of the output.
 *   forward    y[k*hw + s, i] = x[k, i, s]
 *   backward   dx[k, i, s] += dy[k*hw + s, i]
 *   rforward / rbackward: the same maps on R{x} and R{dy}.
 * The input may be channel-blocked (nn_layer.h); the output is always feature-major.
 */
#include "nn_layer.h"

#define NN_FLATTEN_OMP_MIN 65536 /* elements below which a loop stays on one thread */
#define NN_FLATTEN_TILE 16       /* side of a transpose tile (floats) */

struct nn_flatten {
    struct nn_layer base; /* common header; first */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    (void)max_batch;
    if (l->n_in != 1)
        return NN_ERR_SHAPE;
    l->out->shape = (struct nn_shape){(int)nn_shape_numel(&l->in[0]->shape), 1, 1};
    l->n_decl = 0;
    l->layout = NN_LAYOUT_IN_BLK;
    l->dx_set = 1;
    return NN_OK;
}

/* s_to_features from a channel-blocked x: per (sample, block), hw runs of NN_BLK channels. */
static void s_to_features_blk(const struct nn_layer *l, int n, const float *x, float *y)
{
    const int nb = l->in[0]->shape.c / NN_BLK, hw = l->in[0]->shape.h * l->in[0]->shape.w;
#pragma omp parallel for if ((size_t)n * nb * hw * NN_BLK > NN_FLATTEN_OMP_MIN)
    for (int cb = 0; cb < nb; cb++)
        for (int i = 0; i < n; i++) {
            const float *src = x + ((size_t)i * nb + cb) * hw * NN_BLK;
            for (int s = 0; s < hw; s++)
                for (int k = 0; k < NN_BLK; k++)
                    y[((size_t)(cb * NN_BLK + k) * hw + s) * n + i] = src[s * NN_BLK + k];
        }
}

/* s_from_features into a channel-blocked dx (overwriting when set). */
static void s_from_features_blk(const struct nn_layer *l, int n, const float *dy, float *dx,
                                int set)
{
    const int nb = l->in[0]->shape.c / NN_BLK, hw = l->in[0]->shape.h * l->in[0]->shape.w;
#pragma omp parallel for if ((size_t)n * nb * hw * NN_BLK > NN_FLATTEN_OMP_MIN)
    for (int cb = 0; cb < nb; cb++)
        for (int i = 0; i < n; i++) {
            float *dst = dx + ((size_t)i * nb + cb) * hw * NN_BLK;
            for (int s = 0; s < hw; s++)
                for (int k = 0; k < NN_BLK; k++)
                    dst[s * NN_BLK + k] = (set ? 0.0f : dst[s * NN_BLK + k]) +
                                          dy[((size_t)(cb * NN_BLK + k) * hw + s) * n + i];
        }
}

/* y[(k*hw + s)*n + i] = x[(k*n + i)*hw + s], i.e. per channel the [n x hw] block transposed.
 * Tiles of NN_FLATTEN_TILE x NN_FLATTEN_TILE keep both the reads and the strided writes in cache
 * (a plain row-by-row transpose of a 128 x 784 block misses on nearly every write). */
static void s_to_features(const struct nn_layer *l, int n, const float *x, float *y)
{
    if (l->in[0]->blk) {
        s_to_features_blk(l, n, x, y);
        return;
    }
    int c = l->in[0]->shape.c;
    int hw = l->in[0]->shape.h * l->in[0]->shape.w;
    int s_tiles = (hw + NN_FLATTEN_TILE - 1) / NN_FLATTEN_TILE;
#pragma omp parallel for collapse(2) if ((size_t)n * c * hw > NN_FLATTEN_OMP_MIN)
    for (int k = 0; k < c; k++)
        for (int st = 0; st < s_tiles; st++) {
            const float *src = x + (size_t)k * n * hw;
            float *dst = y + (size_t)k * hw * n;
            int s0 = st * NN_FLATTEN_TILE,
                s1 = s0 + NN_FLATTEN_TILE < hw ? s0 + NN_FLATTEN_TILE : hw;
            for (int i0 = 0; i0 < n; i0 += NN_FLATTEN_TILE) {
                int i1 = i0 + NN_FLATTEN_TILE < n ? i0 + NN_FLATTEN_TILE : n;
                for (int s = s0; s < s1; s++)
                    for (int i = i0; i < i1; i++)
                        dst[(size_t)s * n + i] = src[(size_t)i * hw + s];
            }
        }
}

/* dx[(k*n + i)*hw + s] += dy[(k*hw + s)*n + i] (= when set: dx held nothing yet); tiled as
 * s_to_features. */
static void s_from_features(const struct nn_layer *l, int n, const float *dy, float *dx, int set)
{
    if (l->in[0]->blk) {
        s_from_features_blk(l, n, dy, dx, set);
        return;
    }
    int c = l->in[0]->shape.c;
    int hw = l->in[0]->shape.h * l->in[0]->shape.w;
    int i_tiles = (n + NN_FLATTEN_TILE - 1) / NN_FLATTEN_TILE;
#pragma omp parallel for collapse(2) if ((size_t)n * c * hw > NN_FLATTEN_OMP_MIN)
    for (int k = 0; k < c; k++)
        for (int it = 0; it < i_tiles; it++) {
            const float *src = dy + (size_t)k * hw * n;
            float *dst = dx + (size_t)k * n * hw;
            int i0 = it * NN_FLATTEN_TILE, i1 = i0 + NN_FLATTEN_TILE < n ? i0 + NN_FLATTEN_TILE : n;
            for (int s0 = 0; s0 < hw; s0 += NN_FLATTEN_TILE) {
                int s1 = s0 + NN_FLATTEN_TILE < hw ? s0 + NN_FLATTEN_TILE : hw;
                for (int i = i0; i < i1; i++)
                    for (int s = s0; s < s1; s++)
                        dst[(size_t)i * hw + s] =
                            (set ? 0.0f : dst[(size_t)i * hw + s]) + src[(size_t)s * n + i];
            }
        }
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_to_features(l, ctx->n, l->in[0]->y, l->out->y);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_from_features(l, ctx->n, l->out->dy, l->in[0]->dy, nn_node_first_dy(l->in[0]));
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_to_features(l, ctx->n, l->in[0]->ry, l->out->ry);
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_from_features(l, ctx->n, l->out->rdy, l->in[0]->rdy, nn_node_first_rdy(l->in[0]));
}

static double s_flops(const struct nn_layer *l)
{
    (void)l;
    return 0.0;
}

static void s_destroy(struct nn_layer *l)
{
    (void)l;
}

static const struct nn_layer_ops s_ops = {
    "flatten", s_setup, s_forward, s_backward, s_rforward, s_rbackward, NULL, s_flops, s_destroy,
};

struct nn_layer *nn_flatten_new(void)
{
    struct nn_flatten *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &s_ops;
    return &s->base;
}
