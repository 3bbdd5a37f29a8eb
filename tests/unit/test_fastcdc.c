/*
 * test_fastcdc.c - unit tests for chunker/fastcdc.c.
 *
 * Checks the properties the store relies on: deterministic, lossless,
 * size-bounded cuts; an average near the target; keyed boundaries; and
 * shift resistance (an insertion only disturbs the chunks around it).
 * Also prints the cut throughput; speed is reported, never asserted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "check.h"
#include "fastcdc.h"

#define KiB	(1u << 10)
#define MiB	(1u << 20)

static const uint8_t seed_a[32] = "tresor test seed A .............";
static const uint8_t seed_b[32] = "tresor test seed B .............";

/* splitmix64: tiny, deterministic, good enough to look random to a CDC. */
static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t s = seed, v;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		v = splitmix64(&s);
		memcpy(buf + i, &v, 8);
	}
	v = splitmix64(&s);
	memcpy(buf + i, &v, len - i);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A chunking: the end offset of every chunk, in order. */
struct cuts {
	size_t *end;
	size_t n;
};

/*
 * Chunk the whole buffer the way the store will: repeatedly ask for the
 * next cut, treating a returned "len" as the end of file.
 */
static struct cuts chunk_all(const struct fastcdc_params *p,
			     const uint8_t *buf, size_t len)
{
	struct cuts c;
	size_t off = 0, cap = len / p->min_size + 2;

	c.end = xmalloc(cap * sizeof(*c.end));
	c.n = 0;
	while (off < len) {
		size_t n = fastcdc_cut(p, buf + off, len - off);

		if (n == 0 || n > len - off) {
			fprintf(stderr, "fastcdc_cut returned %zu at %zu\n",
				n, off);
			check_failures++;
			break;
		}
		off += n;
		c.end[c.n++] = off;
	}
	return c;
}

static size_t chunk_start(const struct cuts *c, size_t i)
{
	return i ? c->end[i - 1] : 0;
}

/*
 * Every chunk except the last is in [min, max], and the chunks tile
 * [0, len) exactly (so concatenating them gives back the input).
 */
static void check_tiling(const struct fastcdc_params *p, const struct cuts *c,
			 size_t len)
{
	size_t i, bad = 0;

	CHECK(c->n > 0);
	if (!c->n)
		return;
	CHECK_EQ(c->end[c->n - 1], len);
	for (i = 0; i < c->n; i++) {
		size_t sz = c->end[i] - chunk_start(c, i);

		if (sz == 0 || sz > p->max_size)
			bad++;
		else if (i + 1 < c->n && sz < p->min_size)
			bad++;
	}
	CHECK_EQ(bad, 0);
}

/* Content identity of a chunk: its length plus a truncated SHA-256. */
struct chunk_id {
	uint64_t len;
	uint8_t md[16];
};

static int id_cmp(const void *a, const void *b)
{
	const struct chunk_id *x = a, *y = b;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->md, y->md, sizeof(x->md));
}

static struct chunk_id *chunk_ids(const uint8_t *buf, const struct cuts *c)
{
	struct chunk_id *ids = xmalloc(c->n * sizeof(*ids));
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	size_t i;

	for (i = 0; i < c->n; i++) {
		size_t s = chunk_start(c, i);

		ids[i].len = c->end[i] - s;
		if (!EVP_Digest(buf + s, ids[i].len, md, &mdlen, EVP_sha256(),
				NULL)) {
			fprintf(stderr, "EVP_Digest failed\n");
			exit(2);
		}
		memcpy(ids[i].md, md, sizeof(ids[i].md));
	}
	return ids;
}

/*
 * Percentage of chunks of (a, ca) whose content also appears as a chunk
 * of (b, cb).  That is what a dedup store would not have to write again.
 */
static double reuse_pct(const uint8_t *a, const struct cuts *ca,
			const uint8_t *b, const struct cuts *cb)
{
	struct chunk_id *ia = chunk_ids(a, ca), *ib = chunk_ids(b, cb);
	size_t i, hit = 0;

	qsort(ib, cb->n, sizeof(*ib), id_cmp);
	for (i = 0; i < ca->n; i++)
		if (bsearch(&ia[i], ib, cb->n, sizeof(*ib), id_cmp))
			hit++;
	free(ia);
	free(ib);
	return 100.0 * hit / ca->n;
}

/* Fraction (percent) of cut offsets of a that are also cut offsets of b. */
static double shared_cut_pct(const struct cuts *a, const struct cuts *b)
{
	size_t i = 0, j = 0, same = 0;

	while (i < a->n && j < b->n) {
		if (a->end[i] == b->end[j]) {
			same++;
			i++;
			j++;
		} else if (a->end[i] < b->end[j]) {
			i++;
		} else {
			j++;
		}
	}
	return 100.0 * same / a->n;
}

static void test_init_validation(void)
{
	struct fastcdc_params p;
	unsigned int bits;

	/* Accepted, including the exact limits. */
	CHECK_EQ(fastcdc_init(&p, 256 * KiB, MiB, 4 * MiB, seed_a), 0);
	CHECK_EQ(fastcdc_init(&p, 64, 128, 256, seed_a), 0);
	CHECK_EQ(fastcdc_init(&p, 64, 32 * MiB, 64 * MiB, seed_a), 0);

	/* min too small, max too large. */
	CHECK_EQ(fastcdc_init(&p, 63, 128, 256, seed_a), -EINVAL);
	CHECK_EQ(fastcdc_init(&p, 0, 128, 256, seed_a), -EINVAL);
	CHECK_EQ(fastcdc_init(&p, 1 * MiB, 8 * MiB, 64 * MiB + 1, seed_a),
		 -EINVAL);
	CHECK_EQ(fastcdc_init(&p, 1 * MiB, 8 * MiB, UINT32_MAX, seed_a),
		 -EINVAL);
	/* ordering: min < avg < max, strictly. */
	CHECK_EQ(fastcdc_init(&p, 8 * KiB, 8 * KiB, 32 * KiB, seed_a), -EINVAL);
	CHECK_EQ(fastcdc_init(&p, 2 * KiB, 8 * KiB, 8 * KiB, seed_a), -EINVAL);
	CHECK_EQ(fastcdc_init(&p, 16 * KiB, 8 * KiB, 32 * KiB, seed_a), -EINVAL);
	CHECK_EQ(fastcdc_init(&p, 2 * KiB, 64 * KiB, 32 * KiB, seed_a), -EINVAL);
	/* avg not a power of two. */
	CHECK_EQ(fastcdc_init(&p, 2 * KiB, 8 * KiB + 1, 32 * KiB, seed_a),
		 -EINVAL);
	CHECK_EQ(fastcdc_init(&p, 2 * KiB, 12 * KiB, 32 * KiB, seed_a),
		 -EINVAL);
	/* avg 0 must not be mistaken for a power of two. */
	CHECK_EQ(fastcdc_init(&p, 64, 0, 256, seed_a), -EINVAL);
	CHECK_EQ(fastcdc_init(NULL, 2 * KiB, 8 * KiB, 32 * KiB, seed_a),
		 -EINVAL);

	/* Mask widths: log2(avg) + 2 and log2(avg) - 2 one-bits. */
	CHECK_EQ(fastcdc_init(&p, 2 * KiB, 8 * KiB, 32 * KiB, seed_a), 0);
	CHECK_EQ(__builtin_popcountll(p.mask_s), 13 + 2);
	CHECK_EQ(__builtin_popcountll(p.mask_l), 13 - 2);
	for (bits = 7; bits <= 25; bits++) {
		CHECK_EQ(fastcdc_init(&p, 64, 1u << bits, 64 * MiB, seed_a), 0);
		CHECK_EQ(__builtin_popcountll(p.mask_s), bits + 2);
		CHECK_EQ(__builtin_popcountll(p.mask_l), bits - 2);
		/* Spread, not packed into the low (short-window) bits. */
		CHECK((p.mask_s & 0xffffull) == 0);
		CHECK((p.mask_l & 0xffffull) == 0);
		CHECK(p.mask_s >> 63);
	}
}

static void test_edges(void)
{
	struct fastcdc_params p;
	size_t len = 256 * KiB, i, c, bad;
	uint8_t *buf = xmalloc(len);

	CHECK_EQ(fastcdc_init(&p, 2 * KiB, 8 * KiB, 32 * KiB, seed_a), 0);
	fill_random(buf, len, 1);

	/* Up to min_size the whole buffer is one chunk. */
	CHECK_EQ(fastcdc_cut(&p, buf, 0), 0);
	CHECK_EQ(fastcdc_cut(&p, buf, 1), 1);
	CHECK_EQ(fastcdc_cut(&p, buf, 2 * KiB - 1), 2 * KiB - 1);
	CHECK_EQ(fastcdc_cut(&p, buf, 2 * KiB), 2 * KiB);

	/*
	 * A cut only depends on bytes up to it: truncating the input right
	 * after the cut, or anywhere later, finds the same cut.  The store
	 * relies on this when it feeds data in pieces.
	 */
	bad = 0;
	for (i = 0; i < 64; i++) {
		size_t off = i * 1237;

		c = fastcdc_cut(&p, buf + off, len - off);
		if (c < 2 * KiB || c > 32 * KiB ||
		    fastcdc_cut(&p, buf + off, c) != c ||
		    fastcdc_cut(&p, buf + off, c + 1) != c ||
		    fastcdc_cut(&p, buf + off, 32 * KiB) != c)
			bad++;
		/* ...and one byte short of it, it has not found a cut yet. */
		if (c > 2 * KiB + 1 && c < 32 * KiB &&
		    fastcdc_cut(&p, buf + off, c - 1) != c - 1)
			bad++;
	}
	CHECK_EQ(bad, 0);

	/*
	 * Constant data: the gear hash settles to a constant that (for this
	 * seed) never matches, so every chunk is forced at max_size.  Either
	 * way chunks must stay within [min, max].
	 */
	memset(buf, 0, len);
	c = fastcdc_cut(&p, buf, len);
	CHECK(c > 2 * KiB && c <= 32 * KiB);
	{
		struct cuts cz = chunk_all(&p, buf, len);

		check_tiling(&p, &cz, len);
		printf("fastcdc: all-zero 256 KiB -> %zu chunks, first %zu\n",
		       cz.n, c);
		free(cz.end);
	}
	free(buf);
}

/*
 * Determinism, lossless tiling, size bounds and the average size, over
 * 64 MiB of pseudo-random data, for one parameter set.  Also times it.
 */
static void test_params(uint32_t min, uint32_t avg, uint32_t max,
			const uint8_t *buf, size_t len)
{
	struct fastcdc_params p, p2;
	struct cuts c1, c2;
	double t0, t1, best = 1e9, mean, mbps, hashed_mbps;
	size_t i, lo = SIZE_MAX, hi = 0, hashed = 0;
	int run;

	CHECK_EQ(fastcdc_init(&p, min, avg, max, seed_a), 0);
	CHECK_EQ(fastcdc_init(&p2, min, avg, max, seed_a), 0);
	CHECK(memcmp(&p, &p2, sizeof(p)) == 0);

	/* Best of three, to keep scheduler noise out of the number. */
	for (run = 0; run < 3; run++) {
		t0 = now_sec();
		c1 = chunk_all(&p, buf, len);
		t1 = now_sec();
		best = t1 - t0 < best ? t1 - t0 : best;
		if (run < 2)
			free(c1.end);
	}
	c2 = chunk_all(&p2, buf, len);

	CHECK_EQ(c1.n, c2.n);
	CHECK(c1.n == c2.n &&
	      memcmp(c1.end, c2.end, c1.n * sizeof(*c1.end)) == 0);
	check_tiling(&p, &c1, len);

	for (i = 0; i + 1 < c1.n; i++) {
		size_t sz = c1.end[i] - chunk_start(&c1, i);

		lo = sz < lo ? sz : lo;
		hi = sz > hi ? sz : hi;
		hashed += sz - min;
	}
	/* Exclude the tail chunk: it is cut by end of data, not content. */
	mean = c1.n > 1 ? (double)c1.end[c1.n - 2] / (c1.n - 1) : 0;
	/*
	 * Input rate is what the store sees; the hashed rate leaves out the
	 * bytes skipped below min_size and so measures the inner loop itself.
	 */
	mbps = len / best / 1e6;
	hashed_mbps = hashed / best / 1e6;
	printf("fastcdc: min %u avg %u max %u: %zu chunks, mean %.0f "
	       "(%.2fx avg), smallest %zu, largest %zu, %.0f MB/s input, "
	       "%.0f MB/s hashed\n", min, avg, max, c1.n, mean, mean / avg,
	       lo, hi, mbps, hashed_mbps);
	CHECK(mean >= 0.5 * avg && mean <= 2.0 * avg);

	free(c1.end);
	free(c2.end);
}

/* Another seed gives a different gear table and unrelated boundaries. */
static void test_seed(const uint8_t *buf, size_t len)
{
	struct fastcdc_params pa, pb;
	struct cuts ca, cb;
	uint8_t seed_c[32];
	double shared;

	CHECK_EQ(fastcdc_init(&pa, 2 * KiB, 8 * KiB, 32 * KiB, seed_a), 0);
	CHECK_EQ(fastcdc_init(&pb, 2 * KiB, 8 * KiB, 32 * KiB, seed_b), 0);
	CHECK(memcmp(pa.gear, pb.gear, sizeof(pa.gear)) != 0);

	ca = chunk_all(&pa, buf, len);
	cb = chunk_all(&pb, buf, len);
	shared = shared_cut_pct(&ca, &cb);
	printf("fastcdc: seed A vs B: %zu vs %zu chunks, %.2f%% shared cuts\n",
	       ca.n, cb.n, shared);
	CHECK(ca.n != cb.n ||
	      memcmp(ca.end, cb.end, ca.n * sizeof(*ca.end)) != 0);
	/* Only the final end-of-data cut and chance coincidences. */
	CHECK(shared < 5.0);
	free(cb.end);

	/* A single flipped seed bit is enough to change everything. */
	memcpy(seed_c, seed_a, 32);
	seed_c[31] ^= 1;
	CHECK_EQ(fastcdc_init(&pb, 2 * KiB, 8 * KiB, 32 * KiB, seed_c), 0);
	cb = chunk_all(&pb, buf, len);
	shared = shared_cut_pct(&ca, &cb);
	CHECK(shared < 5.0);
	free(ca.end);
	free(cb.end);
}

/*
 * Insert one byte at @at and check that at least 90% of the original
 * chunks still appear, byte for byte, in the new chunking.
 */
static double shift_one(const struct fastcdc_params *p, const uint8_t *buf,
			size_t len, size_t at, const char *where)
{
	uint8_t *ins = xmalloc(len + 1);
	struct cuts c0, c1;
	double pct;

	memcpy(ins, buf, at);
	ins[at] = 0xa5;
	memcpy(ins + at + 1, buf + at, len - at);

	c0 = chunk_all(p, buf, len);
	c1 = chunk_all(p, ins, len + 1);
	check_tiling(p, &c1, len + 1);
	pct = reuse_pct(buf, &c0, ins, &c1);
	printf("fastcdc: avg %u, 1 byte inserted at %s: %.2f%% of %zu "
	       "chunks reused\n", p->avg_size, where, pct, c0.n);
	CHECK(pct >= 90.0);
	free(c0.end);
	free(c1.end);
	free(ins);
	return pct;
}

static void test_shift(void)
{
	struct fastcdc_params p;
	size_t len = 50 * 1000 * 1000;
	uint8_t *buf = xmalloc(len);

	fill_random(buf, len, 42);

	CHECK_EQ(fastcdc_init(&p, 2 * KiB, 8 * KiB, 32 * KiB, seed_a), 0);
	shift_one(&p, buf, len, 0, "start");
	shift_one(&p, buf, len, len / 2, "middle");

	CHECK_EQ(fastcdc_init(&p, 256 * KiB, MiB, 4 * MiB, seed_a), 0);
	shift_one(&p, buf, len, 0, "start");
	shift_one(&p, buf, len, len / 2, "middle");
	free(buf);
}

int main(void)
{
	size_t len = 64 * MiB;
	uint8_t *buf = xmalloc(len);

	fill_random(buf, len, 7);

	test_init_validation();
	test_edges();
	test_params(256 * KiB, MiB, 4 * MiB, buf, len);
	test_params(2 * KiB, 8 * KiB, 32 * KiB, buf, len);
	test_params(64, 128, 256, buf, 4 * MiB);
	test_seed(buf, 16 * MiB);
	test_shift();

	free(buf);
	if (check_failures)
		fprintf(stderr, "test_fastcdc: %d check(s) failed\n",
			check_failures);
	else
		printf("test_fastcdc: OK\n");
	return CHECK_DONE();
}
