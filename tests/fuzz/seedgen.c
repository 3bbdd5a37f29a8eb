/*
 * seedgen.c - writes the binary seeds of tests/fuzz/corpus/ that must be
 * sealed with the fixed fuzzing keys (fuzz_common.h): packs and key files.
 * Run by make_corpus.sh:  seedgen CORPUS_DIR
 *
 *   fuzz_pack_footer/pack-2chunks      real pack: a zstd record, a raw one
 *   fuzz_pack_footer/pack-empty        real finished pack with no record
 *   fuzz_pack_footer/pack-unfinished   header + records, no footer
 *   fuzz_pack_footer/pform-2chunks     the same 2 records in the P-form
 *   fuzz_pack_footer/pform-empty       (plaintext footer and records, see
 *                                      fuzz_pack_footer.c)
 *   fuzz_keyfile/valid-log2n10         keyfile_create, log2n 10, r 8, p 1
 *   fuzz_keyfile/valid-log2n10-r1      the same with r 1
 */
#include "fuzz_common.h"
#include "util.h"

#include <errno.h>
#include <sys/stat.h>
#include <zstd.h>

static struct store_keys keys;
static uint8_t pname[PACK_NAME_LEN];
static char tmp[256];

static void die(const char *what, int err)
{
	fprintf(stderr, "seedgen: %s: %s\n", what, strerror(-err));
	exit(1);
}

static void copy_out(const char *from, const char *dir, const char *name)
{
	char to[512];
	uint8_t *buf;
	size_t len;
	int ret = read_file(from, &buf, &len);

	if (ret)
		die(from, ret);
	snprintf(to, sizeof(to), "%s/%s", dir, name);
	fuzz_write_file(to, buf, len);
	free(buf);
	printf("  %s (%zu bytes)\n", to, len);
}

/* Deterministic pseudo-random bytes. */
static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void fill_text(uint8_t *p, size_t n)
{
	static const char words[] = "the quick tresor packs sealed chunks ";

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)words[(i * 7 + i / 13) % (sizeof(words) - 1)];
}

struct rec {
	uint8_t *data;
	size_t len;
};

/* A real pack of the records (n may be 0); finish = 0 leaves it open. */
static void real_pack(const struct rec *r, size_t n, int finish,
		      const char *dir, const char *name)
{
	struct pack_writer *pw;
	char path[300];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	ret = pack_create(path, pname, &pw);
	if (ret)
		die("pack_create", ret);
	for (size_t i = 0; i < n; i++) {
		struct pack_entry e = { .rlen = (uint32_t)r[i].len };
		uint8_t *sealed = malloc(chunk_seal_bound(r[i].len));

		chunk_id_compute(&keys, r[i].data, r[i].len, e.id);
		ret = chunk_seal(&keys, e.id, r[i].data, r[i].len, 3, sealed,
				 &e.slen, &e.flags, NULL);
		if (!ret)
			ret = pack_append(pw, &e, sealed);
		if (ret)
			die("seal/append", ret);
		free(sealed);
	}
	if (finish) {
		ret = pack_finish(pw, &keys);
		if (ret)
			die("pack_finish", ret);
	} else {
		pack_abandon(pw);
	}
	copy_out(path, dir, name);
}

/* The P-form: records as nonce(0) || payload || tag(0), plaintext footer. */
static void pform_pack(const struct rec *r, size_t n, const char *dir,
		       const char *name)
{
	uint8_t *buf = calloc(1, 1 << 20);
	size_t off = PACK_HEADER_LEN, foff;
	uint8_t *foot;
	char path[300];

	memcpy(buf, "TRESORPK", 8);
	put_le32(buf + 8, PACK_VERSION);
	put_le32(buf + 12, 0);
	foot = malloc(4 + n * 49);
	put_le32(foot, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = foot + 4 + i * 49;
		uint8_t *payload = buf + off + SEAL_NONCE_LEN;
		size_t plen = ZSTD_compress(payload, (1 << 19), r[i].data,
					    r[i].len, 3);
		uint8_t flags = CHUNK_F_ZSTD;

		if (ZSTD_isError(plen) || plen >= r[i].len) {
			memcpy(payload, r[i].data, r[i].len);
			plen = r[i].len;
			flags = 0;
		}
		chunk_id_compute(&keys, r[i].data, r[i].len, e);
		put_le64(e + 32, off);
		put_le32(e + 40, (uint32_t)(plen + SEAL_OVERHEAD));
		put_le32(e + 44, (uint32_t)r[i].len);
		e[48] = flags;
		off += plen + SEAL_OVERHEAD;
	}
	foff = off;
	memcpy(buf + off, foot, 4 + n * 49);
	off += 4 + n * 49;
	put_le64(buf + off, foff);
	put_le32(buf + off + 8, (uint32_t)(4 + n * 49));
	memcpy(buf + off + 12, "TPKE", 4);
	off += PACK_TRAILER_LEN;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fuzz_write_file(path, buf, off);
	printf("  %s (%zu bytes)\n", path, off);
	free(foot);
	free(buf);
}

static void keyfile(uint32_t r, const char *dir, const char *name)
{
	struct kdf_params kp = { 10, r, 1 };
	struct store_keys k;
	char path[300];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	ret = keyfile_create(path, FUZZ_PASS, FUZZ_PASS_LEN, &kp, &k);
	if (ret)
		die("keyfile_create", ret);
	copy_out(path, dir, name);
}

int main(int argc, char **argv)
{
	char dpack[300], dkey[300];
	uint8_t text[6000], rnd[1500];
	struct rec r[2] = { { text, sizeof(text) }, { rnd, sizeof(rnd) } };

	if (argc != 2) {
		fprintf(stderr, "usage: seedgen CORPUS_DIR\n");
		return 2;
	}
	fuzz_keys(&keys);
	fuzz_pack_name(pname);
	snprintf(tmp, sizeof(tmp), "%s", fuzz_tmpdir());
	snprintf(dpack, sizeof(dpack), "%s/fuzz_pack_footer", argv[1]);
	snprintf(dkey, sizeof(dkey), "%s/fuzz_keyfile", argv[1]);
	mkdir(dpack, 0755);
	mkdir(dkey, 0755);
	fill_text(text, sizeof(text));
	fill_random(rnd, sizeof(rnd), 42);

	real_pack(r, 2, 1, dpack, "pack-2chunks");
	real_pack(r, 0, 1, dpack, "pack-empty");
	real_pack(r, 2, 0, dpack, "pack-unfinished");
	pform_pack(r, 2, dpack, "pform-2chunks");
	pform_pack(r, 0, dpack, "pform-empty");
	keyfile(8, dkey, "valid-log2n10");
	keyfile(1, dkey, "valid-log2n10-r1");
	return 0;
}
