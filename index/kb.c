/* kb.c - a knowledge base directory: create/open, the writer lock, manifest.json, the tokenizer copy (see kb.h). */
#define _GNU_SOURCE
#include "index/kb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"

#define MANIFEST_MAX (1 << 20)

struct rtr_kb {
    char *dir;
    rtr_store *store;
    rtr_tokenizer *tok;
    char tok_hash[33];
    char created[32];
    int lock_fd;
    json_t *manifest;
    pthread_mutex_t manifest_mu;   /* a reader's copy never sees a section half replaced */
};

rtr_store *rtr_kb_store(rtr_kb *kb) { return kb->store; }
const rtr_tokenizer *rtr_kb_tokenizer(rtr_kb *kb) { return kb->tok; }
const char *rtr_kb_dir(const rtr_kb *kb) { return kb->dir; }
const char *rtr_kb_tokenizer_hash(const rtr_kb *kb) { return kb->tok_hash; }
const char *rtr_kb_created(const rtr_kb *kb) { return kb->created; }

int rtr_kb_check_tokenizer(const rtr_kb *kb, const rtr_tokenizer *tok) {
    char h[33];
    rtr_tokenizer_hash(tok, h);
    if (strcmp(h, kb->tok_hash) != 0)
        return rtr_seterr(RTR_E_MISMATCH,
                          "%s: built with tokenizer %s, but tokenizer %s was given; "
                          "use the knowledge base's own (%s/tokenizer.rtok)",
                          kb->dir, kb->tok_hash, h, kb->dir);
    return RTR_OK;
}

static int dir_is_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { empty = 0; break; }
    closedir(d);
    return empty;
}

int rtr_kb_manifest_write(const char *dir, const json_t *m) {
    char *text = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) return rtr_seterr(RTR_E_NOMEM, "manifest");
    char *path = rtr_path_join(dir, "manifest.json");
    int rc = path ? RTR_OK : RTR_E_NOMEM;
    if (!rc) {
        size_t n = strlen(text);
        text[n] = '\n';   /* json_dumps' NUL becomes the final newline */
        rc = rtr_write_file_atomic(path, text, n + 1);
    }
    rtr_free(path);
    free(text);
    return rc;
}

json_t *rtr_kb_manifest_new(const char *tok_hash, uint32_t vocab) {
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_pack("{s:s, s:i, s:s, s:i, s:{s:s, s:s, s:i}}", "format", "retro-knowledge-base", "version",
                     RTR_KB_VERSION, "created", created, "chunk_tokens", RTR_CHUNK_TOKENS, "tokenizer", "file",
                     "tokenizer.rtok", "hash", tok_hash, "vocab_size", (json_int_t)vocab);
}

static int write_manifest(const char *dir, const char *tok_hash, uint32_t vocab) {
    json_t *m = rtr_kb_manifest_new(tok_hash, vocab);
    if (m) json_object_set_new(m, "store", json_pack("{s:s, s:i}", "dir", "store", "schema", RTR_STORE_SCHEMA));
    int rc = m ? rtr_kb_manifest_write(dir, m) : rtr_seterr(RTR_E_NOMEM, "manifest");
    json_decref(m);
    return rc;
}

int rtr_kb_create_tmp(const char *dir, const rtr_tokenizer *tok, char *tmp, size_t cap) {
    if ((size_t)snprintf(tmp, cap, "%s.creating.%ld", dir, (long)getpid()) >= cap)
        return rtr_seterr(RTR_E_INVALID, "%s: path too long", dir);
    int rc = rtr_rmtree(tmp);
    if (!rc) rc = rtr_mkdirs(tmp);
    if (rc) return rc;
    rtr_buf ser = {0};
    char *tpath = rtr_path_join(tmp, "tokenizer.rtok");
    rc = tpath ? rtr_tokenizer_serialize(tok, &ser) : RTR_E_NOMEM;
    if (!rc) rc = rtr_write_file_atomic(tpath, ser.data, ser.len);
    if (rc) rtr_rmtree(tmp);
    rtr_buf_free(&ser);
    rtr_free(tpath);
    return rc;
}

int rtr_kb_create_commit(const char *tmp, const char *dir) {
    if (rename(tmp, dir) == 0) return RTR_OK;
    int rc = rtr_seterr(rtr_status_from_errno(errno), "%s: cannot create knowledge base: %s", dir, strerror(errno));
    rtr_rmtree(tmp);
    return rc;
}

/* Creates the knowledge base in a temporary sibling directory and renames it
 * into place, so that dir is either absent/empty or complete. */
static int create_kb(const char *dir, const rtr_tokenizer *tok, const rtr_store_opts *so) {
    char tmp[PATH_MAX], hash[33];
    int rc = rtr_kb_create_tmp(dir, tok, tmp, sizeof tmp);
    if (rc) return rc;
    rtr_tokenizer_hash(tok, hash);
    char *spath = rtr_path_join(tmp, "store");
    rtr_store *s;
    rc = spath ? rtr_store_open(spath, 0, so, &s) : RTR_E_NOMEM;
    if (!rc) rtr_store_close(s);
    if (!rc) rc = write_manifest(tmp, hash, rtr_tokenizer_vocab_size(tok));
    rtr_free(spath);
    if (rc) {
        rtr_rmtree(tmp);
        return rc;
    }
    return rtr_kb_create_commit(tmp, dir);
}

int rtr_kb_manifest_parse(const uint8_t *data, size_t len, const char *path, rtr_kb_manifest *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *m = json_loadb((const char *)data, len, 0, &err);
    const char *format = NULL, *hash = NULL, *created = "";
    json_int_t version = 0, chunk = 0;
    int rc = RTR_OK;
    if (!m) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: invalid JSON at line %d: %s", path, err.line, err.text);
    } else if (json_unpack(m, "{s:s, s:I, s?s, s:I, s:{s:s}}", "format", &format, "version", &version,
                           "created", &created, "chunk_tokens", &chunk, "tokenizer", "hash", &hash) != 0 ||
               strcmp(format, "retro-knowledge-base") != 0) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: not a retro knowledge base manifest", path);
    } else if (version > RTR_KB_VERSION_MAX) {
        rc = rtr_seterr(RTR_E_VERSION, "%s: knowledge base version %lld is newer than this retro supports (%d)",
                        path, (long long)version, RTR_KB_VERSION_MAX);
    } else if ((version == RTR_KB_VERSION_MAX) != (json_object_get(m, "partitions") != NULL)) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: version %lld %s a \"partitions\" section", path, (long long)version,
                        version == RTR_KB_VERSION_MAX ? "without" : "with");
    } else if (version < 1 || chunk != RTR_CHUNK_TOKENS || strlen(hash) != 32) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: unsupported version, chunk size or tokenizer hash", path);
    } else {
        memcpy(out->tok_hash, hash, 33);
        snprintf(out->created, sizeof out->created, "%s", created);
        out->json = m;
        return RTR_OK;
    }
    json_decref(m);
    return rc;
}

static int read_manifest(rtr_kb *kb) {
    char *path = rtr_path_join(kb->dir, "manifest.json");
    if (!path) return RTR_E_NOMEM;
    uint8_t *data = NULL;
    size_t len;
    int rc = rtr_read_file(path, MANIFEST_MAX, &data, &len);
    if (rc == RTR_E_NOTFOUND)
        rc = rtr_seterr(RTR_E_INVALID, "%s: not a retro knowledge base (no manifest.json)", kb->dir);
    rtr_kb_manifest mf;
    if (!rc) rc = rtr_kb_manifest_parse(data, len, path, &mf);
    if (!rc) {
        memcpy(kb->tok_hash, mf.tok_hash, sizeof kb->tok_hash);
        memcpy(kb->created, mf.created, sizeof kb->created);
        json_decref(kb->manifest);
        kb->manifest = mf.json;
    }
    rtr_free(data);
    rtr_free(path);
    return rc;
}

json_t *rtr_kb_manifest_get(rtr_kb *kb, const char *key) { return json_object_get(kb->manifest, key); }

json_t *rtr_kb_manifest_copy(rtr_kb *kb, const char *key) {
    pthread_mutex_lock(&kb->manifest_mu);
    json_t *v = json_deep_copy(json_object_get(kb->manifest, key));
    pthread_mutex_unlock(&kb->manifest_mu);
    return v;
}

int rtr_kb_manifest_set(rtr_kb *kb, const char *key, json_t *value) {
    RTR_ASSERT(kb->lock_fd >= 0);   /* writers only */
    pthread_mutex_lock(&kb->manifest_mu);
    if (value) json_object_set_new(kb->manifest, key, value);
    else json_object_del(kb->manifest, key);
    int rc = rtr_kb_manifest_write(kb->dir, kb->manifest);
    pthread_mutex_unlock(&kb->manifest_mu);
    return rc;
}

int rtr_kb_open(const char *dir, unsigned flags, const rtr_tokenizer *tok, const rtr_store_opts *so,
                rtr_kb **out) {
    *out = NULL;
    struct stat st;
    int exists = stat(dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode)) return rtr_seterr(RTR_E_INVALID, "%s: not a directory", dir);
    char *mpath = rtr_path_join(dir, "manifest.json");
    if (!mpath) return RTR_E_NOMEM;
    int has_manifest = rtr_path_exists(mpath);
    rtr_free(mpath);
    int rc;
    if (!has_manifest) {
        if (!(flags & RTR_KB_CREATE)) {
            if (!exists) return rtr_seterr(RTR_E_NOTFOUND, "%s: no such knowledge base", dir);
            return rtr_seterr(RTR_E_INVALID, "%s: not a retro knowledge base (no manifest.json)", dir);
        }
        if (exists && !dir_is_empty(dir))
            return rtr_seterr(RTR_E_INVALID, "%s: not a retro knowledge base (no manifest.json) and not empty; "
                              "refusing to write into it", dir);
        RTR_ASSERT(tok != NULL);
        if (exists && rmdir(dir) != 0)
            return rtr_seterr(rtr_status_from_errno(errno), "%s: %s", dir, strerror(errno));
        if ((rc = create_kb(dir, tok, so))) return rc;
    }

    rtr_kb *kb = rtr_calloc(1, sizeof *kb);
    if (kb) pthread_mutex_init(&kb->manifest_mu, NULL);
    if (!kb) return RTR_E_NOMEM;
    kb->lock_fd = -1;
    char *p = NULL;
    if (!(kb->dir = rtr_strdup(dir))) { rc = RTR_E_NOMEM; goto fail; }
    if ((rc = read_manifest(kb))) goto fail;
    json_t *parts = json_object_get(kb->manifest, "partitions");
    if (parts) {
        rc = rtr_seterr(RTR_E_INVALID, "%s: a knowledge base of %lld partitions: `retro index add`, `retro index build` "
                        "and `retro search` read it whole; other commands take one partition (%s/part-0000)", dir,
                        (long long)json_integer_value(json_object_get(parts, "count")), dir);
        goto fail;
    }
    if (flags & RTR_KB_WRITE) {
        if (!(p = rtr_path_join(dir, "lock"))) { rc = RTR_E_NOMEM; goto fail; }
        kb->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (kb->lock_fd < 0) { rc = rtr_seterr(rtr_status_from_errno(errno), "%s: %s", p, strerror(errno)); goto fail; }
        if (flock(kb->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            rc = rtr_seterr(RTR_E_BUSY, "%s: another retro process is writing to this knowledge base", dir);
            goto fail;
        }
        rtr_free(p);
        p = NULL;
    }
    if (!(p = rtr_path_join(dir, "tokenizer.rtok"))) { rc = RTR_E_NOMEM; goto fail; }
    if ((rc = rtr_tokenizer_load(p, &kb->tok))) goto fail;
    char h[33];
    rtr_tokenizer_hash(kb->tok, h);
    if (strcmp(h, kb->tok_hash) != 0) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: tokenizer hash %s does not match the manifest's %s", p, h, kb->tok_hash);
        goto fail;
    }
    rtr_free(p);
    if (!(p = rtr_path_join(dir, "store"))) { rc = RTR_E_NOMEM; goto fail; }
    if ((rc = rtr_store_open(p, (flags & RTR_KB_WRITE) ? 0 : RTR_STORE_READONLY, so, &kb->store))) goto fail;
    rtr_free(p);
    *out = kb;
    return RTR_OK;
fail:
    rtr_free(p);
    rtr_kb_close(kb);
    return rc;
}

void rtr_kb_close(rtr_kb *kb) {
    if (!kb) return;
    rtr_store_close(kb->store);
    rtr_tokenizer_free(kb->tok);
    if (kb->lock_fd >= 0) close(kb->lock_fd);
    json_decref(kb->manifest);
    pthread_mutex_destroy(&kb->manifest_mu);
    rtr_free(kb->dir);
    rtr_free(kb);
}
