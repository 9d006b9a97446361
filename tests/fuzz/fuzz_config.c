/*
 * fuzz_config: libFuzzer harness of the YAML configuration loader (rt_config_load_string), then
 * everything a role does with a loaded configuration: list the keys, read each as every type, and
 * dump the whole configuration back to YAML, which must load again. A YAML error must be an
 * RT_ERR_CONFIG with a detail, never a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "rt_config.h"
#include "rt_err.h"

#define S_TEXT_MAX (1u << 16) /* largest YAML text tried */
#define S_LIST_MAX 16         /* list items read */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read key k as every type (the getters fail on a mismatch; they must not crash). */
static void s_read_all(const rt_config_t *cfg, const char *k)
{
    long l, ls[S_LIST_MAX];
    double d, ds[S_LIST_MAX];
    int b, n;
    const char *s, *ss[S_LIST_MAX];
    (void)rt_config_get_int(cfg, k, 0, &l);
    (void)rt_config_get_double(cfg, k, 0, &d);
    (void)rt_config_get_bool(cfg, k, 0, &b);
    (void)rt_config_get_str(cfg, k, "", &s);
    (void)rt_config_get_ints(cfg, k, ls, S_LIST_MAX, &n);
    (void)rt_config_get_doubles(cfg, k, ds, S_LIST_MAX, &n);
    (void)rt_config_get_strs(cfg, k, ss, S_LIST_MAX, &n);
    (void)rt_config_get_list_text(cfg, k, &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > S_TEXT_MAX)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    rt_config_t *cfg = rt_config_new();
    if (!cfg)
        abort();
    int rc = rt_config_load_string(cfg, text, "fuzz.yaml");
    if (rc == RT_OK) {
        for (int i = 0; i < rt_config_count(cfg); i++)
            s_read_all(cfg, rt_config_key_at(cfg, i));
        char *dump = rt_config_dump_string(cfg);
        if (dump) {
            rt_config_t *again = rt_config_new();
            if (!again || rt_config_load_string(again, dump, "dump.yaml")) {
                fprintf(stderr, "dumped configuration does not load: %s\n%s\n", rt_err_msg(), dump);
                abort();
            }
            rt_config_destroy(&again);
            free(dump);
        }
    } else if (rc != RT_ERR_CONFIG || !strstr(rt_err_msg(), "fuzz.yaml")) {
        fprintf(stderr, "load: code %d, detail '%s'\n", rc, rt_err_msg());
        abort(); /* bad YAML is a configuration error naming the source */
    }
    rt_config_destroy(&cfg);
    rt_config_destroy(&cfg);
    free(text);
    return 0;
}
