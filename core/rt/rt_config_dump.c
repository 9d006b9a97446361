/*
 * rt_config_dump: the resolved configuration written as YAML with libyaml's emitter: entries
 * regrouped into nested block mappings in first-set order, lists as flow sequences, quoted scalars
 * kept quoted. The file is written to a temporary name and renamed into place.
 */
#include "rt_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "rt_config_int.h"
#include "rt_err.h"

/* Emit one scalar, double-quoted when it was quoted in its source. */
static int s_emit_scalar(yaml_emitter_t *em, const char *text, int quoted)
{
    yaml_event_t ev;
    yaml_scalar_style_t style = quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1,
                                      style))
        return -1;
    return yaml_emitter_emit(em, &ev) ? 0 : -1;
}

/* Emit the entries under prefix (ending in '.', or "") as one mapping, in first-set order. */
static int s_emit_mapping(yaml_emitter_t *em, const rt_config_t *cfg, const char *prefix)
{
    yaml_event_t ev;
    size_t plen = strlen(prefix);
    if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
        !yaml_emitter_emit(em, &ev))
        return -1;
    for (int i = 0; i < cfg->n; i++) {
        const struct cfg_entry *e = &cfg->e[i];
        if (strncmp(e->key, prefix, plen))
            continue;
        const char *seg = e->key + plen;
        size_t slen = strcspn(seg, ".");
        /* Emit each segment once: skip it when an earlier entry had the same one. */
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = !strncmp(cfg->e[j].key, e->key, plen + slen) &&
                   (cfg->e[j].key[plen + slen] == '.' || !cfg->e[j].key[plen + slen]);
        if (seen)
            continue;
        char name[CFG_MAX_KEY];
        snprintf(name, sizeof name, "%.*s", (int)slen, seg);
        if (s_emit_scalar(em, name, 0))
            return -1;
        if (seg[slen] == '.') {
            char sub[CFG_MAX_KEY];
            snprintf(sub, sizeof sub, "%.*s.", (int)(plen + slen), e->key);
            if (s_emit_mapping(em, cfg, sub))
                return -1;
        } else if (e->is_null) {
            if (s_emit_scalar(em, "null", 0))
                return -1;
        } else if (e->is_list) {
            if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                      YAML_FLOW_SEQUENCE_STYLE) ||
                !yaml_emitter_emit(em, &ev))
                return -1;
            for (int k = 0; k < e->n_items; k++)
                if (s_emit_scalar(em, e->items[k], 0))
                    return -1;
            if (!yaml_sequence_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
                return -1;
        } else if (s_emit_scalar(em, e->value, e->quoted)) {
            return -1;
        }
    }
    if (!yaml_mapping_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
        return -1;
    return 0;
}

/* Output handler collecting the emitter's bytes into a growing buffer. */
struct cfg_buf {
    char *data; /* bytes so far, NUL-terminated */
    size_t len; /* number of bytes */
    size_t cap; /* allocated */
    int oom;    /* an allocation failed */
};

static int s_buf_write(void *data, unsigned char *buffer, size_t size)
{
    struct cfg_buf *b = data;
    if (b->len + size + 1 > b->cap) {
        size_t cap = (b->len + size + 1) * 2;
        char *nd = realloc(b->data, cap);
        if (!nd) {
            b->oom = 1;
            return 0;
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, buffer, size);
    b->len += size;
    b->data[b->len] = '\0';
    return 1;
}

char *rt_config_dump_string(const rt_config_t *cfg)
{
    yaml_emitter_t em;
    yaml_event_t ev;
    struct cfg_buf buf = {0};
    if (!yaml_emitter_initialize(&em))
        return NULL;
    yaml_emitter_set_output(&em, s_buf_write, &buf);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, 100);
    int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
             yaml_emitter_emit(&em, &ev) &&
             yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
             yaml_emitter_emit(&em, &ev) && !s_emit_mapping(&em, cfg, "") &&
             yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
             yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev) &&
             yaml_emitter_flush(&em);
    yaml_emitter_delete(&em);
    if (!ok || buf.oom) {
        free(buf.data);
        return NULL;
    }
    return buf.data;
}

int rt_config_dump(const rt_config_t *cfg, const char *path)
{
    char *text = rt_config_dump_string(cfg);
    if (!text)
        return rt_err_set(RT_ERR_NOMEM, "%s: cannot serialise the configuration", path);
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    int rc = 0;
    if (!tmp) {
        free(text);
        return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", path);
    }
    /* one temporary name per process: roles sharing an output directory may write at once */
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = rt_err_set(RT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out_free;
    }
    size_t len = strlen(text);
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        rc = rt_err_set(RT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
    }
out_free:
    free(tmp);
    free(text);
    return rc;
}
