/*
 * nn_layer: what the layer kinds share (see nn_layer.h): allocating a layer's struct with its
 * common header filled.
 */
#include "nn_layer.h"

#include <stdlib.h>
#include <string.h>

void *nn_layer_alloc(size_t size, const struct nn_layer_ops *ops, const char *name, int n_in)
{
    NN_ASSERT(size >= sizeof(struct nn_layer) && ops);
    NN_ASSERT(!name || strlen(name) < NN_NAME_MAX);
    struct nn_layer *l = calloc(1, size);
    if (!l)
        return NULL;
    l->ops = ops;
    if (name)
        strcpy(l->name, name);
    l->n_in = n_in;
    return l;
}
