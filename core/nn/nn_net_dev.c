/*
 * nn_net_dev: moving a built net to a device backend and the copies between the net's device
 * tensors and their host mirrors (see nn_net.h, "Devices"). The passes themselves (nn_net.c)
 * only call the backend's table, so they run unchanged on any backend.
 */
#include <stdio.h>
#include <string.h>

#include "nn_net_impl.h"

#define NN_DEV_MSG_MAX 512 /* bytes of a memory-plan message */
#define NN_DEV_NAME_MAX 32 /* bytes of a device string ("cuda:N") */

size_t nn_net_act_floats(const nn_net_t *net)
{
    size_t act = 0;
    for (int i = 0; i < net->n_nodes; i++)
        act += nn_shape_numel(&net->nodes[i]->shape);
    return act;
}

void nn_net_mem_plan(const nn_net_t *net, struct nn_mem_plan *plan)
{
    nn_mem_plan(net->n_params, net->n_buffers, nn_net_act_floats(net), net->max_batch,
                net->work_floats * sizeof(float), plan);
    if (net->fwd_only) { /* y alone, in the reused arena of a device net */
        plan->activations = nn_net_fwd_plan(net, 0) * sizeof(float);
        plan->total = plan->params + plan->activations + plan->workspace;
    }
    plan->total += (size_t)net->classes * (size_t)net->max_batch * sizeof(float); /* probs */
}

size_t nn_net_cuda_scratch(const nn_net_t *net)
{
    return nn_cuda_scratch_bytes(net->layers, net->n_layers, net->max_batch,
                                 (size_t)net->in_c * net->in_h * net->in_w, net->fwd_only);
}

const char *nn_net_backend_name(const nn_net_t *net)
{
    return net && net->be ? net->be->name : "cpu";
}

void nn_net_dev_layer_release(struct nn_layer *l)
{
    if (!l->cpu_ops || l->cpu_ops == l->ops)
        return;
    if (l->ops->destroy)
        l->ops->destroy(l);
    l->dev = NULL;
    l->ops = l->cpu_ops;
}

/* Host mirror `*p` of n floats from the backend's host memory back to nn_alloc memory (what
 * nn_net_destroy frees), or the other way (to_pinned). Keeps the old memory when out of it. */
static void s_move_mirror(const struct nn_backend_ops *be, float **p, size_t n, int to_pinned)
{
    size_t bytes = n * sizeof(float) + sizeof(float);
    float *q = to_pinned ? be->host_alloc(bytes) : nn_alloc(bytes);
    if (!q)
        return;
    memcpy(q, *p, n * sizeof(float));
    if (to_pinned)
        nn_free(*p);
    else
        be->host_free(*p);
    *p = q;
}

void nn_net_dev_free(nn_net_t *net)
{
    const struct nn_backend_ops *be = net->be;
    if (!be || be == nn_backend_cpu())
        return;
    float **dev[] = {&net->act,  &net->ract,  &net->params, &net->grads, &net->buffers,
                     &net->work, &net->probs, &net->dv,     &net->dhv,   &net->mom};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) {
        be->free(*dev[i]);
        *dev[i] = NULL;
    }
    be->host_free(net->pin_v);
    be->host_free(net->pin_hv);
    net->pin_v = net->pin_hv = NULL;
    if (net->pinned) {
        s_move_mirror(be, &net->host_params, net->n_params, 0);
        s_move_mirror(be, &net->host_grads, net->n_params, 0);
        s_move_mirror(be, &net->host_buffers, net->n_buffers, 0);
        net->pinned = 0;
    }
    net->params = net->host_params;
    net->grads = net->host_grads;
    net->buffers = net->host_buffers;
    net->be = nn_backend_cpu();
}

/* Point every node and layer view at the net's current vectors. */
static void s_bind_params(nn_net_t *net);

static void s_bind(nn_net_t *net)
{
    size_t mb = (size_t)net->max_batch;
    float *p = net->act;
    if (net->fwd_only) /* nn_net_bind_nodes' arena, planned for a device (no shared nodes) */
        nn_net_fwd_plan(net, 0);
    for (int i = 0; i < net->n_nodes && net->fwd_only; i++) {
        net->nodes[i]->y = p + net->nodes[i]->arena_off;
        net->nodes[i]->dy = net->nodes[i]->ry = net->nodes[i]->rdy = NULL;
    }
    for (int i = 0; i < net->n_nodes && !net->fwd_only; i++) {
        size_t len = mb * nn_shape_numel(&net->nodes[i]->shape);
        net->nodes[i]->y = p;
        net->nodes[i]->dy = p + len;
        net->nodes[i]->ry = net->nodes[i]->rdy = NULL;
        p += 2 * len;
    }
    s_bind_params(net);
}

/* Back on the CPU after a failed move: the host buffers as nn_net_build laid them out (nodes
 * that share buffers share them again) and the R-companions where they were. */
static void s_bind_cpu(nn_net_t *net)
{
    nn_net_bind_nodes(net, net->act, 0);
    if (net->ract)
        nn_net_bind_nodes(net, net->ract, 1);
    else
        for (int i = 0; i < net->n_nodes; i++)
            net->nodes[i]->ry = net->nodes[i]->rdy = NULL;
    s_bind_params(net);
}

/* Every layer's views of the parameter, gradient and buffer vectors. */
static void s_bind_params(nn_net_t *net)
{
    size_t p_off = 0, b_off = 0;
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        l->w = l->n_w ? net->params + p_off : NULL;
        l->g = l->n_w ? net->grads + p_off : NULL;
        l->buf = l->n_buf ? net->buffers + b_off : NULL;
        p_off += l->n_w;
        b_off += l->n_buf;
    }
}

/* Every layer kind has a table on `be`; reports the first that has none. */
static int s_check_kinds(const nn_net_t *net, const struct nn_backend_ops *be)
{
    for (int i = 0; i < net->n_layers; i++) {
        const char *kind = net->layers[i]->ops->kind;
        if (!be->layer_ops(kind)) {
            nn_report(3, "nn_net_to_backend: layer kind %s has no %s implementation", kind,
                      be->name);
            return NN_ERR_ARG;
        }
    }
    return NN_OK;
}

/* Reserve the device vectors and upload parameters and buffers. */
static int s_reserve(nn_net_t *net, const struct nn_backend_ops *be)
{
    size_t mb = (size_t)net->max_batch;
    size_t act = net->fwd_only ? nn_net_fwd_plan(net, 0) : 2 * mb * nn_net_act_floats(net);
    net->act = be->alloc(act * sizeof(float));
    net->params = be->alloc(net->n_params * sizeof(float) + 1);
    net->grads = be->alloc(net->n_params * sizeof(float) + 1);
    net->buffers = be->alloc(net->n_buffers * sizeof(float) + 1);
    net->probs = be->alloc((size_t)net->classes * mb * sizeof(float));
    if (!net->fwd_only) { /* an HVP's direction and result (a forward-only net runs none) */
        net->dv = be->alloc(net->n_params * sizeof(float) + 1);
        net->dhv = be->alloc(net->n_params * sizeof(float) + 1);
        net->pin_v = be->host_alloc(net->n_params * sizeof(float) + 1);
        net->pin_hv = be->host_alloc(net->n_params * sizeof(float) + 1);
        if (!net->dv || !net->dhv || !net->pin_v || !net->pin_hv)
            return NN_ERR_NOMEM;
    }
    net->work = NULL; /* device layers keep their own workspaces */
    net->work_floats = 0;
    if (!net->act || !net->params || !net->grads || !net->buffers || !net->probs)
        return NN_ERR_NOMEM;
    if (be->upload(net->params, net->host_params, net->n_params * sizeof(float)) != NN_OK ||
        be->upload(net->buffers, net->host_buffers, net->n_buffers * sizeof(float)) != NN_OK)
        return NN_ERR_NOMEM;
    return NN_OK;
}

/* Swap every layer to the backend's table and run its device setup. */
static int s_swap_layers(nn_net_t *net, const struct nn_backend_ops *be)
{
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        l->cpu_ops = l->ops;
        l->ops = be->layer_ops(l->cpu_ops->kind);
        l->fwd_only = net->fwd_only;
        int rc = l->ops->setup ? l->ops->setup(l, net->max_batch) : NN_OK;
        if (rc != NN_OK) {
            nn_report(3, "nn_net_to_backend: %s setup of %s %s failed", be->name, l->ops->kind,
                      l->name);
            if (rc != NN_ERR_NOMEM) /* not memory: the library refused (the log has its words) */
                nn_backend_set_why("%s setup of %s %s failed (the log says why)", be->name,
                                   l->ops->kind, *l->name ? l->name : "(unnamed)");
            return rc;
        }
    }
    return NN_OK;
}

int nn_net_to_backend(nn_net_t *net, const char *device, const char *label)
{
    if (!net || !net->built)
        return NN_ERR_ARG;
    const struct nn_backend_ops *be = NULL;
    int rc = nn_backend_get(device, &be);
    if (rc != NN_OK) {
        nn_report(3, "%s", nn_backend_why());
        return rc;
    }
    if (be == net->be)
        return NN_OK;
    nn_backend_set_why("%s", ""); /* a failure below that is memory leaves it empty */
    if (net->be != nn_backend_cpu() || (rc = s_check_kinds(net, be)) != NN_OK)
        return net->be != nn_backend_cpu() ? NN_ERR_ARG : rc;
    struct nn_mem_plan plan;
    nn_net_mem_plan(net, &plan);
    if (be->scratch_bytes) { /* the backend's own scratch, not the CPU's workspace */
        size_t ws = be->scratch_bytes(net->layers, net->n_layers, net->max_batch,
                                      (size_t)net->in_c * net->in_h * net->in_w, net->fwd_only);
        plan.total = plan.total - plan.workspace + ws;
        plan.workspace = ws;
    }
    char msg[NN_DEV_MSG_MAX];
    if ((rc = nn_mem_plan_check(&plan, be->mem_free(), label, net->max_batch, msg, sizeof msg))) {
        nn_report(3, "%s", msg);
        return rc;
    }
    /* From here the CPU activations are replaced; the parameter vectors become host mirrors. */
    float *host_act = net->act, *host_ract = net->ract, *host_work = net->work;
    float *host_probs = net->probs;
    net->act = net->ract = net->work = net->probs = NULL;
    net->be = be;
    if ((rc = s_reserve(net, be)) == NN_OK) {
        s_bind(net);
        rc = s_swap_layers(net, be);
    }
    if (rc != NN_OK) {
        for (int i = 0; i < net->n_layers; i++)
            nn_net_dev_layer_release(net->layers[i]);
        nn_net_dev_free(net);
        net->act = host_act;
        net->ract = host_ract;
        net->work = host_work;
        net->probs = host_probs;
        s_bind_cpu(net);
        if (rc == NN_ERR_NOMEM)
            nn_report(3, "nn_net_to_backend: %s: could not reserve device memory", label);
        return rc;
    }
    nn_free(host_act);
    nn_free(host_ract);
    nn_free(host_work);
    nn_free(host_probs);
    nn_free(net->mom); /* momentum does not move: it restarts from zero on the device */
    net->mom = NULL;
    /* the weight pull and the gradient push copy from and to page-locked mirrors */
    s_move_mirror(be, &net->host_params, net->n_params, 1);
    s_move_mirror(be, &net->host_grads, net->n_params, 1);
    s_move_mirror(be, &net->host_buffers, net->n_buffers, 1);
    net->pinned = 1;
    /* the setup's work is done before another thread (with its own stream) runs a pass */
    return be->sync();
}

int nn_net_bind_thread(nn_net_t *net)
{
    const struct nn_backend_ops *be = net->be, *got = NULL;
    if (!be || be == nn_backend_cpu())
        return NN_OK;
    char dev[NN_DEV_NAME_MAX];
    snprintf(dev, sizeof dev, "%s:%d", be->name, be->device);
    return nn_backend_get(dev, &got);
}

int nn_net_sgd_step(nn_net_t *net, float lr, float momentum, float weight_decay)
{
    const struct nn_backend_ops *be = net->be;
    if (!net->mom && !(net->mom = be->alloc(net->n_params * sizeof(float) + sizeof(float))))
        return NN_ERR_NOMEM;
    be->sgd(net->params, net->mom, net->grads, net->n_params, lr, momentum, weight_decay);
    return be->sync();
}

int nn_net_sync(nn_net_t *net, unsigned what)
{
    const struct nn_backend_ops *be = net->be;
    if (be == nn_backend_cpu())
        return NN_OK;
    size_t pb = net->n_params * sizeof(float), bb = net->n_buffers * sizeof(float);
    int rc = NN_OK;
    if (!rc && (what & NN_SYNC_PARAMS_TO_DEVICE))
        rc = be->upload(net->params, net->host_params, pb);
    if (!rc && (what & NN_SYNC_BUFFERS_TO_DEVICE))
        rc = be->upload(net->buffers, net->host_buffers, bb);
    if (!rc && (what & NN_SYNC_GRADS_TO_DEVICE))
        rc = be->upload(net->grads, net->host_grads, pb);
    if (!rc && (what & NN_SYNC_GRADS_TO_HOST))
        rc = be->download(net->host_grads, net->grads, pb);
    if (!rc && (what & NN_SYNC_BUFFERS_TO_HOST))
        rc = be->download(net->host_buffers, net->buffers, bb);
    if (!rc && (what & NN_SYNC_PARAMS_TO_HOST))
        rc = be->download(net->host_params, net->params, pb);
    return rc;
}

void nn_net_dev_init(nn_net_t *net, uint64_t seed)
{
    /* The layers' init writes through l->w and l->buf: point them at the host mirrors, run the
     * CPU init, restore the device views and upload. */
    float *dp = net->params, *dg = net->grads, *db = net->buffers;
    net->params = net->host_params;
    net->grads = net->host_grads;
    net->buffers = net->host_buffers;
    s_bind(net);
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        if (l->cpu_ops && l->cpu_ops->init)
            l->cpu_ops->init(l, &rng);
    }
    net->params = dp;
    net->grads = dg;
    net->buffers = db;
    s_bind(net);
    if (net->ract) {
        /* s_bind cleared the R-companions: rebind them as nn_net.c's reservation laid them out */
        size_t mb = (size_t)net->max_batch;
        float *p = net->ract;
        for (int i = 0; i < net->n_nodes; i++) {
            size_t len = mb * nn_shape_numel(&net->nodes[i]->shape);
            net->nodes[i]->ry = p;
            net->nodes[i]->rdy = p + len;
            p += 2 * len;
        }
    }
    nn_net_sync(net, NN_SYNC_PARAMS_TO_DEVICE | NN_SYNC_BUFFERS_TO_DEVICE);
}
