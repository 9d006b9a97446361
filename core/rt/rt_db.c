/*
 * rt_db: read-only indexed LMDB access and the build-aside-then-rename writer.
 */
#include "rt_db.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_err.h"

struct rt_db {
    char *path;    /* directory, owned */
    MDB_env *env;  /* environment, read-only */
    MDB_txn *txn;  /* read transaction held open so that map pointers stay valid */
    MDB_dbi dbi;   /* the unnamed database */
    size_t count;  /* number of records */
    MDB_val *keys; /* count keys, pointing into the map */
    MDB_val *vals; /* count values, pointing into the map */
};

struct rt_db_writer {
    char *dest;    /* final directory, owned */
    char *tmp;     /* build directory DEST.partial-PID, owned */
    bool force;    /* replace an existing dest at finish */
    MDB_env *env;  /* environment being built; NULL once closed */
    MDB_txn *txn;  /* open write transaction or NULL */
    MDB_dbi dbi;   /* the unnamed database */
    size_t count;  /* records stored */
    size_t in_txn; /* records in the open transaction */
    bool finished; /* renamed into place */
};

/* Record an LMDB failure of `what` on `path`. */
static int s_lmdb_err(int rc, const char *what, const char *path)
{
    if (rc == ENOENT)
        return rt_err_set(RT_ERR_NOTFOUND, "%s: %s: no LMDB database there", path, what);
    return rt_err_set(RT_ERR_LMDB, "%s: %s: %s", path, what, mdb_strerror(rc));
}

static char *s_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Why dir cannot be opened when it is missing: a DIR.partial-* sibling means an interrupted
 * build. Returns RT_ERR_NOTFOUND with the reason. */
static int s_missing(const char *dir, int err)
{
    char parent[4096], base[1024], found[1024] = "";
    const char *slash = strrchr(dir, '/');
    if (slash && slash[1] && (size_t)(slash - dir) < sizeof parent) {
        memcpy(parent, dir, (size_t)(slash - dir) + 1);
        parent[slash - dir + 1] = '\0';
        snprintf(base, sizeof base, "%s.partial-", slash + 1);
    } else {
        snprintf(parent, sizeof parent, "./");
        snprintf(base, sizeof base, "%s.partial-", dir);
    }
    DIR *d = opendir(parent);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, base, strlen(base)))
            snprintf(found, sizeof found, "%s", e->d_name);
    if (d)
        closedir(d);
    if (found[0])
        return rt_err_set(RT_ERR_NOTFOUND,
                          "%s: %s; %s%s beside it is an unfinished build (eigenbatch convert was "
                          "interrupted): run the convert again, then remove that directory",
                          dir, strerror(err), slash ? parent : "", found);
    return rt_err_set(RT_ERR_NOTFOUND, "%s: %s", dir, strerror(err));
}

int rt_db_open(const char *dir, rt_db_t **out)
{
    int rc;
    MDB_cursor *cur = NULL;
    *out = NULL;
    struct stat st;
    if (stat(dir, &st) != 0)
        return s_missing(dir, errno);
    if (!S_ISDIR(st.st_mode))
        return rt_err_set(RT_ERR_FORMAT,
                          "%s: not a directory (an LMDB database is a directory "
                          "holding data.mdb)",
                          dir);
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/" RT_DB_INCOMPLETE, dir);
    if (stat(marker, &st) == 0)
        return rt_err_set(RT_ERR_FORMAT,
                          "%s: an unfinished database (it holds %s: eigenbatch convert stopped "
                          "before the end): run the convert again with --force to rebuild it",
                          dir, RT_DB_INCOMPLETE);
    rt_db_t *db = calloc(1, sizeof *db);
    if (!db || !(db->path = s_strdup(dir))) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: out of memory", dir);
        goto out_free;
    }
    if ((rc = mdb_env_create(&db->env)) != 0) {
        rc = s_lmdb_err(rc, "mdb_env_create", dir);
        goto out_free;
    }
    /* map only what the file holds, not the writer's reservation (1 TiB for Caffe's and ours):
     * LMDB raises the size to the committed data when this is smaller */
    char data_path[4096];
    struct stat dst;
    if (snprintf(data_path, sizeof data_path, "%s/data.mdb", dir) < (int)sizeof data_path &&
        stat(data_path, &dst) == 0 && dst.st_size > 0 &&
        (rc = mdb_env_set_mapsize(db->env, (size_t)dst.st_size)) != 0) {
        rc = s_lmdb_err(rc, "mdb_env_set_mapsize", dir);
        goto out_free;
    }
    rc = mdb_env_open(db->env, dir, MDB_RDONLY | MDB_NOTLS, 0644);
    if (rc == EACCES || rc == EROFS) /* read-only medium: lock.mdb cannot be created */
        rc = mdb_env_open(db->env, dir, MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK, 0644);
    if (rc != 0) {
        rc = s_lmdb_err(rc, "mdb_env_open", dir);
        goto out_free;
    }
    if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->txn)) != 0) {
        rc = s_lmdb_err(rc, "mdb_txn_begin", dir);
        goto out_free;
    }
    if ((rc = mdb_dbi_open(db->txn, NULL, 0, &db->dbi)) != 0) {
        rc = s_lmdb_err(rc, "mdb_dbi_open", dir);
        goto out_free;
    }
    MDB_stat ms;
    if ((rc = mdb_stat(db->txn, db->dbi, &ms)) != 0) {
        rc = s_lmdb_err(rc, "mdb_stat", dir);
        goto out_free;
    }
    db->count = ms.ms_entries;
    db->keys = malloc((db->count ? db->count : 1) * sizeof *db->keys);
    db->vals = malloc((db->count ? db->count : 1) * sizeof *db->vals);
    if (!db->keys || !db->vals) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: no memory for the index of %zu records", dir, db->count);
        goto out_free;
    }
    if ((rc = mdb_cursor_open(db->txn, db->dbi, &cur)) != 0) {
        rc = s_lmdb_err(rc, "mdb_cursor_open", dir);
        goto out_free;
    }
    size_t i = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (i == db->count) {
            rc = rt_err_set(RT_ERR_LMDB, "%s: more records than the count %zu", dir, db->count);
            goto out_close_cursor;
        }
        db->keys[i] = k;
        db->vals[i] = v;
        i++;
    }
    if (rc != MDB_NOTFOUND) {
        rc = s_lmdb_err(rc, "mdb_cursor_get", dir);
        goto out_close_cursor;
    }
    if (i != db->count) {
        rc = rt_err_set(RT_ERR_LMDB, "%s: walked %zu records, expected %zu", dir, i, db->count);
        goto out_close_cursor;
    }
    mdb_cursor_close(cur);
    *out = db;
    return 0;

out_close_cursor:
    mdb_cursor_close(cur);
out_free:
    rt_db_destroy(&db);
    return rc;
}

void rt_db_destroy(rt_db_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_db_t *db = *self_p;
    if (db->txn)
        mdb_txn_abort(db->txn);
    if (db->env)
        mdb_env_close(db->env);
    free(db->keys);
    free(db->vals);
    free(db->path);
    free(db);
    *self_p = NULL;
}

size_t rt_db_count(const rt_db_t *db)
{
    return db->count;
}

const char *rt_db_path(const rt_db_t *db)
{
    return db->path;
}

int rt_db_record(const rt_db_t *db, size_t index, const void **val, size_t *len)
{
    if (index >= db->count)
        return rt_err_set(RT_ERR_ARG, "%s: record %zu out of range (%zu records)", db->path, index,
                          db->count);
    *val = db->vals[index].mv_data;
    *len = db->vals[index].mv_size;
    return 0;
}

void rt_db_record_done(const rt_db_t *db, const void *val, size_t len)
{
    (void)db;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)val + page - 1) / page * page;
    uintptr_t hi = ((uintptr_t)val + len) / page * page;
    /* read-only shared file mapping: the pages refault from the page cache when read again */
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

const void *rt_db_key_raw(const rt_db_t *db, size_t index, size_t *len)
{
    RT_ASSERT(index < db->count);
    *len = db->keys[index].mv_size;
    return db->keys[index].mv_data;
}

/* Printable copy of key bytes into buf. */
static const char *s_key_text(const void *key, size_t klen, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    const unsigned char *k = key;
    size_t n = klen < cap - 1 ? klen : cap - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (k[i] >= 0x20 && k[i] < 0x7f) ? (char)k[i] : '?';
    buf[n] = '\0';
    return buf;
}

const char *rt_db_key(const rt_db_t *db, size_t index, char *buf, size_t cap)
{
    if (index >= db->count) {
        snprintf(buf, cap, "#%zu", index);
        return buf;
    }
    return s_key_text(db->keys[index].mv_data, db->keys[index].mv_size, buf, cap);
}

/* ---- writer ------------------------------------------------------------------------------- */

static int s_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Remove a directory tree; returns 0 or -1. */
static int s_rmtree(const char *path)
{
    return nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* True when dir holds data.mdb and nothing but data.mdb / lock.mdb. */
static bool s_looks_like_lmdb(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool data = false, other = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "lock.mdb") ||
            !strcmp(e->d_name, RT_DB_INCOMPLETE))
            continue;
        if (!strcmp(e->d_name, "data.mdb"))
            data = true;
        else
            other = true;
    }
    closedir(d);
    return data && !other;
}

/* mkdir -p of the folder that holds path. */
static int s_make_parent(const char *path)
{
    char d[4096];
    if (snprintf(d, sizeof d, "%s", path) >= (int)sizeof d)
        return rt_err_set(RT_ERR_ARG, "%s: path too long", path);
    char *slash = strrchr(d, '/');
    if (!slash || slash == d)
        return 0;
    *slash = '\0';
    for (char *p = d + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(d, 0755) != 0 && errno != EEXIST)
            return rt_err_set(RT_ERR_IO, "%s: mkdir: %s", d, strerror(errno));
        *p = '/';
    }
    if (mkdir(d, 0755) != 0 && errno != EEXIST)
        return rt_err_set(RT_ERR_IO, "%s: mkdir: %s", d, strerror(errno));
    return 0;
}

/* Create (on) or remove (off) the RT_DB_INCOMPLETE marker in build directory dir, durably. */
static int s_marker(const char *dir, bool on)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/" RT_DB_INCOMPLETE, dir);
    if (on) {
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            return rt_err_set(RT_ERR_IO, "%s: %s", p, strerror(errno));
        close(fd);
    } else if (unlink(p) != 0) {
        return rt_err_set(RT_ERR_IO, "%s: unlink: %s", p, strerror(errno));
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

int rt_db_writer_new(const char *dir, bool force, rt_db_writer_t **out)
{
    int rc;
    *out = NULL;
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!force)
            return rt_err_set(RT_ERR_EXISTS, "%s already exists (use --force to replace it)", dir);
        if (!S_ISDIR(st.st_mode) || !s_looks_like_lmdb(dir))
            return rt_err_set(RT_ERR_EXISTS,
                              "%s exists and is not an LMDB database directory; "
                              "refusing to replace it",
                              dir);
    }
    if ((rc = s_make_parent(dir)) < 0)
        return rc;
    rt_db_writer_t *w = calloc(1, sizeof *w);
    size_t n = strlen(dir) + 48;
    if (!w || !(w->dest = s_strdup(dir)) || !(w->tmp = malloc(n))) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: out of memory", dir);
        goto out_free;
    }
    snprintf(w->tmp, n, "%s.partial-%ld", dir, (long)getpid());
    w->force = force;
    if (stat(w->tmp, &st) == 0)
        s_rmtree(w->tmp); /* our own pid's leftover: cannot be in use */
    if (mkdir(w->tmp, 0755) != 0) {
        rc = rt_err_set(RT_ERR_IO, "%s: mkdir: %s", w->tmp, strerror(errno));
        free(w->tmp);
        w->tmp = NULL; /* nothing to remove */
        goto out_free;
    }
    if ((rc = s_marker(w->tmp, true)) < 0)
        goto out_free;
    /* reserve RT_DB_MAP_SIZE of address space as Caffe does; where the process may not map
     * that much (ulimit -v, sanitizers), settle for less */
    for (size_t map = RT_DB_MAP_SIZE;; map /= 4) {
        if ((rc = mdb_env_create(&w->env)) != 0) {
            rc = s_lmdb_err(rc, "mdb_env_create", w->tmp);
            goto out_free;
        }
        if ((rc = mdb_env_set_mapsize(w->env, map)) != 0) {
            rc = s_lmdb_err(rc, "mdb_env_set_mapsize", w->tmp);
            goto out_free;
        }
        /* no per-commit fsync while building: finish syncs once before the rename */
        rc = mdb_env_open(w->env, w->tmp, MDB_NOSYNC, 0644);
        if (rc == 0)
            break;
        mdb_env_close(w->env);
        w->env = NULL;
        if (rc != ENOMEM || map <= RT_DB_MAP_SIZE_MIN) {
            rc = s_lmdb_err(rc, "mdb_env_open", w->tmp);
            goto out_free;
        }
    }
    if ((rc = mdb_txn_begin(w->env, NULL, 0, &w->txn)) != 0) {
        rc = s_lmdb_err(rc, "mdb_txn_begin", w->tmp);
        goto out_free;
    }
    if ((rc = mdb_dbi_open(w->txn, NULL, 0, &w->dbi)) != 0) {
        rc = s_lmdb_err(rc, "mdb_dbi_open", w->tmp);
        goto out_free;
    }
    *out = w;
    return 0;

out_free:
    rt_db_writer_destroy(&w);
    return rc;
}

int rt_db_writer_put(rt_db_writer_t *w, const void *key, size_t klen, const void *val, size_t vlen)
{
    char kt[RT_DB_KEY_MAX];
    int rc;
    if (!w->txn)
        return rt_err_set(RT_ERR_STATE, "%s: writer is closed", w->tmp);
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = vlen, .mv_data = (void *)val};
    rc = mdb_put(w->txn, w->dbi, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) /* not in increasing order: an ordinary insert */
        rc = mdb_put(w->txn, w->dbi, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return rt_err_set(RT_ERR_EXISTS, "%s: duplicate key %s", w->dest,
                          s_key_text(key, klen, kt, sizeof kt));
    if (rc != 0)
        return rt_err_set(RT_ERR_LMDB, "%s: put key %s: %s", w->tmp,
                          s_key_text(key, klen, kt, sizeof kt), mdb_strerror(rc));
    w->count++;
    if (++w->in_txn >= RT_DB_TXN_RECORDS) {
        rc = mdb_txn_commit(w->txn);
        w->txn = NULL;
        if (rc != 0)
            return s_lmdb_err(rc, "mdb_txn_commit", w->tmp);
        if ((rc = mdb_txn_begin(w->env, NULL, 0, &w->txn)) != 0)
            return s_lmdb_err(rc, "mdb_txn_begin", w->tmp);
        w->in_txn = 0;
    }
    return 0;
}

size_t rt_db_writer_count(const rt_db_writer_t *w)
{
    return w->count;
}

/* fsync a directory so that a rename inside it is durable. */
static void s_sync_dir_of(const char *path)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    if (slash == d)
        d[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(d, sizeof d, ".");
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int rt_db_writer_finish(rt_db_writer_t *w)
{
    int rc;
    if (!w->txn)
        return rt_err_set(RT_ERR_STATE, "%s: writer is closed", w->tmp);
    rc = mdb_txn_commit(w->txn);
    w->txn = NULL;
    if (rc != 0)
        return s_lmdb_err(rc, "mdb_txn_commit", w->tmp);
    if ((rc = mdb_env_sync(w->env, 1)) != 0)
        return s_lmdb_err(rc, "mdb_env_sync", w->tmp);
    mdb_env_close(w->env);
    w->env = NULL;
    if ((rc = s_marker(w->tmp, false)) < 0) /* complete from here on */
        return rc;

    struct stat st;
    char *old = NULL;
    if (stat(w->dest, &st) == 0) {
        if (!w->force)
            return rt_err_set(RT_ERR_EXISTS,
                              "%s appeared while building; not replaced (the "
                              "build is kept at %s)",
                              w->dest, w->tmp);
        size_t n = strlen(w->dest) + 48;
        if (!(old = malloc(n)))
            return rt_err_set(RT_ERR_NOMEM, "out of memory");
        snprintf(old, n, "%s.old-%ld", w->dest, (long)getpid());
        if (rename(w->dest, old) != 0) {
            rc = rt_err_set(RT_ERR_IO, "%s: rename to %s: %s", w->dest, old, strerror(errno));
            free(old);
            return rc;
        }
    }
    if (rename(w->tmp, w->dest) != 0) {
        rc = rt_err_set(RT_ERR_IO, "%s: rename to %s: %s", w->tmp, w->dest, strerror(errno));
        if (old && rename(old, w->dest) != 0) /* put the old one back */
            rc = rt_err_set(RT_ERR_IO, "%s: rename failed and the old database is left at %s",
                            w->dest, old);
        free(old);
        return rc;
    }
    s_sync_dir_of(w->dest);
    w->finished = true;
    if (old) {
        s_rmtree(old);
        free(old);
    }
    return 0;
}

void rt_db_writer_destroy(rt_db_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_db_writer_t *w = *self_p;
    if (w->txn)
        mdb_txn_abort(w->txn);
    if (w->env)
        mdb_env_close(w->env);
    if (!w->finished && w->tmp)
        s_rmtree(w->tmp);
    free(w->tmp);
    free(w->dest);
    free(w);
    *self_p = NULL;
}
