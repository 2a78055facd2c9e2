"""IVF recall@10 in the raw hash-embedding space against PCA-reduced spaces, on the
vectors of a built knowledge base (read back from its IVF shard with python3-faiss).
  /usr/bin/python3 tests/bench/pca_recall.py KB"""
import json, time
import numpy as np, faiss
import sys
kb = sys.argv[1] if len(sys.argv) > 1 else "/tmp/realkb"
man = json.load(open(f"{kb}/manifest.json"))["index"]
ix = faiss.read_index(f"{kb}/index/{man['shards'][0]['file']}")
ivf = faiss.extract_index_ivf(ix)
invl = ivf.invlists
xs = []
for l in range(ivf.nlist):
    n = invl.list_size(l)
    if n == 0: continue
    codes = faiss.rev_swig_ptr(invl.get_codes(l), n * ivf.code_size)
    xs.append(np.frombuffer(bytes(codes), dtype="float32").reshape(n, ivf.d))
x = np.concatenate(xs)
rng = np.random.default_rng(0)
perm = rng.permutation(len(x))
q, base = x[perm[:1000]], x[perm[1000:]]
def recall(xb, xq, nlist, nprobe):
    d = xb.shape[1]
    flat = faiss.IndexFlatL2(d); flat.add(xb)
    _, gt = flat.search(xq, 11)
    quant = faiss.IndexFlatL2(d)
    iv = faiss.IndexIVFFlat(quant, d, nlist)
    iv.train(xb[rng.choice(len(xb), 40 * nlist, replace=False)]); iv.add(xb); iv.nprobe = nprobe
    t = time.time(); _, got = iv.search(xq, 11); ms = (time.time() - t) * 1e3 / len(xq)
    # drop self-matches: queries are held out, so no self in base
    r = np.mean([len(set(got[i, :10]) & set(gt[i, :10])) / 10 for i in range(len(xq))])
    return r, ms
for name, xb, xq in [("raw 256", base, q)]:
    for npb in (37, 128):
        print(name, "nprobe", npb, "recall@10 %.3f  %.2f ms" % recall(xb, xq, 1024, npb), flush=True)
for m in (64, 32):
    pca = faiss.PCAMatrix(256, m); pca.train(base)
    xb = pca.apply(base); xq = pca.apply(q)
    faiss.normalize_L2(xb); faiss.normalize_L2(xq)
    for npb in (37, 128):
        print("pca", m, "nprobe", npb, "recall@10 %.3f  %.2f ms" % recall(xb, xq, 1024, npb), flush=True)
