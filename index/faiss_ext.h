/*
 * faiss_ext.h - reaching past FAISS's C API, where it stops short.
 *
 * An inverted file read with its lists mapped (IO_FLAG_MMAP: FAISS's
 * OnDiskInvertedLists) starts up to 32 threads at every search to read the
 * lists it is about to scan ahead of it ("prefetch"), and the C API has no
 * setting for it. For lists in the page cache the threads cost more than
 * the search (a search of nprobe lists of a few hundred vectors each takes
 * a fraction of a millisecond), and on a two-core machine they take turns
 * with it; retro turns them off.
 */
#ifndef RTR_FAISS_EXT_H
#define RTR_FAISS_EXT_H

#include <faiss/c_api/Index_c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when index is an inverted file with mapped lists, whose prefetching is now
 * off; 0 for any other index, left as it is. */
int rtr_faiss_mapped_no_prefetch(FaissIndex *index);

#ifdef __cplusplus
}
#endif

#endif
