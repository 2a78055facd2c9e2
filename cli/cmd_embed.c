/* cmd_embed.c - `retro embed KB TEXT...`: the vectors the knowledge base's
 * embedder gives texts (what `retro search` searches with). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "index/build.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"

int cmd_embed(int argc, char **argv) {
    const char *dir = NULL;
    const char *texts[256];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            puts("usage: retro embed KB TEXT... \n\n"
                 "Prints, as one JSON object per line ({\"text\":..., \"embedding\":[...]}), the\n"
                 "unit vector the knowledge base's embedder gives each TEXT ('-' reads one text\n"
                 "from standard input). A query of up to 64 tokens is searched with exactly\n"
                 "this vector.");
            return CLI_OK;
        }
        if (!dir) dir = argv[i];
        else if (n < 256) texts[n++] = argv[i];
        else return cli_usage_error("embed", "at most 256 texts");
    }
    if (!dir || n == 0) return cli_usage_error("embed", "expected KB and at least one TEXT");
    uint8_t *in = NULL;
    size_t in_len = 0;
    rtr_text *tx = rtr_calloc(n, sizeof *tx);
    int rc = tx ? RTR_OK : RTR_E_NOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!strcmp(texts[i], "-")) {
            if (!in && (rc = rtr_read_fd(0, "standard input", 1 << 24, &in, &in_len))) break;
            tx[i] = (rtr_text){(const char *)in, in_len};
        } else {
            tx[i] = (rtr_text){texts[i], strlen(texts[i])};
        }
    }
    rtr_kb *kb = NULL;
    rtr_kb_vectors *ix = NULL;
    float *v = NULL;
    if (!rc) rc = rtr_kb_open(dir, 0, NULL, NULL, &kb);
    if (!rc) rc = rtr_kb_vectors_open(kb, &ix);
    if (!rc && !(v = rtr_malloc(n * rtr_kb_vectors_embedder(ix)->dim * sizeof *v))) rc = RTR_E_NOMEM;
    if (!rc) rc = rtr_embedder_embed(rtr_kb_vectors_embedder(ix), tx, n, v);
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *a = json_array();
        for (uint32_t j = 0; j < rtr_kb_vectors_embedder(ix)->dim; j++) json_array_append_new(a, json_real(v[i * rtr_kb_vectors_embedder(ix)->dim + j]));
        json_t *o = json_pack("{s:s%, s:o}", "text", tx[i].data, tx[i].len, "embedding", a);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        putchar('\n');
        json_decref(o);
    }
    rtr_free(v);
    rtr_kb_vectors_close(ix);
    rtr_kb_close(kb);
    rtr_free(tx);
    rtr_free(in);
    return rc ? cli_fail(rc) : CLI_OK;
}
