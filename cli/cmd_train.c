/* cmd_train.c - `retro train KB -o DIR`: a baseline, a RETRO model, or a
 * RETRO-fitted baseline, trained on the documents of a knowledge base. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/comm.h"
#include "lib/status.h"
#include "lib/threads.h"

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
    "Under `mpirun -np N`: data parallel, each rank a share of every batch.\n"
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
    "  --retriever R         where the neighbours come from: vector (the embeddings' nearest,\n"
    "                        the paper's), lexical (BM25 over the chunks' words) or hybrid\n"
    "                        (both, fused by reciprocal rank); recorded in the model, and\n"
    "                        eval, generate, ask and serve retrieve the same way for it\n"
    "                        (default: KB's search mode, retro index build --search-mode;\n"
    "                        with --resume, the run's)\n"
    "  --enc-layers N        (default 2)          --enc-width W  (default width/2)\n"
    "  --enc-heads H         (default heads/2)\n";

static volatile int g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* --cca 3,6 or none into o->cca / o->n_cca; -1 if malformed. */
static int parse_cca(const char *s, retro_train_opts *o) {
    o->n_cca = 0;
    if (!strcmp(s, "none")) return 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 64 || o->n_cca == 64) return -1;
        o->cca[o->n_cca++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return o->n_cca ? 0 : -1;
}

static long parse_long(const char *s, long lo, long hi, int *bad) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < lo || v > hi) *bad = 1;
    return v;
}

static double parse_double(const char *s, double lo, double hi, int *bad) {
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= lo && v <= hi)) *bad = 1;
    return v;
}

static void print_plan(void *ctx, const retro_train_plan *p) {
    (void)ctx;
    fprintf(stderr,
            "train: %s model, %zu parameters (%s trained)%s%s%s; %" PRId64 " training documents (%" PRId64
            " tokens), %" PRId64 " validation documents (%" PRId64 " tokens)\n",
            p->mode, p->params, p->decoder_frozen ? "retrieval path" : "all", p->retriever ? ", " : "",
            p->retriever ? p->retriever : "", p->retriever ? " neighbours" : "", p->documents[0], p->tokens[0],
            p->documents[1], p->tokens[1]);
    if (p->documents[1] == 0 && p->val_frac > 0)
        fprintf(stderr, "train: warning: no document fell in the validation split; raise --val-frac\n");
}

int cmd_train(int argc, char **argv) {
    enum { O_MODE = 256, O_FROM, O_RESUME, O_STEPS, O_BATCH, O_LR, O_WARMUP, O_WD, O_CLIP, O_SEED, O_VAL, O_EVAL,
           O_EVALSEQ, O_SAVE, O_THREADS, O_QUIET, O_JSON, O_CTX, O_WIDTH, O_LAYERS, O_HEADS, O_MLP, O_CCA, O_K,
           O_ELAYERS, O_EWIDTH, O_EHEADS, O_SELF, O_ANNEAL, O_SHIFT, O_ALIGN, O_RETRIEVER };
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
        {"align", 0, 0, O_ALIGN},       {"retriever", 1, 0, O_RETRIEVER},
        {"output", 1, 0, 'o'},          {"help", 0, 0, 'h'},             {0, 0, 0, 0}};
    const char *mode = "retro", *cca = NULL;
    int quiet = 0, json = 0, threads = 0, bad = 0, c;
    retro_train_opts to;
    retro_train_opts_default(&to);
    optind = 1;
    int li = -1;
    while ((li = -1, c = getopt_long(argc, argv, "ho:", opts, &li)) != -1) {
        switch (c) {
        case 'h': fputs(train_usage, stdout); return CLI_OK;
        case 'o': to.out_dir = optarg; break;
        case O_MODE: mode = optarg; break;
        case O_FROM: to.from = optarg; break;
        case O_RESUME: to.resume = 1; break;
        case O_STEPS: to.steps = parse_long(optarg, 1, 1L << 40, &bad); break;
        case O_BATCH: to.batch = (int)parse_long(optarg, 1, 4096, &bad); break;
        case O_LR: to.lr = parse_double(optarg, 1e-30, 10, &bad); bad |= !(to.lr < 10); break;
        case O_WARMUP: to.warmup = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_WD: to.weight_decay = parse_double(optarg, 0, 1e30, &bad); break;
        case O_CLIP: to.clip = parse_double(optarg, 0, 1e30, &bad); break;
        case O_SEED: to.seed = parse_long(optarg, 0, LONG_MAX, &bad); break;
        case O_VAL: to.val_frac = parse_double(optarg, 0, 1, &bad); bad |= !(to.val_frac < 1); break;
        case O_EVAL: to.eval_every = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_EVALSEQ: to.eval_seqs = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_SAVE: to.save_every = parse_long(optarg, 0, 1L << 40, &bad); break;
        case O_THREADS: threads = (int)parse_long(optarg, 1, 1024, &bad); break;
        case O_QUIET: quiet = 1; break;
        case O_JSON: json = 1; break;
        case O_CTX: to.context = (int)parse_long(optarg, 64, 65536, &bad); break;
        case O_WIDTH: to.width = (int)parse_long(optarg, 2, 16384, &bad); break;
        case O_LAYERS: to.layers = (int)parse_long(optarg, 1, 64, &bad); break;
        case O_HEADS: to.heads = (int)parse_long(optarg, 1, 1024, &bad); break;
        case O_MLP: to.mlp = (int)parse_long(optarg, 1, 65536, &bad); break;
        case O_CCA: cca = optarg; break;
        case O_K: to.neighbours = (int)parse_long(optarg, 1, 64, &bad); break;
        case O_ELAYERS: to.enc_layers = (int)parse_long(optarg, 1, 64, &bad); break;
        case O_EWIDTH: to.enc_width = (int)parse_long(optarg, 2, 16384, &bad); break;
        case O_EHEADS: to.enc_heads = (int)parse_long(optarg, 1, 1024, &bad); break;
        case O_SELF: to.self_neighbours = parse_double(optarg, 0, 1, &bad); break;
        case O_ANNEAL: to.self_anneal = 1; break;
        case O_SHIFT: to.self_shift = (int)parse_long(optarg, 0, 64, &bad); break;
        case O_ALIGN: to.align = 8; break;   /* RTR_ALIGN_MIN_RUN: an eighth of a chunk */
        case O_RETRIEVER:
            if ((to.retriever = retro_search_mode_parse(optarg)) < 0)
                return cli_usage_error("train", "--retriever must be vector, lexical or hybrid");
            break;
        default: return cli_usage_error("train", "bad option");
        }
        if (bad) return cli_usage_error("train", "bad value for --%s", li >= 0 ? opts[li].name : "?");
    }
    if (argc - optind != 1) return cli_usage_error("train", "expected KB");
    if (!to.out_dir) return cli_usage_error("train", "-o DIR is required");
    to.mode = !strcmp(mode, "baseline") ? RETRO_TRAIN_BASELINE : !strcmp(mode, "fit") ? RETRO_TRAIN_FIT
            : !strcmp(mode, "retro") ? RETRO_TRAIN_RETRO : -1;
    if (to.mode < 0) return cli_usage_error("train", "--mode must be retro, baseline or fit");
    if (to.mode == RETRO_TRAIN_FIT && !to.from && !to.resume)
        return cli_usage_error("train", "--mode fit needs --from BASELINE");
    if (cca && parse_cca(cca, &to) < 0) return cli_usage_error("train", "--cca wants layers like 3,6 or none");
    if (to.mode != RETRO_TRAIN_BASELINE && cca && to.n_cca == 0)
        return cli_usage_error("train", "--cca none is --mode baseline");
    if (threads) rtr_set_threads(threads);
    to.progress = !quiet;
    to.stop = &g_stop;
    if (!json) to.on_start = print_plan;

    retro_kb *kb = NULL;
    retro_train_result res;
    int rc = retro_kb_open(argv[optind], 0, NULL, &kb);
    if (!rc) {
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        rc = retro_train(kb, &to, &res);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
    }
    retro_kb_close(kb);
    if (rc) return cli_fail(rc);
    if (rtr_comm_rank(rtr_comm_world()) != 0) return CLI_OK;   /* under mpirun, rank 0 reports */
    if (json) {
        char vl[32] = "null", vb[32] = "null";
        if (isfinite(res.val_loss)) snprintf(vl, sizeof vl, "%.6f", res.val_loss);
        if (isfinite(res.val_bpb)) snprintf(vb, sizeof vb, "%.6f", res.val_bpb);
        printf("{\"mode\":\"%s\",\"steps\":%" PRId64 ",\"params\":%zu,\"train_loss\":%.6f,\"val_loss\":%s,"
               "\"val_bpb\":%s,\"tokens_per_s\":%.1f}\n",
               res.mode, res.steps, res.params, res.train_loss, vl, vb, res.tokens_per_s);
    } else {
        fprintf(stderr, "train: %" PRId64 " steps; training loss %.4f; validation loss %.4f, %.4f bits per byte; "
                        "%.0f tokens/s; saved in %s\n",
                res.steps, res.train_loss, res.val_loss, res.val_bpb, res.tokens_per_s, to.out_dir);
    }
    return CLI_OK;
}
