/*
 * nn_net: a DAG of layers with every buffer reserved once, and the passes that drive it: forward,
 * backward (parameter and input gradients), and the exact Hessian-vector product by Pearlmutter's
 * R-operator (forward, R-forward, backward, R-backward), full or restricted to a block of the last
 * K parameter layers.
 *
 * Layers are kept in execution order; parameter layers appear in parameter order, so the block of
 * the last K parameter layers is a suffix of the execution order starting at layer `start`. A block
 * HVP runs the plain forward below `start` (activations are needed), and the R-forward, backward
 * and R-backward only from `start` on. Nodes produced below `start` have r_active = 0 and
 * need_dy = 0.
 *
 * Memory: node values and gradients (y, dy) are one allocation made by nn_net_build; the
 * R-companions (ry, rdy) are a second one made by the first HVP, so nets that never compute a
 * Hessian do not pay for them. Nothing is allocated by later passes.
 */
#include "nn_net.h"

#include <math.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_net_impl.h"

#define NN_NET_GROW 16 /* growth step of the layer and node arrays */

/* ---- building --------------------------------------------------------------------------- */

static struct nn_node *s_node_new(nn_net_t *net, int producer)
{
    if (net->n_nodes == net->cap_nodes) {
        int cap = net->cap_nodes + NN_NET_GROW;
        struct nn_node **nodes = realloc(net->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes)
            return NULL;
        net->nodes = nodes;
        int *prod = realloc(net->producer, (size_t)cap * sizeof *prod);
        if (!prod)
            return NULL;
        net->producer = prod;
        net->cap_nodes = cap;
    }
    struct nn_node *node = calloc(1, sizeof *node);
    if (!node)
        return NULL;
    net->nodes[net->n_nodes] = node;
    net->producer[net->n_nodes] = producer;
    net->n_nodes++;
    return node;
}

nn_net_t *nn_net_new(int c, int h, int w, int max_batch)
{
    if (c < 1 || h < 1 || w < 1 || max_batch < 1) {
        nn_report(3, "nn_net_new: invalid input %dx%dx%d or max batch %d", c, h, w, max_batch);
        return NULL;
    }
    nn_net_t *net = calloc(1, sizeof *net);
    if (!net)
        return NULL;
    net->in_c = c;
    net->in_h = h;
    net->in_w = w;
    net->max_batch = max_batch;
    struct nn_node *in = s_node_new(net, -1);
    if (!in) {
        nn_net_destroy(&net);
        return NULL;
    }
    in->shape = (struct nn_shape){c, h, w};
    return net;
}

static void s_layer_free(struct nn_layer *l)
{
    if (!l)
        return;
    nn_net_dev_layer_release(l);
    if (l->ops && l->ops->destroy)
        l->ops->destroy(l);
    free(l);
}

int nn_net_add(nn_net_t *net, struct nn_layer *layer, int in0, int in1)
{
    int rc = NN_OK;
    if (!net) {
        s_layer_free(layer);
        return NN_ERR_ARG;
    }
    if (net->error || net->built) {
        s_layer_free(layer);
        return net->error ? net->error : NN_ERR_ARG;
    }
    if (!layer) {
        rc = NN_ERR_NOMEM;
        goto out_fail;
    }
    if (!layer->ops || !layer->ops->setup) {
        nn_report(3, "nn_net_add: layer '%s' has no setup operation", layer->name);
        rc = NN_ERR_ARG;
        goto out_fail;
    }
    if (in0 < 0 || in0 >= net->n_nodes || in1 < -1 || in1 >= net->n_nodes) {
        nn_report(3, "nn_net_add: layer '%s' (%s): input node %d/%d out of range [0, %d)",
                  layer->name, layer->ops->kind, in0, in1, net->n_nodes);
        rc = NN_ERR_ARG;
        goto out_fail;
    }
    if (net->n_layers == net->cap_layers) {
        int cap = net->cap_layers + NN_NET_GROW;
        struct nn_layer **layers = realloc(net->layers, (size_t)cap * sizeof *layers);
        if (!layers) {
            rc = NN_ERR_NOMEM;
            goto out_fail;
        }
        net->layers = layers;
        net->cap_layers = cap;
    }
    struct nn_node *out = s_node_new(net, net->n_layers);
    if (!out) {
        rc = NN_ERR_NOMEM;
        goto out_fail;
    }
    layer->n_in = in1 >= 0 ? 2 : 1;
    layer->in[0] = net->nodes[in0];
    layer->in[1] = in1 >= 0 ? net->nodes[in1] : NULL;
    layer->out = out;
    rc = layer->ops->setup(layer, net->max_batch);
    if (rc == NN_OK && (out->shape.c < 1 || out->shape.h < 1 || out->shape.w < 1))
        rc = NN_ERR_SHAPE;
    if (rc != NN_OK) {
        const struct nn_shape *s = &layer->in[0]->shape;
        nn_report(3, "nn_net_add: layer '%s' (%s) does not accept input %dx%dx%d: %s", layer->name,
                  layer->ops->kind, s->c, s->h, s->w, nn_strerror(rc));
        free(out);
        net->n_nodes--;
        goto out_fail;
    }
    net->layers[net->n_layers++] = layer;
    return net->n_nodes - 1;

out_fail:
    s_layer_free(layer);
    net->error = rc;
    return rc;
}

/* Every operation a pass may call must exist; init only where tensors are declared. */
static int s_check_ops(const struct nn_layer *l)
{
    const struct nn_layer_ops *o = l->ops;
    if (!o->forward || !o->backward || !o->rforward || !o->rbackward || !o->flops ||
        (l->n_decl > 0 && !o->init)) {
        nn_report(3, "nn_net_build: layer '%s' (%s) lacks an operation", l->name, o->kind);
        return NN_ERR_ARG;
    }
    if (l->n_decl < 0 || l->n_decl > NN_LAYER_MAX_TENSORS) {
        nn_report(3, "nn_net_build: layer '%s' declares %d tensors", l->name, l->n_decl);
        return NN_ERR_ARG;
    }
    return NN_OK;
}

static size_t s_decl_numel(const struct nn_tensor_decl *d)
{
    size_t n = 1;
    for (int i = 0; i < d->ndim; i++)
        n *= (size_t)d->shape[i];
    return n;
}

/* Sizes, offsets and names of every tensor; parameter-layer table. */
static int s_build_tensors(nn_net_t *net)
{
    int n_t = 0, n_play = 0;
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        n_t += l->n_decl;
        int has_param = 0;
        for (int d = 0; d < l->n_decl; d++)
            has_param |= !l->decl[d].is_buffer;
        n_play += has_param;
    }
    net->tensors = calloc((size_t)(n_t ? n_t : 1), sizeof *net->tensors);
    net->play = calloc((size_t)(n_play ? n_play : 1), sizeof *net->play);
    net->play_off = calloc((size_t)(n_play + 1), sizeof *net->play_off);
    if (!net->tensors || !net->play || !net->play_off)
        return NN_ERR_NOMEM;
    size_t p_off = 0, b_off = 0;
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        size_t n_w = 0, n_buf = 0;
        int has_param = 0;
        for (int d = 0; d < l->n_decl; d++) {
            const struct nn_tensor_decl *decl = &l->decl[d];
            if (decl->ndim < 1 || decl->ndim > 4)
                return NN_ERR_ARG;
            struct nn_tensor_info *t = &net->tensors[net->n_tensors];
            size_t len = strlen(l->name) + strlen(decl->suffix) + 2;
            char *name = malloc(len);
            if (!name)
                return NN_ERR_NOMEM;
            snprintf(name, len, "%s.%s", l->name, decl->suffix);
            t->name = name;
            net->n_tensors++;
            t->kind = decl->is_buffer ? NN_TENSOR_BUFFER : NN_TENSOR_PARAM;
            t->ndim = decl->ndim;
            memcpy(t->shape, decl->shape, sizeof t->shape);
            t->numel = s_decl_numel(decl);
            t->layer = decl->is_buffer ? -1 : net->n_play;
            if (decl->is_buffer) {
                t->offset = b_off + n_buf;
                n_buf += t->numel;
            } else {
                t->offset = p_off + n_w;
                n_w += t->numel;
                has_param = 1;
            }
        }
        /* Buffers belong to the parameter layer they sit in (BatchNorm). */
        for (int d = 0; d < l->n_decl; d++)
            if (net->tensors[net->n_tensors - l->n_decl + d].layer < 0)
                net->tensors[net->n_tensors - l->n_decl + d].layer = has_param ? net->n_play : -1;
        l->n_w = n_w;
        l->n_buf = n_buf;
        if (has_param) {
            net->play[net->n_play] = i;
            net->play_off[net->n_play] = p_off;
            net->n_play++;
        }
        p_off += n_w;
        b_off += n_buf;
    }
    net->play_off[net->n_play] = p_off;
    net->n_params = p_off;
    net->n_buffers = b_off;
    return NN_OK;
}

void nn_net_set_forward_only(nn_net_t *net)
{
    if (net && !net->built)
        net->fwd_only = 1;
}

size_t nn_net_forward_only_act_bytes(const nn_net_t *net)
{
    return nn_net_fwd_plan(net, 0) * sizeof(float);
}

/* Training passes and HVPs need the gradient buffers a forward-only net lacks. */
static int s_check_trainable(const nn_net_t *net, const char *fn)
{
    if (!net->fwd_only)
        return NN_OK;
    nn_report(3, "%s: the net was built for forward passes only", fn);
    return NN_ERR_ARG;
}

int nn_net_build(nn_net_t *net)
{
    if (!net)
        return NN_ERR_ARG;
    if (net->error)
        return net->error;
    if (net->built)
        return NN_OK;
    if (net->n_layers == 0) {
        nn_report(3, "nn_net_build: the net has no layers");
        return net->error = NN_ERR_ARG;
    }
    const struct nn_shape *ls = &net->nodes[net->n_nodes - 1]->shape;
    if (ls->h != 1 || ls->w != 1) {
        nn_report(3, "nn_net_build: last layer gives %dx%dx%d, expected logits [classes x 1 x 1]",
                  ls->c, ls->h, ls->w);
        return net->error = NN_ERR_SHAPE;
    }
    net->classes = ls->c;
    int rc;
    for (int i = 0; i < net->n_layers; i++)
        if ((rc = s_check_ops(net->layers[i])) != NN_OK)
            return net->error = rc;
    if ((rc = s_build_tensors(net)) != NN_OK)
        return net->error = rc;

    size_t mb = (size_t)net->max_batch;
    nn_net_layout_plan(net);
    size_t act = nn_net_node_floats(net), work = 0;
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i]->work_per_sample * mb > work)
            work = net->layers[i]->work_per_sample * mb;
    net->act = nn_alloc(act * sizeof(float));
    net->params = nn_alloc(net->n_params * sizeof(float));
    net->grads = nn_alloc(net->n_params * sizeof(float));
    net->buffers = nn_alloc(net->n_buffers * sizeof(float));
    net->work = work ? nn_alloc(work * sizeof(float)) : NULL;
    net->probs = nn_alloc((size_t)net->classes * mb * sizeof(float));
    if (!net->act || !net->params || !net->grads || !net->buffers || (work && !net->work) ||
        !net->probs) {
        nn_report(3, "nn_net_build: out of memory (%zu activation floats, %zu parameters)", act,
                  net->n_params);
        return net->error = NN_ERR_NOMEM;
    }
    net->work_floats = work;
    nn_net_bind_nodes(net, net->act, 0);
    size_t p_off = 0, b_off = 0;
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        l->w = l->n_w ? net->params + p_off : NULL;
        l->g = l->n_w ? net->grads + p_off : NULL;
        l->buf = l->n_buf ? net->buffers + b_off : NULL;
        l->v = l->hv = NULL;
        l->in_block = 0;
        p_off += l->n_w;
        b_off += l->n_buf;
    }
    net->be = nn_backend_cpu();
    net->host_params = net->params;
    net->host_grads = net->grads;
    net->host_buffers = net->buffers;
    net->built = 1;
    nn_net_init(net, 0);
    return NN_OK;
}

/* Reserve the R-companions of every node (first HVP only). */
static int s_reserve_r(nn_net_t *net)
{
    if (net->ract)
        return NN_OK;
    size_t total = nn_net_node_floats(net);
    net->ract = net->be->alloc(total * sizeof(float));
    if (!net->ract) {
        nn_report(3, "nn_net_hvp: out of memory reserving %zu R-pass floats", total);
        return NN_ERR_NOMEM;
    }
    nn_net_bind_nodes(net, net->ract, 1);
    return NN_OK;
}

void nn_net_destroy(nn_net_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_net_t *net = *self_p;
    for (int i = 0; i < net->n_layers; i++)
        s_layer_free(net->layers[i]);
    free(net->layers);
    for (int i = 0; i < net->n_nodes; i++)
        free(net->nodes[i]);
    free(net->nodes);
    free(net->producer);
    for (int i = 0; i < net->n_tensors; i++)
        free((char *)net->tensors[i].name);
    free(net->tensors);
    free(net->play);
    free(net->play_off);
    nn_net_dev_free(net);
    nn_free(net->act);
    nn_free(net->ract);
    nn_free(net->params);
    nn_free(net->grads);
    nn_free(net->buffers);
    nn_free(net->work);
    nn_free(net->probs);
    nn_free(net->mom);
    free(net);
    *self_p = NULL;
}

void nn_net_init(nn_net_t *net, uint64_t seed)
{
    NN_ASSERT(net && net->built);
    if (net->be != nn_backend_cpu()) {
        nn_net_dev_init(net, seed);
        return;
    }
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        if (l->ops->init)
            l->ops->init(l, &rng);
    }
}

/* ---- accessors ---------------------------------------------------------------------------- */

size_t nn_net_param_count(const nn_net_t *net)
{
    return net->n_params;
}

size_t nn_net_buffer_count(const nn_net_t *net)
{
    return net->n_buffers;
}

float *nn_net_params(nn_net_t *net)
{
    return net->host_params;
}

float *nn_net_grads(nn_net_t *net)
{
    return net->host_grads;
}

float *nn_net_buffers(nn_net_t *net)
{
    return net->host_buffers;
}

int nn_net_classes(const nn_net_t *net)
{
    return net->classes;
}

int nn_net_max_batch(const nn_net_t *net)
{
    return net->max_batch;
}

void nn_net_input_shape(const nn_net_t *net, int *c, int *h, int *w)
{
    if (c)
        *c = net->in_c;
    if (h)
        *h = net->in_h;
    if (w)
        *w = net->in_w;
}

int nn_net_tensor_count(const nn_net_t *net)
{
    return net->n_tensors;
}

const struct nn_tensor_info *nn_net_tensor(const nn_net_t *net, int i)
{
    if (i < 0 || i >= net->n_tensors)
        return NULL;
    return &net->tensors[i];
}

const struct nn_tensor_info *nn_net_tensor_find(const nn_net_t *net, const char *name)
{
    for (int i = 0; name && i < net->n_tensors; i++)
        if (!strcmp(net->tensors[i].name, name))
            return &net->tensors[i];
    return NULL;
}

int nn_net_param_layers(const nn_net_t *net)
{
    return net->n_play;
}

size_t nn_net_param_layer_offset(const nn_net_t *net, int layer)
{
    NN_ASSERT(layer >= 0 && layer <= net->n_play);
    return net->play_off[layer];
}

size_t nn_net_param_layer_size(const nn_net_t *net, int layer)
{
    NN_ASSERT(layer >= 0 && layer < net->n_play);
    return net->play_off[layer + 1] - net->play_off[layer];
}

void nn_net_zero_grad(nn_net_t *net)
{
    net->be->zero(net->grads, net->n_params);
    if (net->host_grads != net->grads)
        memset(net->host_grads, 0, net->n_params * sizeof(float));
}

double nn_net_forward_flops(const nn_net_t *net)
{
    double f = 0;
    for (int i = 0; i < net->n_layers; i++)
        f += (net->layers[i]->cpu_ops ? net->layers[i]->cpu_ops : net->layers[i]->ops)
                 ->flops(net->layers[i]);
    return f;
}

void nn_net_stats(const nn_net_t *net, struct nn_net_stats *out)
{
    *out = net->stats;
}

void nn_net_stats_reset(nn_net_t *net)
{
    memset(&net->stats, 0, sizeof net->stats);
}

void nn_net_set_seed(nn_net_t *net, unsigned long long seed, int fixed)
{
    net->seed = seed;
    net->seed_fixed = fixed != 0;
}

unsigned long long nn_net_seed(const nn_net_t *net)
{
    return net->seed;
}

void nn_net_set_dropout_eval(nn_net_t *net, int on)
{
    net->dropout_eval = on != 0;
}

/* ---- passes ------------------------------------------------------------------------------- */

/* The context of a pass: BatchNorm mode, dropout (train mode unless forced off) and its seed.
 * `advance`: a train-mode pass that consumes the seed (forward, train pass; not an HVP). */
static struct nn_ctx s_ctx(nn_net_t *net, int n, enum nn_bn_mode bn, int advance)
{
    struct nn_ctx ctx = {.n = n,
                         .bn_eval = bn == NN_BN_EVAL,
                         .grad_scale = 1.0f,
                         .work = net->work,
                         .work_floats = net->work_floats,
                         .dropout = bn == NN_BN_TRAIN && !net->dropout_eval,
                         .seed = net->seed};
    if (ctx.dropout && advance && !net->seed_fixed)
        net->seed++;
    nn_net_layout_pass(net, n);
    return ctx;
}

/* Common checks of a pass's arguments; reports and returns non-zero on bad input. */
static int s_check_pass(const nn_net_t *net, const char *fn, const float *x, const int32_t *labels,
                        int n)
{
    if (!net || !net->built) {
        nn_report(3, "%s: net is not built", fn);
        return NN_ERR_ARG;
    }
    if (!x || n < 1 || n > net->max_batch) {
        nn_report(3, "%s: batch of %d samples outside [1, %d] (or no input)", fn, n,
                  net->max_batch);
        return NN_ERR_ARG;
    }
    for (int i = 0; labels && i < n; i++)
        if (labels[i] < 0 || labels[i] >= net->classes) {
            nn_report(3, "%s: label %d of sample %d outside [0, %d)", fn, (int)labels[i], i,
                      net->classes);
            return NN_ERR_ARG;
        }
    return NN_OK;
}

static struct nn_node *s_logits(const nn_net_t *net)
{
    return net->nodes[net->n_nodes - 1];
}

/* R-forward of layer l when it is in the block or an input carries a tangent; marks its output. */
static void s_rforward_layer(nn_net_t *net, struct nn_layer *l, const struct nn_ctx *ctx)
{
    int active = l->in_block;
    for (int j = 0; j < l->n_in; j++)
        active |= l->in[j]->r_active;
    if (active) {
        nn_prof_call(net->be, l, NN_PASS_RFWD, ctx);
        net->stats.rforward++;
        l->out->r_active = 1;
    }
}

/* Forward through every layer; with rfrom >= 0 also the R-forward from layer rfrom on. */
static void s_forward(nn_net_t *net, const struct nn_ctx *ctx, int rfrom)
{
    net->hvp.valid = 0; /* the activations an HVP would reuse change */
    net->nodes[0]->r_active = 0;
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        nn_prof_call(net->be, l, NN_PASS_FWD, ctx);
        net->stats.forward++;
        l->out->r_active = 0;
        if (rfrom < 0 || i < rfrom)
            continue;
        s_rforward_layer(net, l, ctx);
    }
}

/* Mark which nodes need dL/dy and clear their dy (and rdy when `r`); the logits' are written by
 * the loss. A node needs its gradient when the layer that produced it runs a backward pass that
 * matters: the layer is at or after layer `from` and has parameters that need a gradient
 * (param_grad; in an HVP, those of the block) or an input that needs one. The input node needs
 * one only when asked (FGSM). So the first layer computes no input gradient unless asked, and a
 * block HVP does nothing below its block. */
static void s_prepare_backward(nn_net_t *net, int n, int from, int input_grad, int param_grad,
                               int r)
{
    net->nodes[0]->need_dy = input_grad;
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        int need = i >= from && ((param_grad && l->n_w > 0) || l->in_block);
        for (int j = 0; j < l->n_in; j++)
            need |= l->in[j]->need_dy;
        l->out->need_dy = need;
    }
    nn_net_clear_grads(net, n, 1, r);
}

/* The R-forward pass alone from layer rfrom on, on the activations the last forward left. */
static void s_rforward_only(nn_net_t *net, const struct nn_ctx *ctx, int rfrom)
{
    net->nodes[0]->r_active = 0;
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        l->out->r_active = 0;
        if (i < rfrom)
            continue;
        s_rforward_layer(net, l, ctx);
    }
}

void nn_net_hvp_reuse(nn_net_t *net, int on)
{
    net->hvp = (struct nn_hvp_cache){.on = on ? 1 : 0};
}

static int s_any_input_needs_dy(const struct nn_layer *l)
{
    for (int j = 0; j < l->n_in; j++)
        if (l->in[j]->need_dy)
            return 1;
    return 0;
}

float nn_net_forward(nn_net_t *net, const float *x, const int32_t *labels, int n,
                     enum nn_bn_mode bn, float *logits, int *correct)
{
    if (s_check_pass(net, "nn_net_forward", x, labels, n))
        return NAN;
    struct nn_ctx ctx = s_ctx(net, n, bn, 1);
    net->be->load_input(net->nodes[0]->y, x, n, net->in_c, (size_t)net->in_h * net->in_w);
    s_forward(net, &ctx, -1);
    if (logits)
        net->be->store_logits(logits, s_logits(net)->y, net->classes, n);
    if (!labels)
        return 0.0f;
    return (float)net->be->loss_forward(s_logits(net)->y, labels, net->classes, n, net->probs,
                                        correct);
}

float nn_net_train_pass(nn_net_t *net, const float *x, const int32_t *labels, int n,
                        enum nn_bn_mode bn, unsigned flags, float grad_scale, float *dx,
                        int *correct)
{
    if (s_check_pass(net, "nn_net_train_pass", x, labels, n) ||
        s_check_trainable(net, "nn_net_train_pass"))
        return NAN;
    if (!labels || ((flags & NN_PASS_INPUT_GRAD) && !dx)) {
        nn_report(3, "nn_net_train_pass: labels%s missing", labels ? "" : " and/or dx");
        return NAN;
    }
    int param_grad = (flags & NN_PASS_PARAM_GRAD) != 0;
    int input_grad = (flags & NN_PASS_INPUT_GRAD) != 0;
    struct nn_ctx ctx = s_ctx(net, n, bn, 1);
    ctx.update_stats = (flags & NN_PASS_UPDATE_STATS) != 0;
    ctx.param_grad = param_grad;
    ctx.grad_scale = grad_scale;
    net->be->load_input(net->nodes[0]->y, x, n, net->in_c, (size_t)net->in_h * net->in_w);
    for (int i = 0; i < net->n_layers; i++)
        net->layers[i]->in_block = 0;
    s_forward(net, &ctx, -1);
    struct nn_node *z = s_logits(net);
    double loss = net->be->loss_forward(z->y, labels, net->classes, n, net->probs, correct);
    if (!param_grad && !input_grad)
        return (float)loss;
    s_prepare_backward(net, n, 0, input_grad, param_grad, 0);
    net->be->loss_backward(net->probs, net->classes, n, z->dy);
    for (int i = net->n_layers - 1; i >= 0; i--) {
        struct nn_layer *l = net->layers[i];
        if (!(param_grad && l->n_w) && !s_any_input_needs_dy(l))
            continue;
        nn_prof_call(net->be, l, NN_PASS_BWD, &ctx);
        net->stats.backward++;
    }
    if (input_grad)
        net->be->store_input_grad(dx, net->nodes[0]->dy, n, net->in_c,
                                  (size_t)net->in_h * net->in_w);
    return (float)loss;
}

float nn_net_hvp(nn_net_t *net, const float *x, const int32_t *labels, int n, enum nn_bn_mode bn,
                 int block_last_k, const float *v, float *hv)
{
    if (s_check_pass(net, "nn_net_hvp", x, labels, n) || s_check_trainable(net, "nn_net_hvp"))
        return NAN;
    if (!labels || !v || !hv || block_last_k < 0) {
        nn_report(3, "nn_net_hvp: missing labels/v/hv or negative block size %d", block_last_k);
        return NAN;
    }
    if (s_reserve_r(net) != NN_OK)
        return NAN;
    int k = block_last_k == 0 || block_last_k > net->n_play ? net->n_play : block_last_k;
    int first = net->n_play - k;  /* first parameter layer of the block */
    int start = net->play[first]; /* its execution index */
    /* On a device the direction and result live in device copies (dv, dhv). */
    const float *v_host = v;
    float *hv_host = hv;
    if (net->dv) {
        /* one copy each way per product, through page-locked staging (a DMA transfer) */
        memcpy(net->pin_v, v_host, net->n_params * sizeof(float));
        if (net->be->upload(net->dv, net->pin_v, net->n_params * sizeof(float)) != NN_OK)
            return NAN;
        v = net->dv;
        hv = net->dhv;
    }
    /* Bind the direction and result views; hv is zero outside the block and accumulates inside. */
    net->be->zero(hv, net->n_params);
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        l->in_block = i >= start && l->n_w > 0;
        size_t lo = (size_t)(l->w - net->params);
        l->v = l->in_block ? (float *)v + lo : NULL;
        l->hv = l->in_block ? hv + lo : NULL;
    }
    struct nn_ctx ctx = s_ctx(net, n, bn, 0);
    struct nn_hvp_cache *hc = &net->hvp;
    int reuse = hc->on && hc->valid && hc->x == x && hc->labels == labels && hc->n == n &&
                hc->bn == (int)bn && hc->k == k;
    struct nn_node *z = s_logits(net);
    double loss;
    if (reuse) {
        /* the activations, the loss's probabilities and the gradients are the last call's */
        s_rforward_only(net, &ctx, start);
        loss = hc->loss;
        nn_net_clear_grads(net, n, 0, 1);
    } else {
        net->be->load_input(net->nodes[0]->y, x, n, net->in_c, (size_t)net->in_h * net->in_w);
        s_forward(net, &ctx, start);
        loss = net->be->loss_forward(z->y, labels, net->classes, n, net->probs, NULL);
        s_prepare_backward(net, n, start, 0, 0, 1);
        net->be->loss_backward(net->probs, net->classes, n, z->dy);
        *hc = (struct nn_hvp_cache){.on = hc->on,
                                    .valid = hc->on,
                                    .x = x,
                                    .labels = labels,
                                    .n = n,
                                    .bn = (int)bn,
                                    .k = k,
                                    .loss = loss};
    }
    if (z->r_active)
        net->be->loss_rbackward(net->probs, z->ry, net->classes, n, z->rdy);
    else
        net->be->zero(z->rdy, (size_t)n * net->classes);
    /* Backward and R-backward interleaved per layer: both read the layer's dy/rdy while warm. */
    for (int i = net->n_layers - 1; i >= start; i--) {
        struct nn_layer *l = net->layers[i];
        int need_in = s_any_input_needs_dy(l);
        if (!need_in && !l->in_block)
            continue;
        if (need_in && !reuse) {
            nn_prof_call(net->be, l, NN_PASS_BWD, &ctx);
            net->stats.backward++;
        }
        nn_prof_call(net->be, l, NN_PASS_RBWD, &ctx);
        net->stats.rbackward++;
    }
    for (int i = 0; i < net->n_layers; i++) {
        net->layers[i]->in_block = 0;
        net->layers[i]->v = net->layers[i]->hv = NULL;
    }
    if (net->dv) {
        if (net->be->download(net->pin_hv, hv, net->n_params * sizeof(float)) != NN_OK)
            return NAN;
        memcpy(hv_host, net->pin_hv, net->n_params * sizeof(float));
    }
    return (float)loss;
}
