/*
 * fuzz_pack_footer.c - libFuzzer target for the pack file and chunk
 * record parsers of chunker/pack.c: pack_is_finished, pack_read_footer and
 * chunk_open, with the fixed keys of fuzz_common.h.
 *
 * The input is a pack file.  Each input is tried three ways:
 *
 *  A. As is: written to a file, pack_is_finished + pack_read_footer; if
 *     the footer opens (an unmutated seed), chunk_open on every record.
 *     This is the hostile-file surface before authentication (trailer,
 *     header, lengths, offsets).
 *
 *  B. As a "plaintext pack" (the P-form): the same layout, except that
 *     the footer after the trailer's offset is plaintext (the trailer's
 *     length is the plaintext length) and each record the plaintext
 *     footer lists holds nonce(12, ignored) || payload || tag(16,
 *     ignored).  The harness seals the records in place (AAD = id ||
 *     flags) and the footer (AAD = label || pack name), as a writer with
 *     these keys would, then runs pack_read_footer and chunk_open on the
 *     result.  Mutations of the P-form therefore reach the code behind
 *     authentication: the footer's entry checks and zstd decompression
 *     of hostile payloads, which AEAD would otherwise hide from a fuzzer.
 *
 *  C. The whole input as one sealed chunk record (raw and zstd flags).
 */
#include "fuzz_common.h"
#include "util.h"

#include <errno.h>

#define TRAILER_MAGIC "TPKE"
#define ENTRY_LEN 49
#define FOOTER_AAD "tresor pack footer v1"
#define FOOTER_AAD_LEN (sizeof(FOOTER_AAD) - 1)
#define MAX_RLEN (4u << 20)	/* skip chunk_open of bigger records */
#define MAX_OPENS 64

static struct store_keys keys;
static uint8_t pack_nm[PACK_NAME_LEN];
static char path_a[300], path_b[300];
static uint8_t *outbuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *d = fuzz_tmpdir();

	(void)argc, (void)argv;
	fuzz_keys(&keys);
	fuzz_pack_name(pack_nm);
	snprintf(path_a, sizeof(path_a), "%s/pack-a", d);
	snprintf(path_b, sizeof(path_b), "%s/pack-b", d);
	outbuf = malloc(MAX_RLEN);
	if (!outbuf)
		abort();
	return 0;
}

/* chunk_open every listed record of the pack bytes p (size len). */
static void open_records(const uint8_t *p, size_t len,
			 const struct pack_entry *e, size_t n)
{
	for (size_t i = 0; i < n && i < MAX_OPENS; i++) {
		uint8_t *out;
		int ret;

		if (e[i].off > len || e[i].slen > len - e[i].off) {
			/* pack_read_footer promised the records are inside. */
			fprintf(stderr, "entry %zu out of the file\n", i);
			abort();
		}
		if (e[i].rlen > MAX_RLEN)
			continue;
		/* Exactly rlen bytes, so ASan sees any overrun. */
		out = malloc(e[i].rlen ? e[i].rlen : 1);
		if (!out)
			abort();
		ret = chunk_open(&keys, e[i].id, p + e[i].off, e[i].slen,
				 e[i].flags, out, e[i].rlen);
		FUZZ_SAY("  chunk_open(record %zu, flags %u, rlen %u) = %d\n",
			 i, e[i].flags, e[i].rlen, ret);
		if (ret != 0 && ret != -EBADMSG && ret != -ENOMEM)
			abort();
		free(out);
	}
}

static void try_pack_file(const char *path, const uint8_t *p, size_t len)
{
	struct pack_entry *e = NULL;
	size_t n = 0;
	int ret;

	fuzz_write_file(path, p, len);
	ret = pack_is_finished(path);
	if (ret < 0 || ret > 1)
		abort();
	FUZZ_SAY("%s: pack_is_finished = %d\n", path, ret);
	ret = pack_read_footer(path, pack_nm, &keys, &e, &n);
	FUZZ_SAY("%s: pack_read_footer = %d (%zu entries)\n", path, ret, n);
	if (ret == 0) {
		if (n && !e)
			abort();
		open_records(p, len, e, n);
	} else if (ret != -EBADMSG && ret != -EPROTONOSUPPORT &&
		   ret != -ENOMEM && ret != -EIO) {
		fprintf(stderr, "pack_read_footer: unexpected %d\n", ret);
		abort();
	}
	free(e);
}

/* B: seal a P-form input into a real pack and parse that. */
static void try_plaintext_pack(const uint8_t *data, size_t size)
{
	uint8_t aad[FOOTER_AAD_LEN + PACK_NAME_LEN];
	const uint8_t *t;
	uint64_t foff;
	uint32_t flen, count;
	uint8_t *b;
	size_t blen;

	if (size < PACK_HEADER_LEN + 4 + PACK_TRAILER_LEN)
		return;
	t = data + size - PACK_TRAILER_LEN;
	if (memcmp(t + 12, TRAILER_MAGIC, 4))
		return;
	foff = get_le64(t);
	flen = get_le32(t + 8);
	if (foff < PACK_HEADER_LEN || foff > size - PACK_TRAILER_LEN ||
	    flen != size - PACK_TRAILER_LEN - foff || flen < 4)
		return;

	blen = size + SEAL_OVERHEAD;
	b = malloc(blen);
	if (!b)
		abort();
	memcpy(b, data, foff);

	/* Seal each record the plaintext footer lists, in place. */
	count = get_le32(data + foff);
	for (uint64_t i = 0; i < count && 4 + (i + 1) * ENTRY_LEN <= flen;
	     i++) {
		const uint8_t *x = data + foff + 4 + i * ENTRY_LEN;
		uint8_t caad[CHUNK_ID_LEN + 1];
		uint64_t off = get_le64(x + 32);
		uint32_t slen = get_le32(x + 40);
		uint8_t *tmp;

		if (off < PACK_HEADER_LEN || slen < SEAL_OVERHEAD ||
		    off > foff || slen > foff - off)
			continue;
		memcpy(caad, x, CHUNK_ID_LEN);
		caad[CHUNK_ID_LEN] = x[48];
		tmp = malloc(slen);
		if (!tmp)
			abort();
		if (aead_seal(keys.enc, caad, sizeof(caad),
			      data + off + SEAL_NONCE_LEN, slen - SEAL_OVERHEAD,
			      tmp))
			abort();
		memcpy(b + off, tmp, slen);
		free(tmp);
	}

	memcpy(aad, FOOTER_AAD, FOOTER_AAD_LEN);
	memcpy(aad + FOOTER_AAD_LEN, pack_nm, PACK_NAME_LEN);
	if (aead_seal(keys.enc, aad, sizeof(aad), data + foff, flen,
		      b + foff))
		abort();
	/* The trailer: same footer offset, sealed length. */
	put_le64(b + foff + flen + SEAL_OVERHEAD, foff);
	put_le32(b + foff + flen + SEAL_OVERHEAD + 8, flen + SEAL_OVERHEAD);
	memcpy(b + foff + flen + SEAL_OVERHEAD + 12, TRAILER_MAGIC, 4);

	try_pack_file(path_b, b, blen);
	free(b);
}

/* C: the input as one sealed record. */
static void try_record(const uint8_t *data, size_t size)
{
	uint8_t id[CHUNK_ID_LEN];
	size_t rlen;

	fuzz_chunk_id(id);
	rlen = size >= SEAL_OVERHEAD ? size - SEAL_OVERHEAD : 0;
	(void)chunk_open(&keys, id, data, size, 0, outbuf, rlen);
	(void)chunk_open(&keys, id, data, size, CHUNK_F_ZSTD, outbuf, 4096);
	(void)chunk_open(&keys, id, data, size, 0x80, outbuf, rlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	try_pack_file(path_a, data, size);
	try_plaintext_pack(data, size);
	try_record(data, size);
	return 0;
}
