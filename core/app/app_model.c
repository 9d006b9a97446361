/*
 * app_model: datasets, zoo nets and evaluation shared by the roles and the tools (app_model.h).
 */
#include "app_model.h"

#include <stdlib.h>
#include <string.h>

#include "nn_backend.h"
#include "nn_base.h"
#include "rt_err.h"

int app_model_net(const char *model, const rt_loader_t *ld, int classes, int max_batch,
                  unsigned flags, nn_net_t **out)
{
    int c, h, w, rc = 0;
    rt_loader_shape(ld, &c, &h, &w);
    *out = nn_zoo_new_flags(model, c, h, w, classes, max_batch, flags, &rc);
    /* the nn library's code (rc) says why; for the caller it is the configuration's fault */
    if (!*out)
        return rt_err_set(RT_ERR_CONFIG, "model '%s' for %dx%dx%d inputs with %d classes: %s",
                          model, c, h, w, classes, nn_strerror(rc));
    return RT_OK;
}

int app_model_open_plain(const char *path, uint64_t seed, size_t max_batch, rt_loader_t **out)
{
    struct rt_loader_opts lo;
    rt_loader_opts_default(&lo);
    lo.seed = seed;
    lo.threads = 0;
    lo.max_batch = max_batch;
    return rt_loader_new(path, &lo, out);
}

/* Parse the comma-separated numbers of list option `key` (text, or NULL: *n = 0) into v. */
static int s_floats(const char *key, const char *text, float *v, int max, int *n)
{
    *n = 0;
    for (const char *p = text; p && *p;) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || *n == max)
            return rt_err_set(RT_ERR_CONFIG, "%s: expected at most %d numbers, got '%s'", key, max,
                              text);
        v[(*n)++] = (float)x;
        p = *end == ',' ? end + 1 : end;
    }
    return RT_OK;
}

/* data.mean and data.std: one value for every channel, or per channel (3 for colour). */
static int s_normalisation(const struct app_data_opts *d, struct rt_loader_opts *lo)
{
    int nm, ns, rc;
    if ((rc = s_floats("data.mean", d->mean, lo->mean, 4, &nm)) ||
        (rc = s_floats("data.std", d->std, lo->std, 4, &ns)))
        return rc;
    if (!nm && !ns)
        return RT_OK;
    if (!nm || !ns || (nm != 1 && nm != 3) || (ns != 1 && ns != 3))
        return rt_err_set(RT_ERR_CONFIG,
                          "data.mean and data.std: give both, one value or one per channel (3)");
    for (int c = nm; c < 4; c++)
        lo->mean[c] = lo->mean[0];
    for (int c = ns; c < 4; c++)
        lo->std[c] = lo->std[0];
    lo->normalize = true;
    return RT_OK;
}

int app_model_loader_opts(const struct app_opts *o, size_t max_batch, struct rt_loader_opts *lo)
{
    const struct app_data_opts *d = &o->data;
    rt_loader_opts_default(lo);
    lo->seed = (uint64_t)o->train.seed;
    lo->threads = (int)d->loader_threads;
    lo->queue_depth = (int)d->prefetch;
    lo->max_batch = max_batch;
    lo->crop_pad = (int)d->crop_pad;
    lo->flip = d->flip != 0;
    lo->rrc = d->train_crop && !strcmp(d->train_crop, "random_resized");
    lo->eval_resize = (int)d->eval_resize;
    lo->channels = (int)d->channels;
    lo->max_pixels = d->max_image_pixels;
    lo->max_bad = (size_t)d->skip_bad_records;
    float size[2], scale[2], ratio[2];
    int n, rc;
    if ((rc = s_floats("data.size", d->size, size, 2, &n)))
        return rc;
    if (n) {
        lo->out_height = (int)size[0];
        lo->out_width = (int)size[n - 1];
    }
    if ((rc = s_floats("data.train_scale", d->train_scale, scale, 2, &n)) || (n && n != 2))
        return rc ? rc : rt_err_set(RT_ERR_CONFIG, "data.train_scale: two numbers, [lo, hi]");
    if (n)
        memcpy(lo->rrc_scale, scale, sizeof scale);
    if ((rc = s_floats("data.train_ratio", d->train_ratio, ratio, 2, &n)) || (n && n != 2))
        return rc ? rc : rt_err_set(RT_ERR_CONFIG, "data.train_ratio: two numbers, [lo, hi]");
    if (n)
        memcpy(lo->rrc_ratio, ratio, sizeof ratio);
    if (lo->eval_resize &&
        lo->eval_resize < (lo->out_height > lo->out_width ? lo->out_height : lo->out_width))
        return rt_err_set(RT_ERR_CONFIG, "data.eval_resize %d is smaller than data.size %dx%d",
                          lo->eval_resize, lo->out_height, lo->out_width);
    return s_normalisation(d, lo);
}

int app_model_sizes(const struct app_opts *o, uint64_t *params, uint64_t *buffers,
                    uint64_t *samples)
{
    rt_loader_t *ld = NULL;
    nn_net_t *net = NULL;
    struct rt_loader_opts lo;
    int rc = app_model_loader_opts(o, 1, &lo);
    lo.threads = 0;
    if (!rc)
        rc = rt_loader_new(o->data.train, &lo, &ld);
    if (!rc)
        rc = app_model_net(o->model.name, ld, (int)o->model.classes, 1, 0, &net);
    if (!rc) {
        *params = nn_net_param_count(net);
        *buffers = nn_net_buffer_count(net);
        *samples = rt_loader_count(ld);
    }
    nn_net_destroy(&net);
    rt_loader_destroy(&ld);
    return rc;
}

/* Score one micro-batch of n samples (x, y), adding to *sum_loss and *correct; a label outside
 * the net's classes is an error naming the record (first: the batch's first record). */
static int s_eval_batch(nn_net_t *net, const float *x, const int32_t *y, size_t n, size_t first,
                        double *sum_loss, uint64_t *correct)
{
    int classes = nn_net_classes(net);
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= classes)
            return rt_err_set(RT_ERR_FORMAT, "test record %zu has label %d, outside [0, %d)",
                              first + i, (int)y[i], classes);
    int ok = 0;
    float l = nn_net_forward(net, x, y, (int)n, NN_BN_EVAL, NULL, &ok);
    *sum_loss += (double)l * (double)n;
    *correct += (uint64_t)ok;
    return RT_OK;
}

/* The same pass with the loader's threads decoding ahead: in-order requests of mb records, as
 * many in flight as its queue takes, scored in order (so the same sums as one by one). */
static int s_eval_prefetch(nn_net_t *net, rt_loader_t *test, size_t mb, double *sum_loss,
                           uint64_t *correct)
{
    size_t total = rt_loader_count(test), next = 0, done = 0;
    int inflight = 0, rc = RT_OK;
    while (!rc && done < total) {
        while (next < total) {
            size_t k = total - next < mb ? total - next : mb;
            struct rt_loader_req req = {0, next, k, false, true, NULL, NULL};
            int s = rt_loader_submit(test, &req);
            if (s == RT_ERR_STATE)
                break; /* the queue is full */
            if (s)
                return s;
            next += k;
            inflight++;
        }
        struct rt_loader_batch b;
        if ((rc = rt_loader_wait(test, &b)))
            break;
        inflight--;
        rc = s_eval_batch(net, b.x, b.y, b.count, b.start, sum_loss, correct);
        done += b.count;
        rt_loader_release(test, &b);
    }
    for (; inflight > 0; inflight--) { /* after an error: hand the queued requests back */
        struct rt_loader_batch b;
        if (rt_loader_wait(test, &b) == RT_OK)
            rt_loader_release(test, &b);
    }
    return rc;
}

int app_model_evaluate(nn_net_t *net, rt_loader_t *test, float *x, int32_t *y, double *accuracy,
                       double *loss, uint64_t *n)
{
    size_t total = rt_loader_count(test), mb = (size_t)nn_net_max_batch(net);
    if (nn_net_bind_thread(net) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "evaluation: %s", nn_backend_why());
    double sum_loss = 0;
    uint64_t correct = 0;
    int rc = RT_OK;
    if (rt_loader_can_prefetch(test, mb)) {
        rc = s_eval_prefetch(net, test, mb, &sum_loss, &correct);
    } else {
        for (size_t first = 0; !rc && first < total; first += mb) {
            size_t k = total - first < mb ? total - first : mb;
            if (!(rc = rt_loader_read(test, first, k, x, y)))
                rc = s_eval_batch(net, x, y, k, first, &sum_loss, &correct);
        }
    }
    if (rc)
        return rc;
    *n = total;
    *accuracy = total ? (double)correct / (double)total : 0.0;
    *loss = total ? sum_loss / (double)total : 0.0;
    return RT_OK;
}

int app_model_fill_sizes(struct app_opts *o)
{
    if (!strcmp(o->model.name, "synth")) {
        if (o->model.params == 0)
            o->model.params = APP_SYNTH_PARAMS;
        if (o->model.params < o->cluster.shards || o->model.buffers > o->model.params)
            return rt_err_set(RT_ERR_CONFIG, "model.params must be at least cluster.shards and "
                                             "model.buffers at most model.params");
        return RT_OK;
    }
    uint64_t np, nb, ns;
    int rc = app_model_sizes(o, &np, &nb, &ns);
    if (rc)
        return rc;
    if ((o->model.params && (uint64_t)o->model.params != np) ||
        (o->model.buffers && (uint64_t)o->model.buffers != nb))
        return rt_err_set(RT_ERR_SHAPE,
                          "model %s has %llu parameters and %llu buffers, model.params/buffers "
                          "say %ld/%ld",
                          o->model.name, (unsigned long long)np, (unsigned long long)nb,
                          o->model.params, o->model.buffers);
    o->model.params = (long)np;
    o->model.buffers = (long)nb;
    o->data.samples = (long)ns;
    return RT_OK;
}

int app_model_to_device(nn_net_t *net, const char *device, const char *label)
{
    if (!device || !strcmp(device, "cpu"))
        return RT_OK;
    if (nn_net_to_backend(net, device, label) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "%s: %s", device,
                          *nn_backend_why() ? nn_backend_why()
                                            : "the model does not fit the device");
    if (nn_net_sync(net, NN_SYNC_PARAMS_TO_DEVICE | NN_SYNC_BUFFERS_TO_DEVICE) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "%s: copying the weights to the device failed", device);
    return RT_OK;
}
