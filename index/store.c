/*
 * store.c - LMDB chunk store. Layout (docs/formats.md, "Chunk store"):
 *
 * named database   key                      value
 * meta             "schema"                 u32 schema version
 *                  "counters"               6 x u64: next_doc_id, next_chunk_id,
 *                                           n_docs, n_chunks, n_tokens, n_bytes
 * docs             u64 BE doc id            doc record (DOC_* offsets below)
 * texts            u64 BE doc id            u64 raw length + zstd frame
 * chunks           u64 BE chunk id          chunk record (CHUNK_* offsets below)
 * files            16-byte path key         file record (FILE_* offsets)
 * file_docs        16-byte path key         u64 BE doc id (DUPSORT, DUPFIXED)
 * skipped          16-byte path key         skip record (SKIP_* offsets)
 *
 * All integers in values are little-endian; keys are big-endian so that
 * LMDB's byte order is numeric order. Every record read is length-checked
 * before its fields are used.
 */
#define _GNU_SOURCE
#include "index/store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <zstd.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/crash.h"
#include "lib/io.h"
#include "lib/status.h"
#include "lib/utf8.h"

/* doc record */
enum {
    DOC_FIRST_CHUNK = 0,   /* u64 */
    DOC_N_CHUNKS = 8,      /* u32 */
    DOC_FLAGS = 12,        /* u32, 0 */
    DOC_HASH = 16,         /* 16 bytes */
    DOC_FILE_KEY = 32,     /* 16 bytes */
    DOC_N_BYTES = 48,      /* u64 */
    DOC_N_TOKENS = 56,     /* u64 */
    DOC_MTIME = 64,        /* i64 ns */
    DOC_PATH_LEN = 72,     /* u32 */
    DOC_TITLE_LEN = 76,    /* u32 */
    DOC_EXT_LEN = 80,      /* u32 */
    DOC_RESERVED = 84,     /* u32, 0 */
    DOC_HEADER = 88        /* then path, title, ext_id bytes */
};
/* chunk record */
enum {
    CHUNK_DOC = 0,         /* u64 */
    CHUNK_SEQ = 8,         /* u32 */
    CHUNK_NTOK = 12,       /* u16 */
    CHUNK_FLAGS = 14,      /* u16 */
    CHUNK_START = 16,      /* u64 */
    CHUNK_END = 24,        /* u64 */
    CHUNK_HEADER = 32      /* then n_tokens x u32 */
};
/* file record */
enum { FILE_HASH = 0, FILE_SIZE = 16, FILE_MTIME = 24, FILE_NDOCS = 32, FILE_PATH_LEN = 36, FILE_HEADER = 40 };
/* skip record */
enum { SKIP_REASON = 0, SKIP_PATH_LEN = 4, SKIP_DETAIL_LEN = 8, SKIP_HEADER = 12 };

enum { C_NEXT_DOC, C_NEXT_CHUNK, C_DOCS, C_CHUNKS, C_TOKENS, C_BYTES, C_COUNT };

#define MAX_TEXT_BYTES ((uint64_t)1 << 34)  /* 16 GiB: larger is corrupt */

/* The map gate. LMDB lets mdb_env_set_mapsize run only while no transaction
 * of the process is active, so every transaction holds the gate open (active
 * counts them) and the map is resized only by a thread that has closed the
 * gate (resizing) and seen active drop to 0. A thread that already holds a
 * transaction of the store passes a closed gate: the resize waits for it
 * anyway, and making it wait would deadlock. */
typedef struct map_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long active;     /* transactions open in this process */
    int resizing;    /* a thread waits for active == 0 to resize */
} map_gate;

struct rtr_store {
    MDB_env *env;
    MDB_dbi meta, docs, texts, chunks, files, file_docs, skipped;
    MDB_dbi aux[RTR_AUX_COUNT];
    int has_aux;              /* the auxiliary tables exist (a read-only open of an older store: not) */
    char *dir;
    int readonly;
    int gate_init;
    map_gate gate;
};

struct rtr_store_txn {
    rtr_store *s;
    MDB_txn *txn;
    int write;
    int map_full;
    size_t map_at_begin;   /* the map size this transaction ran under */
    pthread_t thread;      /* a transaction ends on the thread that began it */
    uint64_t c[C_COUNT];
    ZSTD_DCtx *dctx;
};

/* --- little helpers ------------------------------------------------------ */
static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32); }
static void put_be64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i)); }
static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static int lmdb_err(rtr_store_txn *t, int rc, const char *what) {
    if (rc == MDB_MAP_FULL && t) {
        t->map_full = 1;
        return rtr_seterr(RTR_E_FULL, "%s: LMDB map full during %s", t->s->dir, what);
    }
    const char *dir = t ? t->s->dir : "store";
    if (rc == ENOSPC) return rtr_seterr(RTR_E_FULL, "%s: %s: no space left on device", dir, what);
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
        return rtr_seterr(RTR_E_CORRUPT, "%s: %s: %s", dir, what, mdb_strerror(rc));
    return rtr_seterr(RTR_E_LMDB, "%s: %s: %s", dir, what, mdb_strerror(rc));
}

static int corrupt(rtr_store_txn *t, const char *what, uint64_t id) {
    return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt %s record %llu", t->s->dir, what,
                      (unsigned long long)id);
}

void rtr_store_path_key(const char *path, uint8_t key[16]) { rtr_hash128(path, strlen(path), key); }

const char *rtr_store_dir(const rtr_store *s) { return s->dir; }

/* --- open / close -------------------------------------------------------- */
static int open_dbis(rtr_store *s, MDB_txn *txn, unsigned create) {
    struct { const char *name; MDB_dbi *dbi; unsigned flags; } tab[] = {
        {"meta", &s->meta, 0},          {"docs", &s->docs, 0},
        {"texts", &s->texts, 0},        {"chunks", &s->chunks, 0},
        {"files", &s->files, 0},        {"file_docs", &s->file_docs, MDB_DUPSORT | MDB_DUPFIXED},
        {"skipped", &s->skipped, 0},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        int rc = mdb_dbi_open(txn, tab[i].name, tab[i].flags | create, tab[i].dbi);
        if (rc == MDB_NOTFOUND)
            return rtr_seterr(RTR_E_CORRUPT, "%s: not a retro chunk store (no '%s' database)", s->dir,
                              tab[i].name);
        if (rc == MDB_INCOMPATIBLE)
            return rtr_seterr(RTR_E_CORRUPT, "%s: database '%s' has unexpected flags", s->dir,
                              tab[i].name);
        if (rc) return rtr_seterr(RTR_E_LMDB, "%s: open database %s: %s", s->dir, tab[i].name, mdb_strerror(rc));
    }
    static const char *const aux[RTR_AUX_COUNT] = {"lex_meta", "lex_terms", "lex_postings", "lex_norms"};
    s->has_aux = 1;
    for (int i = 0; i < RTR_AUX_COUNT; i++) {
        int rc = mdb_dbi_open(txn, aux[i], create, &s->aux[i]);
        if (rc == MDB_NOTFOUND && !create) {   /* written by an older version: no indexes over it yet */
            s->has_aux = 0;
            break;
        }
        if (rc) return rtr_seterr(RTR_E_LMDB, "%s: open database %s: %s", s->dir, aux[i], mdb_strerror(rc));
    }
    return RTR_OK;
}

static int check_schema(rtr_store *s, MDB_txn *txn, int init) {
    MDB_val k = {6, "schema"}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        if (!init) return rtr_seterr(RTR_E_CORRUPT, "%s: not a retro chunk store (no schema version)", s->dir);
        uint8_t b[4];
        put_u32(b, RTR_STORE_SCHEMA);
        MDB_val nv = {4, b};
        if ((rc = mdb_put(txn, s->meta, &k, &nv, 0))) return rtr_seterr(RTR_E_LMDB, "%s: %s", s->dir, mdb_strerror(rc));
        uint8_t c[8 * C_COUNT] = {0};
        put_u64(c + 8 * C_NEXT_DOC, 1);
        put_u64(c + 8 * C_NEXT_CHUNK, 1);
        MDB_val ck = {8, "counters"}, cv = {sizeof c, c};
        if ((rc = mdb_put(txn, s->meta, &ck, &cv, 0))) return rtr_seterr(RTR_E_LMDB, "%s: %s", s->dir, mdb_strerror(rc));
        return RTR_OK;
    }
    if (rc) return rtr_seterr(RTR_E_LMDB, "%s: read schema: %s", s->dir, mdb_strerror(rc));
    if (v.mv_size != 4) return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt schema record", s->dir);
    uint32_t ver = get_u32(v.mv_data);
    if (ver > RTR_STORE_SCHEMA)
        return rtr_seterr(RTR_E_VERSION, "%s: chunk store schema %u is newer than this retro supports (%u)",
                          s->dir, ver, RTR_STORE_SCHEMA);
    if (ver == 0) return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt schema version 0", s->dir);
    return RTR_OK;
}

/* A data.mdb shorter than its newest meta page says would make the first
 * touch of a page past its end a SIGBUS. mdb_env_open has read the meta pages
 * with read(2) and touched nothing mapped yet: compare before any read. */
static int check_file_size(rtr_store *s) {
    MDB_envinfo info;
    MDB_stat st;
    mdb_filehandle_t fd;
    struct stat fst;
    if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st) || mdb_env_get_fd(s->env, &fd) || fstat(fd, &fst))
        return rtr_seterr(RTR_E_LMDB, "%s: cannot read the store's size", s->dir);
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if ((uint64_t)fst.st_size < need)
        return rtr_seterr(RTR_E_CORRUPT, "%s/data.mdb: truncated: %llu bytes, its meta page needs %llu (pages 0..%llu of %u bytes)",
                          s->dir, (unsigned long long)fst.st_size, (unsigned long long)need,
                          (unsigned long long)info.me_last_pgno, st.ms_psize);
    return RTR_OK;
}

int rtr_store_open(const char *dir, unsigned flags, const rtr_store_opts *o, rtr_store **out) {
    *out = NULL;
    int ro = (flags & RTR_STORE_READONLY) != 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (ro || errno != ENOENT) return rtr_seterr(rtr_status_from_errno(errno), "%s: %s", dir, strerror(errno));
        int rc = rtr_mkdirs(dir);
        if (rc) return rc;
    } else if (!S_ISDIR(st.st_mode)) {
        return rtr_seterr(RTR_E_INVALID, "%s: not a directory", dir);
    }
    char *datafile = rtr_path_join(dir, "data.mdb");
    if (!datafile) return RTR_E_NOMEM;
    int exists = rtr_path_exists(datafile);
    size_t data_size = 0;
    if (exists && stat(datafile, &st) == 0) data_size = (size_t)st.st_size;
    rtr_free(datafile);
    if (ro && !exists) return rtr_seterr(RTR_E_NOTFOUND, "%s: no chunk store here (no data.mdb)", dir);

    rtr_store *s = rtr_calloc(1, sizeof *s);
    if (!s) return RTR_E_NOMEM;
    int rc;
    if (!(s->dir = rtr_strdup(dir))) { rc = RTR_E_NOMEM; goto fail; }
    s->readonly = ro;
    if (pthread_mutex_init(&s->gate.mu, NULL) || pthread_cond_init(&s->gate.cv, NULL)) {
        rc = rtr_seterr(RTR_E_NOMEM, "%s: cannot create the map gate", dir);
        goto fail;
    }
    s->gate_init = 1;
    /* The map is address space, not memory or disk: start it large so that it
     * seldom has to grow. A writer gets room for the store to double. */
    size_t map = o && o->initial_map_size ? o->initial_map_size : RTR_STORE_DEFAULT_MAP;
    if (!ro && map / 2 < data_size) map = data_size * 2;
    if (map < data_size) map = data_size;
    map = (map + 4095) & ~(size_t)4095;
    for (;;) {
        if ((rc = mdb_env_create(&s->env))) { rc = rtr_seterr(RTR_E_LMDB, "%s: %s", dir, mdb_strerror(rc)); goto fail; }
        mdb_env_set_maxdbs(s->env, 16);
        mdb_env_set_maxreaders(s->env, 256);
        mdb_env_set_mapsize(s->env, map);
        rc = mdb_env_open(s->env, dir, MDB_NOTLS | (ro ? MDB_RDONLY : 0), 0644);
        /* address space limited (ulimit -v): ask for less, down to what the file needs */
        if (rc != ENOMEM || map / 2 < data_size || map / 2 < ((size_t)64 << 20)) break;
        mdb_env_close(s->env);
        s->env = NULL;
        map = (map / 2 + 4095) & ~(size_t)4095;
    }
    if (rc) {
        if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: not an LMDB chunk store (%s)", dir, mdb_strerror(rc));
        else
            rc = rtr_seterr(rc == ENOSPC ? RTR_E_FULL : RTR_E_LMDB, "%s: open: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if ((rc = check_file_size(s))) goto fail;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, ro ? MDB_RDONLY : 0, &txn))) {
        rc = rtr_seterr(RTR_E_LMDB, "%s: begin: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    rc = open_dbis(s, txn, ro ? 0 : MDB_CREATE);
    if (!rc) rc = check_schema(s, txn, !ro);
    if (rc) { mdb_txn_abort(txn); goto fail; }
    if ((rc = mdb_txn_commit(txn))) { rc = rtr_seterr(RTR_E_LMDB, "%s: commit: %s", dir, mdb_strerror(rc)); goto fail; }
    *out = s;
    return RTR_OK;
fail:
    rtr_store_close(s);
    return rc;
}

void rtr_store_close(rtr_store *s) {
    if (!s) return;
    if (s->gate_init) {
        RTR_ASSERT(s->gate.active == 0);
        pthread_cond_destroy(&s->gate.cv);
        pthread_mutex_destroy(&s->gate.mu);
    }
    if (s->env) mdb_env_close(s->env);
    rtr_free(s->dir);
    rtr_free(s);
}

/* --- counters --------------------------------------------------------------- */
static int load_counters(rtr_store_txn *t) {
    MDB_val k = {8, "counters"}, v;
    int rc = mdb_get(t->txn, t->s->meta, &k, &v);
    if (rc) return rc == MDB_NOTFOUND ? rtr_seterr(RTR_E_CORRUPT, "%s: counters missing", t->s->dir)
                                      : lmdb_err(t, rc, "read counters");
    if (v.mv_size != 8 * C_COUNT) return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt counters record", t->s->dir);
    for (int i = 0; i < C_COUNT; i++) t->c[i] = get_u64((const uint8_t *)v.mv_data + 8 * i);
    if (t->c[C_NEXT_DOC] == 0 || t->c[C_NEXT_CHUNK] == 0)
        return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt counters record", t->s->dir);
    return RTR_OK;
}

static int save_counters(rtr_store_txn *t) {
    uint8_t b[8 * C_COUNT];
    for (int i = 0; i < C_COUNT; i++) put_u64(b + 8 * i, t->c[i]);
    MDB_val k = {8, "counters"}, v = {sizeof b, b};
    int rc = mdb_put(t->txn, t->s->meta, &k, &v, 0);
    return rc ? lmdb_err(t, rc, "write counters") : RTR_OK;
}

/* --- the map gate --------------------------------------------------------- */
/* How many transactions of each store this thread holds (a thread seldom holds
 * transactions of more than one or two stores at once). */
enum { HELD_SLOTS = 8 };
static _Thread_local struct held_slot { const rtr_store *s; long n; } held[HELD_SLOTS];

static struct held_slot *held_slot(const rtr_store *s, int add) {
    for (int i = 0; i < HELD_SLOTS; i++)
        if (held[i].s == s) return &held[i];
    if (!add) return NULL;
    for (int i = 0; i < HELD_SLOTS; i++)
        if (!held[i].s) { held[i].s = s; held[i].n = 0; return &held[i]; }
    RTR_ASSERT(!"transactions of more than 8 stores open on one thread");
    return NULL;
}

static long held_by_me(const rtr_store *s) {
    const struct held_slot *h = held_slot(s, 0);
    return h ? h->n : 0;
}

static void gate_enter(rtr_store *s) {
    struct held_slot *h = held_slot(s, 1);
    pthread_mutex_lock(&s->gate.mu);
    while (s->gate.resizing && h->n == 0) pthread_cond_wait(&s->gate.cv, &s->gate.mu);
    s->gate.active++;
    pthread_mutex_unlock(&s->gate.mu);
    h->n++;
}

static void gate_leave(rtr_store *s) {
    struct held_slot *h = held_slot(s, 0);
    RTR_ASSERT(h && h->n > 0);
    if (--h->n == 0) h->s = NULL;
    pthread_mutex_lock(&s->gate.mu);
    RTR_ASSERT(s->gate.active > 0);
    if (--s->gate.active == 0) pthread_cond_broadcast(&s->gate.cv);
    pthread_mutex_unlock(&s->gate.mu);
}

/* Resizes the map with every other transaction of the process stopped:
 * closes the gate, waits for the open transactions to end, resizes, opens.
 * size 0 adopts the size another process gave the map; otherwise the map
 * becomes size unless it has already grown past seen (another thread of
 * this process grew it meanwhile). The calling thread must hold no
 * transaction of s (RTR_E_BUSY otherwise: the wait could never end). */
static int map_resize(rtr_store *s, size_t seen, size_t size) {
    if (held_by_me(s))
        return rtr_seterr(RTR_E_BUSY, "%s: the LMDB map must be resized while this thread holds a transaction; "
                                      "run the command again", s->dir);
    pthread_mutex_lock(&s->gate.mu);
    while (s->gate.resizing) pthread_cond_wait(&s->gate.cv, &s->gate.mu);
    s->gate.resizing = 1;
    while (s->gate.active > 0) pthread_cond_wait(&s->gate.cv, &s->gate.mu);
    int mrc = 0;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    if (size == 0 || info.me_mapsize <= seen) mrc = mdb_env_set_mapsize(s->env, size);
    s->gate.resizing = 0;
    pthread_cond_broadcast(&s->gate.cv);
    pthread_mutex_unlock(&s->gate.mu);
    if (mrc) return rtr_seterr(RTR_E_LMDB, "%s: resize the map to %zu bytes: %s", s->dir, size, mdb_strerror(mrc));
    return RTR_OK;
}

/* --- transactions --------------------------------------------------------- */
static int txn_begin(rtr_store *s, int write, rtr_store_txn **out) {
    rtr_store_txn *t = rtr_calloc(1, sizeof *t);
    if (!t) return RTR_E_NOMEM;
    t->s = s;
    t->write = write;
    t->thread = pthread_self();
    gate_enter(s);
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc == MDB_MAP_RESIZED) {
        /* another process grew the map: adopt its size, with the gate closed */
        gate_leave(s);
        if ((rc = map_resize(s, 0, 0))) { rtr_free(t); return rc; }
        gate_enter(s);
        rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    }
    if (rc) {
        gate_leave(s);
        rtr_free(t);
        return rtr_seterr(RTR_E_LMDB, "%s: begin transaction: %s", s->dir, mdb_strerror(rc));
    }
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    t->map_at_begin = info.me_mapsize;
    if ((rc = load_counters(t))) {
        mdb_txn_abort(t->txn);
        gate_leave(s);
        rtr_free(t);
        return rc;
    }
    *out = t;
    return RTR_OK;
}

int rtr_store_read_begin(rtr_store *s, rtr_store_txn **out) { return txn_begin(s, 0, out); }

int rtr_store_warm(rtr_store *s, uint64_t *bytes) {
    *bytes = 0;
    rtr_store_txn *t;   /* the map stays where it is meanwhile (a writer that grows it waits) */
    int rc = rtr_store_read_begin(s, &t);
    if (rc) return rc;
    char *data = rtr_path_join(s->dir, "data.mdb");
    if (data) *bytes = rtr_map_populate_file(data);   /* LMDB names no map address (me_mapaddr: fixed maps only) */
    rtr_free(data);
    rtr_store_txn_end(t);
    return data ? RTR_OK : RTR_E_NOMEM;
}

void rtr_store_txn_end(rtr_store_txn *t) {
    if (!t) return;
    RTR_ASSERT(pthread_equal(t->thread, pthread_self()));
    if (t->txn) mdb_txn_abort(t->txn);
    gate_leave(t->s);
    if (t->dctx) ZSTD_freeDCtx(t->dctx);
    rtr_free(t);
}

/* LMDB reports a short write on a full disk as EIO: tell the user what it is. */
static int commit_err(rtr_store_txn *t, int mrc) {
    struct statvfs vfs;
    if ((mrc == EIO || mrc == ENOSPC) && statvfs(t->s->dir, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < ((uint64_t)64 << 20))
        return rtr_seterr(RTR_E_FULL, "%s: no space left on device (%llu bytes free); the last batch was rolled back",
                          t->s->dir, (unsigned long long)vfs.f_bavail * vfs.f_frsize);
    return lmdb_err(t, mrc, "commit");
}

int rtr_store_write(rtr_store *s, rtr_store_write_fn fn, void *ctx) {
    if (s->readonly) return rtr_seterr(RTR_E_INVALID, "%s: opened read-only", s->dir);
    for (int attempt = 0;; attempt++) {
        rtr_store_txn *t;
        int rc = txn_begin(s, 1, &t);
        if (rc) return rc;
        rc = fn(t, ctx);
        if (!rc) rc = save_counters(t);
        if (!rc) {
            rtr_crash_point("before-commit");   /* lib/crash.h */
            int mrc = mdb_txn_commit(t->txn);
            t->txn = NULL;
            if (mrc) rc = commit_err(t, mrc);
            else rtr_crash_point("after-commit");
        }
        int full = t->map_full;
        size_t seen = t->map_at_begin;
        rtr_store_txn_end(t);
        if (!rc || !full) return rc;
        /* Map full: double it (every other transaction stopped) and run the
         * whole batch again. */
        size_t nsize = seen * 2;
        if (attempt > 40 || nsize < seen) return rc;
        if ((rc = map_resize(s, seen, nsize))) return rc;
        rtr_clearerr();
    }
}

/* --- stats ---------------------------------------------------------------- */
static uint64_t db_entries(rtr_store_txn *t, MDB_dbi dbi) {
    MDB_stat st;
    return mdb_stat(t->txn, dbi, &st) ? 0 : st.ms_entries;
}

int rtr_store_get_stats(rtr_store_txn *t, rtr_store_stats *out) {
    memset(out, 0, sizeof *out);
    out->schema = RTR_STORE_SCHEMA;
    out->next_doc_id = t->c[C_NEXT_DOC];
    out->next_chunk_id = t->c[C_NEXT_CHUNK];
    out->n_docs = t->c[C_DOCS];
    out->n_chunks = t->c[C_CHUNKS];
    out->n_tokens = t->c[C_TOKENS];
    out->n_bytes = t->c[C_BYTES];
    out->n_files = db_entries(t, t->s->files);
    out->n_skipped = db_entries(t, t->s->skipped);
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(t->s->env, &info);
    mdb_env_stat(t->s->env, &st);
    out->map_size = info.me_mapsize;
    out->data_size = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    return RTR_OK;
}

/* --- records ------------------------------------------------------------------ */
static int parse_chunk(rtr_store_txn *t, uint64_t id, const MDB_val *v, rtr_chunk *c) {
    const uint8_t *p = v->mv_data;
    if (v->mv_size < CHUNK_HEADER) return corrupt(t, "chunk", id);
    uint32_t n = get_u16(p + CHUNK_NTOK);
    if (n == 0 || n > RTR_CHUNK_TOKENS || v->mv_size != CHUNK_HEADER + 4 * (size_t)n) return corrupt(t, "chunk", id);
    c->id = id;
    c->doc_id = get_u64(p + CHUNK_DOC);
    c->seq = get_u32(p + CHUNK_SEQ);
    c->n_tokens = n;
    c->flags = get_u16(p + CHUNK_FLAGS);
    c->byte_start = get_u64(p + CHUNK_START);
    c->byte_end = get_u64(p + CHUNK_END);
    if (c->byte_end < c->byte_start) return corrupt(t, "chunk", id);
    for (uint32_t i = 0; i < n; i++) c->tokens[i] = get_u32(p + CHUNK_HEADER + 4 * i);
    return RTR_OK;
}

static int parse_doc(rtr_store_txn *t, uint64_t id, const MDB_val *v, rtr_doc *d) {
    const uint8_t *p = v->mv_data;
    if (v->mv_size < DOC_HEADER) return corrupt(t, "document", id);
    uint64_t pl = get_u32(p + DOC_PATH_LEN), tl = get_u32(p + DOC_TITLE_LEN), el = get_u32(p + DOC_EXT_LEN);
    if (v->mv_size != DOC_HEADER + pl + tl + el) return corrupt(t, "document", id);
    d->id = id;
    d->first_chunk = get_u64(p + DOC_FIRST_CHUNK);
    d->n_chunks = get_u32(p + DOC_N_CHUNKS);
    memcpy(d->content_hash, p + DOC_HASH, 16);
    memcpy(d->file_key, p + DOC_FILE_KEY, 16);
    d->n_bytes = get_u64(p + DOC_N_BYTES);
    d->n_tokens = get_u64(p + DOC_N_TOKENS);
    d->mtime_ns = (int64_t)get_u64(p + DOC_MTIME);
    d->path = (const char *)p + DOC_HEADER;
    d->path_len = (uint32_t)pl;
    d->title = d->path + pl;
    d->title_len = (uint32_t)tl;
    d->ext_id = d->title + tl;
    d->ext_id_len = (uint32_t)el;
    if (d->n_tokens > (uint64_t)d->n_chunks * RTR_CHUNK_TOKENS || d->n_bytes > MAX_TEXT_BYTES)
        return corrupt(t, "document", id);
    return RTR_OK;
}

static int get_by_id(rtr_store_txn *t, MDB_dbi dbi, uint64_t id, MDB_val *v, const char *what) {
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {8, kb};
    int rc = mdb_get(t->txn, dbi, &k, v);
    if (rc == MDB_NOTFOUND)
        return rtr_seterr(RTR_E_NOTFOUND, "%s: no %s with id %llu", t->s->dir, what, (unsigned long long)id);
    return rc ? lmdb_err(t, rc, what) : RTR_OK;
}

int rtr_store_get_chunk(rtr_store_txn *t, uint64_t id, rtr_chunk *out) {
    MDB_val v;
    int rc = get_by_id(t, t->s->chunks, id, &v, "chunk");
    return rc ? rc : parse_chunk(t, id, &v, out);
}

int rtr_store_get_doc(rtr_store_txn *t, uint64_t id, rtr_doc *out) {
    MDB_val v;
    int rc = get_by_id(t, t->s->docs, id, &v, "document");
    return rc ? rc : parse_doc(t, id, &v, out);
}

int rtr_store_get_text(rtr_store_txn *t, uint64_t doc_id, rtr_buf *out) {
    MDB_val v;
    int rc = get_by_id(t, t->s->texts, doc_id, &v, "document text");
    if (rc) return rc;
    if (v.mv_size < 8) return corrupt(t, "text", doc_id);
    uint64_t raw = get_u64(v.mv_data);
    const uint8_t *z = (const uint8_t *)v.mv_data + 8;
    size_t zl = v.mv_size - 8;
    unsigned long long fcs = ZSTD_getFrameContentSize(z, zl);
    if (raw > MAX_TEXT_BYTES || fcs != raw) return corrupt(t, "text", doc_id);
    if ((rc = rtr_buf_reserve(out, (size_t)raw + 1))) return rc;
    if (!t->dctx && !(t->dctx = ZSTD_createDCtx())) return rtr_seterr(RTR_E_NOMEM, "zstd context");
    size_t n = ZSTD_decompressDCtx(t->dctx, out->data + out->len, (size_t)raw, z, zl);
    if (ZSTD_isError(n) || n != raw) return corrupt(t, "text", doc_id);
    out->len += n;
    return RTR_OK;
}

static int next_by_id(rtr_store_txn *t, MDB_dbi dbi, uint64_t after, uint64_t *id, MDB_val *v) {
    if (after == UINT64_MAX) return RTR_E_NOTFOUND;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, dbi, &cur);
    if (rc) return lmdb_err(t, rc, "cursor");
    uint8_t kb[8];
    put_be64(kb, after + 1);
    MDB_val k = {8, kb};
    rc = mdb_cursor_get(cur, &k, v, MDB_SET_RANGE);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) return RTR_E_NOTFOUND;
    if (rc) return lmdb_err(t, rc, "cursor get");
    if (k.mv_size != 8) return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt key", t->s->dir);
    *id = get_be64(k.mv_data);
    return RTR_OK;
}

int rtr_store_next_chunk(rtr_store_txn *t, uint64_t after, rtr_chunk *out) {
    uint64_t id;
    MDB_val v;
    int rc = next_by_id(t, t->s->chunks, after, &id, &v);
    return rc ? rc : parse_chunk(t, id, &v, out);
}

int rtr_store_next_doc(rtr_store_txn *t, uint64_t after, rtr_doc *out) {
    uint64_t id;
    MDB_val v;
    int rc = next_by_id(t, t->s->docs, after, &id, &v);
    return rc ? rc : parse_doc(t, id, &v, out);
}

static int parse_file(rtr_store_txn *t, const MDB_val *v, rtr_file_rec *f) {
    const uint8_t *p = v->mv_data;
    if (v->mv_size < FILE_HEADER || v->mv_size != FILE_HEADER + (size_t)get_u32(p + FILE_PATH_LEN))
        return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt file record", t->s->dir);
    memcpy(f->content_hash, p + FILE_HASH, 16);
    f->size = get_u64(p + FILE_SIZE);
    f->mtime_ns = (int64_t)get_u64(p + FILE_MTIME);
    f->n_docs = get_u32(p + FILE_NDOCS);
    f->path_len = get_u32(p + FILE_PATH_LEN);
    f->path = (const char *)p + FILE_HEADER;
    return RTR_OK;
}

static int parse_skip(rtr_store_txn *t, const MDB_val *v, rtr_skip_rec *r) {
    const uint8_t *p = v->mv_data;
    if (v->mv_size < SKIP_HEADER ||
        v->mv_size != SKIP_HEADER + (size_t)get_u32(p + SKIP_PATH_LEN) + get_u32(p + SKIP_DETAIL_LEN))
        return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt skip record", t->s->dir);
    r->reason = get_u32(p + SKIP_REASON);
    r->path_len = get_u32(p + SKIP_PATH_LEN);
    r->detail_len = get_u32(p + SKIP_DETAIL_LEN);
    r->path = (const char *)p + SKIP_HEADER;
    r->detail = r->path + r->path_len;
    return RTR_OK;
}

int rtr_store_get_file(rtr_store_txn *t, const char *path, rtr_file_rec *out) {
    uint8_t key[16];
    rtr_store_path_key(path, key);
    MDB_val k = {16, key}, v;
    int rc = mdb_get(t->txn, t->s->files, &k, &v);
    if (rc == MDB_NOTFOUND) return RTR_E_NOTFOUND;
    if (rc) return lmdb_err(t, rc, "read file record");
    return parse_file(t, &v, out);
}

static int file_docs_by_key(rtr_store_txn *t, const uint8_t key[16], uint64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->s->file_docs, &cur);
    if (rc) return lmdb_err(t, rc, "cursor");
    MDB_val k = {16, (void *)key}, v;
    size_t cap = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    while (rc == 0) {
        if (v.mv_size != 8) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: corrupt file_docs entry", t->s->dir); goto out; }
        if ((rc = RTR_GROW(*ids, &cap, *n + 1))) goto out;
        (*ids)[(*n)++] = get_be64(v.mv_data);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
    rc = rc == MDB_NOTFOUND ? RTR_OK : lmdb_err(t, rc, "read file_docs");
out:
    mdb_cursor_close(cur);
    if (rc) { rtr_free(*ids); *ids = NULL; *n = 0; }
    return rc;
}

int rtr_store_file_docs(rtr_store_txn *t, const char *path, uint64_t **ids, size_t *n) {
    uint8_t key[16];
    rtr_store_path_key(path, key);
    return file_docs_by_key(t, key, ids, n);
}

static int next_keyed(rtr_store_txn *t, MDB_dbi dbi, const uint8_t *after, uint8_t key_out[16], MDB_val *v) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, dbi, &cur);
    if (rc) return lmdb_err(t, rc, "cursor");
    MDB_val k;
    if (!after) {
        rc = mdb_cursor_get(cur, &k, v, MDB_FIRST);
    } else {
        k.mv_size = 16;
        k.mv_data = (void *)after;
        rc = mdb_cursor_get(cur, &k, v, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, after, 16) == 0)
            rc = mdb_cursor_get(cur, &k, v, MDB_NEXT);
    }
    if (rc == 0 && k.mv_size != 16) rc = MDB_CORRUPTED;
    if (rc == 0) memcpy(key_out, k.mv_data, 16);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) return RTR_E_NOTFOUND;
    return rc ? lmdb_err(t, rc, "iterate") : RTR_OK;
}

int rtr_store_next_file(rtr_store_txn *t, const uint8_t *after, uint8_t key_out[16], rtr_file_rec *out) {
    MDB_val v;
    int rc = next_keyed(t, t->s->files, after, key_out, &v);
    return rc ? rc : parse_file(t, &v, out);
}

int rtr_store_next_skip(rtr_store_txn *t, const uint8_t *after, uint8_t key_out[16], rtr_skip_rec *out) {
    MDB_val v;
    int rc = next_keyed(t, t->s->skipped, after, key_out, &v);
    return rc ? rc : parse_skip(t, &v, out);
}

/* --- writing ------------------------------------------------------------- */
static int put(rtr_store_txn *t, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen,
               unsigned flags, const char *what) {
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_put(t->txn, dbi, &k, &v, flags);
    return rc ? lmdb_err(t, rc, what) : RTR_OK;
}

static int del(rtr_store_txn *t, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen,
               const char *what) {
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_del(t->txn, dbi, &k, val ? &v : NULL);
    if (rc == MDB_NOTFOUND) return RTR_E_NOTFOUND;
    return rc ? lmdb_err(t, rc, what) : RTR_OK;
}

int rtr_store_compress_text(const uint8_t *text, size_t len, rtr_buf *out) {
    size_t bound = ZSTD_compressBound(len);
    int rc = rtr_buf_reserve(out, bound + 8);
    if (rc) return rc;
    put_u64(out->data + out->len, len);
    size_t n = ZSTD_compress(out->data + out->len + 8, bound, text, len, 3);
    if (ZSTD_isError(n)) return rtr_seterr(RTR_E_INVALID, "zstd: %s", ZSTD_getErrorName(n));
    out->len += 8 + n;
    return RTR_OK;
}

static size_t slen(const char *s) { return s ? strlen(s) : 0; }

int rtr_store_add_doc(rtr_store_txn *t, const rtr_doc_in *d, uint64_t *doc_id) {
    RTR_ASSERT(t->write);
    size_t pl = slen(d->path), tl = slen(d->title), el = slen(d->ext_id);
    if (pl == 0 || pl > UINT32_MAX || tl > UINT32_MAX || el > UINT32_MAX)
        return rtr_seterr(RTR_E_INVALID, "bad document path/title");
    uint64_t n_chunks = (d->n_tokens + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS;
    if (n_chunks > UINT32_MAX) return rtr_seterr(RTR_E_INVALID, "%s: document too large", d->path);
    uint64_t id = t->c[C_NEXT_DOC], first = t->c[C_NEXT_CHUNK];
    uint8_t key[8];
    int rc;

    /* chunks, appended in id order */
    uint8_t rec[CHUNK_HEADER + 4 * RTR_CHUNK_TOKENS];
    uint64_t start = 0;
    for (uint64_t c = 0; c < n_chunks; c++) {
        size_t off = (size_t)c * RTR_CHUNK_TOKENS;
        size_t n = d->n_tokens - off < RTR_CHUNK_TOKENS ? d->n_tokens - off : RTR_CHUNK_TOKENS;
        uint16_t flags = (uint16_t)((c + 1 == n_chunks ? RTR_CHUNK_LAST : 0) | (n < RTR_CHUNK_TOKENS ? RTR_CHUNK_SHORT : 0));
        uint64_t end = d->chunk_ends[c];
        RTR_ASSERT(end >= start && end <= d->n_bytes);
        put_u64(rec + CHUNK_DOC, id);
        put_u32(rec + CHUNK_SEQ, (uint32_t)c);
        put_u16(rec + CHUNK_NTOK, (uint16_t)n);
        put_u16(rec + CHUNK_FLAGS, flags);
        put_u64(rec + CHUNK_START, start);
        put_u64(rec + CHUNK_END, end);
        for (size_t i = 0; i < n; i++) put_u32(rec + CHUNK_HEADER + 4 * i, d->tokens[off + i]);
        put_be64(key, first + c);
        if ((rc = put(t, t->s->chunks, key, 8, rec, CHUNK_HEADER + 4 * n, MDB_APPEND, "add chunk"))) return rc;
        start = end;
    }

    /* document record */
    size_t dl = DOC_HEADER + pl + tl + el;
    uint8_t *dr = rtr_malloc(dl);
    if (!dr) return RTR_E_NOMEM;
    memset(dr, 0, DOC_HEADER);
    put_u64(dr + DOC_FIRST_CHUNK, first);
    put_u32(dr + DOC_N_CHUNKS, (uint32_t)n_chunks);
    memcpy(dr + DOC_HASH, d->content_hash, 16);
    rtr_store_path_key(d->path, dr + DOC_FILE_KEY);
    put_u64(dr + DOC_N_BYTES, d->n_bytes);
    put_u64(dr + DOC_N_TOKENS, d->n_tokens);
    put_u64(dr + DOC_MTIME, (uint64_t)d->mtime_ns);
    put_u32(dr + DOC_PATH_LEN, (uint32_t)pl);
    put_u32(dr + DOC_TITLE_LEN, (uint32_t)tl);
    put_u32(dr + DOC_EXT_LEN, (uint32_t)el);
    memcpy(dr + DOC_HEADER, d->path, pl);
    if (tl) memcpy(dr + DOC_HEADER + pl, d->title, tl);
    if (el) memcpy(dr + DOC_HEADER + pl + tl, d->ext_id, el);
    put_be64(key, id);
    rc = put(t, t->s->docs, key, 8, dr, dl, MDB_APPEND, "add document");
    if (!rc) rc = put(t, t->s->texts, key, 8, d->ztext, d->ztext_len, MDB_APPEND, "add text");
    if (!rc) rc = put(t, t->s->file_docs, dr + DOC_FILE_KEY, 16, key, 8, 0, "link document");
    rtr_free(dr);
    if (rc) return rc;

    t->c[C_NEXT_DOC] = id + 1;
    t->c[C_NEXT_CHUNK] = first + n_chunks;
    t->c[C_DOCS] += 1;
    t->c[C_CHUNKS] += n_chunks;
    t->c[C_TOKENS] += d->n_tokens;
    t->c[C_BYTES] += d->n_bytes;
    if (doc_id) *doc_id = id;
    return RTR_OK;
}

int rtr_store_delete_doc(rtr_store_txn *t, uint64_t doc_id) {
    RTR_ASSERT(t->write);
    rtr_doc d;
    int rc = rtr_store_get_doc(t, doc_id, &d);
    if (rc) return rc;
    uint8_t fkey[16];
    memcpy(fkey, d.file_key, 16);   /* d points into pages the deletes may move */
    uint64_t first = d.first_chunk, n = d.n_chunks, ntok = d.n_tokens, nbytes = d.n_bytes;
    uint8_t key[8];
    for (uint64_t c = 0; c < n; c++) {
        put_be64(key, first + c);
        rc = del(t, t->s->chunks, key, 8, NULL, 0, "delete chunk");
        if (rc && rc != RTR_E_NOTFOUND) return rc;
    }
    put_be64(key, doc_id);
    if ((rc = del(t, t->s->texts, key, 8, NULL, 0, "delete text")) && rc != RTR_E_NOTFOUND) return rc;
    if ((rc = del(t, t->s->docs, key, 8, NULL, 0, "delete document"))) return rc;
    if ((rc = del(t, t->s->file_docs, fkey, 16, key, 8, "unlink document")) && rc != RTR_E_NOTFOUND) return rc;
    if (t->c[C_DOCS] < 1 || t->c[C_CHUNKS] < n || t->c[C_TOKENS] < ntok || t->c[C_BYTES] < nbytes)
        return rtr_seterr(RTR_E_CORRUPT, "%s: counters disagree with document %llu", t->s->dir,
                          (unsigned long long)doc_id);
    t->c[C_DOCS] -= 1;
    t->c[C_CHUNKS] -= n;
    t->c[C_TOKENS] -= ntok;
    t->c[C_BYTES] -= nbytes;
    return RTR_OK;
}

int rtr_store_put_file(rtr_store_txn *t, const char *path, const uint8_t hash[16], uint64_t size,
                       int64_t mtime_ns, uint32_t n_docs) {
    size_t pl = strlen(path);
    uint8_t *r = rtr_malloc(FILE_HEADER + pl);
    if (!r) return RTR_E_NOMEM;
    memcpy(r + FILE_HASH, hash, 16);
    put_u64(r + FILE_SIZE, size);
    put_u64(r + FILE_MTIME, (uint64_t)mtime_ns);
    put_u32(r + FILE_NDOCS, n_docs);
    put_u32(r + FILE_PATH_LEN, (uint32_t)pl);
    memcpy(r + FILE_HEADER, path, pl);
    uint8_t key[16];
    rtr_store_path_key(path, key);
    int rc = put(t, t->s->files, key, 16, r, FILE_HEADER + pl, 0, "write file record");
    rtr_free(r);
    return rc;
}

int rtr_store_delete_file(rtr_store_txn *t, const char *path) {
    uint8_t key[16];
    rtr_store_path_key(path, key);
    uint64_t *ids;
    size_t n;
    int rc = file_docs_by_key(t, key, &ids, &n);
    if (rc) return rc;
    for (size_t i = 0; i < n && !rc; i++) rc = rtr_store_delete_doc(t, ids[i]);
    rtr_free(ids);
    if (rc) return rc;
    rc = del(t, t->s->files, key, 16, NULL, 0, "delete file record");
    return rc == RTR_E_NOTFOUND ? RTR_OK : rc;
}

int rtr_store_put_skip(rtr_store_txn *t, const char *path, uint32_t reason, const char *detail) {
    size_t pl = strlen(path), dl = slen(detail);
    uint8_t *r = rtr_malloc(SKIP_HEADER + pl + dl);
    if (!r) return RTR_E_NOMEM;
    put_u32(r + SKIP_REASON, reason);
    put_u32(r + SKIP_PATH_LEN, (uint32_t)pl);
    put_u32(r + SKIP_DETAIL_LEN, (uint32_t)dl);
    memcpy(r + SKIP_HEADER, path, pl);
    if (dl) memcpy(r + SKIP_HEADER + pl, detail, dl);
    uint8_t key[16];
    rtr_store_path_key(path, key);
    int rc = put(t, t->s->skipped, key, 16, r, SKIP_HEADER + pl + dl, 0, "write skip record");
    rtr_free(r);
    return rc;
}

int rtr_store_delete_skip(rtr_store_txn *t, const char *path) {
    uint8_t key[16];
    rtr_store_path_key(path, key);
    int rc = del(t, t->s->skipped, key, 16, NULL, 0, "delete skip record");
    return rc == RTR_E_NOTFOUND ? RTR_OK : rc;
}

/* --- checking ------------------------------------------------------------------ */
typedef struct checker {
    rtr_store_txn *t;
    rtr_check_fn report;
    void *ctx;
    rtr_store_check_report *rep;
} checker;

void rtr_check_problem(rtr_check_fn report, void *ctx, uint64_t *problems, const char *fmt, ...) {
    if ((*problems)++ >= RTR_CHECK_MAX_REPORTS || !report) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(ctx, msg);
}

#define problem(c, ...) rtr_check_problem((c)->report, (c)->ctx, &(c)->rep->problems, __VA_ARGS__)

/* Every record of one database: keys of klen bytes, values that check() accepts. */
static int walk(checker *c, MDB_dbi dbi, const char *name, size_t klen, int (*check)(checker *, const MDB_val *,
                                                                                    const MDB_val *), uint64_t *count) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(c->t->txn, dbi, &cur);
    if (rc) return lmdb_err(c->t, rc, "cursor");
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        (*count)++;
        if (klen && k.mv_size != klen) {
            problem(c, "%s: a key of %zu bytes (expected %zu)", name, k.mv_size, klen);
            continue;
        }
        int x = check ? check(c, &k, &v) : RTR_OK;
        if (x < 0 && x != RTR_E_CORRUPT) {
            rc = x;
            break;
        }
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) return RTR_OK;
    return rc < 0 ? rc : lmdb_err(c->t, rc, name);
}

static int check_chunk(checker *c, const MDB_val *k, const MDB_val *v) {
    rtr_chunk ch;
    uint64_t id = get_be64(k->mv_data);
    int rc = parse_chunk(c->t, id, v, &ch);
    if (rc) problem(c, "chunk %llu: %s", (unsigned long long)id, rtr_errdetail());
    else if (id == 0 || id >= c->t->c[C_NEXT_CHUNK]) problem(c, "chunk %llu: id not below the next chunk id %llu",
                                                             (unsigned long long)id, (unsigned long long)c->t->c[C_NEXT_CHUNK]);
    return rc;
}

static int check_text(checker *c, const MDB_val *k, const MDB_val *v) {
    (void)v;
    uint64_t id = get_be64(k->mv_data);
    rtr_doc d;
    if (rtr_store_get_doc(c->t, id, &d)) problem(c, "text of document %llu: no such document", (unsigned long long)id);
    return RTR_OK;
}

static int check_file(checker *c, const MDB_val *k, const MDB_val *v) {
    rtr_file_rec f;
    int rc = parse_file(c->t, v, &f);
    uint8_t key[16];
    if (!rc) {
        char *p = rtr_strndup(f.path, f.path_len);
        if (!p) return RTR_E_NOMEM;
        rtr_store_path_key(p, key);
        rtr_free(p);
        if (memcmp(key, k->mv_data, 16)) problem(c, "file record %.*s: filed under another path's key", (int)f.path_len, f.path);
    } else {
        problem(c, "a file record: %s", rtr_errdetail());
    }
    return rc;
}

static int check_link(checker *c, const MDB_val *k, const MDB_val *v) {
    if (v->mv_size != 8) {
        problem(c, "file_docs: a value of %zu bytes", v->mv_size);
        return RTR_E_CORRUPT;
    }
    rtr_doc d;
    uint64_t id = get_be64(v->mv_data);
    if (rtr_store_get_doc(c->t, id, &d)) problem(c, "file_docs: document %llu does not exist", (unsigned long long)id);
    else if (memcmp(d.file_key, k->mv_data, 16)) problem(c, "file_docs: document %llu is filed under another file", (unsigned long long)id);
    return RTR_OK;
}

static int check_skip(checker *c, const MDB_val *k, const MDB_val *v) {
    (void)k;
    rtr_skip_rec r;
    int rc = parse_skip(c->t, v, &r);
    if (rc) problem(c, "a skip record: %s", rtr_errdetail());
    return rc;
}

/* A document against its chunks, text and file link. */
static int check_doc(checker *c, const rtr_doc *d, const rtr_tokenizer *tok, rtr_buf *text, rtr_buf *dec,
                     uint64_t *tokens) {
    unsigned long long id = (unsigned long long)d->id;
    text->len = 0;
    int rc = rtr_store_get_text(c->t, d->id, text);
    if (rc == RTR_E_NOMEM) return rc;
    if (rc) problem(c, "document %llu: text: %s", id, rtr_errdetail());
    else if (text->len != d->n_bytes) problem(c, "document %llu: %zu bytes of text, the record says %llu", id, text->len, (unsigned long long)d->n_bytes);
    int have_text = rc == RTR_OK && text->len == d->n_bytes;
    uint64_t pos = 0, ntok = 0;
    for (uint32_t s = 0; s < d->n_chunks; s++) {
        rtr_chunk ch;
        int x = rtr_store_get_chunk(c->t, d->first_chunk + s, &ch);
        if (x == RTR_E_NOMEM) return x;
        if (x) {
            problem(c, "document %llu: chunk %llu: %s", id, (unsigned long long)(d->first_chunk + s), rtr_errdetail());
            continue;
        }
        if (ch.doc_id != d->id || ch.seq != s)
            problem(c, "document %llu: chunk %llu belongs to document %llu as number %u", id, (unsigned long long)ch.id,
                    (unsigned long long)ch.doc_id, ch.seq);
        if (ch.byte_start != pos || ch.byte_end > d->n_bytes)
            problem(c, "document %llu: chunk %llu spans %llu-%llu, not from %llu within %llu bytes", id,
                    (unsigned long long)ch.id, (unsigned long long)ch.byte_start, (unsigned long long)ch.byte_end,
                    (unsigned long long)pos, (unsigned long long)d->n_bytes);
        if ((ch.flags & RTR_CHUNK_LAST) != (s + 1 == d->n_chunks ? RTR_CHUNK_LAST : 0u) ||
            (ch.n_tokens < RTR_CHUNK_TOKENS && s + 1 != d->n_chunks))
            problem(c, "document %llu: chunk %llu: a short or last chunk that is not the document's last", id,
                    (unsigned long long)ch.id);
        if (tok && have_text && ch.byte_end >= ch.byte_start && ch.byte_end <= text->len) {
            dec->len = 0;
            x = rtr_tokenizer_decode(tok, ch.tokens, ch.n_tokens, dec);
            if (x == RTR_E_NOMEM) return x;
            if (x || dec->len != ch.byte_end - ch.byte_start ||
                (dec->len && memcmp(dec->data, text->data + ch.byte_start, dec->len)))
                problem(c, "document %llu: chunk %llu: its tokens do not decode to its span of the text", id,
                        (unsigned long long)ch.id);
        }
        pos = ch.byte_end;
        ntok += ch.n_tokens;
    }
    if (d->n_chunks && pos != d->n_bytes)
        problem(c, "document %llu: its chunks end at byte %llu of %llu", id, (unsigned long long)pos, (unsigned long long)d->n_bytes);
    if (ntok != d->n_tokens)
        problem(c, "document %llu: its chunks hold %llu tokens, the record says %llu", id, (unsigned long long)ntok,
                (unsigned long long)d->n_tokens);
    *tokens += ntok;
    MDB_val k = {16, (void *)d->file_key}, v = {8, NULL};
    uint8_t kb[8];
    put_be64(kb, d->id);
    v.mv_data = kb;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(c->t->txn, c->t->s->file_docs, &cur))) return lmdb_err(c->t, rc, "cursor");
    rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) problem(c, "document %llu: no file_docs link from its file", id);
    else if (rc) return lmdb_err(c->t, rc, "file_docs");
    return RTR_OK;
}

int rtr_store_check(rtr_store *s, const rtr_tokenizer *tok, rtr_check_fn report, void *ctx, rtr_store_check_report *out) {
    memset(out, 0, sizeof *out);
    rtr_store_txn *t;
    int rc = rtr_store_read_begin(s, &t);
    if (rc) return rc;
    checker c = {t, report, ctx, out};
    rtr_buf text = {0}, dec = {0};
    uint64_t ignored = 0, docs_chunks = 0, tokens = 0, bytes = 0, last_doc = 0;
    if (!rc) rc = walk(&c, s->chunks, "chunks", 8, check_chunk, &out->chunks);
    if (!rc) rc = walk(&c, s->texts, "texts", 8, check_text, &out->texts);
    if (!rc) rc = walk(&c, s->files, "files", 16, check_file, &out->files);
    if (!rc) rc = walk(&c, s->file_docs, "file_docs", 16, check_link, &out->links);
    if (!rc) rc = walk(&c, s->skipped, "skipped", 16, check_skip, &out->skipped);
    if (!rc) rc = walk(&c, s->meta, "meta", 0, NULL, &ignored);
    rtr_doc d;
    uint64_t after = 0;
    while (!rc) {
        int x = rtr_store_next_doc(t, after, &d);
        if (x == RTR_E_NOTFOUND) break;
        if (x == RTR_E_CORRUPT) {   /* skip past the bad record */
            problem(&c, "%s", rtr_errdetail());
            MDB_val k, v;
            MDB_cursor *cur;
            uint8_t kb[8];
            put_be64(kb, after + 1);
            k = (MDB_val){8, kb};
            if (mdb_cursor_open(t->txn, s->docs, &cur)) break;
            x = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            after = x == 0 && k.mv_size == 8 ? get_be64(k.mv_data) : UINT64_MAX;
            mdb_cursor_close(cur);
            out->docs++;
            if (after == UINT64_MAX) break;
            continue;
        }
        if (x) {
            rc = x;
            break;
        }
        after = d.id;
        out->docs++;
        if (d.id >= t->c[C_NEXT_DOC]) problem(&c, "document %llu: id not below the next document id", (unsigned long long)d.id);
        if (d.id <= last_doc) problem(&c, "document %llu: out of order", (unsigned long long)d.id);
        last_doc = d.id;
        docs_chunks += d.n_chunks;
        bytes += d.n_bytes;
        rc = check_doc(&c, &d, tok, &text, &dec, &tokens);
    }
    if (!rc) {
        if (out->docs != t->c[C_DOCS] || docs_chunks != t->c[C_CHUNKS] || out->chunks != t->c[C_CHUNKS] ||
            tokens != t->c[C_TOKENS] || bytes != t->c[C_BYTES])
            problem(&c, "counters (%llu documents, %llu chunks, %llu tokens, %llu bytes) disagree with the records "
                    "(%llu documents holding %llu chunks, %llu chunk records, %llu tokens, %llu bytes)",
                    (unsigned long long)t->c[C_DOCS], (unsigned long long)t->c[C_CHUNKS], (unsigned long long)t->c[C_TOKENS],
                    (unsigned long long)t->c[C_BYTES], (unsigned long long)out->docs, (unsigned long long)docs_chunks,
                    (unsigned long long)out->chunks, (unsigned long long)tokens, (unsigned long long)bytes);
        if (out->texts != out->docs) problem(&c, "%llu texts for %llu documents", (unsigned long long)out->texts, (unsigned long long)out->docs);
        if (out->links != out->docs) problem(&c, "%llu file_docs links for %llu documents", (unsigned long long)out->links, (unsigned long long)out->docs);
    }
    rtr_buf_free(&text);
    rtr_buf_free(&dec);
    rtr_store_txn_end(t);
    return rc;
}

/* --- auxiliary tables --------------------------------------------------------- */
static int aux_ok(rtr_store_txn *t, int table) {
    RTR_ASSERT(table >= 0 && table < RTR_AUX_COUNT);
    return t->s->has_aux ? RTR_OK : RTR_E_NOTFOUND;
}

int rtr_store_aux_get(rtr_store_txn *t, int table, const void *key, size_t klen, const void **val, size_t *vlen) {
    int rc = aux_ok(t, table);
    if (rc) return rc;
    MDB_val k = {klen, (void *)key}, v;
    if ((rc = mdb_get(t->txn, t->s->aux[table], &k, &v)) == MDB_NOTFOUND) return RTR_E_NOTFOUND;
    if (rc) return lmdb_err(t, rc, "read an index record");
    *val = v.mv_data;
    *vlen = v.mv_size;
    return RTR_OK;
}

int rtr_store_aux_put(rtr_store_txn *t, int table, const void *key, size_t klen, const void *val, size_t vlen) {
    RTR_ASSERT(t->write);
    int rc = aux_ok(t, table);
    if (rc) return rtr_seterr(RTR_E_INVALID, "%s: no index tables", t->s->dir);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    if ((rc = mdb_put(t->txn, t->s->aux[table], &k, &v, 0))) return lmdb_err(t, rc, "write an index record");
    return RTR_OK;
}

int rtr_store_aux_del(rtr_store_txn *t, int table, const void *key, size_t klen) {
    RTR_ASSERT(t->write);
    int rc = aux_ok(t, table);
    if (rc) return rc;
    MDB_val k = {klen, (void *)key};
    if ((rc = mdb_del(t->txn, t->s->aux[table], &k, NULL)) == MDB_NOTFOUND) return RTR_E_NOTFOUND;
    if (rc) return lmdb_err(t, rc, "delete an index record");
    return RTR_OK;
}

struct rtr_aux_cursor {
    rtr_store_txn *t;
    MDB_cursor *cur;
};

int rtr_store_aux_cursor_open(rtr_store_txn *t, int table, rtr_aux_cursor **out) {
    *out = NULL;
    int rc = aux_ok(t, table);
    if (rc) return rc;
    rtr_aux_cursor *c = rtr_calloc(1, sizeof *c);
    if (!c) return RTR_E_NOMEM;
    c->t = t;
    if ((rc = mdb_cursor_open(t->txn, t->s->aux[table], &c->cur))) {
        rtr_free(c);
        return lmdb_err(t, rc, "cursor");
    }
    *out = c;
    return RTR_OK;
}

static int aux_cursor_get(rtr_aux_cursor *c, MDB_val *k, MDB_cursor_op op, const void **kout, size_t *kolen,
                          const void **val, size_t *vlen) {
    MDB_val v;
    int rc = mdb_cursor_get(c->cur, k, &v, op);
    if (rc == MDB_NOTFOUND) return RTR_E_NOTFOUND;
    if (rc) return lmdb_err(c->t, rc, "seek an index record");
    *kout = k->mv_data;
    *kolen = k->mv_size;
    *val = v.mv_data;
    *vlen = v.mv_size;
    return RTR_OK;
}

int rtr_store_aux_cursor_seek(rtr_aux_cursor *c, const void *key, size_t klen, const void **kout, size_t *kolen,
                              const void **val, size_t *vlen) {
    MDB_val k = {klen, (void *)key};
    return aux_cursor_get(c, &k, MDB_SET_RANGE, kout, kolen, val, vlen);
}

int rtr_store_aux_cursor_next(rtr_aux_cursor *c, const void **kout, size_t *kolen, const void **val, size_t *vlen) {
    MDB_val k;
    return aux_cursor_get(c, &k, MDB_NEXT, kout, kolen, val, vlen);
}

int rtr_store_aux_seek(rtr_store_txn *t, int table, const void *key, size_t klen, const void **kout, size_t *kolen,
                       const void **val, size_t *vlen) {
    int rc = aux_ok(t, table);
    if (rc) return rc;
    rtr_aux_cursor c = {t, NULL};
    if ((rc = mdb_cursor_open(t->txn, t->s->aux[table], &c.cur))) return lmdb_err(t, rc, "cursor");
    rc = rtr_store_aux_cursor_seek(&c, key, klen, kout, kolen, val, vlen);
    mdb_cursor_close(c.cur);
    return rc;
}

void rtr_store_aux_cursor_close(rtr_aux_cursor *c) {
    if (!c) return;
    mdb_cursor_close(c->cur);
    rtr_free(c);
}

int rtr_store_aux_clear(rtr_store_txn *t, int table) {
    RTR_ASSERT(t->write);
    int rc = aux_ok(t, table);
    if (rc) return RTR_OK;
    if ((rc = mdb_drop(t->txn, t->s->aux[table], 0))) return lmdb_err(t, rc, "clear an index table");
    return RTR_OK;
}
