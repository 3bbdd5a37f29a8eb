/*
 * test_pack.c - unit tests for chunker/pack.c: chunk records (compression
 * choice, authentication, binding to the ID) and pack files (roundtrip,
 * finishing orphans, locking, damage and swap detection).  Also prints
 * chunk_seal/chunk_open throughput.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "check.h"
#include "crypto.h"
#include "pack.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1u << 20)
#define NCHUNKS 12

/* A finished pack's size: records, footer and trailer, rounded up to
 * PACK_PAD with a hole before the footer (docs/FORMAT.md 8.3a). */
static uint64_t padded(uint64_t total)
{
	return (total + PACK_PAD - 1) / PACK_PAD * PACK_PAD;
}

static char tmpdir[] = "/tmp/tresor-test-pack-XXXXXX";
static struct store_keys keys;

/* Declare a path buffer named var for name inside the test directory. */
#define TPATH(var, name)						\
	char var[256];							\
	snprintf(var, sizeof(var), "%s/%s", tmpdir, name)

static uint64_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return 0;
	return (uint64_t)st.st_size;
}

/* Text-like data: compresses well but is not trivially repetitive. */
static void fill_text(uint8_t *p, size_t n, unsigned int seed)
{
	static const char *const words[] = { "pack ", "chunk ", "tresor ",
		"footer ", "index ", "the ", "of ", "sealed ", "key\n" };

	for (size_t i = 0; i < n;) {
		const char *w;
		size_t l;

		seed = seed * 1103515245u + 12345u;
		w = words[(seed >> 16) % 9];
		l = strlen(w);
		if (l > n - i)
			l = n - i;
		memcpy(p + i, w, l);
		i += l;
	}
}

/* A chunk in memory plus what sealing it produced. */
struct tchunk {
	uint8_t *data;
	size_t rlen;
	uint8_t *sealed;
	struct pack_entry e;
};

static void make_chunk(struct tchunk *c, size_t rlen, int text,
		       unsigned int seed)
{
	c->rlen = rlen;
	c->data = malloc(rlen ? rlen : 1);
	if (text)
		fill_text(c->data, rlen, seed);
	else
		CHECK_EQ(random_bytes(c->data, rlen), 0);
	chunk_id_compute(&keys, c->data, rlen, c->e.id);
	c->sealed = malloc(chunk_seal_bound(rlen));
	CHECK_EQ(chunk_seal(&keys, c->e.id, c->data, rlen, 3, c->sealed,
			    &c->e.slen, &c->e.flags, NULL), 0);
	c->e.rlen = (uint32_t)rlen;
	c->e.off = 0;
}

static void free_chunk(struct tchunk *c)
{
	free(c->data);
	free(c->sealed);
}

static void test_chunks(void)
{
	struct tchunk c;
	uint8_t *out = malloc(MIB + 1);	/* one spare: rlen + 1 is tried */
	uint8_t id2[CHUNK_ID_LEN];

	/* compressible: zstd, much smaller, roundtrip */
	make_chunk(&c, MIB, 1, 1);
	CHECK_EQ(c.e.flags, CHUNK_F_ZSTD);
	CHECK(c.e.slen < MIB / 2);
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, c.e.flags,
			    out, c.rlen), 0);
	CHECK(!memcmp(out, c.data, c.rlen));
	/* wrong id, flags, length, or any damage */
	memcpy(id2, c.e.id, sizeof(id2));
	id2[5] ^= 1;
	memset(out, 0x11, MIB);
	CHECK_EQ(chunk_open(&keys, id2, c.sealed, c.e.slen, c.e.flags, out,
			    c.rlen), -EBADMSG);
	CHECK_EQ(out[0], 0);	/* nothing unauthenticated left behind */
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, 0, out,
			    c.rlen), -EBADMSG);
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, 0x03, out,
			    c.rlen), -EBADMSG);
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, c.e.flags,
			    out, c.rlen - 1), -EBADMSG);
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen - 1, c.e.flags,
			    out, c.rlen), -EBADMSG);
	c.sealed[c.e.slen / 2] ^= 0x20;
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, c.e.flags,
			    out, c.rlen), -EBADMSG);
	free_chunk(&c);

	/* random: stored raw, exactly rlen + overhead */
	make_chunk(&c, MIB, 0, 0);
	CHECK_EQ(c.e.flags, 0);
	CHECK_EQ(c.e.slen, MIB + SEAL_OVERHEAD);
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, c.e.flags,
			    out, c.rlen), 0);
	CHECK(!memcmp(out, c.data, c.rlen));
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, CHUNK_F_ZSTD,
			    out, c.rlen), -EBADMSG);
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, c.e.flags,
			    out, c.rlen + 1), -EBADMSG);
	c.sealed[3] ^= 1;	/* nonce */
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, c.e.flags,
			    out, c.rlen), -EBADMSG);
	c.sealed[3] ^= 1;
	c.sealed[c.e.slen - 1] ^= 1;	/* tag */
	CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen, c.e.flags,
			    out, c.rlen), -EBADMSG);
	c.sealed[c.e.slen - 1] ^= 1;
	{
		/* the record is bound to its store's key */
		struct store_keys other = keys;

		other.enc[0] ^= 1;
		CHECK_EQ(chunk_open(&other, c.e.id, c.sealed, c.e.slen,
				    c.e.flags, out, c.rlen), -EBADMSG);
	}
	free_chunk(&c);

	/*
	 * Mixed chunks.  A random head followed by text must still be
	 * compressed (a probe of the head alone would miss it); a text
	 * head followed by random data may go either way but must never
	 * grow beyond raw size.
	 */
	c.rlen = MIB;
	c.data = malloc(MIB);
	c.sealed = malloc(chunk_seal_bound(MIB));
	/* one context reused across chunks of both kinds, as a worker does */
	struct chunk_sealer *cs = chunk_sealer_new();
	CHECK(cs != NULL);
	for (int text_head = 0; text_head < 2; text_head++) {
		CHECK_EQ(random_bytes(c.data, MIB), 0);
		if (text_head)
			fill_text(c.data, 20000, 7);
		else
			fill_text(c.data + 100000, MIB - 100000, 7);
		chunk_id_compute(&keys, c.data, MIB, c.e.id);
		CHECK_EQ(chunk_seal(&keys, c.e.id, c.data, MIB, 3, c.sealed,
				    &c.e.slen, &c.e.flags, cs), 0);
		if (!text_head) {
			CHECK_EQ(c.e.flags, CHUNK_F_ZSTD);
			CHECK(c.e.slen < MIB / 2);
		}
		CHECK(c.e.slen <= MIB + SEAL_OVERHEAD);
		CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed, c.e.slen,
				    c.e.flags, out, MIB), 0);
		CHECK(!memcmp(out, c.data, MIB));
	}
	chunk_sealer_free(cs);
	free_chunk(&c);

	/* small sizes, including the empty chunk */
	{
		static const size_t sizes[] = { 0, 1, 2, 63, 100, 4096,
						65536, 65537, 200000 };

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			for (int text = 0; text < 2; text++) {
				make_chunk(&c, sizes[i], text, (unsigned)i);
				CHECK(c.e.slen <= chunk_seal_bound(c.rlen));
				if (!c.e.flags)
					CHECK_EQ(c.e.slen,
						 c.rlen + SEAL_OVERHEAD);
				else
					CHECK(c.e.slen <
					      c.rlen + SEAL_OVERHEAD);
				if (text && c.rlen >= 4096)
					CHECK_EQ(c.e.flags, CHUNK_F_ZSTD);
				if (!text)
					CHECK_EQ(c.e.flags, 0);
				CHECK_EQ(chunk_open(&keys, c.e.id, c.sealed,
						    c.e.slen, c.e.flags, out,
						    c.rlen), 0);
				CHECK(!c.rlen ||
				      !memcmp(out, c.data, c.rlen));
				free_chunk(&c);
			}
	}
	CHECK(chunk_seal_bound(0) >= SEAL_OVERHEAD);
	CHECK(chunk_seal_bound(MIB) >= MIB + SEAL_OVERHEAD);
	free(out);
}

static void bench(void)
{
	const int n = 64;
	uint8_t *data = malloc((size_t)n * MIB);
	uint8_t *sealed = malloc(chunk_seal_bound(MIB));
	uint8_t *out = malloc(MIB);
	uint8_t id[CHUNK_ID_LEN], flags;
	uint32_t slen;
	uint64_t t_seal, t_open, t_id, t0;
	struct chunk_sealer *cs = chunk_sealer_new();	/* as a worker */

	for (int text = 0; text < 2; text++) {
		t_seal = t_open = t_id = 0;
		for (int i = 0; i < n; i++) {
			uint8_t *d = data + (size_t)i * MIB;

			if (text)
				fill_text(d, MIB, (unsigned)i);
			else
				CHECK_EQ(random_bytes(d, MIB), 0);
		}
		for (int i = 0; i < n; i++) {
			uint8_t *d = data + (size_t)i * MIB;

			t0 = now_ns();
			chunk_id_compute(&keys, d, MIB, id);
			t_id += now_ns() - t0;
			t0 = now_ns();
			CHECK_EQ(chunk_seal(&keys, id, d, MIB, 3, sealed, &slen,
					    &flags, cs), 0);
			t_seal += now_ns() - t0;
			t0 = now_ns();
			CHECK_EQ(chunk_open(&keys, id, sealed, slen, flags,
					    out, MIB), 0);
			t_open += now_ns() - t0;
			CHECK(!memcmp(out, d, MIB));
		}
		printf("1 MiB %s chunks (zstd 3): id %.0f MB/s, seal %.0f MB/s,"
		       " open %.0f MB/s\n", text ? "text  " : "random",
		       n * (double)MIB / (t_id / 1e3),
		       n * (double)MIB / (t_seal / 1e3),
		       n * (double)MIB / (t_open / 1e3));
	}
	free(data);
	chunk_sealer_free(cs);
	free(sealed);
	free(out);
}

/* Read every listed record back by (off, slen) and open it. */
static void check_records(const char *path, const struct pack_entry *e,
			  size_t n, struct tchunk *c)
{
	int fd = open(path, O_RDONLY);
	uint8_t *buf, *out;

	CHECK(fd >= 0);
	for (size_t i = 0; i < n; i++) {
		buf = malloc(e[i].slen);
		out = malloc(e[i].rlen ? e[i].rlen : 1);
		CHECK(!memcmp(e[i].id, c[i].e.id, CHUNK_ID_LEN));
		CHECK_EQ(e[i].off, c[i].e.off);
		CHECK_EQ(e[i].slen, c[i].e.slen);
		CHECK_EQ(e[i].rlen, c[i].e.rlen);
		CHECK_EQ(e[i].flags, c[i].e.flags);
		CHECK_EQ(pread_full(fd, buf, e[i].slen, (off_t)e[i].off), 0);
		CHECK_EQ(chunk_open(&keys, e[i].id, buf, e[i].slen, e[i].flags,
				    out, e[i].rlen), 0);
		CHECK(!e[i].rlen || !memcmp(out, c[i].data, e[i].rlen));
		free(buf);
		free(out);
	}
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	uint8_t *buf;
	size_t len;
	int fd;

	CHECK_EQ(read_file(from, &buf, &len), 0);
	fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK_EQ(pwrite_full(fd, buf, len, 0), 0);
	close(fd);
	free(buf);
}

static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	CHECK_EQ(pread_full(fd, &b, 1, (off_t)off), 0);
	b ^= 0x04;
	CHECK_EQ(pwrite_full(fd, &b, 1, (off_t)off), 0);
	close(fd);
}

static void test_pack_roundtrip(struct tchunk *c)
{
	TPATH(p, "p1.pack");
	TPATH(renamed, "renamed.pack");
	TPATH(missing, "nonexistent");
	uint8_t name[PACK_NAME_LEN], other[PACK_NAME_LEN];
	struct pack_writer *pw;
	struct pack_entry *e = NULL;
	uint64_t expect = PACK_HEADER_LEN;
	struct stat st;
	size_t n;

	CHECK_EQ(random_bytes(name, sizeof(name)), 0);
	memcpy(other, name, sizeof(name));
	other[15] ^= 1;
	CHECK_EQ(pack_create(p, name, &pw), 0);
	CHECK(!memcmp(pack_name(pw), name, PACK_NAME_LEN));
	CHECK_EQ(pack_size(pw), PACK_HEADER_LEN);
	CHECK_EQ(stat(p, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK_EQ(pack_create(p, name, &pw), -EEXIST);	/* never reused */

	for (int i = 0; i < NCHUNKS; i++) {
		c[i].e.off = 12345;	/* input value is ignored */
		CHECK_EQ(pack_append(pw, &c[i].e, c[i].sealed), 0);
		CHECK_EQ(c[i].e.off, expect);
		expect += c[i].e.slen;
		CHECK_EQ(pack_size(pw), expect);
		CHECK_EQ(pack_count(pw), (size_t)i + 1);
	}
	{
		struct pack_entry tiny = c[0].e;

		tiny.slen = SEAL_OVERHEAD - 1;
		CHECK_EQ(pack_append(pw, &tiny, c[0].sealed), -EINVAL);
		CHECK_EQ(pack_count(pw), NCHUNKS);
	}
	CHECK_EQ(pack_sync(pw), 0);
	CHECK_EQ(pack_is_finished(p), 0);
	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), -EBADMSG);
	CHECK_EQ(pack_finish(pw, &keys), 0);
	CHECK_EQ(pack_is_finished(p), 1);

	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), 0);
	CHECK_EQ(n, NCHUNKS);
	check_records(p, e, n, c);
	free(e);

	/* the footer after the records and the padding, the trailer at the end */
	uint64_t flen = 4 + 49 * NCHUNKS + SEAL_OVERHEAD;
	uint64_t fo = padded(expect + flen + 16) - flen - 16;
	{
		uint8_t t[PACK_TRAILER_LEN], h[PACK_HEADER_LEN];
		uint64_t size = file_size(p);
		int fd = open(p, O_RDONLY);

		CHECK_EQ(pread_full(fd, h, sizeof(h), 0), 0);
		CHECK(!memcmp(h, "TRESORPK", 8));
		CHECK_EQ(get_le32(h + 8), PACK_VERSION);
		CHECK_EQ(get_le32(h + 12), 0);
		CHECK_EQ(pread_full(fd, t, sizeof(t), (off_t)size - 16), 0);
		CHECK(!memcmp(t + 12, "TPKE", 4));
		CHECK_EQ(get_le64(t), fo);
		CHECK_EQ(get_le32(t + 8), flen);
		CHECK_EQ(size, fo + get_le32(t + 8) + 16);
		CHECK_EQ(size % PACK_PAD, 0);
		close(fd);
	}

	/* the same bytes under another name: a swapped pack */
	CHECK_EQ(pack_read_footer(p, other, &keys, &e, &n), -EBADMSG);
	copy_file(p, renamed);
	CHECK_EQ(pack_is_finished(renamed), 1);
	CHECK_EQ(pack_read_footer(renamed, other, &keys, &e, &n),
		 -EBADMSG);
	CHECK_EQ(pack_read_footer(renamed, name, &keys, &e, &n),
		 0);
	free(e);
	/* another store's key */
	{
		struct store_keys k2 = keys;

		k2.enc[1] ^= 1;
		CHECK_EQ(pack_read_footer(p, name, &k2, &e, &n), -EBADMSG);
	}

	/* damage: each of these must be caught */
	{
		uint64_t size = file_size(p);
		TPATH(d, "damaged.pack");
		uint64_t where[] = {
			0,			/* header magic */
			13,			/* header reserved */
			fo,			/* footer nonce */
			fo + 20,		/* footer ciphertext */
			size - 17,		/* footer tag */
			size - 16,		/* trailer offset */
			size - 8,		/* trailer length */
			size - 1,		/* trailer magic */
		};

		for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
			copy_file(p, d);
			flip_byte(d, where[i]);
			e = NULL;
			CHECK_EQ(pack_read_footer(d, name, &keys, &e, &n),
				 -EBADMSG);
			CHECK(e == NULL);
		}
		copy_file(p, d);
		CHECK_EQ(truncate(d, (off_t)size - 1), 0);
		CHECK_EQ(pack_is_finished(d), 0);
		CHECK_EQ(pack_read_footer(d, name, &keys, &e, &n), -EBADMSG);
		copy_file(p, d);
		CHECK_EQ(truncate(d, (off_t)size + 1), 0);
		CHECK_EQ(pack_is_finished(d), 0);
		CHECK_EQ(pack_read_footer(d, name, &keys, &e, &n), -EBADMSG);
		/* a newer pack version is not damage */
		copy_file(p, d);
		{
			uint8_t v[4];
			int fd = open(d, O_RDWR);

			put_le32(v, PACK_VERSION + 1);
			CHECK_EQ(pwrite_full(fd, v, 4, 8), 0);
			close(fd);
		}
		CHECK_EQ(pack_read_footer(d, name, &keys, &e, &n),
			 -EPROTONOSUPPORT);
		unlink(d);
	}
	CHECK_EQ(pack_is_finished(missing), -ENOENT);
	CHECK_EQ(pack_read_footer(missing, name, &keys, &e, &n),
		 -ENOENT);
	unlink(renamed);
	unlink(p);
}

static void test_empty_pack(void)
{
	TPATH(p, "empty.pack");
	uint8_t name[PACK_NAME_LEN] = { 1, 2, 3 };
	struct pack_writer *pw;
	struct pack_entry *e = (void *)1;
	size_t n = 99;

	CHECK_EQ(pack_create(p, name, &pw), 0);
	CHECK_EQ(pack_finish(pw, &keys), 0);
	CHECK_EQ(pack_is_finished(p), 1);
	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), 0);
	CHECK_EQ(n, 0);
	free(e);
	CHECK_EQ(file_size(p), padded(PACK_HEADER_LEN + 4 + SEAL_OVERHEAD +
				      PACK_TRAILER_LEN));
	unlink(p);
}

static void test_orphan(struct tchunk *c)
{
	TPATH(p, "orphan.pack");
	uint8_t name[PACK_NAME_LEN];
	struct pack_writer *pw, *pw2;
	struct pack_entry *e, listed[NCHUNKS];
	uint64_t end, size;
	size_t n;
	int fd;

	CHECK_EQ(random_bytes(name, sizeof(name)), 0);
	CHECK_EQ(pack_create(p, name, &pw), 0);
	for (int i = 0; i < 6; i++) {
		CHECK_EQ(pack_append(pw, &c[i].e, c[i].sealed), 0);
		listed[i] = c[i].e;
	}
	CHECK_EQ(pack_sync(pw), 0);

	/* a live writer holds the pack: hands off */
	size = file_size(p);
	CHECK_EQ(pack_finish_orphan(p, name, listed, 4, &keys), -EWOULDBLOCK);
	CHECK_EQ(pack_create(p, name, &pw2), -EEXIST);
	CHECK_EQ(file_size(p), size);
	CHECK_EQ(pack_is_finished(p), 0);

	/* the writer dies; a half-written record follows the last one */
	pack_abandon(pw);
	fd = open(p, O_WRONLY);
	CHECK_EQ(pwrite_full(fd, c[7].sealed, c[7].e.slen / 2, (off_t)size),
		 0);
	close(fd);

	/* the index only knows the first 4 (not in file order) */
	{
		struct pack_entry shuffled[4] = { listed[2], listed[0],
						  listed[3], listed[1] };

		end = listed[3].off + listed[3].slen;
		CHECK_EQ(pack_finish_orphan(p, name, shuffled, 4, &keys), 0);
	}
	CHECK_EQ(pack_is_finished(p), 1);
	CHECK_EQ(file_size(p), padded(end + 4 + 4 * 49 + SEAL_OVERHEAD + 16));
	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), 0);
	CHECK_EQ(n, 4);
	{
		/* entries come back in the caller's order */
		struct tchunk order[4] = { c[2], c[0], c[3], c[1] };

		check_records(p, e, n, order);
	}
	free(e);

	/* finishing again changes nothing */
	size = file_size(p);
	CHECK_EQ(pack_finish_orphan(p, name, listed, 2, &keys), 0);
	CHECK_EQ(file_size(p), size);
	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), 0);
	CHECK_EQ(n, 4);
	free(e);
	unlink(p);

	/* an orphan nobody indexed anything in: just the header remains */
	CHECK_EQ(pack_create(p, name, &pw), 0);
	CHECK_EQ(pack_append(pw, &c[0].e, c[0].sealed), 0);
	pack_abandon(pw);
	CHECK_EQ(pack_finish_orphan(p, name, NULL, 0, &keys), 0);
	CHECK_EQ(file_size(p), padded(PACK_HEADER_LEN + 4 + SEAL_OVERHEAD + 16));
	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), 0);
	CHECK_EQ(n, 0);
	free(e);
	unlink(p);

	/* died before the header was written */
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	close(fd);
	CHECK_EQ(pack_finish_orphan(p, name, NULL, 0, &keys), 0);
	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), 0);
	CHECK_EQ(n, 0);
	free(e);
	unlink(p);

	/* the index names records the file does not hold: refuse, touch
	 * nothing */
	CHECK_EQ(pack_create(p, name, &pw), 0);
	CHECK_EQ(pack_append(pw, &c[0].e, c[0].sealed), 0);
	listed[0] = c[0].e;
	CHECK_EQ(pack_append(pw, &c[1].e, c[1].sealed), 0);
	listed[1] = c[1].e;
	pack_abandon(pw);
	CHECK_EQ(truncate(p, (off_t)(listed[1].off + 10)), 0);
	CHECK_EQ(pack_finish_orphan(p, name, listed, 2, &keys), -EBADMSG);
	CHECK_EQ(file_size(p), listed[1].off + 10);
	/* nonsense entries */
	listed[1].off = 3;
	CHECK_EQ(pack_finish_orphan(p, name, listed, 2, &keys), -EINVAL);
	/* but the one that is there can be kept */
	CHECK_EQ(pack_finish_orphan(p, name, listed, 1, &keys), 0);
	CHECK_EQ(pack_read_footer(p, name, &keys, &e, &n), 0);
	CHECK_EQ(n, 1);
	check_records(p, e, n, c);
	free(e);
	unlink(p);

	/* not a pack at all: refuse to write into it */
	CHECK_EQ(write_file_atomic(p, "this is not a pack file at all", 30,
				   0600), 0);
	CHECK_EQ(pack_finish_orphan(p, name, NULL, 0, &keys), -EBADMSG);
	CHECK_EQ(file_size(p), 30);
	unlink(p);
	CHECK_EQ(pack_finish_orphan(p, name, NULL, 0, &keys), -ENOENT);
}

int main(void)
{
	struct tchunk c[NCHUNKS];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	CHECK_EQ(random_bytes(&keys, sizeof(keys)), 0);
	test_chunks();

	/* a mix of sizes, compressible and not */
	for (int i = 0; i < NCHUNKS; i++)
		make_chunk(&c[i], (size_t)(1 + i * 37) * 1000, i % 3 == 0,
			   (unsigned)i);
	test_pack_roundtrip(c);
	test_empty_pack();
	test_orphan(c);
	for (int i = 0; i < NCHUNKS; i++)
		free_chunk(&c[i]);

	bench();
	rmdir(tmpdir);
	printf("test_pack: %s\n", check_failures ? "FAILED" : "ok");
	return CHECK_DONE();
}
