/*
 * app_weights: maps the named tensors of an nn net onto rt_safetensors descriptors.
 */
#include "app_weights.h"

#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_safetensors.h"

/* Suffix of PyTorch's BatchNorm step counter, which the nets do not keep. */
#define EB_BN_COUNTER ".num_batches_tracked"

/* Where tensor t lives in the net's flat vectors. */
static float *s_tensor_data(nn_net_t *net, const struct nn_tensor_info *t)
{
    return (t->kind == NN_TENSOR_PARAM ? nn_net_params(net) : nn_net_buffers(net)) + t->offset;
}

static int s_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int app_weights_save_meta(nn_net_t *net, const char *path, const char *const *meta)
{
    int n = nn_net_tensor_count(net);
    int nmeta = 0;
    while (meta && meta[nmeta])
        nmeta++;
    struct rt_st_tensor *desc = calloc((size_t)n + 1, sizeof *desc);
    const char **kv = calloc((size_t)nmeta + 3, sizeof *kv);
    int rc = 0;
    if (!desc || !kv) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: out of memory", path);
        goto out_free;
    }
    kv[0] = "format";
    kv[1] = "pt";
    for (int i = 0; i < nmeta; i++)
        kv[2 + i] = meta[i];
    for (int i = 0; i < n; i++) {
        const struct nn_tensor_info *t = nn_net_tensor(net, i);
        desc[i].name = t->name;
        desc[i].dtype = RT_ST_F32;
        desc[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++)
            desc[i].shape[d] = t->shape[d];
        desc[i].data = s_tensor_data(net, t);
    }
    rc = rt_st_write(path, desc, n, kv);
out_free:
    free(kv);
    free(desc);
    return rc;
}

int app_weights_save(nn_net_t *net, const char *path)
{
    return app_weights_save_meta(net, path, NULL);
}

int app_weights_load(nn_net_t *net, const char *path)
{
    rt_st_t *st = NULL;
    int rc = rt_st_open(path, &st);
    if (rc)
        return rc;
    for (int i = 0; i < rt_st_count(st); i++) {
        const char *name = rt_st_at(st, i)->name;
        if (!nn_net_tensor_find(net, name) && !s_ends_with(name, EB_BN_COUNTER)) {
            rc = rt_err_set(RT_ERR_FORMAT, "%s: unexpected tensor '%s' (not in the model)", path,
                            name);
            goto out_close;
        }
    }
    for (int i = 0; i < nn_net_tensor_count(net); i++) {
        const struct nn_tensor_info *t = nn_net_tensor(net, i);
        rc = rt_st_read_f32(st, t->name, t->ndim, t->shape, s_tensor_data(net, t));
        if (rc)
            goto out_close;
    }
out_close:
    rt_st_close(&st);
    return rc;
}
