/*
 * rt_ckpt: atomic files, manifests and the checkpoint directories of a run (see rt_ckpt.h).
 */
#include "rt_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt_err.h"
#include "rt_file.h"
#include "rt_log.h"

#define S_NAME "ckpt"
#define S_PREFIX "epoch-"          /* checkpoint directory names: epoch-NNNNNN */
#define S_STEP "-step-"            /* ... and epoch-NNNNNN-step-SSSSSSSSSSSS within an epoch */
#define S_IO_CHUNK (1u << 20)      /* bytes read at a time for a crc */
#define S_MANIFEST_MAX (16u << 20) /* largest manifest read */
#define S_MAX_DIRS 4096            /* checkpoint directories considered under one root */

int rt_ckpt_write_file(const char *path, const void *data, size_t len)
{
    char tmp[RT_CKPT_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return rt_err_set(RT_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rt_err_set(RT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (rt_file_write_all(fd, data, len) || fsync(fd)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return rt_err_set(RT_ERR_IO, "%s: write: %s", tmp, strerror(e));
    }
    if (close(fd)) {
        int e = errno;
        unlink(tmp);
        return rt_err_set(RT_ERR_IO, "%s: close: %s", tmp, strerror(e));
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return rt_err_set(RT_ERR_IO, "%s: rename into place: %s", path, strerror(e));
    }
    return rt_file_fsync_parent(path);
}

int rt_ckpt_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rt_err_set(errno == ENOENT ? RT_ERR_NOTFOUND : RT_ERR_IO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st)) {
        int e = errno;
        fclose(f);
        return rt_err_set(RT_ERR_IO, "%s: %s", path, strerror(e));
    }
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        return rt_err_set(RT_ERR_TOOBIG, "%s: %lld bytes, more than the %zu accepted", path,
                          (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return rt_err_set(RT_ERR_NOMEM, "%s: %zu bytes", path, n);
    }
    if (fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return rt_err_set(RT_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return RT_OK;
}

int rt_ckpt_file_crc(const char *path, uint64_t *size, uint32_t *crc)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rt_err_set(errno == ENOENT ? RT_ERR_NOTFOUND : RT_ERR_IO, "%s: %s", path,
                          strerror(errno));
    uint8_t *buf = malloc(S_IO_CHUNK);
    if (!buf) {
        close(fd);
        return rt_err_set(RT_ERR_NOMEM, "%s: read buffer", path);
    }
    uLong c = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    int rc = RT_OK;
    for (;;) {
        ssize_t r = read(fd, buf, S_IO_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = rt_err_set(RT_ERR_IO, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        c = crc32(c, buf, (uInt)r);
        total += (uint64_t)r;
    }
    free(buf);
    close(fd);
    if (rc)
        return rc;
    *size = total;
    *crc = (uint32_t)c;
    return RT_OK;
}

int rt_ckpt_mkdirs(const char *dir)
{
    char p[RT_CKPT_PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return rt_err_set(RT_ERR_ARG, "%s: path too long", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0777) && errno != EEXIST)
            return rt_err_set(RT_ERR_IO, "%s: %s", p, strerror(errno));
        *c = '/';
    }
    if (mkdir(p, 0777)) {
        if (errno != EEXIST)
            return rt_err_set(RT_ERR_IO, "%s: %s", p, strerror(errno));
        return RT_OK;
    }
    /* a new directory: its entry must be durable before files renamed into it count */
    return rt_file_fsync_parent(p);
}

int rt_ckpt_dir(char *buf, size_t cap, const char *root, uint64_t epoch)
{
    return rt_ckpt_dir_key(buf, cap, root, RT_CKPT_KEY(epoch, 0));
}

int rt_ckpt_dir_key(char *buf, size_t cap, const char *root, uint64_t key)
{
    uint64_t epoch = RT_CKPT_KEY_EPOCH(key), step = RT_CKPT_KEY_STEP(key);
    int n = step ? snprintf(buf, cap, "%s/" S_PREFIX "%06" PRIu64 S_STEP "%012" PRIu64, root, epoch,
                            step)
                 : snprintf(buf, cap, "%s/" S_PREFIX "%06" PRIu64, root, epoch);
    if (n >= (int)cap)
        return rt_err_set(RT_ERR_ARG, "%s: checkpoint path too long", root);
    return RT_OK;
}

/* The key of a checkpoint directory's name (epoch-NNNNNN or epoch-NNNNNN-step-SSSSSSSSSSSS), or
 * -1 for any other name (epoch-000003.tmp, ...). */
static int s_name_key(const char *name, uint64_t *key)
{
    size_t plen = strlen(S_PREFIX), slen = strlen(S_STEP);
    if (strncmp(name, S_PREFIX, plen))
        return -1;
    const char *digits = name + plen;
    char *end = NULL;
    if (*digits < '0' || *digits > '9')
        return -1;
    errno = 0;
    unsigned long long e = strtoull(digits, &end, 10), st = 0;
    if (errno || end == digits || e >= (1ull << (64 - RT_CKPT_KEY_STEP_BITS)))
        return -1;
    if (*end) {
        if (strncmp(end, S_STEP, slen))
            return -1;
        digits = end + slen;
        if (*digits < '0' || *digits > '9')
            return -1;
        errno = 0;
        st = strtoull(digits, &end, 10);
        if (errno || *end || st == 0 || st > RT_CKPT_KEY_STEP_MAX)
            return -1;
    }
    *key = RT_CKPT_KEY(e, st);
    return 0;
}

/* dir/name into buf; RT_ERR_ARG when too long. */
static int s_join(char *buf, size_t cap, const char *dir, const char *name)
{
    if (snprintf(buf, cap, "%s/%s", dir, name) >= (int)cap)
        return rt_err_set(RT_ERR_ARG, "%s/%s: path too long", dir, name);
    return RT_OK;
}

int rt_ckpt_manifest_write(const char *dir, const char *const *files, int n, json_t *meta)
{
    if (n < 0 || n > RT_CKPT_MAX_FILES)
        return rt_err_set(RT_ERR_ARG, "%s: %d files in one manifest", dir, n);
    json_t *root = json_object(), *list = json_array();
    int rc = RT_OK;
    char *txt = NULL;
    if (!root || !list) {
        json_decref(list);
        rc = rt_err_set(RT_ERR_NOMEM, "%s: manifest", dir);
        goto out;
    }
    json_object_set_new(root, "format", json_integer(RT_CKPT_FORMAT));
    if (meta)
        json_object_update(root, meta);
    json_object_set_new(root, "files", list);
    for (int i = 0; i < n; i++) {
        char path[RT_CKPT_PATH_MAX];
        uint64_t size;
        uint32_t crc;
        if ((rc = s_join(path, sizeof path, dir, files[i])) ||
            (rc = rt_ckpt_file_crc(path, &size, &crc)))
            goto out;
        json_t *e = json_pack("{s:s, s:I, s:I}", "name", files[i], "size", (json_int_t)size,
                              "crc32", (json_int_t)crc);
        if (!e || json_array_append_new(list, e)) {
            rc = rt_err_set(RT_ERR_NOMEM, "%s: manifest", dir);
            goto out;
        }
    }
    txt = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
    char path[RT_CKPT_PATH_MAX];
    if (!txt) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: manifest", dir);
        goto out;
    }
    if ((rc = s_join(path, sizeof path, dir, RT_CKPT_MANIFEST)))
        goto out;
    rc = rt_ckpt_write_file(path, txt, strlen(txt));
out:
    free(txt);
    json_decref(root);
    return rc;
}

int rt_ckpt_manifest_u64(const json_t *manifest, const char *dir, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(manifest, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return rt_err_set(RT_ERR_FORMAT, "%s/%s: field '%s' missing or not a count", dir,
                          RT_CKPT_MANIFEST, key);
    *out = (uint64_t)json_integer_value(v);
    return RT_OK;
}

/* Check one manifest entry against the file on disk. */
static int s_verify_entry(const char *dir, json_t *e, int i)
{
    const char *name = json_string_value(json_object_get(e, "name"));
    json_t *js = json_object_get(e, "size"), *jc = json_object_get(e, "crc32");
    if (!name || !*name || strchr(name, '/') || !json_is_integer(js) || !json_is_integer(jc))
        return rt_err_set(RT_ERR_FORMAT, "%s/%s: files[%d] needs a plain name, size and crc32", dir,
                          RT_CKPT_MANIFEST, i);
    char path[RT_CKPT_PATH_MAX];
    int rc = s_join(path, sizeof path, dir, name);
    if (rc)
        return rc;
    uint64_t size;
    uint32_t crc;
    rc = rt_ckpt_file_crc(path, &size, &crc);
    if (rc == RT_ERR_NOTFOUND)
        return rt_err_set(RT_ERR_NOTFOUND, "%s: listed in the manifest but missing", path);
    if (rc)
        return rc;
    if (size != (uint64_t)json_integer_value(js))
        return rt_err_set(RT_ERR_SIZE, "%s: %llu bytes, the manifest says %lld (truncated?)", path,
                          (unsigned long long)size, (long long)json_integer_value(js));
    if (crc != (uint32_t)json_integer_value(jc))
        return rt_err_set(RT_ERR_CHECKSUM, "%s: crc32 %08x, the manifest says %08x (corrupted)",
                          path, crc, (uint32_t)json_integer_value(jc));
    return RT_OK;
}

int rt_ckpt_verify(const char *dir, const char *only, json_t **manifest)
{
    if (manifest)
        *manifest = NULL;
    char path[RT_CKPT_PATH_MAX];
    int rc = s_join(path, sizeof path, dir, RT_CKPT_MANIFEST);
    if (rc)
        return rc;
    uint8_t *txt = NULL;
    size_t len = 0;
    rc = rt_ckpt_read_file(path, S_MANIFEST_MAX, &txt, &len);
    if (rc == RT_ERR_NOTFOUND)
        return rt_err_set(RT_ERR_NOTFOUND, "%s: no %s: incomplete checkpoint", dir,
                          RT_CKPT_MANIFEST);
    if (rc)
        return rc;
    json_error_t je;
    json_t *m = json_loadb((const char *)txt, len, 0, &je);
    free(txt);
    if (!m || !json_is_object(m)) {
        json_decref(m);
        return rt_err_set(RT_ERR_FORMAT, "%s: line %d: %s", path, je.line,
                          m ? "not a JSON object" : je.text);
    }
    json_t *fmt = json_object_get(m, "format"), *files = json_object_get(m, "files");
    if (!json_is_integer(fmt) || json_integer_value(fmt) != RT_CKPT_FORMAT) {
        rc = rt_err_set(RT_ERR_VERSION, "%s: field 'format' is not %d", path, RT_CKPT_FORMAT);
        goto out;
    }
    if (!json_is_array(files) || json_array_size(files) > RT_CKPT_MAX_FILES) {
        rc = rt_err_set(RT_ERR_FORMAT, "%s: field 'files' is not a list", path);
        goto out;
    }
    int found = 0;
    for (size_t i = 0; i < json_array_size(files); i++) {
        json_t *e = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        if (only && (!name || strcmp(name, only)))
            continue;
        found = 1;
        if ((rc = s_verify_entry(dir, e, (int)i)))
            goto out;
    }
    if (only && !found) {
        rc = rt_err_set(RT_ERR_NOTFOUND, "%s: does not list %s", path, only);
        goto out;
    }
out:
    if (!rc && manifest)
        *manifest = m;
    else
        json_decref(m);
    return rc;
}

static int s_cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int rt_ckpt_dir_parse(const char *dir, uint64_t *key)
{
    char name[RT_CKPT_PATH_MAX];
    if (snprintf(name, sizeof name, "%s", dir) >= (int)sizeof name)
        return rt_err_set(RT_ERR_FORMAT, "%s: path too long", dir);
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/')
        name[--n] = '\0'; /* trailing slashes */
    const char *base = strrchr(name, '/');
    if (s_name_key(base ? base + 1 : name, key))
        return rt_err_set(RT_ERR_FORMAT,
                          "%s: not a checkpoint directory name (epoch-NNNNNN or "
                          "epoch-NNNNNN-step-SSSSSSSSSSSS)",
                          dir);
    return RT_OK;
}

int rt_ckpt_list(const char *root, uint64_t *keys, int cap, int *n)
{
    *n = 0;
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT)
            return RT_OK;
        return rt_err_set(RT_ERR_IO, "%s: %s", root, strerror(errno));
    }
    struct dirent *de;
    uint64_t key;
    while ((de = readdir(d)) && *n < cap)
        if (!s_name_key(de->d_name, &key)) /* epoch-000003.tmp and others are not checkpoints */
            keys[(*n)++] = key;
    closedir(d);
    qsort(keys, (size_t)*n, sizeof *keys, s_cmp_desc);
    return RT_OK;
}

/* The checkpoint epochs under root, newest first, in a fresh array (*eps, caller frees). */
static int s_list_alloc(const char *root, uint64_t **eps, int *n)
{
    *n = 0;
    *eps = malloc(S_MAX_DIRS * sizeof **eps);
    if (!*eps)
        return rt_err_set(RT_ERR_NOMEM, "%s: directory list", root);
    int rc = rt_ckpt_list(root, *eps, S_MAX_DIRS, n);
    if (rc) {
        free(*eps);
        *eps = NULL;
    }
    return rc;
}

int rt_ckpt_latest(const char *root, char *path, size_t cap, uint64_t *epoch)
{
    uint64_t *eps;
    int n = 0;
    int rc = s_list_alloc(root, &eps, &n);
    if (rc)
        return rc;
    rc = RT_ERR_NOTFOUND;
    for (int i = 0; i < n; i++) {
        char dir[RT_CKPT_PATH_MAX];
        if (rt_ckpt_dir_key(dir, sizeof dir, root, eps[i]))
            continue;
        if (rt_ckpt_verify(dir, NULL, NULL) == RT_OK) {
            rc = snprintf(path, cap, "%s", dir) >= (int)cap
                     ? rt_err_set(RT_ERR_ARG, "%s: path too long", dir)
                     : RT_OK;
            if (epoch)
                *epoch = RT_CKPT_KEY_EPOCH(eps[i]);
            break;
        }
        RT_WARN(S_NAME, "skipping checkpoint %s: %s", dir, rt_err_msg());
    }
    free(eps);
    return rc;
}

/* Remove a checkpoint directory and the plain files in it (callers unlink the manifest first, so
 * that a crash half-way leaves an incomplete checkpoint, never a wrong complete one). */
static int s_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? RT_OK : rt_err_set(RT_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = RT_OK;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[RT_CKPT_PATH_MAX];
        if (s_join(p, sizeof p, dir, de->d_name) == RT_OK && unlink(p) && errno != ENOENT)
            rc = rt_err_set(RT_ERR_IO, "%s: %s", p, strerror(errno));
    }
    closedir(d);
    if (rmdir(dir) && errno != ENOENT && !rc)
        rc = rt_err_set(RT_ERR_IO, "%s: %s", dir, strerror(errno));
    return rc;
}

int rt_ckpt_prune(const char *root, int keep)
{
    uint64_t *eps;
    int n = 0, rc = s_list_alloc(root, &eps, &n), complete = 0;
    if (rc)
        return rc;
    if (keep < 1)
        keep = 1;
    for (int i = 0; i < n; i++) {
        char dir[RT_CKPT_PATH_MAX];
        if (rt_ckpt_dir_key(dir, sizeof dir, root, eps[i]))
            continue;
        /* only the manifest's presence is checked here: reading every file back is the
         * reader's job, and a pruned complete checkpoint is gone either way */
        char man[RT_CKPT_PATH_MAX];
        struct stat st;
        int has = s_join(man, sizeof man, dir, RT_CKPT_MANIFEST) == RT_OK && !stat(man, &st);
        if (has && complete < keep) {
            complete++;
            continue;
        }
        if (!has && complete == 0)
            continue; /* newer than every complete one: may be being written */
        RT_DEBUG(S_NAME, "removing %s (%s)", dir,
                 has ? "older than the newest kept" : "incomplete");
        char hidden[RT_CKPT_PATH_MAX];
        /* remove the manifest first, so that a crash mid-removal leaves an incomplete one */
        if (has && s_join(hidden, sizeof hidden, dir, RT_CKPT_MANIFEST) == RT_OK)
            unlink(hidden);
        int r = s_remove_dir(dir);
        if (r && !rc)
            rc = r;
    }
    free(eps);
    return rc;
}

int rt_ckpt_remove_after(const char *root, uint64_t key)
{
    uint64_t *eps;
    int n = 0, rc = s_list_alloc(root, &eps, &n);
    if (rc)
        return rc;
    for (int i = 0; i < n && !rc; i++) {
        if (eps[i] <= key)
            continue;
        char dir[RT_CKPT_PATH_MAX], man[RT_CKPT_PATH_MAX];
        if ((rc = rt_ckpt_dir_key(dir, sizeof dir, root, eps[i])))
            break;
        RT_WARN(S_NAME,
                "removing %s: this run starts before it (epoch %llu) and will write it again", dir,
                (unsigned long long)RT_CKPT_KEY_EPOCH(key));
        if (s_join(man, sizeof man, dir, RT_CKPT_MANIFEST) == RT_OK)
            unlink(man);
        rc = s_remove_dir(dir);
    }
    free(eps);
    return rc;
}

int rt_ckpt_resolve(const char *out_dir, const char *spec, char *path, size_t cap, uint64_t *epoch)
{
    path[0] = '\0';
    if (epoch)
        *epoch = 0;
    if (!spec || !*spec)
        return RT_OK;
    if (strcmp(spec, "auto")) {
        json_t *m = NULL;
        uint64_t e = 0;
        int rc = rt_ckpt_verify(spec, NULL, &m);
        if (!rc)
            rc = rt_ckpt_manifest_u64(m, spec, "epoch", &e);
        json_decref(m);
        if (rc)
            return rt_err_set(rc, "--resume: %s", rt_err_msg());
        if (snprintf(path, cap, "%s", spec) >= (int)cap)
            return rt_err_set(RT_ERR_ARG, "--resume %s: path too long", spec);
        if (epoch)
            *epoch = e;
        return RT_OK;
    }
    if (!out_dir)
        return rt_err_set(RT_ERR_ARG, "--resume auto needs an output directory");
    char root[RT_CKPT_PATH_MAX];
    if (snprintf(root, sizeof root, "%s/%s", out_dir, RT_CKPT_SUBDIR) >= (int)sizeof root)
        return rt_err_set(RT_ERR_ARG, "%s: path too long", out_dir);
    int rc = rt_ckpt_latest(root, path, cap, epoch);
    if (rc == RT_ERR_NOTFOUND) {
        RT_INFO(S_NAME, "--resume auto: no complete checkpoint under %s: a fresh start", root);
        path[0] = '\0';
        return RT_OK;
    }
    if (!rc)
        RT_INFO(S_NAME, "--resume auto: resuming from %s", path);
    return rc;
}
