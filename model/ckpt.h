/*
 * ckpt.h - model checkpoints: safetensors weights that any safetensors
 * reader (PyTorch included) loads, plus the JSON configuration.
 *
 * A checkpoint is a directory:
 *   model.safetensors  the weights, named and shaped as in docs/model.md, all
 *                      F32; metadata: "format" = "retro-model", "version" =
 *                      "1", "config" = the configuration JSON, and the
 *                      caller's keys (tokenizer hash, training step, ...)
 *   config.json        the same configuration, for people and other tools
 *   train.safetensors  (training checkpoints only) the weights again and the
 *                      AdamW moments "adam_m.NAME", "adam_v.NAME"; metadata
 *                      as above plus "adam_step" and the caller's training
 *                      state. Resuming reads this one file, so weights and
 *                      optimizer state always belong together.
 * Every file is replaced atomically (temporary file, fsync, rename): a
 * crash leaves the previous checkpoint or the new one, never a mix within
 * a file.
 *
 * Loading checks, before anything is allocated from them, every header,
 * dtype, shape and offset against the file's length (lib/safetensors.h),
 * then that the configuration is valid and every tensor of that
 * configuration is present with exactly its shape, and nothing else is.
 * Failures are one-line RTR_E_CORRUPT / RTR_E_VERSION errors naming the file.
 */
#ifndef RTR_CKPT_H
#define RTR_CKPT_H

#include "lib/bpe.h"
#include "lib/safetensors.h"
#include "model/retro.h"

/* Extra metadata: pairs of key, value strings; n pairs. */
typedef struct rtr_ckpt_meta {
    const char *const *kv;
    int n;
} rtr_ckpt_meta;

/* Writes dir/model.safetensors and dir/config.json and, when with_train,
 * last dir/train.safetensors (the model's gradients need not exist; its
 * moments must): a crash between the files leaves the training checkpoint,
 * which a resume reads, no newer than the model file. Creates dir. */
int rtr_ckpt_save(rtr_model *m, const char *dir, const rtr_ckpt_meta *meta, int with_train);

/* Loads a checkpoint: path is a checkpoint directory (its model.safetensors,
 * or train.safetensors when with_train) or a .safetensors file. Allocates a
 * model for batches of max_B (its T is the checkpoint's unless T_override >
 * 0, which must be a multiple of the chunk size). With with_train the AdamW
 * moments and step are restored too. *st_out (if not NULL) gets the loaded
 * file for reading its metadata (rtr_st_meta); caller frees it. */
int rtr_ckpt_load(const char *path, int max_B, int T_override, int with_train, rtr_model **out,
                  rtr_safetensors **st_out);

/* The same from a safetensors file already loaded (name is used in errors);
 * st stays the caller's. */
int rtr_ckpt_from_st(const rtr_safetensors *st, const char *name, int max_B, int T_override, int with_train,
                     rtr_model **out);

/* The file rtr_ckpt_load reads for path (a directory or a file); caller frees. */
char *rtr_ckpt_file(const char *path, int with_train);

/* `retro train --align`: neighbours re-cut to line up with their query chunk
 * (retriever/retriever.h) where they share a run of at least this many tokens
 * with it, an eighth of a chunk (the leakage filter's first alpha). Models
 * record the run length as metadata "align" (0 or absent: the paper's
 * neighbours); evaluation and generation retrieve for them the same way. */
#define RTR_ALIGN_MIN_RUN 8

/* `retro train --retriever`: where the model's neighbours come from, recorded
 * as metadata "retriever" = "vector" (the paper's; also when absent, as in
 * models from before it was recorded), "lexical" or "hybrid"; evaluation and
 * generation retrieve for the model the same way. The values are
 * retriever/retriever.h's RTR_SEARCH_VECTOR, _LEXICAL and _HYBRID (model/
 * does not include retriever/). */
enum { RTR_RETRIEVER_VECTOR = 1, RTR_RETRIEVER_LEXICAL = 2, RTR_RETRIEVER_HYBRID = 3 };
const char *rtr_ckpt_retriever_name(int retriever);    /* "vector", ...; NULL for another value */
int rtr_ckpt_retriever_parse(const char *name);        /* RTR_RETRIEVER_*; -1 for another name */

/* A model ready to use: the network, its tokenizer and its retrieval settings. */
typedef struct rtr_loaded_model {
    rtr_model *model;
    rtr_tokenizer *tok;
    char tok_hash[33];   /* the tokenizer's hash (hex), as the model records it */
    uint32_t align;      /* 0: the paper's neighbours; else the minimum run of aligned ones */
    int retriever;       /* RTR_RETRIEVER_*: where its neighbours come from */
} rtr_loaded_model;

/* Loads checkpoint directory dir (model.safetensors) for batches of max_B
 * (context T, or the checkpoint's when 0) and its tokenizer (dir/tokenizer.rtok,
 * else tok_path); checks that the tokenizer is the one the model records.
 * RTR_E_NOTFOUND (no such model, no tokenizer), RTR_E_MISMATCH (tokenizer),
 * RTR_E_CORRUPT / RTR_E_VERSION (files), RTR_E_NOMEM. */
int rtr_ckpt_load_model(const char *dir, const char *tok_path, int max_B, int T, rtr_loaded_model *out);
void rtr_loaded_model_free(rtr_loaded_model *lm);   /* NULL-safe; zeroes it */

/* RETRO-fitting's start: copies every tensor of src into the tensor of dst
 * with its name; RTR_E_MISMATCH (naming from) if dst lacks one or its size
 * differs. */
int rtr_model_copy_tensors(rtr_model *dst, rtr_model *src, const char *from);

/* The alignment recorded in checkpoint metadata value v (NULL: none) of
 * file; RTR_E_CORRUPT unless it is 0..64. */
int rtr_ckpt_align_meta(const char *v, const char *file, uint32_t *align);

/* The retriever recorded in checkpoint metadata value v (NULL: none, so
 * vector) of file; RTR_E_CORRUPT, one line naming file, unless it is
 * "vector", "lexical" or "hybrid". */
int rtr_ckpt_retriever_meta(const char *v, const char *file, int *retriever);

#endif
