// faiss_ext.cpp - what retro needs from FAISS that its C API does not reach (see faiss_ext.h).
#include "index/faiss_ext.h"
#include "lib/blas.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include <cblas.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/utils/distances.h>

typedef faiss::Index::idx_t fidx;

extern "C" int rtr_faiss_mapped_no_prefetch(FaissIndex *index) {
    // the C API's FaissIndex is a faiss::Index
    auto *ivf = dynamic_cast<faiss::IndexIVF *>(reinterpret_cast<faiss::Index *>(index));
    auto *od = ivf ? dynamic_cast<faiss::OnDiskInvertedLists *>(ivf->invlists) : nullptr;
    if (!od) return 0;
    od->prefetch_nthread = 0;
    return 1;
}

extern "C" int rtr_faiss_mapped_range(FaissIndex *index, const void **addr, size_t *len) {
    auto *ivf = dynamic_cast<faiss::IndexIVF *>(reinterpret_cast<faiss::Index *>(index));
    auto *od = ivf ? dynamic_cast<faiss::OnDiskInvertedLists *>(ivf->invlists) : nullptr;
    if (!od || !od->ptr) return 0;
    *addr = od->ptr;
    *len = od->totsize;
    return 1;
}

namespace {

// The coarse quantizer of the codes: the flat shard's own, except that the vectors being added or
// trained on (x, n of them) are put in the lists they are in already (list[i]) instead of being
// assigned again (16 K centroids against 16 M vectors would take minutes).
struct known_lists : faiss::Index {
    faiss::Index *real;
    const float *x = nullptr;
    size_t n = 0;
    const fidx *list = nullptr;

    const faiss::IndexFlat *flat;   // the real one when an L2 flat index (its centroids and their norms)
    std::vector<float> norms;

    explicit known_lists(faiss::Index *q) : faiss::Index(q->d, q->metric_type), real(q) {
        ntotal = q->ntotal;
        is_trained = true;
        flat = dynamic_cast<const faiss::IndexFlat *>(q);
        if (flat && flat->metric_type != faiss::METRIC_L2) flat = nullptr;
        for (fidx i = 0; flat && i < flat->ntotal; i++)
            norms.push_back(faiss::fvec_norm_L2sqr(flat->get_xb() + (size_t)i * (size_t)d, (size_t)d));
    }
    // The vectors x (list[i]: the list of the i-th) answered from now on; none when x is empty.
    void feed(const std::vector<float> &xs, const std::vector<fidx> &lists) {
        x = xs.empty() ? nullptr : xs.data();
        n = lists.size();
        list = lists.data();
    }
    void add(fidx, const float *) override { FAISS_THROW_MSG("known_lists: add"); }
    void reset() override { FAISS_THROW_MSG("known_lists: reset"); }
    void search(fidx nq, const float *q, fidx k, float *dist, fidx *labels,
                const faiss::SearchParameters *params) const override {
        if (k == 1 && x && q >= x && q + nq * d <= x + n * d) {
            size_t at = (size_t)(q - x) / (size_t)d;
            for (fidx i = 0; i < nq; i++) {
                labels[i] = list[at + i];
                dist[i] = 0;
            }
            return;
        }
        if (params || !flat || k < 32 || k >= real->ntotal) real->search(nq, q, k, dist, labels, params);
        else nearest_lists(nq, q, k, dist, labels);
    }

    // The k nearest centroids of each query, as the flat quantizer finds them (its distances), selected
    // through a threshold: the (k/16 + 8)th smallest of every 16th distance keeps a few hundred
    // candidates, of which the k smallest are taken (all distances when too few pass); in no order, as
    // the fast-scan search groups them by list anyway. FAISS's own selection of the 256 nearest of
    // 16 K centroids, sorted, took a quarter of a batch search's time.
    void nearest_lists(fidx nq, const float *q, fidx k, float *dist, fidx *labels) const {
        const size_t nl = (size_t)real->ntotal, dd = (size_t)d, QB = 64, stride = 16;
        std::vector<float> ip(QB * nl), sample(nl / stride);
        std::vector<std::pair<float, fidx>> cand;
        const float *xb = flat->get_xb();
        for (fidx lo = 0; lo < nq; lo += (fidx)QB) {
            size_t m = std::min((size_t)(nq - lo), QB);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nl, (int)dd, 1.0f, q + (size_t)lo * dd,
                        (int)dd, xb, (int)dd, 0.0f, ip.data(), (int)nl);
            for (size_t i = 0; i < m; i++) {
                float *row = ip.data() + i * nl, qn = faiss::fvec_norm_L2sqr(q + ((size_t)lo + i) * dd, dd);
                for (size_t j = 0; j < nl; j++) row[j] = qn + norms[j] - 2 * row[j];
                size_t ns = sample.size(), kk = std::min(ns - 1, (size_t)k * ns / nl + 8);
                for (size_t t = 0; t < ns; t++) sample[t] = row[t * stride];
                std::nth_element(sample.begin(), sample.begin() + (long)kk, sample.end());
                float bar = sample[kk];
                cand.clear();
                for (size_t j = 0; j < nl; j++)
                    if (row[j] <= bar) cand.emplace_back(row[j], (fidx)j);
                if (cand.size() < (size_t)k) {   // too few under the bar: all of them
                    cand.clear();
                    for (size_t j = 0; j < nl; j++) cand.emplace_back(row[j], (fidx)j);
                }
                std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end());   // unsorted: see above
                for (fidx j = 0; j < k; j++) {
                    dist[((size_t)lo + i) * (size_t)k + (size_t)j] = cand[(size_t)j].first;
                    labels[((size_t)lo + i) * (size_t)k + (size_t)j] = cand[(size_t)j].second;
                }
            }
        }
    }
    void reconstruct(fidx key, float *out) const override { real->reconstruct(key, out); }
    void compute_residual(const float *v, float *residual, fidx key) const override {
        real->compute_residual(v, residual, key);
    }
};

// n floats from p (a list's codes: in a mapped file, not necessarily aligned) onto the end of x.
void append(std::vector<float> &x, const uint8_t *p, size_t n) {
    if (n == 0) return;   // an empty list: p may be NULL
    size_t at = x.size();
    x.resize(at + n);
    memcpy(x.data() + at, p, n * sizeof(float));
}

// A code's id: its vector's list and offset in the flat shard.
fidx code_id(size_t list, size_t off) { return (fidx)((uint64_t)list << 32 | off); }

void tell(char *why, size_t n_why, const char *what) {
    if (n_why) snprintf(why, n_why, "%s", what);
}

// body() (returning 0 or 1), or -1 with what it threw in why ("out of memory" for bad_alloc).
template <class F> int guarded(char *why, size_t n_why, F body) {
    try {
        return body();
    } catch (const std::bad_alloc &) {
        tell(why, n_why, "out of memory");
    } catch (const std::exception &e) {
        tell(why, n_why, e.what());
    }
    return -1;
}

}  // namespace

extern "C" int rtr_faiss_search_lists(FaissIndex *index, size_t nq, const float *q, uint32_t k, size_t nprobe,
                                      float *dist, int64_t *ids, char *why, size_t n_why) {
    auto *ivf = dynamic_cast<faiss::IndexIVF *>(reinterpret_cast<faiss::Index *>(index));
    if (!ivf) return 1;
    return guarded(why, n_why, [&]() {
        faiss::SearchParametersIVF p;
        p.nprobe = nprobe;
        ivf->search((fidx)nq, q, (fidx)k, dist, reinterpret_cast<fidx *>(ids), &p);
        return 0;
    });
}

struct rtr_faiss_codes {
    std::vector<faiss::IndexIVFFlat *> shard;   // not owned
    std::vector<uint32_t> start;   // (nlist x shards): where shard s's vectors begin in list l of the codes
    known_lists quantizer;
    faiss::IndexIVFPQFastScan codes;

    rtr_faiss_codes(std::vector<faiss::IndexIVFFlat *> sh, size_t m)
        : shard(std::move(sh)), quantizer(shard[0]->quantizer),
          codes(&quantizer, shard[0]->d, shard[0]->nlist, m, 4, faiss::METRIC_L2) {
        codes.nprobe = 1;
    }
};

// Sub-quantizers: one a dimension up to 64, else the largest even divisor of d up to 64 (0: none).
static size_t code_m(size_t d) {
    for (size_t m = d < 64 ? d : 64; m >= 2; m--)
        if (d % m == 0 && m % 2 == 0) return m;
    return 0;
}

// The shards as L2 inverted files of full vectors with one set of centroids, or empty.
static std::vector<faiss::IndexIVFFlat *> flat_shards(FaissIndex **index, uint32_t n) {
    std::vector<faiss::IndexIVFFlat *> sh;
    fidx total = 0;
    for (uint32_t s = 0; s < n; s++) {
        auto *f = dynamic_cast<faiss::IndexIVFFlat *>(reinterpret_cast<faiss::Index *>(index[s]));
        if (!f || f->metric_type != faiss::METRIC_L2 || !f->is_trained || !code_m((size_t)f->d) ||
            f->nlist > UINT32_MAX)
            return {};
        if (s && (f->d != sh[0]->d || f->nlist != sh[0]->nlist)) return {};
        sh.push_back(f);
        total += f->ntotal;
    }
    if (sh.empty() || total < 2 * (fidx)sh[0]->nlist) return {};
    std::vector<float> c0((size_t)sh[0]->nlist * sh[0]->d), c(c0.size());
    sh[0]->quantizer->reconstruct_n(0, (fidx)sh[0]->nlist, c0.data());
    for (uint32_t s = 1; s < n; s++) {   // clones of one trained index share their centroids
        sh[s]->quantizer->reconstruct_n(0, (fidx)sh[s]->nlist, c.data());
        if (memcmp(c.data(), c0.data(), c.size() * sizeof(float))) return {};
    }
    return sh;
}

#define TRAIN_MAX 65536   // vectors the product quantizer is trained on, spread over all lists
#define ADD_GROUP 65536   // vectors added at a time

extern "C" int rtr_faiss_codes_build(FaissIndex **index, uint32_t n_index, rtr_faiss_codes **out, char *why,
                                     size_t n_why) {
    *out = nullptr;
    return guarded(why, n_why, [&]() {
        std::vector<faiss::IndexIVFFlat *> sh = flat_shards(index, n_index);
        if (sh.empty()) return 0;
        auto c = std::make_unique<rtr_faiss_codes>(sh, code_m((size_t)sh[0]->d));
        size_t d = (size_t)sh[0]->d, nl = sh[0]->nlist, S = sh.size(), total = 0;
        for (auto *f : sh) total += (size_t)f->ntotal;
        c->start.resize(nl * S);
        std::vector<float> x;
        std::vector<fidx> list, ids;
        // training sample: every step-th vector in list order
        size_t step = total > TRAIN_MAX ? total / TRAIN_MAX : 1, seen = 0;
        for (size_t l = 0; l < nl; l++)
            for (size_t s = 0; s < S; s++) {
                size_t ls = sh[s]->invlists->list_size(l);
                faiss::InvertedLists::ScopedCodes codes(sh[s]->invlists, l);
                for (size_t j = 0; j < ls; j++, seen++) {
                    if (seen % step) continue;
                    append(x, codes.get() + j * d * sizeof(float), d);
                    list.push_back((fidx)l);
                }
            }
        c->quantizer.feed(x, list);
        c->codes.train((fidx)list.size(), x.data());
        // the codes, list by list (each shard's part of a list in turn), ADD_GROUP vectors at a time
        x.clear();
        list.clear();
        auto flush = [&]() {
            c->quantizer.feed(x, list);
            c->codes.add_with_ids((fidx)list.size(), x.data(), ids.data());
            x.clear();
            list.clear();
            ids.clear();
        };
        for (size_t l = 0; l < nl; l++) {
            size_t at = 0;
            for (size_t s = 0; s < S; s++) {
                size_t ls = sh[s]->invlists->list_size(l);
                if (at + ls > UINT32_MAX) FAISS_THROW_MSG("a list of more than 2^32 vectors");
                c->start[l * S + s] = (uint32_t)at;
                faiss::InvertedLists::ScopedCodes codes(sh[s]->invlists, l);
                append(x, codes.get(), ls * d);
                for (size_t j = 0; j < ls; j++) {
                    list.push_back((fidx)l);
                    ids.push_back(code_id(l, at + j));
                }
                at += ls;
            }
            if (list.size() >= ADD_GROUP) flush();
        }
        if (!list.empty()) flush();
        c->quantizer.feed({}, {});
        if ((size_t)c->codes.ntotal != total) FAISS_THROW_MSG("codes and shards differ in size");
        *out = c.release();
        return 1;
    });
}

extern "C" void rtr_faiss_codes_free(rtr_faiss_codes *c) { delete c; }

extern "C" size_t rtr_faiss_codes_bytes(const rtr_faiss_codes *c) {
    return (size_t)c->codes.ntotal * (c->codes.code_size + sizeof(fidx));
}

extern "C" void rtr_faiss_codes_set_nprobe(rtr_faiss_codes *c, uint32_t nprobe) {
    c->codes.nprobe = std::max<size_t>(1, std::min<size_t>(nprobe, c->codes.nlist));
}

#define SEARCH_GROUP 4096   // queries searched at a time (bounds the candidates held)

extern "C" int rtr_faiss_codes_search(const rtr_faiss_codes *c, size_t nq, const float *q, uint32_t rerank,
                                      uint32_t k, float *dist, int64_t *ids, char *why, size_t n_why) {
    size_t R = std::max(rerank, k), d = (size_t)c->codes.d, S = c->shard.size();
    int saved = rtr_blas_single_begin();   // the centroid products run on FAISS's OpenMP threads
    int rc = guarded(why, n_why, [&]() {
        std::vector<float> cd(std::min(nq, (size_t)SEARCH_GROUP) * R);
        std::vector<fidx> ci(cd.size());
        for (size_t lo = 0; lo < nq; lo += SEARCH_GROUP) {
            size_t m = std::min(nq - lo, (size_t)SEARCH_GROUP);
            c->codes.search((fidx)m, q + lo * d, (fidx)R, cd.data(), ci.data());
            std::atomic<int> failed(0);
#pragma omp parallel for schedule(dynamic, 64)
            for (size_t i = 0; i < m; i++) {
                std::vector<std::pair<float, fidx>> cand;
                try {   // nothing may leave an OpenMP region by exception
                    cand.reserve(R);
                } catch (const std::bad_alloc &) {
                    failed = 1;
                    continue;
                }
                const float *qi = q + (lo + i) * d;
                for (size_t j = 0; j < R; j++) {
                    fidx id = ci[i * R + j];
                    if (id < 0) continue;
                    size_t l = (size_t)((uint64_t)id >> 32), off = (size_t)(id & 0xffffffff), s = S - 1;
                    while (s && c->start[l * S + s] > off) s--;   // the shard it is in
                    off -= c->start[l * S + s];
                    const faiss::InvertedLists *il = c->shard[s]->invlists;
                    faiss::InvertedLists::ScopedCodes v(il, l);
                    faiss::InvertedLists::ScopedIds vid(il, l);
                    float e = faiss::fvec_L2sqr(qi, reinterpret_cast<const float *>(v.get() + off * d * sizeof(float)), d);
                    fidx chunk;   // a mapped file's ids need not be aligned
                    memcpy(&chunk, reinterpret_cast<const uint8_t *>(vid.get()) + off * sizeof chunk, sizeof chunk);
                    cand.emplace_back(e, chunk);
                }
                size_t top = std::min(cand.size(), (size_t)k);
                std::partial_sort(cand.begin(), cand.begin() + top, cand.end());
                for (size_t j = 0; j < k; j++) {
                    dist[(lo + i) * k + j] = j < top ? cand[j].first : INFINITY;
                    ids[(lo + i) * k + j] = j < top ? cand[j].second : -1;
                }
            }
            if (failed) throw std::bad_alloc();
        }
        return 0;
    });
    rtr_blas_single_end(saved);
    return rc;
}
