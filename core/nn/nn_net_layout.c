/*
 * nn_net_layout: how a net's activation buffers are laid out and prepared for a pass: which are
 * channel-blocked (nn_layer.h), decided once at build and applied per pass, and which gradient
 * buffers a backward pass zeroes and which it leaves to their first writer.
 *
 * A node may be blocked when its channels fill whole blocks, it has a spatial extent, it is neither
 * the input nor the logits, its producer writes the blocked layout and every consumer reads it.
 * A layer that keeps one layout across its inputs and output (ReLU, add, BatchNorm) ties those
 * nodes together: if one of them cannot be blocked, none is. The constraints only ever clear
 * marks, so repeating the sweep until nothing changes reaches the largest consistent set.
 *
 * The blocked layout pays off because oneDNN's convolutions read and write it directly; they run
 * only in passes of max_batch samples on the CPU (nn_conv.c), so other passes and device nets use
 * CNHW throughout. EB_NN_CNHW set in the environment at build keeps every node CNHW (to compare
 * the two layouts).
 */
#include <stdlib.h>

#include "nn_net_impl.h"

/* Clears the marks of a SAME layer's nodes when any of them is unmarked; returns 1 on a change. */
static int s_tie(struct nn_layer *l)
{
    int all = l->out->blk_ok;
    for (int j = 0; j < l->n_in; j++)
        all &= l->in[j]->blk_ok;
    if (all)
        return 0;
    int changed = l->out->blk_ok;
    l->out->blk_ok = 0;
    for (int j = 0; j < l->n_in; j++) {
        changed |= l->in[j]->blk_ok;
        l->in[j]->blk_ok = 0;
    }
    return changed;
}

/* ReLUs and adds in place (in their first input's buffers) where that input has no other
 * consumer and its producer never reads its own output again (BatchNorm, conv and add read their
 * inputs only); a BatchNorm producer applies the ReLU itself on blocked nodes, which saves the
 * ReLU's passes over memory. */
static void s_plan_in_place(nn_net_t *net)
{
    int *uses = calloc((size_t)net->n_nodes, sizeof *uses);
    for (int i = 0; i < net->n_nodes; i++)
        net->nodes[i]->share = -1, net->nodes[i]->relu = 0;
    if (!uses || getenv("EB_NN_NO_IN_PLACE")) {
        free(uses);
        return;
    }
    for (int i = 0; i < net->n_layers; i++)
        for (int j = 0; j < net->layers[i]->n_in; j++)
            for (int k = 0; k < net->n_nodes; k++)
                uses[k] += net->nodes[k] == net->layers[i]->in[j];
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        int in = 0;
        while (in < net->n_nodes && net->nodes[in] != l->in[0])
            in++;
        const int p = in < net->n_nodes ? net->producer[in] : -1;
        if (!l->in_place || p < 0 || uses[in] != 1 || net->layers[p]->reads_out)
            continue;
        l->out->share = in; /* a chain (add, then ReLU) resolves in node order */
        net->nodes[in]->relu = l->in_place == NN_IN_PLACE_RELU && net->layers[p]->fuses_relu;
    }
    free(uses);
}

void nn_net_layout_plan(nn_net_t *net)
{
    const int last = net->n_nodes - 1;
    const int off = getenv("EB_NN_CNHW") != NULL;
    for (int i = 0; i < net->n_nodes; i++) {
        struct nn_node *node = net->nodes[i];
        const struct nn_shape *s = &node->shape;
        const int p = net->producer[i];
        node->blk = 0;
        node->blk_ok = !off && i > 0 && i < last && s->c % NN_BLK == 0 && s->h * s->w > 1 &&
                       p >= 0 && (net->layers[p]->layout & NN_LAYOUT_OUT_BLK);
    }
    for (int i = 0; i < net->n_layers; i++) {
        struct nn_layer *l = net->layers[i];
        if (!(l->layout & NN_LAYOUT_IN_BLK))
            for (int j = 0; j < l->n_in; j++)
                l->in[j]->blk_ok = 0;
    }
    for (int i = 0; i < net->n_nodes; i++)
        net->nodes[i]->set_ok = 0;
    for (int i = 0; i < net->n_layers; i++)
        for (int j = 0; j < net->layers[i]->n_in; j++)
            net->layers[i]->in[j]->set_ok = 1; /* has a consumer */
    for (int i = 0; i < net->n_layers; i++)
        if (!net->layers[i]->dx_set)
            for (int j = 0; j < net->layers[i]->n_in; j++)
                net->layers[i]->in[j]->set_ok = 0;
    int changed = 1;
    while (changed) {
        changed = 0;
        for (int i = 0; i < net->n_layers; i++)
            if (net->layers[i]->layout & NN_LAYOUT_SAME)
                changed |= s_tie(net->layers[i]);
    }
    s_plan_in_place(net);
}

/* Alignment of a forward-only net's buffers in its arena (floats: 256 bytes). */
#define NN_ARENA_ALIGN 64

/* Index of node `node` in the net (the input: 0). */
static int s_node_index(const nn_net_t *net, const struct nn_node *node)
{
    for (int k = 0; k < net->n_nodes; k++)
        if (net->nodes[k] == node)
            return k;
    return -1;
}

/* The node whose buffer node k uses: itself, or on the CPU the end of its in-place chain. */
static int s_root(const nn_net_t *net, int k, int cpu)
{
    while (cpu && net->nodes[k]->share >= 0)
        k = net->nodes[k]->share;
    return k;
}

size_t nn_net_fwd_plan(const nn_net_t *net, int cpu)
{
    const int n = net->n_nodes;
    for (int k = 0; k < n; k++) {
        net->nodes[k]->live_from = net->producer[k];
        net->nodes[k]->live_to = net->producer[k];
    }
    net->nodes[n - 1]->live_to = net->n_layers; /* the logits are read after the pass */
    /* a root lives while any node of its chain is written or read */
    for (int k = 0; k < n; k++) {
        struct nn_node *r = net->nodes[s_root(net, k, cpu)];
        if (net->nodes[k]->live_to > r->live_to)
            r->live_to = net->nodes[k]->live_to;
        if (net->producer[k] > r->live_to)
            r->live_to = net->producer[k];
    }
    for (int i = 0; i < net->n_layers; i++)
        for (int j = 0; j < net->layers[i]->n_in; j++) {
            const int k = s_node_index(net, net->layers[i]->in[j]);
            struct nn_node *r = net->nodes[s_root(net, k < 0 ? 0 : k, cpu)];
            if (i > r->live_to)
                r->live_to = i;
        }
    /* first fit, in node order, against the roots placed before whose lives overlap */
    size_t total = 0;
    for (int k = 0; k < n; k++) {
        struct nn_node *a = net->nodes[k];
        if (s_root(net, k, cpu) != k)
            continue;
        const size_t len = (size_t)net->max_batch * nn_shape_numel(&a->shape);
        const size_t size = (len + NN_ARENA_ALIGN - 1) / NN_ARENA_ALIGN * NN_ARENA_ALIGN;
        size_t off = 0;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int q = 0; q < k; q++) {
                const struct nn_node *b = net->nodes[q];
                if (s_root(net, q, cpu) != q || b->live_to < a->live_from ||
                    a->live_to < b->live_from)
                    continue;
                const size_t blen = (size_t)net->max_batch * nn_shape_numel(&b->shape);
                const size_t bend =
                    b->arena_off + (blen + NN_ARENA_ALIGN - 1) / NN_ARENA_ALIGN * NN_ARENA_ALIGN;
                if (off < bend && b->arena_off < off + size) {
                    off = bend;
                    moved = 1;
                }
            }
        }
        a->arena_off = off;
        if (off + size > total)
            total = off + size;
    }
    for (int k = 0; k < n; k++)
        net->nodes[k]->arena_off = net->nodes[s_root(net, k, cpu)]->arena_off;
    return total;
}

size_t nn_net_node_floats(const nn_net_t *net)
{
    const int cpu = net->be == NULL || net->be == nn_backend_cpu();
    if (net->fwd_only)
        return nn_net_fwd_plan(net, cpu);
    size_t total = 0;
    for (int i = 0; i < net->n_nodes; i++)
        if (!cpu || net->nodes[i]->share < 0)
            total += 2 * (size_t)net->max_batch * nn_shape_numel(&net->nodes[i]->shape);
    return total;
}

void nn_net_bind_nodes(nn_net_t *net, float *base, int r)
{
    const int cpu = net->be == NULL || net->be == nn_backend_cpu();
    if (net->fwd_only) {
        nn_net_fwd_plan(net, cpu);
        for (int i = 0; i < net->n_nodes; i++) {
            struct nn_node *node = net->nodes[i];
            if (!r)
                node->y = base + node->arena_off;
            node->dy = node->ry = node->rdy = NULL;
        }
        return;
    }
    for (int i = 0; i < net->n_nodes; i++) {
        struct nn_node *node = net->nodes[i];
        if (cpu && node->share >= 0) {
            const struct nn_node *to = net->nodes[node->share];
            if (r)
                node->ry = to->ry, node->rdy = to->rdy;
            else
                node->y = to->y, node->dy = to->dy;
            continue;
        }
        const size_t len = (size_t)net->max_batch * nn_shape_numel(&node->shape);
        if (r)
            node->ry = base, node->rdy = base + len;
        else
            node->y = base, node->dy = base + len;
        base += 2 * len;
    }
}

void nn_net_layout_pass(nn_net_t *net, int n)
{
    const int on = n == net->max_batch && net->be == nn_backend_cpu();
    for (int i = 0; i < net->n_nodes; i++)
        net->nodes[i]->blk = on && net->nodes[i]->blk_ok;
}

void nn_net_clear_grads(nn_net_t *net, int n, int dy, int rdy)
{
    const int cpu = net->be == nn_backend_cpu();
    for (int i = 0; i < net->n_nodes - 1; i++) {
        struct nn_node *node = net->nodes[i];
        if (!node->need_dy)
            continue;
        const size_t len = (size_t)n * nn_shape_numel(&node->shape);
        const int fresh = cpu && node->set_ok;
        if (dy) {
            node->dy_fresh = fresh;
            if (!fresh)
                net->be->zero(node->dy, len);
        }
        if (rdy) {
            node->rdy_fresh = fresh;
            if (!fresh)
                net->be->zero(node->rdy, len);
        }
    }
}
