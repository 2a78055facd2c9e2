/* cmd_train.c - `retro train KB -o DIR`: a baseline, a RETRO model, or a
 * RETRO-fitted baseline, trained on the documents of a knowledge base. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/dataset.h"
#include "cli/nbr.h"
#include "index/kb.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
#include "model/ckpt.h"
#include "model/retro.h"
#include "model/train.h"
#include "retriever/retriever.h"

static const char train_usage[] =
    "usage: retro train KB -o DIR [options]\n"
    "\n"
    "Trains a language model on the documents of knowledge base KB and writes\n"
    "checkpoints to DIR (model.safetensors, config.json, train.safetensors,\n"
    "tokenizer.rtok, log.jsonl). Documents are split into training and validation\n"
    "sets by content hash. In the retrieval modes every 64-token chunk gets the K\n"
    "nearest chunks of KB (with their continuations) as neighbours, never from its\n"
    "own document nor from a validation document; KB needs an index\n"
    "(retro index build).\n"
    "\n"
    "modes:\n"
    "  --mode retro          decoder with chunked cross-attention (default)\n"
    "  --mode baseline       the decoder alone, no retrieval\n"
    "  --mode fit            RETRO-fitting: load the baseline given by --from, freeze\n"
    "                        it, train only the encoder and cross-attention\n"
    "  --from CKPT           the baseline checkpoint to RETRO-fit\n"
    "  --resume              continue the training checkpoint in DIR exactly, with the\n"
    "                        run's recorded settings (those given again override them)\n"
    "\n"
    "training:\n"
    "  --steps N             optimizer steps (default 1000)\n"
    "  --batch B             sequences per step (default 4)\n"
    "  --lr X                peak learning rate (default 1e-3)\n"
    "  --warmup N            warm-up steps (default steps/20)\n"
    "  --weight-decay X      (default 0.1)\n"
    "  --clip X              gradient norm clip, 0 = none (default 1.0)\n"
    "  --seed N              initialisation and data order (default 1)\n"
    "  --val-frac X          share of documents held out (default 0.05)\n"
    "  --eval-every N        steps between validations (default 100)\n"
    "  --eval-seqs N         validation sequences per validation, 0 = all (default 64)\n"
    "  --save-every N        steps between checkpoints (default 200)\n"
    "  --threads N           threads (default: all cores)\n"
    "  --quiet               no progress bar\n"
    "  --json                print the final summary as JSON\n"
    "\n"
    "model (new models only; see docs/model.md):\n"
    "  --context T           tokens per sequence, a multiple of 64 (default 512)\n"
    "  --width C             (default 256)        --layers L     (default 6)\n"
    "  --heads H             (default 4)          --mlp F        (default 4*width)\n"
    "  --cca LIST            decoder layers with cross-attention, e.g. 3,6\n"
    "                        (default: the paper's pattern scaled to the depth)\n"
    "  --neighbours K        neighbours per chunk (default 2)\n"
    "  --self-neighbours P   curriculum (not the paper's rule): for a share P of training\n"
    "                        chunks the last neighbour is the chunk itself and its true\n"
    "                        continuation, so that the cross-attention learns to read\n"
    "                        neighbours; validation never gets it (default 0)\n"
    "  --self-anneal         ... with that share falling linearly to 0 at the last step,\n"
    "                        so the last steps see only honest neighbours\n"
    "  --self-shift S        ... with each self-neighbour cut up to S tokens (0..64) before\n"
    "                        or after the chunk, as near-duplicates in other documents\n"
    "                        are, so that it must be found by its text (default 0)\n"
    "  --align               neighbours re-cut to line up with their chunk where they share\n"
    "                        a run of 8 or more tokens (not the paper's rule; eval, generate\n"
    "                        and ask retrieve the same way for the model)\n"
    "  --enc-layers N        (default 2)          --enc-width W  (default width/2)\n"
    "  --enc-heads H         (default heads/2)\n";

static volatile int g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int parse_cca(const char *s, rtr_model_config *c) {
    c->n_cca = 0;
    if (!strcmp(s, "none")) return 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > RTR_MODEL_MAX_LAYERS || c->n_cca == RTR_MODEL_MAX_LAYERS) return -1;
        c->cca[c->n_cca++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return c->n_cca ? 0 : -1;
}

/* Copies every tensor of src that dst also has (same name and size). */
static int copy_by_name(rtr_model *dst, rtr_model *src, const char *from) {
    for (int i = 0; i < rtr_model_ntensors(src); i++) {
        const rtr_model_param *p = rtr_model_tensor(src, i), *q = rtr_model_find(dst, p->name);
        if (!q || q->n != p->n)
            return rtr_seterr(RTR_E_MISMATCH, "%s: tensor %s does not fit the RETRO model", from, p->name);
        memcpy(rtr_model_params(dst) + q->off, rtr_model_params(src) + p->off, p->n * sizeof(float));
    }
    return RTR_OK;
}

/* The settings a training checkpoint records, so that --resume continues
 * the same run: metadata keys and how to print and parse them. */
enum { S_SEED, S_BATCH, S_STEPS, S_LR, S_WARMUP, S_WD, S_CLIP, S_VAL, S_SELF, S_ANNEAL, S_EVAL, S_EVALSEQ, S_SAVE,
       S_SHIFT, S_ALIGN, N_SETTINGS };
static const char *SETTING_KEYS[N_SETTINGS] = {"seed",     "batch",           "steps",       "lr",
                                               "warmup",   "weight_decay",    "clip",        "val_frac",
                                               "self_neighbours", "self_anneal", "eval_every", "eval_seqs",
                                               "save_every", "self_shift", "align"};

static void settings_meta(const rtr_train_opts *o, double val_frac, const cli_dataset_opts *d, char sv[][40],
                          const char **kv) {
    snprintf(sv[S_SEED], 40, "%" PRIu64, o->seed);
    snprintf(sv[S_BATCH], 40, "%d", o->B);
    snprintf(sv[S_STEPS], 40, "%" PRId64, o->steps);
    snprintf(sv[S_LR], 40, "%.9g", o->lr);
    snprintf(sv[S_WARMUP], 40, "%" PRId64, o->warmup);
    snprintf(sv[S_WD], 40, "%.9g", o->hp.weight_decay);
    snprintf(sv[S_CLIP], 40, "%.9g", o->hp.clip);
    snprintf(sv[S_VAL], 40, "%.17g", val_frac);
    snprintf(sv[S_SELF], 40, "%.17g", d->self_rate);
    snprintf(sv[S_ANNEAL], 40, "%d", d->self_anneal);
    snprintf(sv[S_SHIFT], 40, "%d", d->self_shift);
    snprintf(sv[S_ALIGN], 40, "%u", d->align);
    snprintf(sv[S_EVAL], 40, "%" PRId64, o->eval_every);
    snprintf(sv[S_EVALSEQ], 40, "%" PRId64, o->eval_seqs);
    snprintf(sv[S_SAVE], 40, "%" PRId64, o->save_every);
    for (int i = 0; i < N_SETTINGS; i++) {
        kv[2 * i] = SETTING_KEYS[i];
        kv[2 * i + 1] = sv[i];
    }
}

/* Reads the recorded settings into o and *val_frac, except those given[i]. */
static int resume_settings(const rtr_safetensors *st, const char *file, const uint8_t *given, rtr_train_opts *o,
                           double *val_frac, cli_dataset_opts *d) {
    for (int i = 0; i < N_SETTINGS; i++) {
        const char *v = rtr_st_meta(st, SETTING_KEYS[i]);
        if (!v || given[i]) continue;
        char *end;
        double x = strtod(v, &end);
        if (*end || end == v || !(x >= 0) || x > 1e15)
            return rtr_seterr(RTR_E_CORRUPT, "%s: bad %s \"%s\"", file, SETTING_KEYS[i], v);
        switch (i) {
        case S_SEED: o->seed = strtoull(v, NULL, 10); break;
        case S_BATCH:
            if (x < 1 || x > 4096) return rtr_seterr(RTR_E_CORRUPT, "%s: bad batch %s", file, v);
            o->B = (int)x;
            break;
        case S_STEPS: o->steps = (int64_t)x; break;
        case S_LR: o->lr = (float)x; break;
        case S_WARMUP: o->warmup = (int64_t)x; break;
        case S_WD: o->hp.weight_decay = (float)x; break;
        case S_CLIP: o->hp.clip = (float)x; break;
        case S_VAL:
            if (x >= 1) return rtr_seterr(RTR_E_CORRUPT, "%s: bad val_frac %s", file, v);
            *val_frac = x;
            break;
        case S_SELF:
            if (x > 1) return rtr_seterr(RTR_E_CORRUPT, "%s: bad self_neighbours %s", file, v);
            d->self_rate = x;
            break;
        case S_ANNEAL:
            if (x > 1) return rtr_seterr(RTR_E_CORRUPT, "%s: bad self_anneal %s", file, v);
            d->self_anneal = (int)x;
            break;
        case S_SHIFT:
            if (x > 64) return rtr_seterr(RTR_E_CORRUPT, "%s: bad self_shift %s", file, v);
            d->self_shift = (int)x;
            break;
        case S_ALIGN:
            if (cli_align_meta(v, file, &d->align) < 0) return RTR_E_CORRUPT;
            break;
        case S_EVAL: o->eval_every = (int64_t)x; break;
        case S_EVALSEQ: o->eval_seqs = (int64_t)x; break;
        case S_SAVE: o->save_every = (int64_t)x; break;
        }
    }
    return RTR_OK;
}

static long parse_long(const char *s, long lo, long hi, int *bad) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < lo || v > hi) *bad = 1;
    return v;
}

int cmd_train(int argc, char **argv) {
    enum { O_MODE = 256, O_FROM, O_RESUME, O_STEPS, O_BATCH, O_LR, O_WARMUP, O_WD, O_CLIP, O_SEED, O_VAL, O_EVAL,
           O_EVALSEQ, O_SAVE, O_THREADS, O_QUIET, O_JSON, O_CTX, O_WIDTH, O_LAYERS, O_HEADS, O_MLP, O_CCA, O_K,
           O_ELAYERS, O_EWIDTH, O_EHEADS, O_SELF, O_ANNEAL, O_SHIFT, O_ALIGN };
    static const struct option opts[] = {
        {"mode", 1, 0, O_MODE},         {"from", 1, 0, O_FROM},          {"resume", 0, 0, O_RESUME},
        {"steps", 1, 0, O_STEPS},       {"batch", 1, 0, O_BATCH},        {"lr", 1, 0, O_LR},
        {"warmup", 1, 0, O_WARMUP},     {"weight-decay", 1, 0, O_WD},    {"clip", 1, 0, O_CLIP},
        {"seed", 1, 0, O_SEED},         {"val-frac", 1, 0, O_VAL},       {"eval-every", 1, 0, O_EVAL},
        {"eval-seqs", 1, 0, O_EVALSEQ}, {"save-every", 1, 0, O_SAVE},    {"threads", 1, 0, O_THREADS},
        {"quiet", 0, 0, O_QUIET},       {"json", 0, 0, O_JSON},          {"context", 1, 0, O_CTX},
        {"width", 1, 0, O_WIDTH},       {"layers", 1, 0, O_LAYERS},      {"heads", 1, 0, O_HEADS},
        {"mlp", 1, 0, O_MLP},           {"cca", 1, 0, O_CCA},            {"neighbours", 1, 0, O_K},
        {"enc-layers", 1, 0, O_ELAYERS}, {"enc-width", 1, 0, O_EWIDTH},  {"enc-heads", 1, 0, O_EHEADS},
        {"self-neighbours", 1, 0, O_SELF}, {"self-anneal", 0, 0, O_ANNEAL}, {"self-shift", 1, 0, O_SHIFT},
        {"align", 0, 0, O_ALIGN},
        {"output", 1, 0, 'o'},          {"help", 0, 0, 'h'},             {0, 0, 0, 0}};
    const char *out_dir = NULL, *from = NULL, *mode = "retro", *cca = NULL;
    int resume = 0, quiet = 0, json = 0, threads = 0, bad = 0, c;
    rtr_model_config cfg;
    rtr_model_config_default(&cfg, 0);
    rtr_train_opts to = {0};
    to.B = 4;
    to.steps = 1000;
    to.lr = 1e-3f;
    to.warmup = -1;
    to.seed = 1;
    to.eval_every = 100;
    to.eval_seqs = 64;
    to.save_every = 200;
    rtr_adamw_default(&to.hp);
    double val_frac = 0.05;
    cli_dataset_opts dopt = {0};   /* the curriculum's settings; the rest is filled in below */
    uint8_t given[O_ALIGN + 1] = {0};   /* options set on the command line */
    optind = 1;
    int li = -1;
    while ((li = -1, c = getopt_long(argc, argv, "ho:", opts, &li)) != -1) {
        if (c >= 256 && c <= O_ALIGN) given[c] = 1;
        switch (c) {
        case 'h': fputs(train_usage, stdout); return CLI_OK;
        case 'o': out_dir = optarg; break;
        case O_MODE: mode = optarg; break;
        case O_FROM: from = optarg; break;
        case O_RESUME: resume = 1; break;
        case O_STEPS: to.steps = parse_long(optarg, 1, 1L << 40, &bad); break;
        case O_BATCH: to.B = (int)parse_long(optarg, 1, 4096, &bad); break;
        case O_LR: to.lr = strtof(optarg, NULL); bad |= !(to.lr > 0 && to.lr < 10); break;
        case O_WARMUP: to.warmup = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_WD: to.hp.weight_decay = strtof(optarg, NULL); bad |= !(to.hp.weight_decay >= 0); break;
        case O_CLIP: to.hp.clip = strtof(optarg, NULL); bad |= !(to.hp.clip >= 0); break;
        case O_SEED: to.seed = strtoull(optarg, NULL, 10); break;
        case O_VAL: val_frac = strtod(optarg, NULL); bad |= !(val_frac >= 0 && val_frac < 1); break;
        case O_EVAL: to.eval_every = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_EVALSEQ: to.eval_seqs = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_SAVE: to.save_every = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_THREADS: threads = (int)parse_long(optarg, 1, 1024, &bad); break;
        case O_QUIET: quiet = 1; break;
        case O_JSON: json = 1; break;
        case O_CTX: cfg.T = (int)parse_long(optarg, 64, 65536, &bad); break;
        case O_WIDTH: cfg.C = (int)parse_long(optarg, 2, 16384, &bad); break;
        case O_LAYERS: cfg.L = (int)parse_long(optarg, 1, RTR_MODEL_MAX_LAYERS, &bad); break;
        case O_HEADS: cfg.NH = (int)parse_long(optarg, 1, 1024, &bad); break;
        case O_MLP: cfg.F = (int)parse_long(optarg, 1, 65536, &bad); break;
        case O_CCA: cca = optarg; break;
        case O_K: cfg.K = (int)parse_long(optarg, 1, 64, &bad); break;
        case O_ELAYERS: cfg.EL = (int)parse_long(optarg, 1, RTR_MODEL_MAX_LAYERS, &bad); break;
        case O_EWIDTH: cfg.EC = (int)parse_long(optarg, 2, 16384, &bad); break;
        case O_EHEADS: cfg.ENH = (int)parse_long(optarg, 1, 1024, &bad); break;
        case O_SELF:
            dopt.self_rate = strtod(optarg, NULL);
            bad |= !(dopt.self_rate >= 0 && dopt.self_rate <= 1);
            break;
        case O_ANNEAL: dopt.self_anneal = 1; break;
        case O_SHIFT: dopt.self_shift = (int)parse_long(optarg, 0, 64, &bad); break;
        case O_ALIGN: dopt.align = CLI_ALIGN_MIN_RUN; break;
        default: return cli_usage_error("train", "bad option");
        }
        if (bad) return cli_usage_error("train", "bad value for --%s", li >= 0 ? opts[li].name : "?");
    }
    if (argc - optind != 1) return cli_usage_error("train", "expected KB");
    if (!out_dir) return cli_usage_error("train", "-o DIR is required");
    int m_base = !strcmp(mode, "baseline"), m_fit = !strcmp(mode, "fit"), m_retro = !strcmp(mode, "retro");
    if (!m_base && !m_fit && !m_retro) return cli_usage_error("train", "--mode must be retro, baseline or fit");
    if (m_fit && !from && !resume) return cli_usage_error("train", "--mode fit needs --from BASELINE");
    if (cca && parse_cca(cca, &cfg) < 0) return cli_usage_error("train", "--cca wants layers like 3,6 or none");
    if (m_base) cfg.n_cca = 0;
    if (!m_base && cca && cfg.n_cca == 0) return cli_usage_error("train", "--cca none is --mode baseline");
    if (to.warmup < 0) to.warmup = to.steps / 20;
    if (threads) rtr_set_threads(threads);

    const char *kb_dir = argv[optind];
    rtr_kb *kb = NULL;
    rtr_retriever *r = NULL;
    cli_dataset *ds = NULL;
    rtr_model *m = NULL, *base = NULL;
    rtr_safetensors *st = NULL;
    FILE *log = NULL;
    char *path = NULL;
    int rc = rtr_kb_open(kb_dir, 0, NULL, NULL, &kb);
    if (rc) goto done;
    const rtr_tokenizer *tok = rtr_kb_tokenizer(kb);
    cfg.V = (int)rtr_tokenizer_vocab_size(tok);

    /* the model: resumed, fitted from a baseline, or new */
    if (resume) {
        path = rtr_ckpt_file(out_dir, 1);
        if (path && !rtr_path_exists(path)) {
            rc = rtr_seterr(RTR_E_NOTFOUND, "%s: no training checkpoint to resume", path);
            goto done;
        }
        if ((rc = rtr_st_load(path, &st)) < 0) goto done;
        /* the run's settings, unless given again */
        const int opt_of[N_SETTINGS] = {O_SEED, O_BATCH, O_STEPS,  O_LR,     O_WARMUP,  O_WD,   O_CLIP,
                                        O_VAL,  O_SELF,  O_ANNEAL, O_EVAL, O_EVALSEQ, O_SAVE, O_SHIFT, O_ALIGN};
        uint8_t given_s[N_SETTINGS];
        for (int i = 0; i < N_SETTINGS; i++) given_s[i] = given[opt_of[i]];
        if ((rc = resume_settings(st, path, given_s, &to, &val_frac, &dopt)) < 0) goto done;
        if ((rc = rtr_ckpt_from_st(st, path, to.B, 0, 1, &m)) < 0) goto done;
        free(path);
        path = NULL;
        const char *mm = rtr_st_meta(st, "mode"), *th = rtr_st_meta(st, "tokenizer");
        if (th && strcmp(th, rtr_kb_tokenizer_hash(kb))) {
            rc = rtr_seterr(RTR_E_MISMATCH, "%s: trained with tokenizer %s, %s has %s", out_dir, th, kb_dir,
                            rtr_kb_tokenizer_hash(kb));
            goto done;
        }
        if (mm) {
            m_base = !strcmp(mm, "baseline");
            m_fit = !strcmp(mm, "fit");
            m_retro = !strcmp(mm, "retro");
            mode = m_base ? "baseline" : m_fit ? "fit" : "retro";
        }
        cfg = *rtr_model_cfg(m);
    } else if (m_fit) {
        if ((rc = rtr_ckpt_load(from, 1, 0, 0, &base, &st)) < 0) goto done;
        const rtr_model_config *bc = rtr_model_cfg(base);
        if (bc->n_cca) {
            rc = rtr_seterr(RTR_E_INVALID, "%s: already has cross-attention; RETRO-fitting starts from a baseline",
                            from);
            goto done;
        }
        rtr_model_config fc = cfg;
        cfg = *bc;   /* the baseline's decoder, the requested retrieval path */
        cfg.K = fc.K;
        cfg.EL = fc.EL;
        cfg.EC = fc.EC;
        cfg.ENH = fc.ENH;
        cfg.EF = 0;
        cfg.R = 0;
        cfg.n_cca = cca ? fc.n_cca : -1;
        memcpy(cfg.cca, fc.cca, sizeof cfg.cca);
    }
    if (cfg.V != (int)rtr_tokenizer_vocab_size(tok)) {
        rc = rtr_seterr(RTR_E_MISMATCH, "the model's vocabulary (%d) is not the tokenizer's of %s (%u)", cfg.V,
                        kb_dir, rtr_tokenizer_vocab_size(tok));
        goto done;
    }
    if (!resume) {
        if ((rc = rtr_model_config_finish(&cfg)) < 0) goto done;
        if ((rc = rtr_model_new(&cfg, to.B, &m)) < 0) goto done;
        rtr_model_init(m, to.seed);
        if (base && (rc = copy_by_name(m, base, from)) < 0) goto done;
    }
    if (cfg.n_cca && (cfg.m != RTR_CHUNK_TOKENS || cfg.R != 2 * RTR_CHUNK_TOKENS)) {
        rc = rtr_seterr(RTR_E_INVALID, "retrieval needs chunks of %d tokens and neighbours of %d", RTR_CHUNK_TOKENS,
                        2 * RTR_CHUNK_TOKENS);
        goto done;
    }
    rtr_model_freeze_decoder(m, m_fit);
    to.retrieval = !m_base;

    /* the data */
    if (to.retrieval && (rc = rtr_retriever_open(kb, NULL, &r)) < 0) goto done;
    dopt.T = cfg.T;
    dopt.K = to.retrieval ? cfg.K : 0;
    dopt.val_frac = val_frac;
    dopt.seed = to.seed;
    dopt.progress = !quiet;
    if ((rc = cli_dataset_build(kb, r, &dopt, &ds)) < 0) goto done;
    int64_t ch[2], docs[2], toks[2];
    for (int s = 0; s < 2; s++) cli_dataset_counts(ds, s, &ch[s], &docs[s], &toks[s]);
    if (!json)
        fprintf(stderr,
                "train: %s model, %zu parameters (%s trained); %" PRId64 " training documents (%" PRId64
                " tokens), %" PRId64 " validation documents (%" PRId64 " tokens)\n",
                mode, rtr_model_nparams(m), m_fit ? "retrieval path" : "all", docs[0], toks[0], docs[1], toks[1]);
    if (docs[1] == 0 && val_frac > 0)
        fprintf(stderr, "train: warning: no document fell in the validation split; raise --val-frac\n");

    /* the output directory: tokenizer, log, checkpoints */
    if ((rc = rtr_mkdirs(out_dir)) < 0) goto done;
    path = rtr_path_join(out_dir, "tokenizer.rtok");
    if (!path || (rc = rtr_tokenizer_save(tok, path)) < 0) goto done;
    free(path);
    path = rtr_path_join(out_dir, "log.jsonl");
    log = path ? fopen(path, resume ? "a" : "w") : NULL;
    if (!log) {
        rc = rtr_seterr(RTR_E_IO, "%s: cannot open the log", path ? path : out_dir);
        goto done;
    }
    char sv[N_SETTINGS][40];
    const char *kv[2 * (N_SETTINGS + 2)] = {"tokenizer", rtr_kb_tokenizer_hash(kb), "mode", mode};
    settings_meta(&to, val_frac, &dopt, sv, kv + 4);
    rtr_ckpt_meta meta = {kv, N_SETTINGS + 2};
    to.out_dir = out_dir;
    to.meta = &meta;
    to.progress = !quiet;
    to.log = log;
    to.stop = &g_stop;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rtr_train_result res;
    rc = rtr_train(m, cli_dataset_source(ds), &to, &res);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (rc) goto done;
    if (json) {
        char vl[32] = "null", vb[32] = "null";
        if (isfinite(res.val_loss)) snprintf(vl, sizeof vl, "%.6f", res.val_loss);
        if (isfinite(res.val_bpb)) snprintf(vb, sizeof vb, "%.6f", res.val_bpb);
        printf("{\"mode\":\"%s\",\"steps\":%" PRId64 ",\"params\":%zu,\"train_loss\":%.6f,\"val_loss\":%s,"
               "\"val_bpb\":%s,\"tokens_per_s\":%.1f}\n",
               mode, res.steps, rtr_model_nparams(m), res.train_loss, vl, vb, res.tokens_per_s);
    }
    else
        fprintf(stderr, "train: %" PRId64 " steps; training loss %.4f; validation loss %.4f, %.4f bits per byte; "
                        "%.0f tokens/s; saved in %s\n",
                res.steps, res.train_loss, res.val_loss, res.val_bpb, res.tokens_per_s, out_dir);
done:
    if (log) fclose(log);
    free(path);
    rtr_st_free(st);
    rtr_model_free(m);
    rtr_model_free(base);
    cli_dataset_free(ds);
    rtr_retriever_close(r);
    rtr_kb_close(kb);
    return rc ? cli_fail(rc) : CLI_OK;
}
