/*
 * quote.h - the sentences of retrieved passages that best answer a question:
 * the extractive part of `retro ask`, which quotes what the sources say
 * before (and apart from) what a model generates from them.
 *
 * A passage is a span of one document's text (a chunk and its continuation).
 * It is cut into sentences at '.', '!' or '?' followed by white space, and at
 * blank lines; a sentence scores the sum, over the question's content words
 * (letters and digits, lower-cased, a trailing plural s removed, common
 * function words dropped) that it contains, of log(1 + N / df): N sentences,
 * df of them holding the word, so rare shared words count most. Ties go to
 * the better-ranked passage, then the earlier sentence.
 */
#ifndef RTR_QUOTE_H
#define RTR_QUOTE_H

#include <stddef.h>
#include <stdint.h>

typedef struct rtr_passage {
    const char *text;       /* len bytes of a document's text */
    size_t len;
    uint64_t byte_start;    /* where text starts in its document */
} rtr_passage;

typedef struct rtr_quote {
    size_t passage;         /* index into the passages */
    size_t off, len;        /* the sentence: passage text[off, off + len) */
    uint64_t byte_start, byte_end;   /* its span in the document */
    double score;           /* > 0 */
} rtr_quote;

/* Up to max quotes (sentences sharing at least one content word with the
 * question), best first, into out; *n gets how many. RTR_E_NOMEM. */
int rtr_quotes(const char *question, size_t qlen, const rtr_passage *p, size_t np, size_t max, rtr_quote *out,
               size_t *n);

#endif
