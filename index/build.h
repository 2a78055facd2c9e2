/*
 * build.h - `retro index build`: embeds the chunks of a knowledge base and
 * adds them to its FAISS shards (index/vindex.h).
 *
 * First build (or --retrain): the embedder is fixed (for `hash`, document
 * frequencies are counted over every chunk and frozen), the index type is
 * planned from the number of chunks and the memory budget, an IVF quantizer is
 * trained on an evenly spread sample of chunks, and every chunk is embedded
 * and added to shard (document id mod shards).
 *
 * Projection (automatic for the hash embedder): past the collections whose
 * raw vectors are searched exactly (about 1.5 M chunks on two shards), the
 * hash vectors are projected onto their principal components, fitted on an
 * evenly spread sample (index/embed_pca.h): the most components, of 128, 64
 * and 32, that keep the search exact (a scan of 4-bit codes re-ranked), and
 * 32 with inverted files beyond (about 12 M chunks). Fewer components find
 * a perturbed chunk's original less often (0.96 / 0.93 / 0.76 at 128 / 64 /
 * 32 on 4.17 M kernel chunks, against 0.97 raw) but keep the search exact or,
 * past that, let inverted files find its neighbours (docs/benchmarks.md). Later builds embed only the
 * chunks added since (ids above the manifest's "indexed_upto") with the
 * recorded embedder, without retraining. Deleted documents' vectors stay in
 * the shards until --compact removes them; queries drop them meanwhile.
 *
 * Durability: shard files are written under a new generation's names; the
 * manifest's "index" section is then replaced atomically and the previous
 * generation's files deleted. A crash leaves the previous index in force.
 * A build that is not a --retrain also saves a generation every checkpoint_s
 * seconds of embedding (and a first build right after its training), with
 * "indexed_upto" at the last chunk added: killed at any point, the next build
 * resumes there, without re-embedding or retraining, and ends with the same
 * files as a build that was never interrupted. A --retrain saves only at the
 * end, so that the index it replaces stays in force until then.
 */
#ifndef RTR_BUILD_H
#define RTR_BUILD_H

#include <stdint.h>

#include "index/embed.h"
#include "index/embed_hash.h"
#include "index/kb.h"
#include "index/vectors.h"
#include "index/vindex.h"

typedef struct rtr_build_opts {
    rtr_embedder *embedder;  /* for a new index; NULL = hash (hash_dim). Borrowed. */
    uint32_t hash_dim;       /* 0 = 256 */
    uint32_t shards;         /* for a new index; 0 = 1, or one per core (max 8) from 256 Ki chunks */
    const char *factory;     /* FAISS factory string for a new index; NULL = automatic */
    uint64_t mem_budget;     /* bytes; 0 = 4 GiB */
    uint32_t nprobe;         /* 0 = keep / the plan's default */
    int retrain;             /* rebuild from scratch */
    int compact;             /* remove deleted chunks' vectors (and rebuild the lexical index without them) */
    int no_lexical;          /* leave the lexical index (index/lexical.h) as it is */
    int progress;
    int threads;             /* 0 = one per core */
    int project;             /* for a new index: components of a learned projection (index/embed_pca.h);
                                0 = automatic, -1 = none, > 0 this many */
    double checkpoint_s;     /* save what is embedded every this many seconds (0 = 300; < 0 never) */
    const rtr_vindex *proto; /* for a new index: empty shards trained already to copy (rtr_vindex_create_like),
                                with the embedder given, which must not be projected again (project -1):
                                a build of partitions (index/parts.h). Borrowed. */
} rtr_build_opts;

typedef struct rtr_build_report {
    uint64_t embedded;       /* chunks embedded and added this run */
    uint64_t removed;        /* vectors removed by --compact */
    uint64_t vectors;        /* in the shards now */
    uint64_t live_chunks;    /* chunks in the store */
    uint64_t trained_on;     /* chunks in the store when the quantizer was trained */
    int created;             /* a new index was made (first build or --retrain) */
    int drifted;             /* chunks have grown past 4x the training-time count */
    uint32_t shards, nlist, nprobe, dim;
    char factory[96], why[160];
    uint32_t checkpoints;    /* generations saved before the last */
    double seconds, embed_seconds;
    uint64_t lexical_indexed, lexical_chunks;   /* chunks added to the lexical index, and in it */
    double lexical_seconds;
} rtr_build_report;

int rtr_index_build(rtr_kb *kb, const rtr_build_opts *o, rtr_build_report *rep);

/* --- the pieces of a first build, for a build of partitions (index/parts.h) that trains once ---- */
/* Adds the document frequencies of kb's chunks to df (initialised). */
int rtr_build_count_df(rtr_kb *kb, rtr_hash_df *df);
/* Shards of a new index of n_chunks: one, or one per core (at most 8) from 256 Ki chunks. */
uint32_t rtr_build_default_shards(uint64_t n_chunks);
/* The plan a first build makes for n chunks of embedder dimension dim over shards shards, and the
 * projection it fits first (*proj components; 0: none): o->project, or automatic (build.h, above)
 * when neither an embedder nor a factory is given; the plan is then for proj dimensions. */
int rtr_build_plan(const rtr_build_opts *o, uint64_t n, uint32_t dim, uint32_t shards, uint32_t *proj,
                   rtr_vindex_plan *plan);
/* Chunks a first build samples for the plan (a projection's fit, a quantizer's training), of n_chunks. */
uint64_t rtr_build_sample_size(const rtr_vindex_plan *plan, uint32_t proj, uint64_t n_chunks);
/* m (at most kb's chunks) of kb's chunks, evenly spread, embedded with e: *out (*n x e->dim,
 * rtr_malloc'd, the caller's). */
int rtr_build_sample(rtr_kb *kb, uint64_t m, rtr_embedder *e, int threads, float **out, size_t *n);
/* Fits proj principal components on x (n x e->dim), saves them in dir (embed_pca.h) and makes *pe,
 * the embedder that projects e's vectors (owning e if owns); *train (n x proj, the caller's) is x
 * projected, for training an inverted file. */
int rtr_build_project(const float *x, size_t n, rtr_embedder *e, int owns, uint32_t proj, const char *dir,
                      float **train, rtr_embedder **pe);
/* Saves vx's shards in dir as PREFIX-SSS.faiss (and their 4-bit codes) and makes *section, a manifest
 * "index" section naming them with embedder's description (docs/formats.md; the caller's). */
int rtr_build_save_index(const rtr_vindex *vx, const rtr_embedder *embedder, const char *dir, const char *prefix,
                         long long gen, uint64_t upto, uint64_t trained_on, json_t **section);
/* The files under KB/index/ that an embedder's description names (the hash statistics, a projection):
 * fresh names, NULL where none. */
void rtr_build_embedder_files(const json_t *emb, char *names[2]);
/* Deletes the files of dir that an "index" section does not name (older generations, leftovers). */
void rtr_build_remove_stale(const char *dir, const json_t *section);

#endif
