/* retro_example.c - a C program that uses retro through its installed library:
 * it opens a knowledge base, searches it, and continues the best passage with
 * a RETRO model that retrieves from the knowledge base every 64 tokens.
 *
 *   cc retro_example.c $(pkg-config --cflags --libs retrolm) -o retro_example
 *   ./retro_example KB MODEL "a question or a phrase"
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <retro.h>

static int print_piece(void *ctx, const char *text, size_t len) {
    (void)ctx;
    fwrite(text, 1, len, stdout);
    return 0;   /* non-zero would stop the generation */
}

static void print_sources(void *ctx, int64_t chunk, const retro_neighbour *nb, uint32_t k) {
    (void)ctx;
    for (uint32_t i = 0; i < k; i++)
        if (nb[i].chunk_id >= 0)
            fprintf(stderr, "[chunk %" PRId64 " read %.*s bytes %" PRIu64 "-%" PRIu64 ", score %.3f]\n", chunk,
                    (int)nb[i].path_len, nb[i].path, nb[i].byte_start, nb[i].byte_end, nb[i].score);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: retro_example KB MODEL QUERY\n");
        return 2;
    }
    retro_kb *kb = NULL;
    retro_model *m = NULL;
    retro_results hits = {0};
    retro_gen_result res = {0};
    int rc = retro_kb_open(argv[1], 0, NULL, &kb);
    if (rc == RETRO_OK) {
        retro_search_opts so = {.k = 3, .continuation = 1};
        rc = retro_search(kb, argv[3], strlen(argv[3]), &so, &hits);
    }
    if (rc == RETRO_OK) {
        printf("retro %s: %zu results for \"%s\"\n", retro_version(), hits.n, argv[3]);
        for (size_t i = 0; i < hits.n; i++)
            printf("%zu. %s bytes %" PRIu64 "-%" PRIu64 " score %.3f\n", i + 1, hits.items[i].path,
                   hits.items[i].byte_start, hits.items[i].byte_end, hits.items[i].score);
        rc = retro_model_load(argv[2], NULL, &m);
    }
    if (rc == RETRO_OK && hits.n > 0) {
        retro_gen_opts go;
        retro_gen_opts_default(&go);
        go.kb = kb;
        go.max_tokens = 80;
        go.temperature = 0;
        go.on_text = print_piece;
        go.on_retrieval = print_sources;
        printf("continuing the best passage:\n");
        rc = retro_generate(m, hits.items[0].text, strlen(hits.items[0].text), &go, &res);
        if (rc == RETRO_OK)
            printf("\n%d tokens (%s), %" PRId64 " chunks retrieved\n", res.tokens, res.stopped, res.chunks_retrieved);
    }
    if (rc != RETRO_OK) fprintf(stderr, "retro_example: %s (%s)\n", retro_errdetail(), retro_strerror(rc));
    retro_gen_result_free(&res);
    retro_results_free(&hits);
    retro_model_free(m);
    retro_kb_close(kb);
    return rc == RETRO_OK ? 0 : 1;
}
