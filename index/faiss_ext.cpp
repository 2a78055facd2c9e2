// faiss_ext.cpp - the one thing retro needs from FAISS that its C API does not reach (see faiss_ext.h).
#include "index/faiss_ext.h"

#include <faiss/IndexIVF.h>
#include <faiss/invlists/OnDiskInvertedLists.h>

extern "C" int rtr_faiss_mapped_no_prefetch(FaissIndex *index) {
    // the C API's FaissIndex is a faiss::Index
    auto *ivf = dynamic_cast<faiss::IndexIVF *>(reinterpret_cast<faiss::Index *>(index));
    auto *od = ivf ? dynamic_cast<faiss::OnDiskInvertedLists *>(ivf->invlists) : nullptr;
    if (!od) return 0;
    od->prefetch_nthread = 0;
    return 1;
}
