/*
 * test_config_imagenet: configs/imagenet-resnet18-absa.yaml (the paper's I3 schedule) parses
 * through the option table and says what it claims: resnet18 on 1000 classes, ABSA from batch 256
 * for 90 epochs with the lr times 0.1 at 30, 60 and 80, checkpoints every 30 minutes within
 * epochs, and loader options with ImageNet's transforms (RandomResizedCrop and flip to 224 x 224,
 * evaluation at shorter side 256, ImageNet's mean and std).
 */
#include "eb_test.h"

#include <stdio.h>
#include <string.h>

#include "app_model.h"
#include "app_opts.h"
#include "rt_config.h"
#include "rt_loader.h"

#define S_FILE "configs/imagenet-resnet18-absa.yaml"
#define S_TOL 1e-6f /* the YAML's decimals against their float values */

static void test_imagenet_config(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", eb_test_source_dir(), S_FILE);
    char *argv[] = {"train", "--config", path, NULL};
    struct app_opts o;
    rt_config_t *cfg = NULL;
    if (app_opts_parse(3, argv, "", &o, &cfg))
        fail_msg("%s does not parse", S_FILE);
    assert_string_equal(o.model.name, "resnet18");
    assert_int_equal(o.model.classes, 1000);
    assert_string_equal(o.schedule.method, "ABSA");
    assert_true(app_opts_needs_eigensvc(&o));
    assert_int_equal(o.schedule.batch, 256);
    assert_int_equal(o.schedule.epochs, 90);
    assert_true(o.schedule.rho > 0.1 - S_TOL && o.schedule.rho < 0.1 + S_TOL);
    int32_t dec[8], nd;
    assert_int_equal(app_opts_decay_epochs(&o, dec, 8, &nd), 0);
    assert_int_equal(nd, 3);
    assert_int_equal(dec[0], 30);
    assert_int_equal(dec[1], 60);
    assert_int_equal(dec[2], 80);
    assert_true(o.checkpoint.every_minutes > 30 - S_TOL && o.checkpoint.every_minutes < 30 + S_TOL);
    assert_non_null(o.data.train);
    assert_non_null(o.data.test);
    /* the transforms, as the workers' loaders will get them */
    struct rt_loader_opts lo;
    assert_int_equal(app_model_loader_opts(&o, (size_t)o.train.micro_batch, &lo), 0);
    assert_int_equal(lo.out_height, 224);
    assert_int_equal(lo.out_width, 224);
    assert_true(lo.rrc);
    assert_true(lo.flip);
    assert_int_equal(lo.eval_resize, 256);
    assert_int_equal(lo.channels, 3);
    assert_true(lo.normalize);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        assert_true(lo.mean[c] > mean[c] - S_TOL && lo.mean[c] < mean[c] + S_TOL);
        assert_true(lo.std[c] > std[c] - S_TOL && lo.std[c] < std[c] + S_TOL);
    }
    rt_config_destroy(&cfg);
    /* and `train --help` reads it too */
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "'%s' train --config '%s' --help >/dev/null", eb_test_binary(), path);
    assert_int_equal(eb_test_run(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_imagenet_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
