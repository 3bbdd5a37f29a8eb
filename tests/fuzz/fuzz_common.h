/*
 * fuzz_common.h - shared by the libFuzzer targets in tests/fuzz/ and by
 * the seed generator: deterministic keys, passphrase and pack name (the
 * seed corpus is sealed with exactly these, so seeds pass authentication),
 * and a private scratch directory under /dev/shm for inputs that the code
 * under test reads from a path.
 */
#ifndef TRESOR_FUZZ_COMMON_H
#define TRESOR_FUZZ_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "pack.h"

#define FUZZ_PASS "tresor-fuzz-passphrase"
#define FUZZ_PASS_LEN (sizeof(FUZZ_PASS) - 1)

/* Every byte of every sub-key: a fixed pattern, never random. */
static inline void fuzz_keys(struct store_keys *k)
{
	uint8_t *p = (uint8_t *)k;

	for (size_t i = 0; i < sizeof(*k); i++)
		p[i] = (uint8_t)(0x5a ^ (i * 29 + 7));
}

static inline void fuzz_pack_name(uint8_t name[PACK_NAME_LEN])
{
	for (int i = 0; i < PACK_NAME_LEN; i++)
		name[i] = (uint8_t)(0xa0 + i);
}

/* The chunk ID the chunk_open checks use. */
static inline void fuzz_chunk_id(uint8_t id[CHUNK_ID_LEN])
{
	for (int i = 0; i < CHUNK_ID_LEN; i++)
		id[i] = (uint8_t)(0x11 * (i % 15));
}

static char fuzz_dir[256];

/* TRESOR_FUZZ_VERBOSE=1: the targets print what each call returned (to
 * check by hand that the seeds reach the code behind authentication). */
static inline int fuzz_verbose(void)
{
	static int v = -1;

	if (v < 0) {
		const char *e = getenv("TRESOR_FUZZ_VERBOSE");

		v = e && *e && *e != '0';
	}
	return v;
}
#define FUZZ_SAY(...) \
	do { if (fuzz_verbose()) fprintf(stderr, __VA_ARGS__); } while (0)

static void fuzz_dir_remove(void)
{
	char cmd[300];

	if (!fuzz_dir[0])
		return;
	/* Only files we made, in a directory we made: a flat directory. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
	fuzz_dir[0] = 0;
}

/* mkdtemp under $TRESOR_FUZZ_TMP (default /dev/shm), removed at exit. */
static inline const char *fuzz_tmpdir(void)
{
	const char *base;

	if (fuzz_dir[0])
		return fuzz_dir;
	base = getenv("TRESOR_FUZZ_TMP");
	if (!base || !*base)
		base = "/dev/shm";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/tresor-fuzz-XXXXXX", base);
	if (!mkdtemp(fuzz_dir)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(fuzz_dir_remove);
	return fuzz_dir;
}

/* Write the whole buffer to path (truncating); aborts on failure, since a
 * harness that silently tests nothing is worse than one that stops. */
static inline void fuzz_write_file(const char *path, const void *buf,
				   size_t len)
{
	const uint8_t *p = buf;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0) {
		perror(path);
		abort();
	}
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0) {
			perror(path);
			abort();
		}
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

#endif
