/*
 * fastcdc.h - content-defined chunking (FastCDC with normalized chunking).
 *
 * Owns the cut-point search only: given a buffer, where does the next chunk
 * end.  The gear table is derived from a per-store secret seed so that chunk
 * boundaries (and so chunk sizes) cannot be used to fingerprint known files
 * by someone without the key.  Pure computation: no I/O, no allocation after
 * fastcdc_init, safe to share one params struct between threads.
 */
#ifndef TRESOR_FASTCDC_H
#define TRESOR_FASTCDC_H

#include <stddef.h>
#include <stdint.h>

struct fastcdc_params {
	uint32_t min_size;	/* no cut before this many bytes */
	uint32_t avg_size;	/* target average; must be a power of two */
	uint32_t max_size;	/* forced cut at this many bytes */
	uint64_t mask_s;	/* stricter mask used below avg_size */
	uint64_t mask_l;	/* looser mask used above avg_size */
	uint64_t gear[256];	/* keyed gear table */
};

/*
 * Fill p for the given sizes and 32-byte secret seed.  Returns 0, or
 * -EINVAL if the sizes are not min < avg < max, avg a power of two,
 * 64 <= min and max <= 64 MiB.  (-EIO only if OpenSSL itself fails while
 * deriving the gear table.)  On error p is left untouched.
 */
int fastcdc_init(struct fastcdc_params *p, uint32_t min_size,
		 uint32_t avg_size, uint32_t max_size, const uint8_t seed[32]);

/*
 * Return the length of the first chunk of buf[0..len).  If len <= min_size
 * the whole buffer is one chunk.  If no cut point is found before len (and
 * len < max_size) it returns len: the caller decides whether that is a real
 * end (end of file) or whether it must wait for more data.  A content cut
 * yields a chunk of min_size + 1 .. max_size bytes and depends only on the
 * bytes before it, so retrying with more data never moves an earlier cut.
 */
size_t fastcdc_cut(const struct fastcdc_params *p, const uint8_t *buf,
		   size_t len);

#endif
