/*
 * nn_dropout: Dropout(p). In train mode (ctx->dropout) each element is kept with probability 1 - p
 * and scaled by 1/(1-p), else zeroed; in eval mode the layer is the identity. The mask m (0 or
 * 1/(1-p) per element) is drawn by the forward pass and kept, so the passes that differentiate
 * that forward use the very same mask (the net runs forward, R-forward, backward and R-backward of
 * one call in that order):
 *   y = m .* x      dx += m .* dy      R{y} = m .* R{x}      R{dx} += m .* R{dy}
 * (y is linear in x for a fixed mask: no second-order term.)
 *
 * The mask is a pure function of the pass seed (ctx->seed), the layer's name and the element's
 * position in PyTorch's layout (sample i, flat feature f of c x h x w): with splitmix64's mixer
 * M, key = M(seed ^ fnv1a64(name)) and the element is kept when the top 24 bits of
 * M(key + i*c*h*w + f) are >= round(p * 2^24). It does not depend on the batch layout or on the
 * thread count, and a test can rebuild it elsewhere (bench/torch_zoo.py does, for PyTorch).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn_layer.h"

#define NN_DROPOUT_BITS 24                     /* random bits compared with the threshold */
#define NN_DROPOUT_ONE (1u << NN_DROPOUT_BITS) /* 2^24: probability 1 in those bits */
#define NN_DROPOUT_OMP_MIN 65536               /* elements below which a loop stays serial */
#define NN_FNV_OFFSET 0xcbf29ce484222325ull    /* FNV-1a 64-bit offset basis */
#define NN_FNV_PRIME 0x100000001b3ull          /* FNV-1a 64-bit prime */

struct nn_dropout {
    struct nn_layer base; /* common header; first */
    float p;              /* drop probability, [0, 1) */
    uint32_t threshold;   /* kept when the 24 random bits are >= threshold */
    uint64_t salt;        /* FNV-1a of the name: layers of one pass draw different masks */
    int active;           /* the last forward dropped (train mode, p > 0) */
    size_t max_floats;    /* capacity of mask */
    float *mask;          /* 0 or 1/(1-p) per element of the last forward, CNHW */
};

/* splitmix64's output function (with its increment), a bijective 64-bit mixer. */
static uint64_t s_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t s_fnv1a(const char *s)
{
    uint64_t h = NN_FNV_OFFSET;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * NN_FNV_PRIME;
    return h;
}

static int s_setup(struct nn_layer *l, int max_batch)
{
    struct nn_dropout *d = (struct nn_dropout *)l;
    if (l->n_in != 1)
        return NN_ERR_SHAPE;
    l->out->shape = l->in[0]->shape;
    l->n_decl = 0;
    l->work_per_sample = 0;
    free(d->mask);
    d->max_floats = (size_t)max_batch * nn_shape_numel(&l->in[0]->shape);
    d->mask = malloc(sizeof(float) * d->max_floats);
    if (!d->mask) {
        nn_report(3, "dropout: out of memory for %d samples", max_batch);
        return NN_ERR_NOMEM;
    }
    return NN_OK;
}

/* mask for the n samples of this pass, from ctx->seed (see the banner for the formula). */
static void s_draw(struct nn_dropout *d, const struct nn_ctx *ctx)
{
    const struct nn_shape *s = &d->base.in[0]->shape;
    const size_t hw = (size_t)s->h * s->w, numel = nn_shape_numel(s);
    const int n = ctx->n, c = s->c;
    const uint64_t key = s_mix((uint64_t)ctx->seed ^ d->salt);
    const float scale = 1.0f / (1.0f - d->p);
#pragma omp parallel for collapse(2) if ((size_t)n * numel > NN_DROPOUT_OMP_MIN)
    for (int k = 0; k < c; k++)
        for (int i = 0; i < n; i++) {
            float *m = d->mask + ((size_t)k * n + i) * hw;
            const uint64_t base = key + (uint64_t)i * numel + (uint64_t)k * hw;
            for (size_t e = 0; e < hw; e++) {
                const uint32_t bits = (uint32_t)(s_mix(base + e) >> (64 - NN_DROPOUT_BITS));
                m[e] = bits >= d->threshold ? scale : 0.0f;
            }
        }
}

/* dst = m .* src (add: dst += m .* src), or the identity when the last forward did not drop. */
static void s_apply(const struct nn_dropout *d, const struct nn_ctx *ctx, const float *src,
                    float *dst, int add)
{
    const size_t total = (size_t)ctx->n * nn_shape_numel(&d->base.in[0]->shape);
    NN_ASSERT(total <= d->max_floats);
    if (!d->active && !add) {
        memcpy(dst, src, sizeof(float) * total);
        return;
    }
    if (!d->active) {
        for (size_t j = 0; j < total; j++)
            dst[j] += src[j];
        return;
    }
    const float *m = d->mask;
    if (add)
        for (size_t j = 0; j < total; j++)
            dst[j] += m[j] * src[j];
    else
        for (size_t j = 0; j < total; j++)
            dst[j] = m[j] * src[j];
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_dropout *d = (struct nn_dropout *)l;
    d->active = ctx->dropout && d->p > 0.0f;
    if (d->active)
        s_draw(d, ctx);
    s_apply(d, ctx, l->in[0]->y, l->out->y, 0);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_apply((struct nn_dropout *)l, ctx, l->out->dy, l->in[0]->dy, 1);
}

/* Called only when the input carries an R-direction (the layer has no parameters). */
static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_apply((struct nn_dropout *)l, ctx, l->in[0]->ry, l->out->ry, 0);
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_apply((struct nn_dropout *)l, ctx, l->out->rdy, l->in[0]->rdy, 1);
}

static double s_flops(const struct nn_layer *l)
{
    return (double)nn_shape_numel(&l->in[0]->shape);
}

static void s_destroy(struct nn_layer *l)
{
    struct nn_dropout *d = (struct nn_dropout *)l;
    free(d->mask);
    d->mask = NULL;
}

static const struct nn_layer_ops s_ops = {
    .kind = "dropout",
    .setup = s_setup,
    .forward = s_forward,
    .backward = s_backward,
    .rforward = s_rforward,
    .rbackward = s_rbackward,
    .init = NULL,
    .flops = s_flops,
    .destroy = s_destroy,
};

struct nn_layer *nn_dropout_new(const char *name, float p)
{
    if (!(p >= 0.0f && p < 1.0f) || (name && strlen(name) >= NN_NAME_MAX)) {
        nn_report(3, "dropout: probability %g outside [0, 1) or name too long", (double)p);
        return NULL;
    }
    struct nn_dropout *d = nn_layer_alloc(sizeof *d, &s_ops, name, 1);
    if (!d)
        return NULL;
    d->p = p;
    d->base.hp.p = p;
    d->threshold = (uint32_t)((double)p * NN_DROPOUT_ONE + 0.5);
    d->salt = s_fnv1a(d->base.name);
    return &d->base;
}
