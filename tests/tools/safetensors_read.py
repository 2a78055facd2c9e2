"""An independent reader of the safetensors format (struct + json + numpy, no
retro code): prints one JSON line per tensor with its dtype, shape, sum and
first values, for the C tests to compare with what retro wrote."""
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n].decode("utf-8"))
meta = header.pop("__metadata__", {})
data = raw[8 + n:]
for name, t in header.items():
    b, e = t["data_offsets"]
    a = np.frombuffer(data[b:e], dtype=DT[t["dtype"]]).reshape(t["shape"])
    flat = a.reshape(-1).astype(np.float64)
    print(json.dumps({"name": name, "dtype": t["dtype"], "shape": list(a.shape), "sum": float(flat.sum()),
                      "first": [float(x) for x in flat[:4]]}))
print(json.dumps({"metadata": meta}))
