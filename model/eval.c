/* eval.c - windowed evaluation of documents and the leakage filter's overlaps (see eval.h). */
#include "model/eval.h"

#include <math.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/status.h"

const double rtr_eval_alpha[RTR_EVAL_N_ALPHA] = {0, 0.125, 0.25, 0.5, 1.0};

#define MAX_LCS 256

int rtr_eval_lcs(const int32_t *a, int na, const int32_t *b, int nb) {
    RTR_ASSERT(nb <= MAX_LCS);
    int prev[MAX_LCS + 1] = {0}, cur[MAX_LCS + 1] = {0}, best = 0;
    for (int i = 1; i <= na; i++) {
        for (int j = 1; j <= nb; j++) {
            cur[j] = a[i - 1] >= 0 && a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : 0;
            if (cur[j] > best) best = cur[j];
        }
        memcpy(prev, cur, (size_t)(nb + 1) * sizeof *prev);
    }
    return best;
}

void rtr_eval_overlap(const int32_t *x, int64_t n, int m, const int32_t *nbr, int kk, int R, double *ov) {
    int64_t nch = (n + m - 1) / m;
    for (int64_t u = 0; u < nch; u++) {
        int len = (int)(n - u * m < m ? n - u * m : m), best = 0;
        for (int k = 0; k < kk; k++) {
            int s = rtr_eval_lcs(x + u * m, len, nbr + ((size_t)u * kk + k) * R, R);
            if (s > best) best = s;
        }
        ov[u] = (double)best / m;
    }
}

double rtr_eval_token_nats(const float *lg, int V, int32_t target) {
    float mx = lg[0];
    for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    double z = 0;
    for (int v = 0; v < V; v++) z += exp((double)(lg[v] - mx));
    return log(z) - (double)(lg[target] - mx);
}

int rtr_eval_document(rtr_model *m, const int32_t *x, int64_t n, const int32_t *nbr, const float *sc, int kk,
                      float min_score, int stride, int B, const float *tok_bytes, int32_t eod, double *cn,
                      double *cb, rtr_eval_counts *acc) {
    const rtr_model_config *c = rtr_model_cfg(m);
    const int CH = c->m, NL = c->R;
    int64_t nch = (n + CH - 1) / CH;
    int T = c->T, Lc = T / CH, S = stride > 0 ? stride : (T / 2 / CH) * CH;
    if (S < CH) S = CH;
    if (S > T) S = T;
    memset(cn, 0, (size_t)nch * sizeof *cn);
    memset(cb, 0, (size_t)nch * sizeof *cb);
    for (int64_t u = 0; nbr && u < nch; u++)
        for (int k = 0; k < c->K && k < kk; k++) {
            float s = sc[(size_t)u * kk + k];
            acc->nbr_all += !isnan(s);
            acc->nbr_read += !isnan(s) && s >= min_score;
        }
    /* the windows: w covers inputs [w, w+T) and scores targets w+1+j for j >= from */
    int64_t nw = 0, *ws = rtr_malloc((size_t)(n / S + 2) * sizeof *ws);
    for (int64_t w = 0; ws && w + 1 < n; w += S) {
        ws[nw++] = w;
        if (w + T >= n) break;
    }
    int32_t *in = rtr_malloc((size_t)B * T * sizeof *in), *tg = rtr_malloc((size_t)B * T * sizeof *tg);
    size_t per = (size_t)Lc * c->K * NL;
    int32_t *wn = rtr_malloc((size_t)B * per * sizeof *wn + 4);
    int rc = ws && in && tg && wn ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
    for (int64_t w0 = 0; !rc && w0 < nw; w0 += B) {
        int nb = (int)(nw - w0 < B ? nw - w0 : B);
        for (int b = 0; b < nb; b++) {
            int64_t w = ws[w0 + b];
            int from = w == 0 ? 0 : T - S;
            int32_t *ib = in + (size_t)b * T, *tb = tg + (size_t)b * T;
            for (int j = 0; j < T; j++) {
                int64_t p = w + j;
                ib[j] = p < n ? x[p] : eod;
                tb[j] = j >= from && p + 1 < n ? x[p + 1] : -1;
            }
            for (int u = 0; nbr && u < Lc; u++) {
                int64_t cu = w / CH + u;
                for (int k = 0; k < c->K; k++) {
                    int read = cu < nch && k < kk && sc[(size_t)cu * kk + k] >= min_score;
                    for (int t = 0; t < NL; t++)
                        wn[b * per + ((size_t)u * c->K + k) * NL + t] = read ? nbr[((size_t)cu * kk + k) * NL + t] : -1;
                }
            }
        }
        if ((rc = rtr_model_forward(m, in, NULL, nbr ? wn : NULL, nb, T, NULL))) break;
        const float *lg = rtr_model_logits(m);
        for (int b = 0; b < nb; b++)
            for (int j = 0; j < T; j++) {
                int32_t t = tg[(size_t)b * T + j];
                if (t < 0) continue;
                int64_t p = ws[w0 + b] + j + 1;   /* the scored token's position */
                cn[p / CH] += rtr_eval_token_nats(lg + ((size_t)b * T + j) * c->V, c->V, t);
                cb[p / CH] += tok_bytes[t];
                acc->tokens++;
            }
    }
    for (int64_t u = 0; !rc && u < nch; u++) {
        acc->nats += cn[u];
        acc->bytes += cb[u];
    }
    rtr_free(ws);
    rtr_free(in);
    rtr_free(tg);
    rtr_free(wn);
    return rc;
}
