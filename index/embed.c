#include "index/embed.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "index/embed_hash.h"
#include "lib/status.h"

static struct { char kind[24]; rtr_embedder_factory f; } g_kinds[16];
static int g_nkinds;
static pthread_mutex_t g_kinds_lock = PTHREAD_MUTEX_INITIALIZER;

int rtr_embedder_register(const char *kind, rtr_embedder_factory f) {
    pthread_mutex_lock(&g_kinds_lock);
    int rc = RTR_OK, i;
    for (i = 0; i < g_nkinds; i++)
        if (!strcmp(g_kinds[i].kind, kind)) break;
    if (i == g_nkinds && g_nkinds == 16) rc = rtr_seterr(RTR_E_INVALID, "too many embedder kinds");
    else if (strlen(kind) >= sizeof g_kinds[0].kind) rc = rtr_seterr(RTR_E_INVALID, "embedder kind too long");
    else {
        snprintf(g_kinds[i].kind, sizeof g_kinds[i].kind, "%s", kind);
        g_kinds[i].f = f;
        if (i == g_nkinds) g_nkinds++;
    }
    pthread_mutex_unlock(&g_kinds_lock);
    return rc;
}

int rtr_http_embedder_factory(const char *kb_dir, const char *desc, rtr_embedder **out);

int rtr_embedder_from_desc(const char *kb_dir, const char *desc, rtr_embedder **out) {
    json_error_t err;
    json_t *j = json_loads(desc, 0, &err);
    const char *kind = json_string_value(json_object_get(j, "kind"));
    int rc;
    if (!kind) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: embedder description without a kind", kb_dir);
    } else if (!strcmp(kind, "hash")) {
        rc = rtr_hash_embedder_factory()(kb_dir, desc, out);
    } else if (!strcmp(kind, "http")) {
        rc = rtr_http_embedder_factory(kb_dir, desc, out);
    } else {
        rtr_embedder_factory f = NULL;
        pthread_mutex_lock(&g_kinds_lock);
        for (int i = 0; i < g_nkinds; i++)
            if (!strcmp(g_kinds[i].kind, kind)) f = g_kinds[i].f;
        pthread_mutex_unlock(&g_kinds_lock);
        rc = f ? f(kb_dir, desc, out)
               : rtr_seterr(RTR_E_INVALID, "%s: built with embedder '%s', which this retro does not have", kb_dir, kind);
    }
    json_decref(j);
    return rc;
}

int rtr_embedder_embed(rtr_embedder *e, const rtr_text *texts, size_t n, float *out) {
    if (n == 0) return RTR_OK;
    return e->ops->embed(e, texts, n, out);
}

int rtr_embedder_describe(const rtr_embedder *e, rtr_buf *json) { return e->ops->describe(e, json); }

void rtr_embedder_free(rtr_embedder *e) {
    if (e) e->ops->destroy(e);
}

void rtr_l2_normalize(float *v, size_t n, uint32_t dim) {
    for (size_t i = 0; i < n; i++) {
        float *r = v + i * dim;
        double ss = 0;
        for (uint32_t j = 0; j < dim; j++) ss += (double)r[j] * r[j];
        if (ss <= 0) continue;
        float inv = (float)(1.0 / sqrt(ss));
        for (uint32_t j = 0; j < dim; j++) r[j] *= inv;
    }
}
