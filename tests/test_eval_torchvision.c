/*
 * test_eval_torchvision: `eigenbatch eval` on weights trained by PyTorch scores as torchvision
 * scores them. tests/tools/tv_eval.py trains torchvision's resnet18 (4 classes) for a few steps
 * and scores it in eval mode on a folder of JPEGs of mixed sizes (one greyscale, one CMYK) through
 * torchvision's evaluation pipeline (PIL, Resize 40, CenterCrop 32, ToTensor, Normalize); the
 * folder is converted with `eigenbatch convert imagefolder` and evaluated by `eigenbatch eval`
 * with the same transform as data.* keys. The accuracy must be the same, and the mean loss within
 * 1e-3 relative (the resamplers agree within one level of 255 per pixel, the arithmetic is
 * float32 on both sides). The converted folder then trains one epoch of resnet18. Skips (77) when
 * /usr/bin/python3 cannot import torch, torchvision, numpy and PIL.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LOSS_TOL 1e-3 /* relative: see the banner */

/* The last line of the file at path, parsed as a JSON object (caller owns it). */
static json_t *s_last_json(const char *path)
{
    char *text = (char *)eb_test_read(path, NULL);
    char *line = text, *p;
    while ((p = strchr(line, '\n')) && p[1])
        line = p + 1;
    json_error_t err;
    json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &err);
    if (!j)
        fail_msg("%s: last line is not JSON (%s): %s", path, err.text, line);
    free(text);
    return j;
}

static void test_eval_matches_torchvision(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/tools/tv_eval.py' '%s'",
             eb_test_source_dir(), dir);
    assert_int_equal(eb_test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s' convert imagefolder --in '%s/images' --out '%s/db' 2>&1",
             eb_test_binary(), dir, dir);
    assert_int_equal(eb_test_run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "'%s' eval --model resnet18 --classes 4 --weights '%s/weights.safetensors' "
             "--data '%s/db' --set data.size=32 --set data.eval_resize=40 "
             "--set 'data.mean=[0.485,0.456,0.406]' --set 'data.std=[0.229,0.224,0.225]' "
             "--set data.channels=3 >'%s/eval.out'",
             eb_test_binary(), dir, dir, dir);
    assert_int_equal(eb_test_run(cmd), 0);

    char path[4096];
    snprintf(path, sizeof path, "%s/torch.json", dir);
    json_t *want = s_last_json(path);
    snprintf(path, sizeof path, "%s/eval.out", dir);
    json_t *got = s_last_json(path);
    long n = (long)json_integer_value(json_object_get(want, "n"));
    double acc_want = json_number_value(json_object_get(want, "accuracy"));
    double acc_got = json_number_value(json_object_get(got, "accuracy"));
    double loss_want = json_number_value(json_object_get(want, "loss"));
    double loss_got = json_number_value(json_object_get(got, "loss"));
    print_message("torchvision: accuracy %.4f loss %.6f; eigenbatch: accuracy %.4f loss %.6f "
                  "(%ld images)\n",
                  acc_want, loss_want, acc_got, loss_got, n);
    assert_int_equal(json_integer_value(json_object_get(got, "n")), n);
    /* Compare counts of correct images, not floats. */
    assert_int_equal(lround(acc_got * n), lround(acc_want * n));
    assert_true(eb_test_reldiff(loss_got, loss_want, 1e-6) <= S_LOSS_TOL);
    json_decref(want);
    json_decref(got);

    /* The same folder (mixed sizes, one greyscale and one CMYK JPEG) also trains: one epoch,
     * random-resized crops, the epoch event written. */
    snprintf(cmd, sizeof cmd,
             "'%s' train --model resnet18 --classes 4 --data '%s/db' --epochs 1 --batch 16 "
             "--set data.size=32 --set data.train_crop=random_resized --set data.flip=true "
             "--set data.channels=3 --set cluster.balance=static --output-dir '%s/run' "
             ">'%s/train.out' 2>&1",
             eb_test_binary(), dir, dir, dir);
    assert_int_equal(eb_test_run(cmd), 0);
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
    json_t *epochs = eb_test_events(path, "epoch");
    assert_int_equal(json_array_size(epochs), 1);
    assert_true(isfinite(json_number_value(json_object_get(json_array_get(epochs, 0), "loss"))));
    json_decref(epochs);
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    if (system("/usr/bin/python3 -c 'import torch, torchvision, numpy, PIL' >/dev/null 2>&1")) {
        fprintf(stderr, "test_eval_torchvision: /usr/bin/python3 cannot import torch, "
                        "torchvision, numpy and PIL: skipped\n");
        return EB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_matches_torchvision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
