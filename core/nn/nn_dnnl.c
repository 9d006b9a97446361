/*
 * nn_dnnl: oneDNN's convolution primitives behind nn_dnnl.h, or a stub that says "not built".
 *
 * Layouts. The caller's activations are CNHW: for oneDNN's dims (N, C, H, W) the strides are
 * (H*W, N*H*W, W, 1), which oneDNN's optimised kernels do not take (they would fall back to its
 * reference loops). The primitives are created with "any" layouts, oneDNN picks its blocked ones
 * (nChw16c, OIhw16i16o on AVX-512), and every call reorders through the scratch regions:
 *   A  input-sized   (x in, dx out)          B  output-sized (y out, dy in)
 *   S  oneDNN's scratchpad (user-managed, so no pass allocates)
 *   W  blocked weights                        D  blocked dW, and dW in the caller's layout
 * all in the caller's scratch, which a net shares between its layers: a handle keeps no buffer of
 * its own (each call reorders the weights it reads, which change every step anyway). Where oneDNN
 * picks the caller's layout (a one-channel input is NCHW and CNHW at once), the reorder is skipped,
 * and activations the caller passes channel-blocked (nChw16c, where all three primitives chose it)
 * are read and written in place.
 *
 * An input gradient that adds into dx (its node has another consumer, or the R-backward's second
 * term convT(V, dY)) would need a second pass over dx after the backward-data primitive, which
 * cannot add. For stride 1 with the output the input's size (2 pad = k - 1), convT(w, dy) is the
 * forward convolution of dy with w transposed and flipped (w'[i][o][a][b] = w[o][i][k-1-a][k-1-b],
 * the same padding), and the forward takes a sum post-op: `tfwd` adds straight into a blocked dx.
 *
 * A stream per handle: layers of nets on different threads never share one. The engine is shared
 * (created once; oneDNN's CPU engine is thread-safe).
 */
#include "nn_dnnl.h"

#include <stdlib.h>
#include <string.h>

#include "nn_base.h"

#ifndef EB_HAVE_DNNL

nn_dnnl_conv_t *nn_dnnl_conv_new(const struct nn_dnnl_conv_shape *shape)
{
    (void)shape;
    return NULL;
}

void nn_dnnl_conv_destroy(nn_dnnl_conv_t **self_p)
{
    if (self_p)
        *self_p = NULL;
}

size_t nn_dnnl_conv_work_floats(const nn_dnnl_conv_t *self)
{
    (void)self;
    return 0;
}

unsigned nn_dnnl_conv_blocked(const nn_dnnl_conv_t *self)
{
    (void)self;
    return 0;
}

void nn_dnnl_conv_forward(nn_dnnl_conv_t *self, const float *x, const float *w, float *y, int add,
                          unsigned blk, float *work)
{
    (void)self, (void)x, (void)w, (void)y, (void)add, (void)blk, (void)work;
    NN_ASSERT(!"nn_dnnl_conv_forward without oneDNN");
}

void nn_dnnl_conv_backward(nn_dnnl_conv_t *self, const float *dy, const float *x, float scale,
                           float *dw, const float *w, float *dx, unsigned blk, float *work)
{
    (void)self, (void)dy, (void)x, (void)scale, (void)dw, (void)w, (void)dx, (void)blk, (void)work;
    NN_ASSERT(!"nn_dnnl_conv_backward without oneDNN");
}

#else

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

/* A oneDNN call that cannot fail once the primitives exist (execution on host memory): a failure
 * is a broken invariant. */
#define NN_DNNL_CHECK(expr)                                                                        \
    do {                                                                                           \
        dnnl_status_t st_ = (expr);                                                                \
        NN_ASSERT(st_ == dnnl_success && #expr);                                                   \
    } while (0)

#define NN_DNNL_ALIGN_FLOATS 16 /* scratch regions start on 64-byte boundaries */
#define NN_DNNL_PAR_MIN 65536   /* elements below which an elementwise loop stays on one thread */

/* A tensor as one primitive sees it: its layout and a memory object whose handle is set per call.
 */
struct s_arg {
    dnnl_memory_desc_t md; /* layout the primitive chose */
    dnnl_memory_t mem;     /* memory object of that layout (no buffer of its own) */
};

/* A layout change between two args; reo NULL when both layouts are equal. */
struct s_reorder {
    dnnl_primitive_t reo; /* overwriting reorder */
    dnnl_primitive_t add; /* reorder that adds into the destination (sum post-op); NULL if unused */
};

/* One primitive with its three tensor args and its scratchpad. */
struct s_prim {
    dnnl_primitive_t p;
    struct s_arg a[3]; /* fwd: src, wts, dst; bwd data: diff_src, wts, diff_dst;
                        * bwd weights: src, diff_wts, diff_dst */
    struct s_arg scratch;
};

struct nn_dnnl_conv {
    dnnl_stream_t stream;
    struct s_arg usrc, udst, uwts; /* the caller's layouts: CNHW input, CNHW output, OIHW */
    struct s_prim fwd, bwd_data, bwd_wts;
    struct s_prim fwd_add;  /* fwd with a sum post-op (dst += conv), or no primitive */
    struct s_prim tfwd;     /* dx += convT(w, dy) as a forward with a sum post-op, or none */
    struct s_arg utw;       /* the caller's layout of the transposed weights (in_c, out_c, k, k) */
    struct s_reorder t_wts; /* transposed weights -> tfwd */
    int k;                  /* window side (the flip of the transposed weights) */
    int in_c, out_c;        /* channels */
    struct s_reorder f_src, f_wts, f_dst;   /* caller -> fwd (src, wts); fwd dst -> caller */
    struct s_reorder d_dst, d_wts, d_src;   /* caller -> bwd data (dy, w); diff_src -> caller */
    struct s_reorder w_src, w_dst, w_dwts;  /* caller -> bwd weights (x, dy); diff_wts -> caller */
    size_t n_wts;                           /* weight floats (caller layout) */
    size_t a_floats, b_floats, s_floats;    /* scratch regions A, B, S (rounded up) */
    size_t w_floats, dw_floats, dwu_floats; /* W; D: blocked dW, then dW in the caller's layout */
    size_t t_floats;                        /* T: transposed weights in the caller's layout */
    int same_ddst;             /* both backward primitives read dy in one layout: reorder it once */
    unsigned blocked;          /* enum nn_dnnl_blk: sides every primitive takes as nChw16c */
    size_t x_floats, y_floats; /* floats of the input and the output activation */
};

static dnnl_engine_t s_engine;
static pthread_once_t s_engine_once = PTHREAD_ONCE_INIT;

static void s_engine_init(void)
{
    if (dnnl_engine_create(&s_engine, dnnl_cpu, 0) != dnnl_success)
        s_engine = NULL;
}

static size_t s_round(size_t bytes)
{
    size_t f = (bytes + sizeof(float) - 1) / sizeof(float);
    return (f + NN_DNNL_ALIGN_FLOATS - 1) / NN_DNNL_ALIGN_FLOATS * NN_DNNL_ALIGN_FLOATS;
}

static size_t s_floats(const dnnl_memory_desc_t *md)
{
    return s_round(dnnl_memory_desc_get_size(md));
}

static int s_arg_init(struct s_arg *a, const dnnl_memory_desc_t *md)
{
    a->md = *md;
    return dnnl_memory_create(&a->mem, md, s_engine, DNNL_MEMORY_NONE) == dnnl_success ? 0 : -1;
}

static void s_arg_fini(struct s_arg *a)
{
    if (a->mem)
        dnnl_memory_destroy(a->mem);
    a->mem = NULL;
}

/* The caller's CNHW layout of n x c x h x w. */
static void s_cnhw(dnnl_memory_desc_t *md, int n, int c, int h, int w)
{
    dnnl_dims_t dims = {n, c, h, w};
    dnnl_dims_t strides = {(dnnl_dim_t)h * w, (dnnl_dim_t)n * h * w, w, 1};
    NN_DNNL_CHECK(dnnl_memory_desc_init_by_strides(md, 4, dims, dnnl_f32, strides));
}

/* oneDNN's channel-blocked nChw16c layout of n x c x h x w (the net's NN_BLK layout). */
static void s_nchw16c(dnnl_memory_desc_t *md, int n, int c, int h, int w)
{
    dnnl_dims_t dims = {n, c, h, w};
    NN_DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nChw16c));
}

/* 1 when the three descriptors equal the channel-blocked layout of n x c x h x w. */
static int s_all_blocked(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b,
                         const dnnl_memory_desc_t *c, int n, int ch, int h, int w)
{
    dnnl_memory_desc_t md;
    if (ch % 16)
        return 0;
    s_nchw16c(&md, n, ch, h, w);
    return dnnl_memory_desc_equal(a, &md) && dnnl_memory_desc_equal(b, &md) &&
           dnnl_memory_desc_equal(c, &md);
}

static void s_any(dnnl_memory_desc_t *md, int a, int b, int c, int d)
{
    dnnl_dims_t dims = {a, b, c, d};
    NN_DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_format_tag_any));
}

/* Reorders from -> to (with_add: also the adding one); none when the layouts are equal and no
 * adding reorder is wanted. */
static int s_reorder_init(struct s_reorder *r, const dnnl_memory_desc_t *from,
                          const dnnl_memory_desc_t *to, int with_add)
{
    dnnl_primitive_desc_t pd = NULL;
    if (!dnnl_memory_desc_equal(from, to)) {
        if (dnnl_reorder_primitive_desc_create(&pd, from, s_engine, to, s_engine, NULL) ||
            dnnl_primitive_create(&r->reo, pd)) {
            dnnl_primitive_desc_destroy(pd);
            return -1;
        }
        dnnl_primitive_desc_destroy(pd);
    }
    if (!with_add)
        return 0;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    int rc = -1;
    if (dnnl_primitive_attr_create(&attr) || dnnl_post_ops_create(&po) ||
        dnnl_post_ops_append_sum(po, 1.0f) || dnnl_primitive_attr_set_post_ops(attr, po))
        goto out;
    if (dnnl_reorder_primitive_desc_create(&pd, from, s_engine, to, s_engine, attr) ==
        dnnl_success) {
        rc = dnnl_primitive_create(&r->add, pd) == dnnl_success ? 0 : -1;
        dnnl_primitive_desc_destroy(pd);
    }
out:
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

static void s_reorder_fini(struct s_reorder *r)
{
    if (r->reo)
        dnnl_primitive_destroy(r->reo);
    if (r->add)
        dnnl_primitive_destroy(r->add);
    r->reo = r->add = NULL;
}

/* The primitive of pd with its args (queried in the order of `what`) and scratchpad. */
static int s_prim_init(struct s_prim *p, dnnl_primitive_desc_t pd, const dnnl_query_t what[3])
{
    for (int i = 0; i < 3; i++)
        if (s_arg_init(&p->a[i], dnnl_primitive_desc_query_md(pd, what[i], 0)))
            return -1;
    if (s_arg_init(&p->scratch, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)))
        return -1;
    return dnnl_primitive_create(&p->p, pd) == dnnl_success ? 0 : -1;
}

static void s_prim_fini(struct s_prim *p)
{
    for (int i = 0; i < 3; i++)
        s_arg_fini(&p->a[i]);
    s_arg_fini(&p->scratch);
    if (p->p)
        dnnl_primitive_destroy(p->p);
    p->p = NULL;
}

/* Descriptors of the three convolutions with "any" layouts, then their primitive descriptors
 * (the backward ones hinted by the forward), and pd[3], the forward adding into its destination
 * (NULL when oneDNN has none). Each pd has a user-managed scratchpad. */
/* pd of the adding transposed forward (tfwd, in the banner), or NULL where the shape has none. */
static dnnl_primitive_desc_t s_tfwd_pd(const struct nn_dnnl_conv_shape *s)
{
    if (s->stride != 1 || 2 * s->pad != s->k - 1 || s->oh != s->ih || s->ow != s->iw)
        return NULL;
    dnnl_memory_desc_t src, wts, dst;
    s_any(&src, s->n, s->out_c, s->oh, s->ow);
    s_any(&wts, s->in_c, s->out_c, s->k, s->k);
    s_any(&dst, s->n, s->in_c, s->ih, s->iw);
    dnnl_dims_t strides = {1, 1}, pad = {s->pad, s->pad};
    dnnl_convolution_desc_t fd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_attr_create(&attr) ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ||
        dnnl_post_ops_create(&po) || dnnl_post_ops_append_sum(po, 1.0f) ||
        dnnl_primitive_attr_set_post_ops(attr, po) ||
        dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           &src, &wts, NULL, &dst, strides, pad, pad) ||
        dnnl_primitive_desc_create(&pd, &fd, attr, s_engine, NULL))
        pd = NULL;
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return pd;
}

static int s_create_pds(const struct nn_dnnl_conv_shape *s, dnnl_primitive_desc_t pd[5])
{
    dnnl_memory_desc_t src, wts, dst;
    s_any(&src, s->n, s->in_c, s->ih, s->iw);
    s_any(&wts, s->out_c, s->in_c, s->k, s->k);
    s_any(&dst, s->n, s->out_c, s->oh, s->ow);
    dnnl_dims_t strides = {s->stride, s->stride}, pad_l = {s->pad, s->pad};
    /* right padding: what the last window reaches past the input (PyTorch's floor rule) */
    dnnl_dims_t pad_r = {(s->oh - 1) * s->stride + s->k - s->ih - s->pad,
                         (s->ow - 1) * s->stride + s->k - s->iw - s->pad};
    dnnl_convolution_desc_t fd, dd, wd;
    dnnl_primitive_attr_t attr = NULL;
    int rc = -1;
    if (dnnl_primitive_attr_create(&attr) ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))
        goto out;
    if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           &src, &wts, NULL, &dst, strides, pad_l, pad_r) ||
        dnnl_primitive_desc_create(&pd[0], &fd, attr, s_engine, NULL))
        goto out;
    if (dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &src, &wts, &dst,
                                                 strides, pad_l, pad_r) ||
        dnnl_primitive_desc_create(&pd[1], &dd, attr, s_engine, pd[0]))
        goto out;
    if (dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &src, &wts, NULL,
                                                    &dst, strides, pad_l, pad_r) ||
        dnnl_primitive_desc_create(&pd[2], &wd, attr, s_engine, pd[0]))
        goto out;
    /* the adding forward (R-forward's second term); optional */
    dnnl_post_ops_t po = NULL;
    if (dnnl_post_ops_create(&po) == dnnl_success) {
        if (dnnl_post_ops_append_sum(po, 1.0f) || dnnl_primitive_attr_set_post_ops(attr, po) ||
            dnnl_primitive_desc_create(&pd[3], &fd, attr, s_engine, NULL))
            pd[3] = NULL;
        dnnl_post_ops_destroy(po);
    }
    pd[4] = s_tfwd_pd(s);
    rc = 0;
out:
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* Primitives, args and reorders of a handle whose pds exist; the sizes of the scratch regions and
 * the private weight buffers. */
/* The adding transposed forward of pd (may be NULL), kept only where it reads dy and writes dx
 * in the layouts the backward-data primitive uses, both channel-blocked. */
static void s_build_tfwd(nn_dnnl_conv_t *c, const struct nn_dnnl_conv_shape *s,
                         dnnl_primitive_desc_t pd)
{
    static const dnnl_query_t q_fwd[3] = {dnnl_query_src_md, dnnl_query_weights_md,
                                          dnnl_query_dst_md};
    dnnl_memory_desc_t md;
    dnnl_dims_t wd = {s->in_c, s->out_c, s->k, s->k};
    NN_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, 4, wd, dnnl_f32, dnnl_oihw));
    if (!pd || !(c->blocked & NN_DNNL_BLK_X) || !(c->blocked & NN_DNNL_BLK_Y) ||
        s_prim_init(&c->tfwd, pd, q_fwd) ||
        !dnnl_memory_desc_equal(&c->tfwd.a[0].md, &c->bwd_data.a[2].md) ||
        !dnnl_memory_desc_equal(&c->tfwd.a[2].md, &c->bwd_data.a[0].md) ||
        s_arg_init(&c->utw, &md) || s_reorder_init(&c->t_wts, &c->utw.md, &c->tfwd.a[1].md, 0)) {
        s_prim_fini(&c->tfwd);
        s_arg_fini(&c->utw);
        s_reorder_fini(&c->t_wts);
        return;
    }
    c->k = s->k;
    c->in_c = s->in_c;
    c->out_c = s->out_c;
    c->t_floats = s_round(c->n_wts * sizeof(float));
    if (s_floats(&c->tfwd.a[1].md) > c->w_floats)
        c->w_floats = s_floats(&c->tfwd.a[1].md);
    if (s_floats(&c->tfwd.scratch.md) > c->s_floats)
        c->s_floats = s_floats(&c->tfwd.scratch.md);
}

static int s_build(nn_dnnl_conv_t *c, const struct nn_dnnl_conv_shape *s,
                   dnnl_primitive_desc_t pd[5])
{
    static const dnnl_query_t q_fwd[3] = {dnnl_query_src_md, dnnl_query_weights_md,
                                          dnnl_query_dst_md};
    static const dnnl_query_t q_dat[3] = {dnnl_query_diff_src_md, dnnl_query_weights_md,
                                          dnnl_query_diff_dst_md};
    static const dnnl_query_t q_wts[3] = {dnnl_query_src_md, dnnl_query_diff_weights_md,
                                          dnnl_query_diff_dst_md};
    dnnl_memory_desc_t md;
    s_cnhw(&md, s->n, s->in_c, s->ih, s->iw);
    if (s_arg_init(&c->usrc, &md))
        return -1;
    s_cnhw(&md, s->n, s->out_c, s->oh, s->ow);
    if (s_arg_init(&c->udst, &md))
        return -1;
    dnnl_dims_t wd = {s->out_c, s->in_c, s->k, s->k};
    NN_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, 4, wd, dnnl_f32, dnnl_oihw));
    if (s_arg_init(&c->uwts, &md))
        return -1;
    if (s_prim_init(&c->fwd, pd[0], q_fwd) || s_prim_init(&c->bwd_data, pd[1], q_dat) ||
        s_prim_init(&c->bwd_wts, pd[2], q_wts))
        return -1;
    if (s_reorder_init(&c->f_src, &c->usrc.md, &c->fwd.a[0].md, 0) ||
        s_reorder_init(&c->f_wts, &c->uwts.md, &c->fwd.a[1].md, 0) ||
        s_reorder_init(&c->f_dst, &c->fwd.a[2].md, &c->udst.md, 1) ||
        s_reorder_init(&c->d_dst, &c->udst.md, &c->bwd_data.a[2].md, 0) ||
        s_reorder_init(&c->d_wts, &c->uwts.md, &c->bwd_data.a[1].md, 0) ||
        s_reorder_init(&c->d_src, &c->bwd_data.a[0].md, &c->usrc.md, 1) ||
        s_reorder_init(&c->w_src, &c->usrc.md, &c->bwd_wts.a[0].md, 0) ||
        s_reorder_init(&c->w_dst, &c->udst.md, &c->bwd_wts.a[2].md, 0) ||
        s_reorder_init(&c->w_dwts, &c->bwd_wts.a[1].md, &c->uwts.md, 0))
        return -1;
    c->same_ddst = dnnl_memory_desc_equal(&c->bwd_data.a[2].md, &c->bwd_wts.a[2].md);
    if (pd[3] && s_prim_init(&c->fwd_add, pd[3], q_fwd) == 0) {
        /* used only where it reads and writes exactly what fwd does */
        int same = 1;
        for (int i = 0; i < 3; i++)
            same &= dnnl_memory_desc_equal(&c->fwd_add.a[i].md, &c->fwd.a[i].md);
        if (!same)
            s_prim_fini(&c->fwd_add);
    } else {
        s_prim_fini(&c->fwd_add);
    }
    if (s_all_blocked(&c->fwd.a[0].md, &c->bwd_data.a[0].md, &c->bwd_wts.a[0].md, s->n, s->in_c,
                      s->ih, s->iw))
        c->blocked |= NN_DNNL_BLK_X;
    if (s_all_blocked(&c->fwd.a[2].md, &c->bwd_data.a[2].md, &c->bwd_wts.a[2].md, s->n, s->out_c,
                      s->oh, s->ow))
        c->blocked |= NN_DNNL_BLK_Y;
    c->x_floats = (size_t)s->n * s->in_c * s->ih * s->iw;
    c->y_floats = (size_t)s->n * s->out_c * s->oh * s->ow;
    c->a_floats = s_floats(&c->fwd.a[0].md);
    c->b_floats = s_floats(&c->fwd.a[2].md);
    const struct s_prim *ps[4] = {&c->fwd, &c->bwd_data, &c->bwd_wts, &c->fwd_add};
    for (int i = 0; i < (c->fwd_add.p ? 4 : 3); i++) {
        size_t a = s_floats(&ps[i]->a[0].md), b = s_floats(&ps[i]->a[2].md);
        size_t sp = s_floats(&ps[i]->scratch.md);
        c->a_floats = a > c->a_floats ? a : c->a_floats;
        c->b_floats = b > c->b_floats ? b : c->b_floats;
        c->s_floats = sp > c->s_floats ? sp : c->s_floats;
    }
    c->n_wts = (size_t)s->out_c * s->in_c * s->k * s->k;
    c->w_floats = s_floats(&c->fwd.a[1].md);
    if (s_floats(&c->bwd_data.a[1].md) > c->w_floats)
        c->w_floats = s_floats(&c->bwd_data.a[1].md);
    c->dw_floats = s_floats(&c->bwd_wts.a[1].md);
    c->dwu_floats = s_round(c->n_wts * sizeof(float));
    s_build_tfwd(c, s, pd[4]);
    return 0;
}

nn_dnnl_conv_t *nn_dnnl_conv_new(const struct nn_dnnl_conv_shape *shape)
{
    pthread_once(&s_engine_once, s_engine_init);
    if (!s_engine) {
        nn_report(2, "conv2d: oneDNN has no CPU engine; using im2col");
        return NULL;
    }
    nn_dnnl_conv_t *c = calloc(1, sizeof *c);
    dnnl_primitive_desc_t pd[5] = {NULL, NULL, NULL, NULL, NULL};
    if (!c)
        return NULL;
    if (dnnl_stream_create(&c->stream, s_engine, dnnl_stream_default_flags) ||
        s_create_pds(shape, pd) || s_build(c, shape, pd)) {
        nn_report(2,
                  "conv2d %dx%dx%d -> %d (k %d, stride %d, pad %d): no oneDNN primitive; "
                  "using im2col",
                  shape->in_c, shape->ih, shape->iw, shape->out_c, shape->k, shape->stride,
                  shape->pad);
        nn_dnnl_conv_destroy(&c);
    }
    for (int i = 0; i < 5; i++)
        dnnl_primitive_desc_destroy(pd[i]);
    return c;
}

void nn_dnnl_conv_destroy(nn_dnnl_conv_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_dnnl_conv_t *c = *self_p;
    struct s_reorder *rs[] = {&c->f_src, &c->f_wts, &c->f_dst, &c->d_dst,  &c->d_wts,
                              &c->d_src, &c->w_src, &c->w_dst, &c->w_dwts, &c->t_wts};
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++)
        s_reorder_fini(rs[i]);
    s_prim_fini(&c->fwd);
    s_prim_fini(&c->bwd_data);
    s_prim_fini(&c->bwd_wts);
    s_prim_fini(&c->fwd_add);
    s_prim_fini(&c->tfwd);
    s_arg_fini(&c->utw);
    s_arg_fini(&c->usrc);
    s_arg_fini(&c->udst);
    s_arg_fini(&c->uwts);
    if (c->stream)
        dnnl_stream_destroy(c->stream);
    free(c);
    *self_p = NULL;
}

size_t nn_dnnl_conv_work_floats(const nn_dnnl_conv_t *self)
{
    return self->a_floats + self->b_floats + self->s_floats + self->w_floats + self->dw_floats +
           self->dwu_floats + self->t_floats;
}

unsigned nn_dnnl_conv_blocked(const nn_dnnl_conv_t *self)
{
    return self->blocked;
}

/* ---- execution ------------------------------------------------------------------------------ */

static void s_set(const struct s_arg *a, const void *p)
{
    NN_DNNL_CHECK(dnnl_memory_set_data_handle(a->mem, (void *)p));
}

/* The scratch regions of a call in work (layout in the banner). */
struct s_regions {
    float *a, *b, *s, *w, *dw, *dwu, *t;
};

static struct s_regions s_split(const nn_dnnl_conv_t *c, float *work)
{
    struct s_regions r;
    r.a = work;
    r.b = r.a + c->a_floats;
    r.s = r.b + c->b_floats;
    r.w = r.s + c->s_floats;
    r.dw = r.w + c->w_floats;
    r.dwu = r.dw + c->dw_floats;
    r.t = r.dwu + c->dwu_floats;
    return r;
}

/* Run reorder prim from (from, pf) to (to, pt). */
static void s_run_reorder(nn_dnnl_conv_t *c, dnnl_primitive_t prim, const struct s_arg *from,
                          const void *pf, const struct s_arg *to, void *pt)
{
    s_set(from, pf);
    s_set(to, pt);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from->mem}, {DNNL_ARG_TO, to->mem}};
    NN_DNNL_CHECK(dnnl_primitive_execute(prim, c->stream, 2, args));
}

/* The operand p (caller layout `from`) as the primitive arg `to` wants it: p itself when the
 * layouts agree, else reordered into buf. */
static const float *s_in(nn_dnnl_conv_t *c, const struct s_reorder *r, const struct s_arg *from,
                         const float *p, const struct s_arg *to, float *buf)
{
    if (!r->reo)
        return p;
    s_run_reorder(c, r->reo, from, p, to, buf);
    return buf;
}

/* Execute primitive p on three tensors with the given arg kinds and the scratchpad at s. */
static void s_run(nn_dnnl_conv_t *c, struct s_prim *p, const int kinds[3], const void *t0,
                  const void *t1, const void *t2, float *s)
{
    const void *t[3] = {t0, t1, t2};
    dnnl_exec_arg_t args[4];
    for (int i = 0; i < 3; i++) {
        s_set(&p->a[i], t[i]);
        args[i] = (dnnl_exec_arg_t){kinds[i], p->a[i].mem};
    }
    s_set(&p->scratch, s);
    args[3] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch.mem};
    NN_DNNL_CHECK(dnnl_primitive_execute(p->p, c->stream, 4, args));
}

/* dst[i] += src[i]: the adding "reorder" between two tensors of one (blocked) layout. */
static void s_add(float *dst, const float *src, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NN_DNNL_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

void nn_dnnl_conv_forward(nn_dnnl_conv_t *c, const float *x, const float *w, float *y, int add,
                          unsigned blk, float *work)
{
    static const int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
    NN_ASSERT((blk & c->blocked) == blk);
    const struct s_regions r = s_split(c, work);
    const float *src = blk & NN_DNNL_BLK_X ? x : s_in(c, &c->f_src, &c->usrc, x, &c->fwd.a[0], r.a);
    const float *wts = s_in(c, &c->f_wts, &c->uwts, w, &c->fwd.a[1], r.w);
    if (blk & NN_DNNL_BLK_Y) {
        if (add && c->fwd_add.p) {
            s_run(c, &c->fwd_add, kinds, src, wts, y, r.s);
            return;
        }
        s_run(c, &c->fwd, kinds, src, wts, add ? r.b : y, r.s);
        if (add)
            s_add(y, r.b, c->y_floats);
        return;
    }
    float *dst = c->f_dst.reo || add ? r.b : y;
    s_run(c, &c->fwd, kinds, src, wts, dst, r.s);
    if (dst != y)
        s_run_reorder(c, add ? c->f_dst.add : c->f_dst.reo, &c->fwd.a[2], dst, &c->udst, y);
}

/* dx += convT(w, dy) through tfwd (blocked dy and dx): w transposed and flipped into T, reordered
 * into W. */
static void s_tfwd_add(nn_dnnl_conv_t *c, const float *dy, const float *w, float *dx,
                       const struct s_regions *r)
{
    static const int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
    const int k = c->k, kk = k * k;
    for (int o = 0; o < c->out_c; o++)
        for (int i = 0; i < c->in_c; i++) {
            const float *from = w + ((size_t)o * c->in_c + i) * kk;
            float *to = r->t + ((size_t)i * c->out_c + o) * kk;
            for (int t = 0; t < kk; t++)
                to[t] = from[kk - 1 - t];
        }
    const float *wts = s_in(c, &c->t_wts, &c->utw, r->t, &c->tfwd.a[1], r->w);
    s_run(c, &c->tfwd, kinds, dy, wts, dx, r->s);
}

void nn_dnnl_conv_backward(nn_dnnl_conv_t *c, const float *dy, const float *x, float scale,
                           float *dw, const float *w, float *dx, unsigned blk, float *work)
{
    static const int k_wts[3] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST};
    static const int k_dat[3] = {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST};
    NN_ASSERT((blk & (NN_DNNL_BLK_X | NN_DNNL_BLK_Y) & ~c->blocked) == 0);
    const struct s_regions r = s_split(c, work);
    /* dy in the layout of the last primitive that read it (as it is, when blocked) */
    const float *ddst = blk & NN_DNNL_BLK_Y ? dy : NULL;
    if (dw) {
        const float *src =
            blk & NN_DNNL_BLK_X ? x : s_in(c, &c->w_src, &c->usrc, x, &c->bwd_wts.a[0], r.a);
        if (!ddst)
            ddst = s_in(c, &c->w_dst, &c->udst, dy, &c->bwd_wts.a[2], r.b);
        s_run(c, &c->bwd_wts, k_wts, src, r.dw, ddst, r.s);
        const float *g = r.dw;
        if (c->w_dwts.reo) {
            s_run_reorder(c, c->w_dwts.reo, &c->bwd_wts.a[1], r.dw, &c->uwts, r.dwu);
            g = r.dwu;
        }
        for (size_t i = 0; i < c->n_wts; i++)
            dw[i] += scale * g[i];
    }
    if (!dx)
        return;
    if (!(blk & NN_DNNL_SET_DX) && c->tfwd.p && (blk & NN_DNNL_BLK_X) && (blk & NN_DNNL_BLK_Y)) {
        s_tfwd_add(c, dy, w, dx, &r);
        return;
    }
    if (!ddst || !c->same_ddst)
        ddst = s_in(c, &c->d_dst, &c->udst, dy, &c->bwd_data.a[2], r.b);
    const float *wts = s_in(c, &c->d_wts, &c->uwts, w, &c->bwd_data.a[1], r.w);
    const int set = (blk & NN_DNNL_SET_DX) != 0;
    /* straight into dx where it is overwritten in the primitive's own layout */
    const int direct = set && (blk & NN_DNNL_BLK_X || !c->d_src.reo);
    s_run(c, &c->bwd_data, k_dat, direct ? dx : r.a, wts, ddst, r.s);
    if (direct)
        return;
    if (blk & NN_DNNL_BLK_X)
        s_add(dx, r.a, c->x_floats);
    else
        s_run_reorder(c, set ? c->d_src.reo : c->d_src.add, &c->bwd_data.a[0], r.a, &c->usrc, dx);
}

#endif
