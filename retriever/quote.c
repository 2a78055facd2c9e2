/* quote.c - the sentences of passages that best answer a question (see quote.h). */
#include "retriever/quote.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/status.h"
#include "lib/utf8.h"

#define MAX_TERMS 64
#define MIN_SENTENCE 12      /* bytes: shorter pieces are headings or debris */
#define MAX_SENTENCE 600

static const char *const STOP[] = {
    "a", "about", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "had", "has", "have",
    "he", "her", "his", "how", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "our", "say", "said",
    "she", "so", "that", "the", "their", "them", "they", "this", "to", "was", "we", "were", "what", "when", "where",
    "which", "who", "whom", "why", "will", "with", "would", "you", "your"};

static int is_stop(const char *w) {
    for (size_t i = 0; i < sizeof STOP / sizeof STOP[0]; i++)
        if (!strcmp(w, STOP[i])) return 1;
    return 0;
}

static int word_byte(unsigned char c) { return isalnum(c) || c >= 0x80; }

/* The next word of s[*i, n) lower-cased into w (cap bytes, NUL-terminated,
 * a trailing plural s removed); 0 at the end. */
static int next_word(const char *s, size_t n, size_t *i, char *w, size_t cap) {
    while (*i < n && !word_byte((unsigned char)s[*i])) (*i)++;
    if (*i >= n) return 0;
    size_t k = 0;
    while (*i < n && word_byte((unsigned char)s[*i])) {
        if (k + 1 < cap) w[k++] = (char)tolower((unsigned char)s[*i]);
        (*i)++;
    }
    w[k] = 0;
    if (k > 3 && w[k - 1] == 's' && w[k - 2] != 's') w[k - 1] = 0;
    return 1;
}

typedef struct sentence {
    size_t passage, off, len;
    uint64_t has;            /* bit t: holds question term t */
} sentence;

/* The question's distinct content words. */
static int question_terms(const char *q, size_t n, char terms[][32]) {
    int nt = 0;
    size_t i = 0;
    char w[32];
    while (nt < MAX_TERMS && next_word(q, n, &i, w, sizeof w)) {
        if (is_stop(w)) continue;
        int dup = 0;
        for (int t = 0; t < nt && !dup; t++) dup = !strcmp(terms[t], w);
        if (!dup) memcpy(terms[nt++], w, sizeof w);
    }
    return nt;
}

static uint64_t terms_in(const char *s, size_t n, char terms[][32], int nt) {
    uint64_t has = 0;
    size_t i = 0;
    char w[32];
    while (next_word(s, n, &i, w, sizeof w))
        for (int t = 0; t < nt; t++)
            if (!strcmp(terms[t], w)) has |= (uint64_t)1 << t;
    return has;
}

/* Appends the sentences of passage pi to *v. */
static int cut(const rtr_passage *p, size_t pi, char terms[][32], int nt, sentence **v, size_t *n, size_t *cap) {
    const char *s = p->text;
    size_t len = p->len, start = 0;
    for (size_t i = 0; i <= len; i++) {
        int end = i == len;
        if (!end && (s[i] == '.' || s[i] == '!' || s[i] == '?') && i + 1 < len && isspace((unsigned char)s[i + 1])) {
            i++;   /* the stop belongs to the sentence */
            end = 1;
        } else if (!end && s[i] == '\n' && i + 1 < len && s[i + 1] == '\n') {
            end = 1;
        }
        if (!end) continue;
        size_t a = start, b = i;
        while (a < b && isspace((unsigned char)s[a])) a++;
        while (b > a && isspace((unsigned char)s[b - 1])) b--;
        start = i;
        if (b - a < MIN_SENTENCE || b - a > MAX_SENTENCE) continue;
        /* whole UTF-8 sequences only: a passage may start inside one */
        while (a < b && ((unsigned char)s[a] & 0xC0) == 0x80) a++;
        if (rtr_utf8_valid_prefix((const uint8_t *)s + a, b - a) != b - a) continue;
        int rc = RTR_GROW(*v, cap, *n + 1);
        if (rc) return rc;
        (*v)[(*n)++] = (sentence){pi, a, b - a, terms_in(s + a, b - a, terms, nt)};
    }
    return RTR_OK;
}

int rtr_quotes(const char *question, size_t qlen, const rtr_passage *p, size_t np, size_t max, rtr_quote *out,
               size_t *n_out) {
    *n_out = 0;
    char terms[MAX_TERMS][32];
    int nt = question_terms(question, qlen, terms);
    if (nt == 0 || max == 0) return RTR_OK;
    sentence *v = NULL;
    size_t n = 0, cap = 0;
    int rc = RTR_OK;
    for (size_t i = 0; i < np && !rc; i++) rc = cut(&p[i], i, terms, nt, &v, &n, &cap);
    double idf[MAX_TERMS];
    for (int t = 0; !rc && t < nt; t++) {
        size_t df = 0;
        for (size_t i = 0; i < n; i++) df += (v[i].has >> t) & 1;
        idf[t] = df ? log(1.0 + (double)n / (double)df) : 0;
    }
    /* the best max, by selection: n is small (a few passages' sentences) */
    uint8_t *taken = rc ? NULL : rtr_calloc(n + 1, 1);
    if (!rc && !taken) rc = RTR_E_NOMEM;
    while (!rc && *n_out < max) {
        size_t best = n;
        double bs = 0;
        for (size_t i = 0; i < n; i++) {
            if (taken[i]) continue;
            double sc = 0;
            for (int t = 0; t < nt; t++)
                if ((v[i].has >> t) & 1) sc += idf[t];
            if (sc > bs + 1e-12) {   /* ties keep the earlier: better passage, earlier sentence */
                bs = sc;
                best = i;
            }
        }
        if (best == n) break;
        const sentence *s = &v[best];
        for (size_t i = 0; i < n; i++)   /* passages may overlap: the same sentence once */
            taken[i] |= v[i].len == s->len && !memcmp(p[v[i].passage].text + v[i].off, p[s->passage].text + s->off, s->len);
        out[(*n_out)++] = (rtr_quote){s->passage, s->off, s->len, p[s->passage].byte_start + s->off,
                                      p[s->passage].byte_start + s->off + s->len, bs};
    }
    rtr_free(taken);
    rtr_free(v);
    return rc;
}
