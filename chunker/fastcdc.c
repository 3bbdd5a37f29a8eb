/*
 * fastcdc.c - FastCDC cut-point search with normalized chunking.
 *
 * Owns: parameter validation, the keyed gear table, the two masks and the
 * per-byte loop that finds where the next chunk ends.  Nothing here does I/O
 * or keeps state between calls; the caller owns buffering and decides what a
 * "short" final chunk means.
 *
 * The scheme follows the FastCDC paper (Xia et al., 2016/2020): a gear
 * rolling hash, cut-point skipping over the first min_size bytes, a stricter
 * mask before avg_size and a looser one after it ("normalization level 2"),
 * and a forced cut at max_size.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>

#include "fastcdc.h"

#define FASTCDC_MIN_MIN		64u
#define FASTCDC_MAX_MAX		(64u << 20)

/*
 * Mask bits are spread over positions [FASTCDC_MASK_LOW, 63].  In the gear
 * hash bit k of h depends only on the last k + 1 bytes (lower bits are older
 * bytes shifted out), so a mask made of the low bits would make the cut
 * decision a function of a handful of bytes, which behaves badly on
 * low-entropy or periodic data.  Keeping every mask bit at position >= 16
 * means each tested bit sees at least 17 bytes, and always including bit 63
 * gives the full 64-byte window.  Spreading (rather than packing the bits at
 * the top) mirrors the paper's masks and keeps the tested bits from being
 * mere shifts of each other one byte apart.
 */
#define FASTCDC_MASK_LOW	16u
#define FASTCDC_MASK_SPAN	(64u - FASTCDC_MASK_LOW)

/* Domain-separation label so the store seed can be reused for other keys. */
static const char gear_label[] = "tresor/fastcdc/gear/v1";

/*
 * Integer log2 of a power of two.  Only called on validated avg_size, so
 * the loop always terminates.
 */
static unsigned int log2_pow2(uint32_t v)
{
	unsigned int n = 0;

	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

/*
 * Build a mask with @bits one-bits spread evenly from bit 63 down towards
 * FASTCDC_MASK_LOW (see the comment there for why).  bits is at most 27
 * (avg <= 32 MiB) and the step 48/bits is then > 1, so positions never
 * collide and the mask has exactly @bits bits set: a random hash value
 * matches with probability 2^-bits, which is what sets the chunk size.
 */
static uint64_t spread_mask(unsigned int bits)
{
	uint64_t m = 0;
	unsigned int i;

	for (i = 0; i < bits; i++)
		m |= 1ull << (63u - (i * FASTCDC_MASK_SPAN) / bits);
	return m;
}

/*
 * Fill the gear table from the seed: entry block i is
 * HMAC-SHA-256(seed, label || be32(i)), read as little-endian 64-bit words.
 * The explicit byte order keeps boundaries identical across architectures,
 * which matters because chunk boundaries decide what deduplicates.
 */
static int derive_gear(uint64_t gear[256], const uint8_t seed[32])
{
	uint8_t msg[sizeof(gear_label) - 1 + 4];
	uint8_t out[32];
	unsigned int outlen, blk, w, b;
	int ret = 0;

	memcpy(msg, gear_label, sizeof(gear_label) - 1);
	for (blk = 0; blk < 256 / 4; blk++) {
		uint8_t *ctr = msg + sizeof(gear_label) - 1;

		ctr[0] = (uint8_t)(blk >> 24);
		ctr[1] = (uint8_t)(blk >> 16);
		ctr[2] = (uint8_t)(blk >> 8);
		ctr[3] = (uint8_t)blk;
		outlen = 0;
		if (!HMAC(EVP_sha256(), seed, 32, msg, sizeof(msg), out,
			  &outlen) || outlen != sizeof(out)) {
			ret = -EIO;
			break;
		}
		for (w = 0; w < 4; w++) {
			uint64_t v = 0;

			for (b = 0; b < 8; b++)
				v |= (uint64_t)out[w * 8 + b] << (8 * b);
			gear[blk * 4 + w] = v;
		}
	}
	OPENSSL_cleanse(out, sizeof(out));
	return ret;
}

/*
 * Validate sizes, then derive masks and the keyed gear table.  p is only
 * written on success, so a failed init never leaves a half-keyed table that
 * someone might use by mistake.
 */
int fastcdc_init(struct fastcdc_params *p, uint32_t min_size,
		 uint32_t avg_size, uint32_t max_size, const uint8_t seed[32])
{
	struct fastcdc_params tmp;
	unsigned int bits;
	int ret;

	if (!p || !seed)
		return -EINVAL;
	if (min_size < FASTCDC_MIN_MIN || max_size > FASTCDC_MAX_MAX)
		return -EINVAL;
	if (!(min_size < avg_size && avg_size < max_size))
		return -EINVAL;
	if (avg_size & (avg_size - 1))
		return -EINVAL;

	memset(&tmp, 0, sizeof(tmp));
	tmp.min_size = min_size;
	tmp.avg_size = avg_size;
	tmp.max_size = max_size;

	/* avg in [128, 32 MiB], so bits - 2 >= 5 and bits + 2 <= 27. */
	bits = log2_pow2(avg_size);
	tmp.mask_s = spread_mask(bits + 2);
	tmp.mask_l = spread_mask(bits - 2);

	ret = derive_gear(tmp.gear, seed);
	if (!ret)
		*p = tmp;
	OPENSSL_cleanse(&tmp, sizeof(tmp));
	return ret;
}

/*
 * The hot loop.  Hashing starts afresh at min_size: the paper's cut-point
 * skipping, which is both the speed-up and what makes a boundary depend
 * only on the bytes since the previous boundary (plus the 64-byte window),
 * so an edit disturbs at most the chunks around it.  The result never
 * depends on bytes after the returned cut, so a caller that gets len back
 * can safely retry with more data.
 *
 * Two separate loops rather than one with a mask select keep the per-byte
 * work at a load, a shift-add and a test-and-branch.
 */
size_t fastcdc_cut(const struct fastcdc_params *p, const uint8_t *buf,
		   size_t len)
{
	const uint64_t *gear = p->gear;
	const uint64_t mask_s = p->mask_s;
	const uint64_t mask_l = p->mask_l;
	size_t end, normal, i;
	uint64_t h = 0;

	if (len <= p->min_size)
		return len;
	end = len < p->max_size ? len : p->max_size;
	normal = end < p->avg_size ? end : p->avg_size;

	for (i = p->min_size; i < normal; i++) {
		h = (h << 1) + gear[buf[i]];
		if (!(h & mask_s))
			return i + 1;
	}
	for (; i < end; i++) {
		h = (h << 1) + gear[buf[i]];
		if (!(h & mask_l))
			return i + 1;
	}
	return end;
}
