/*
 * cmd_eval: `eigenbatch eval --model M --weights FILE --data DIR [--classes N] [--batch N]`: test
 * accuracy and loss of a weights file; the last line printed is a JSON object.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app_model.h"
#include "app_weights.h"
#include "eb_cli.h"
#include "rt_err.h"

#define S_EVAL_BATCH 256 /* default evaluation micro-batch */

static const char s_eval_usage[] =
    "usage: eigenbatch eval --model M --weights FILE --data DIR [--classes N] [--batch N]\n"
    "                       [--threads N]\n"
    "Evaluates a weights file (safetensors, PyTorch names) on every record of an LMDB dataset;\n"
    "the last line printed is {\"accuracy\": A, \"loss\": L, \"n\": N}.\n";

int eb_cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *weights = NULL, *data = NULL;
    long classes = 10, batch = S_EVAL_BATCH, threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(s_eval_usage, stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "eigenbatch eval: unknown option or missing value '%s'\n%s", a,
                    s_eval_usage);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--weights"))
            weights = v;
        else if (!strcmp(a, "--data"))
            data = v;
        else if (!strcmp(a, "--classes")) {
            if (rt_opt_long("eval", a, v, &classes))
                return 2;
        } else if (!strcmp(a, "--batch")) {
            if (rt_opt_long("eval", a, v, &batch))
                return 2;
        } else if (!strcmp(a, "--threads")) {
            if (rt_opt_long("eval", a, v, &threads))
                return 2;
        } else {
            fprintf(stderr, "eigenbatch eval: unknown option '%s'\n%s", a, s_eval_usage);
            return 2;
        }
    }
    if (!model || !weights || !data || classes < 2 || batch < 1 || batch > INT_MAX || threads < 1) {
        fprintf(stderr, "eigenbatch eval: --model, --weights and --data are required; "
                        "--classes >= 2, --batch and --threads >= 1\n");
        return 2;
    }
    rt_loader_t *ld = NULL;
    nn_net_t *net = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    int rc = app_model_open_plain(data, 0, (size_t)batch, &ld), c, h, w;
    if (rc)
        goto out;
    rt_loader_shape(ld, &c, &h, &w);
    nn_set_threads((int)threads);
    if ((rc = app_model_net(model, ld, (int)classes, (int)batch, &net)))
        goto out;
    if ((rc = app_weights_load(net, weights)))
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
    return rc ? 1 : 0;
}
