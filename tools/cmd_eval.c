/*
 * cmd_eval: `eigenbatch eval --model M --weights FILE --data DIR [--classes N] [--batch N]`: test
 * accuracy and loss of a weights file; the last line printed is a JSON object. Every other
 * option is the option table's (app_opts): `--config FILE`, `--set key=value` and the flags, so
 * that the data.* options of a training configuration (size, eval_resize, mean, std, channels)
 * give evaluation the transform the trainer's own test evaluation uses.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app_model.h"
#include "app_opts.h"
#include "app_weights.h"
#include "eb_cli.h"
#include "rt_err.h"

#define S_EVAL_BATCH 256 /* default evaluation micro-batch */

static const char s_eval_usage[] =
    "usage: eigenbatch eval --model M --weights FILE [--data DIR] [--classes N] [--batch N]\n"
    "                       [--threads N] [--config FILE] [--set key=value ...]\n"
    "Evaluates a weights file (safetensors, PyTorch names) on every record of an LMDB dataset\n"
    "(--data, else the configuration's data.test) with the evaluation transform of the data.*\n"
    "options (data.size, eval_resize, mean, std, channels); --batch is the micro-batch (default\n"
    "256), --weights the file (not cluster.weights). The last line printed is\n"
    "{\"accuracy\": A, \"loss\": L, \"n\": N}.\n";

/* eval's own flags, taken out of argv before the option table sees the rest. */
struct s_eval_args {
    const char *weights; /* --weights FILE */
    const char *data;    /* --data DIR (also given to the table as data.train) */
    long batch;          /* --batch N */
};

/* Split argv: eval's flags into *a, the rest into rest (*nrest; rest[0] = argv[0]), with
 * --data passed on too (a zoo model's configuration needs data.train). Returns 0 or 2. */
static int s_split(int argc, char **argv, struct s_eval_args *a, char **rest, int *nrest)
{
    a->weights = a->data = NULL;
    a->batch = S_EVAL_BATCH;
    int n = 0;
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool own = !strcmp(o, "--weights") || !strcmp(o, "--data") || !strcmp(o, "--batch");
        if (!own) {
            rest[n++] = argv[i];
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "eigenbatch eval: missing value for '%s'\n%s", o, s_eval_usage);
            return 2;
        }
        char *v = argv[++i];
        if (!strcmp(o, "--weights")) {
            a->weights = v;
        } else if (!strcmp(o, "--batch")) {
            if (rt_opt_long("eval", o, v, &a->batch))
                return 2;
        } else {
            a->data = v;
            rest[n++] = argv[i - 1];
            rest[n++] = v;
        }
    }
    rest[n] = NULL;
    *nrest = n;
    return 0;
}

int eb_cmd_eval(int argc, char **argv)
{
    struct s_eval_args a;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return 1;
    int nrest, rc = s_split(argc, argv, &a, rest, &nrest);
    struct app_opts o;
    rt_config_t *cfg = NULL;
    if (!rc)
        rc = app_opts_parse(nrest, rest, s_eval_usage, &o, &cfg);
    free(rest);
    if (rc)
        return rc == RT_OPT_HELP ? 0 : 2;
    const char *data = a.data ? a.data : o.data.test;
    long batch = a.batch, classes = o.model.classes;
    if (!a.weights || !data || batch < 1 || batch > INT_MAX) {
        fprintf(stderr, "eigenbatch eval: --weights and --data (or data.test) are required; "
                        "--batch >= 1\n");
        rt_config_destroy(&cfg);
        return 2;
    }
    const char *model = o.model.name, *weights = a.weights;
    rt_loader_t *ld = NULL;
    nn_net_t *net = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    struct rt_loader_opts lo;
    int c, h, w;
    if ((rc = app_model_loader_opts(&o, (size_t)batch, &lo)))
        goto out;
    /* data.loader_threads decode ahead; the batches are scored in key order all the same */
    if ((rc = rt_loader_new(data, &lo, &ld)))
        goto out;
    rt_loader_shape(ld, &c, &h, &w);
    nn_set_threads((int)o.train.threads);
    if ((rc = app_model_net(model, ld, (int)classes, (int)batch, NN_NET_FORWARD_ONLY, &net)))
        goto out;
    if ((rc = app_weights_load(net, weights)))
        goto out;
    /* worker.device (--device) evaluates on that device, the first of worker.devices likewise */
    char dev[APP_MAX_DEVICES][APP_DEVICE_NAME_MAX];
    int nd = 0;
    if ((rc = app_opts_worker_devices(&o, dev, APP_MAX_DEVICES, &nd)) ||
        (rc = app_model_to_device(net, dev[0], model)))
        goto out;
    x = malloc((size_t)batch * (size_t)(c * h * w) * sizeof(float));
    y = malloc((size_t)batch * sizeof(int32_t));
    if (!x || !y) {
        rc = rt_err_set(RT_ERR_NOMEM, "eval batch");
        goto out;
    }
    double acc, loss;
    uint64_t n;
    if ((rc = app_model_evaluate(net, ld, x, y, &acc, &loss, &n)))
        goto out;
    json_t *j = json_pack("{s:f, s:f, s:I}", "accuracy", acc, "loss", loss, "n", (json_int_t)n);
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!txt)
        rc = rt_err_set(RT_ERR_NOMEM, "eval result");
    else
        printf("%s\n", txt);
    free(txt);
    json_decref(j);
out:
    if (rc)
        fprintf(stderr, "eigenbatch eval: %s\n", rt_err_msg());
    free(x);
    free(y);
    nn_net_destroy(&net);
    rt_loader_destroy(&ld);
    rt_config_destroy(&cfg);
    return rc ? 1 : 0;
}
