"""Can a learned projection of the hash space make inverted files work at scale?

  BENCH_ANN_QUERIES=/tmp/q.bin build/dev/tests/bench/bench_ann KB 1000
  /usr/bin/python3 tests/bench/proj_recall.py KB /tmp/q.bin [DIMS] [NLIST]

KB: a knowledge base built with `--index-type IDMap,Flat` (its vectors are read back from the
shards with python3-faiss); q.bin: bench_ann's perturbed chunks (a fifth of the words dropped)
embedded with the knowledge base's embedder, and the chunks they were cut from.
For the raw hash space and PCA projections to each of DIMS (default 32,64,128), trained on
100,000 vectors: rank-1 recovery of the perturbed chunk by exact search in that space (the
first hit is the chunk or holds the same vector), and recall@10 of an inverted file with NLIST
lists (default 4 * sqrt(n)) at several nprobe, against exact search in the same space.
"""
import json, sys, time
import numpy as np, faiss

kb, qfile = sys.argv[1], sys.argv[2]
dims = [int(d) for d in (sys.argv[3] if len(sys.argv) > 3 else "32,64,128").split(",")]
man = json.load(open(f"{kb}/manifest.json"))["index"]
xs, ids = [], []
for s in man["shards"]:
    ix = faiss.read_index(f"{kb}/index/{s['file']}")
    idm = faiss.downcast_index(ix)
    flat = faiss.downcast_index(idm.index)
    n, d = flat.ntotal, flat.d
    xs.append(faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d).copy())
    ids.append(faiss.vector_to_array(idm.id_map).copy())
    del ix
x = np.concatenate(xs); ids = np.concatenate(ids); del xs
row = {int(c): i for i, c in enumerate(ids)}
hdr = np.fromfile(qfile, dtype=np.uint32, count=2)
nq, dim = int(hdr[0]), int(hdr[1])
q = np.fromfile(qfile, dtype=np.float32, count=nq * dim, offset=8).reshape(nq, dim)
src = np.fromfile(qfile, dtype=np.int64, count=nq, offset=8 + 4 * nq * dim)
keep = np.array([int(c) in row for c in src])
q, src = q[keep], src[keep]
srow = np.array([row[int(c)] for c in src])
n = len(x)
nlist = int(sys.argv[4]) if len(sys.argv) > 4 else int(4 * np.sqrt(n))
print(f"{n} vectors of {dim}; {len(q)} queries; nlist {nlist}", flush=True)
rng = np.random.default_rng(0)
train = x[rng.choice(n, min(n, 100_000), replace=False)]


def study(name, xb, xq):
    d = xb.shape[1]
    flat = faiss.IndexFlatL2(d)
    flat.add(xb)
    t = time.time()
    _, gt = flat.search(xq, 10)
    t_exact = time.time() - t
    del flat
    # rank 1 holds the chunk, or a chunk with the same (raw) vector: an exact copy
    rec = np.mean([gt[i, 0] == srow[i] or np.array_equal(x[gt[i, 0]], x[srow[i]]) for i in range(len(xq))])
    print(f"{name}: rank-1 recovery {rec:.3f} (exact search {t_exact * 1e3 / len(xq):.1f} ms/query)", flush=True)
    quant = faiss.IndexFlatL2(d)
    iv = faiss.IndexIVFFlat(quant, d, nlist)
    iv.train(xb[rng.choice(n, min(n, 32 * nlist), replace=False)])
    iv.add(xb)
    sizes = np.array([iv.invlists.list_size(l) for l in range(nlist)])
    for npb in (8, 16, 32, 64, 128):
        iv.nprobe = npb
        t = time.time()
        _, got = iv.search(xq, 10)
        ms = (time.time() - t) * 1e3 / len(xq)
        r10 = np.mean([len(set(got[i]) & set(gt[i])) / 10 for i in range(len(xq))])
        r1 = np.mean(got[:, 0] == gt[:, 0])
        _, lists = quant.search(xq, npb)
        scanned = sizes[lists].sum(1).mean() / n
        print(f"  nprobe {npb:4d}: recall@10 {r10:.3f} recall@1 {r1:.3f} scanned {scanned * 100:.2f}% "
              f"({ms:.2f} ms/query in a batch)", flush=True)
    del iv, quant


study(f"raw {dim}", x, q)
for m in dims:
    pca = faiss.PCAMatrix(dim, m)
    pca.train(train)
    xb = pca.apply(x)
    xq = pca.apply(q)
    faiss.normalize_L2(xb)
    faiss.normalize_L2(xq)
    study(f"PCA {m}", xb, xq)
    del xb
