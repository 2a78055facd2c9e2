/* bench_quality.c - search quality through the public API: each question of a set (written by
 * tests/bench/quality/make_questions.py) searched with retro_search in one mode, its results checked
 * against the answer the question names (tests/bench/run_quality.sh).
 *
 *     bench_quality KB QUESTIONS.jsonl MODE [K] [--ranks FILE] [--hits FILE] [--warmup N]
 *
 * MODE: vector, lexical, hybrid or default (the knowledge base's setting); K: results per search
 * (default 10). A question is a JSON line {"id", "query", "path", "span": [start, end] or null,
 * "task"}; a result answers it if its path is "path" and, when span is given, its chunk's byte
 * span overlaps span. Prints one JSON line: mode, k, questions, top1 and top5 (the share answered
 * by the first result, by one of the first 5), mrr (the mean of 1 / the rank of the first answer
 * within K, 0 if none), p50_ms and p99_ms (latency of one retro_search in this process). A mode
 * the knowledge base refuses (RETRO_E_INVALID or RETRO_E_NOTFOUND on the first search: no lexical
 * index, say) prints the same line with null figures and "error", and exits 0. --ranks writes "id rank" per question
 * (0: not within K); --hits writes each question's results with their ranks and scores on each side
 * (write_hits), for studying how the sides are fused. BENCH_LATENCIES=1 prints each search's latency
 * ("question-index ms") on standard error. --warmup N searches N questions (the set's first, again
 * from the top if it has fewer) before the timed ones, so that the latencies are those of a process
 * that has been searching a while (a server's), not of one just started. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "include/retro.h"

typedef struct question {
    char *id, *query, *path;
    int has_span;
    uint64_t start, end;              /* the answer's bytes in the document's text, if has_span */
} question;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads every question of path into *out (the caller frees them with questions_free); exits with a
 * message on an unreadable file or a line that is not a question. */
static size_t questions_read(const char *prog, const char *path, question **out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot read %s\n", prog, path);
        exit(1);
    }
    question *qs = NULL;
    size_t n = 0, cap = 0, lineno = 0;
    char *line = NULL;
    size_t line_cap = 0;
    while (getline(&line, &line_cap, f) > 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == 0) continue;
        json_error_t err;
        json_t *j = json_loads(line, 0, &err), *span;
        const char *id, *query, *qpath;
        if (!j || json_unpack_ex(j, &err, 0, "{s:s, s:s, s:s, s:o}", "id", &id, "query", &query, "path", &qpath,
                                 "span", &span)) {
            fprintf(stderr, "%s: %s:%zu: %s\n", prog, path, lineno, err.text);
            exit(1);
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            if (!(qs = realloc(qs, cap * sizeof *qs))) bench_die(prog, "out of memory");
        }
        question *q = &qs[n++];
        *q = (question){strdup(id), strdup(query), strdup(qpath), 0, 0, 0};
        if (!q->id || !q->query || !q->path) bench_die(prog, "out of memory");
        if (json_is_array(span)) {
            json_int_t s, e;
            if (json_unpack_ex(span, &err, 0, "[II]", &s, &e) || s < 0 || e < s) {
                fprintf(stderr, "%s: %s:%zu: bad span\n", prog, path, lineno);
                exit(1);
            }
            *q = (question){q->id, q->query, q->path, 1, (uint64_t)s, (uint64_t)e};
        } else if (!json_is_null(span)) {
            fprintf(stderr, "%s: %s:%zu: span is neither [start, end] nor null\n", prog, path, lineno);
            exit(1);
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    *out = qs;
    return n;
}

static void questions_free(question *qs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(qs[i].id);
        free(qs[i].query);
        free(qs[i].path);
    }
    free(qs);
}

/* 1 if result s answers q. */
static int answers(const question *q, const retro_source *s) {
    return !strcmp(s->path, q->path) && (!q->has_span || (s->byte_start < q->end && q->start < s->byte_end));
}

/* 1 + the index of the first result that answers q, 0 if none does. */
static size_t first_answer(const question *q, const retro_results *r) {
    for (size_t i = 0; i < r->n; i++)
        if (answers(q, &r->items[i])) return i + 1;
    return 0;
}

/* One line of --hits: the question's id and, for each result in order, [answers (0/1), its rank and
 * score on the vector side, on the lexical side (0 and null where that side did not find it)]. */
static void write_hits(FILE *f, const question *q, const retro_results *r) {
    json_t *hits = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const retro_source *s = &r->items[i];
        json_t *vs = s->vector_rank ? json_real(s->vector_score) : json_null();
        json_t *ls = s->lexical_rank ? json_real(s->lexical_score) : json_null();
        json_array_append_new(hits, json_pack("[i, i, o, i, o]", answers(q, s), (int)s->vector_rank, vs,
                                              (int)s->lexical_rank, ls));
    }
    json_t *o = json_pack("{s:s, s:o}", "id", q->id, "hits", hits);
    json_dumpf(o, f, JSON_COMPACT | JSON_REAL_PRECISION(6));
    fputc('\n', f);
    json_decref(o);
}

static int parse_mode(const char *s) {
    if (!strcmp(s, "vector")) return RETRO_SEARCH_VECTOR;
    if (!strcmp(s, "lexical")) return RETRO_SEARCH_LEXICAL;
    if (!strcmp(s, "hybrid")) return RETRO_SEARCH_HYBRID;
    if (!strcmp(s, "default")) return RETRO_SEARCH_DEFAULT;
    return -1;
}

int main(int argc, char **argv) {
    const char *pos[4] = {0}, *ranks_path = NULL, *hits_path = NULL;
    size_t warmup = 0;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ranks") && i + 1 < argc) ranks_path = argv[++i];
        else if (!strcmp(argv[i], "--hits") && i + 1 < argc) hits_path = argv[++i];
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = (size_t)atol(argv[++i]);
        else if (npos < 4) pos[npos++] = argv[i];
        else npos = 5;
    }
    int mode = npos >= 3 ? parse_mode(pos[2]) : -1, k = npos == 4 ? atoi(pos[3]) : 10;
    if (npos < 3 || npos > 4 || mode < 0 || k < 1 || k > 4096) {
        fprintf(stderr, "usage: %s KB QUESTIONS.jsonl vector|lexical|hybrid|default [K] [--ranks FILE] [--hits FILE] [--warmup N]\n", argv[0]);
        return 2;
    }
    question *qs;
    size_t n = questions_read(argv[0], pos[1], &qs);
    if (!n) bench_die(argv[0], "no questions");
    retro_kb *kb;
    if (retro_kb_open(pos[0], 0, NULL, &kb)) bench_die(argv[0], pos[0]);
    retro_search_opts so = {.k = (uint32_t)k, .mode = mode};
    retro_results r;
    int rc = retro_search(kb, qs[0].query, strlen(qs[0].query), &so, &r);   /* opens the indexes */
    if (rc == RETRO_E_INVALID || rc == RETRO_E_NOTFOUND) {   /* this mode (or its index) is not there */
        char err[512];
        snprintf(err, sizeof err, "%s: %s", retro_strerror(rc), retro_errdetail());
        json_t *o = json_pack("{s:s, s:i, s:I, s:n, s:n, s:n, s:n, s:n, s:s}", "mode", pos[2], "k", k, "questions",
                              (json_int_t)n, "top1", "top5", "mrr", "p50_ms", "p99_ms", "error", err);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
        retro_kb_close(kb);
        questions_free(qs, n);
        return 0;
    }
    if (rc) bench_die(argv[0], "search");
    retro_results_free(&r);
    FILE *ranks = NULL;
    if (ranks_path && !(ranks = fopen(ranks_path, "w"))) bench_die(argv[0], ranks_path);
    FILE *hits = NULL;
    if (hits_path && !(hits = fopen(hits_path, "w"))) bench_die(argv[0], hits_path);
    double *lat = malloc(n * sizeof *lat), mrr = 0;
    size_t top1 = 0, top5 = 0;
    if (!lat) bench_die(argv[0], "out of memory");
    if (getenv("BENCH_LATENCIES")) setvbuf(stderr, NULL, _IOLBF, 0);
    for (size_t i = 0; i < warmup; i++) {   /* a process that has searched a while, as a server has */
        if (retro_search(kb, qs[i % n].query, strlen(qs[i % n].query), &so, &r)) bench_die(argv[0], qs[i % n].id);
        retro_results_free(&r);
    }
    for (size_t i = 0; i < n; i++) {
        double t = now();
        if (retro_search(kb, qs[i].query, strlen(qs[i].query), &so, &r)) bench_die(argv[0], qs[i].id);
        lat[i] = now() - t;
        if (getenv("BENCH_LATENCIES")) fprintf(stderr, "%zu %.3f\n", i, lat[i] * 1e3);
        size_t rank = first_answer(&qs[i], &r);
        if (hits) write_hits(hits, &qs[i], &r);
        retro_results_free(&r);
        top1 += rank == 1;
        top5 += rank >= 1 && rank <= 5;
        mrr += rank ? 1.0 / (double)rank : 0;
        if (ranks) fprintf(ranks, "%s %zu\n", qs[i].id, rank);
    }
    if (ranks && fclose(ranks)) bench_die(argv[0], ranks_path);
    if (hits && fclose(hits)) bench_die(argv[0], hits_path);
    json_t *o = json_pack("{s:s, s:i, s:I, s:f, s:f, s:f, s:f, s:f}", "mode", pos[2], "k", k, "questions",
                          (json_int_t)n, "top1", (double)top1 / (double)n, "top5", (double)top5 / (double)n, "mrr",
                          mrr / (double)n, "p50_ms", 1e3 * bench_pct(lat, n, 0.5), "p99_ms",
                          1e3 * bench_pct(lat, n, 0.99));
    json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(5));
    putchar('\n');
    json_decref(o);
    retro_kb_close(kb);
    questions_free(qs, n);
    free(lat);
    return 0;
}
