/*
 * test_verify.c - unit tests for chunker/verify.c: a sound store has no
 * problems; a flipped byte in a record is reported against its chunk; a
 * missing pack against the pack, whose chunks are then not read; a share
 * of the chunks rotates so that 100/pct runs read them all.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "check.h"
#include "store.h"
#include "util.h"
#include "verify.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/tresor-test-verify-XXXXXX";
static const char pass[] = "correct horse battery staple";
#define PASSLEN (sizeof(pass) - 1)
#define NCHUNK 9
#define CLEN 5000

struct seen {
	int problems;
	int64_t pack, chunk;	/* of the last problem */
};

static void on_problem(void *arg, const char *line, int64_t pack, int64_t chunk)
{
	struct seen *s = arg;
	(void)line;
	s->problems++;
	s->pack = pack;
	s->chunk = chunk;
}

static struct store *open_store(const char *dir)
{
	struct store *st = NULL;
	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);
	return st;
}

static void init_verify(struct verify *v, struct store *st, struct seen *s)
{
	memset(v, 0, sizeof(*v));
	memset(s, 0, sizeof(*s));
	v->st = st;
	v->problem = on_problem;
	v->arg = s;
}

static void flip(const char *path, uint64_t at)
{
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	uint8_t b = 0;
	CHECK_EQ(pread(fd, &b, 1, (off_t)at), 1);
	b ^= 0x20;
	CHECK_EQ(pwrite(fd, &b, 1, (off_t)at), 1);
	close(fd);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	log_set_level(LOG_ERR);
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/s", tmpdir);
	struct store_params p;
	store_params_default(&p);
	p.chunk_min = 4u << 10;
	p.chunk_avg = 16u << 10;
	p.chunk_max = 64u << 10;
	p.kdf.log2n = 10;
	p.kdf.r = 8;
	p.kdf.p = 1;
	CHECK_EQ(store_init(dir, &p, pass, PASSLEN), 0);

	struct store *st = open_store(dir);
	if (!st)
		return CHECK_DONE();
	int64_t rows[NCHUNK];
	uint8_t data[CLEN];
	for (int i = 0; i < NCHUNK; i++) {
		for (int j = 0; j < CLEN; j++)
			data[j] = (uint8_t)(i * 131 + j * 7 + (j >> 8));
		CHECK_EQ(store_put(st, data, CLEN, &rows[i]), 0);
	}
	CHECK_EQ(store_close(st), 0);	/* finishes the pack */

	struct verify v;
	struct seen s;
	st = open_store(dir);
	init_verify(&v, st, &s);
	CHECK_EQ(verify_packs(&v), 0);
	CHECK_EQ(verify_data(&v, 0), 0);
	CHECK_EQ(s.problems, 0);
	CHECK_EQ(v.packs, 1);
	CHECK_EQ(v.chunks_read, NCHUNK);
	CHECK_EQ(v.bytes_read, NCHUNK * CLEN);
	verify_free(&v);

	/* A share rotates: 3 runs of a third read each chunk once. */
	uint64_t read = 0;
	for (int run = 0; run < 3; run++) {
		init_verify(&v, st, &s);
		CHECK_EQ(verify_data(&v, 34), 0);
		CHECK_EQ(v.chunks_read, (NCHUNK * 34 + 99) / 100);
		read += v.chunks_read;
		verify_free(&v);
	}
	CHECK(read >= NCHUNK);
	int64_t cursor = -1;
	CHECK_EQ(index_meta_get(st->ix, "check_cursor", &cursor), 0);
	CHECK(cursor > 0);

	/* A flipped byte in one record: that chunk, nothing else. */
	struct chunk_ref ref;
	CHECK_EQ(store_chunk_ref(st, rows[4], &ref), 0);
	char *path = store_pack_path(st, ref.pack);
	CHECK_EQ(store_close(st), 0);
	flip(path, ref.e.off + ref.e.slen / 2);
	st = open_store(dir);	/* an empty chunk cache */
	init_verify(&v, st, &s);
	CHECK_EQ(verify_packs(&v), 0);
	CHECK_EQ(s.problems, 0);	/* the footer is sound */
	CHECK_EQ(verify_data(&v, 0), 0);
	CHECK_EQ(s.problems, 1);
	CHECK_EQ(s.pack, 0);
	CHECK_EQ(s.chunk, rows[4]);
	CHECK_EQ(v.chunks_read, NCHUNK);
	verify_free(&v);

	/* A missing pack: reported once, its chunks not read. */
	CHECK_EQ(unlink(path), 0);
	init_verify(&v, st, &s);
	CHECK_EQ(verify_packs(&v), 0);
	CHECK_EQ(s.problems, 1);
	CHECK(s.pack > 0);
	CHECK_EQ(s.chunk, 0);
	CHECK_EQ(verify_data(&v, 0), 0);
	CHECK_EQ(s.problems, 1);
	CHECK_EQ(v.chunks_read, 0);
	verify_free(&v);
	store_close(st);
	free(path);

	if (!check_failures) {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd))
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	} else {
		fprintf(stderr, "test_verify: left %s for inspection\n", tmpdir);
	}
	printf("test_verify: %s\n", check_failures ? "FAILED" : "ok");
	return CHECK_DONE();
}
