/*
 * pack.c - sealed chunk records and the pack files that hold them.
 *
 * Owns the chunk record format (optional zstd, then AEAD bound to the
 * chunk ID) and the pack file format: header, records, encrypted footer,
 * trailer.  Byte layouts are in docs/FORMAT.md ("Pack files").  An open
 * pack is protected by an exclusive flock held by its writer; that lock is
 * how pack_finish_orphan tells a crashed writer's pack from a live one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "buf.h"
#include "pack.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#define PACK_MAGIC "TRESORPK"
#define PACK_MAGIC_LEN 8
#define PACK_TRAILER_MAGIC "TPKE"
#define PACK_ENTRY_LEN 49	/* id 32, off 8, slen 4, rlen 4, flags 1 */
#define PACK_FOOTER_AAD "tresor pack footer v1"
#define PACK_FOOTER_AAD_LEN (sizeof(PACK_FOOTER_AAD) - 1)
/* The sealed footer length is a u32 in the trailer. */
#define PACK_MAX_ENTRIES \
	((UINT32_MAX - 4 - SEAL_OVERHEAD) / PACK_ENTRY_LEN)

#define CHUNK_AAD_LEN (CHUNK_ID_LEN + 1)

/*
 * The compressibility probe: PROBE_SLICES slices of PROBE_SLICE bytes
 * spread over the chunk (start, end and evenly between), so a chunk that
 * starts with a compressible header and continues with already-compressed
 * data is judged on more than its head.  Chunks no bigger than the sample
 * are simply compressed: probing them would cost as much.
 */
#define PROBE_SLICE (16u << 10)
#define PROBE_SLICES 4
#define PROBE_LEVEL 1
#define PROBE_PERCENT 97

struct pack_writer {
	int fd;
	uint8_t name[PACK_NAME_LEN];
	uint64_t size;			/* header + records written */
	struct pack_entry *ents;	/* for the footer */
	size_t n, cap;
};

size_t chunk_seal_bound(size_t rlen)
{
	size_t zb = ZSTD_compressBound(rlen);

	return (zb > rlen ? zb : rlen) + SEAL_OVERHEAD;
}

static void chunk_aad(uint8_t aad[CHUNK_AAD_LEN],
		      const uint8_t id[CHUNK_ID_LEN], uint8_t flags)
{
	memcpy(aad, id, CHUNK_ID_LEN);
	aad[CHUNK_ID_LEN] = flags;
}

/*
 * 1 if compressing the whole chunk looks worthwhile.  scratch (at least
 * ZSTD_compressBound(PROBE_SLICE) bytes) receives the throw-away output.
 * A zstd error counts as "not worth it": the chunk is then stored raw,
 * which is always correct.
 */
static int probe_compressible(ZSTD_CCtx *cctx, const uint8_t *data,
			      size_t rlen, uint8_t *scratch, size_t scap)
{
	size_t in = 0, outsz = 0;

	if (rlen <= (size_t)PROBE_SLICE * PROBE_SLICES)
		return 1;
	for (unsigned int i = 0; i < PROBE_SLICES; i++) {
		size_t off = (rlen - PROBE_SLICE) * i / (PROBE_SLICES - 1);
		size_t c = ZSTD_compressCCtx(cctx, scratch, scap, data + off,
					     PROBE_SLICE, PROBE_LEVEL);

		if (ZSTD_isError(c))
			return 0;
		in += PROBE_SLICE;
		outsz += c;
	}
	return outsz * 100 < in * PROBE_PERCENT;
}

struct chunk_sealer {
	ZSTD_CCtx *cctx;
};

struct chunk_sealer *chunk_sealer_new(void)
{
	struct chunk_sealer *cs = malloc(sizeof(*cs));
	if (cs && !(cs->cctx = ZSTD_createCCtx())) {
		free(cs);
		cs = NULL;
	}
	return cs;
}

void chunk_sealer_free(struct chunk_sealer *cs)
{
	if (cs) {
		ZSTD_freeCCtx(cs->cctx);
		free(cs);
	}
}

/*
 * Compression happens straight into out + SEAL_NONCE_LEN and is then
 * sealed in place, so no chunk-sized temporary is needed.  Without the
 * caller's context one is made per call, which costs about 6-8% of
 * compressing a 1 MiB chunk at level 3 (test_pack, text chunks); the
 * pipeline's workers each keep one.
 */
int chunk_seal(const struct store_keys *keys, const uint8_t id[CHUNK_ID_LEN],
	       const void *data, size_t rlen, int zlevel, uint8_t *out,
	       uint32_t *slen, uint8_t *flags, struct chunk_sealer *cs)
{
	uint8_t *payload = out + SEAL_NONCE_LEN;
	size_t cap = chunk_seal_bound(rlen) - SEAL_OVERHEAD;
	const void *src = data;
	size_t plen = rlen;
	uint8_t f = 0, aad[CHUNK_AAD_LEN];
	ZSTD_CCtx *cctx;
	int ret;

	/* Raw storage must fit the u32 lengths of the pack format. */
	if (rlen > UINT32_MAX - SEAL_OVERHEAD)
		return -EINVAL;
	cctx = cs ? cs->cctx : ZSTD_createCCtx();
	if (!cctx)
		return -ENOMEM;
	if (probe_compressible(cctx, data, rlen, payload, cap)) {
		size_t c = ZSTD_compressCCtx(cctx, payload, cap, data, rlen,
					     zlevel);

		if (!ZSTD_isError(c) && c < rlen) {
			src = payload;
			plen = c;
			f = CHUNK_F_ZSTD;
		}
	}
	if (!cs)
		ZSTD_freeCCtx(cctx);

	chunk_aad(aad, id, f);
	ret = aead_seal(keys->enc, aad, sizeof(aad), src, plen, out);
	if (ret)
		return ret;
	*slen = (uint32_t)(plen + SEAL_OVERHEAD);
	*flags = f;
	return 0;
}

/*
 * Raw records decrypt straight into out.  Compressed ones need the
 * payload in a separate buffer (zstd cannot decompress in place).  The
 * length check is not redundant with authentication: rlen comes from the
 * index, not from the sealed bytes.  On any failure out is zeroed, so
 * what a careless caller finds there is never unauthenticated data nor
 * stale data from an earlier chunk.
 */
int chunk_open(const struct store_keys *keys, const uint8_t id[CHUNK_ID_LEN],
	       const uint8_t *sealed, size_t slen, uint8_t flags, uint8_t *out,
	       size_t rlen)
{
	uint8_t aad[CHUNK_AAD_LEN];
	uint8_t *tmp = NULL;
	size_t plen, d;
	int ret = -EBADMSG;

	if (slen < SEAL_OVERHEAD || (flags & ~CHUNK_F_ZSTD))
		goto out;
	plen = slen - SEAL_OVERHEAD;
	chunk_aad(aad, id, flags);
	if (!(flags & CHUNK_F_ZSTD)) {
		if (plen == rlen)
			ret = aead_open(keys->enc, aad, sizeof(aad), sealed,
					slen, out);
		goto out;
	}

	tmp = malloc(plen ? plen : 1);
	if (!tmp) {
		ret = -ENOMEM;
		goto out;
	}
	ret = aead_open(keys->enc, aad, sizeof(aad), sealed, slen, tmp);
	if (!ret) {
		d = ZSTD_decompress(out, rlen, tmp, plen);
		if (ZSTD_isError(d) || d != rlen)
			ret = -EBADMSG;
	}
out:
	if (ret && rlen)
		memset(out, 0, rlen);
	free(tmp);
	return ret;
}

static void put_header(uint8_t h[PACK_HEADER_LEN])
{
	memcpy(h, PACK_MAGIC, PACK_MAGIC_LEN);
	put_le32(h + 8, PACK_VERSION);
	put_le32(h + 12, 0);
}

/* 0, -EBADMSG (not a pack), -EPROTONOSUPPORT (a newer pack version). */
static int check_header(const uint8_t h[PACK_HEADER_LEN])
{
	uint32_t v = get_le32(h + 8);

	if (memcmp(h, PACK_MAGIC, PACK_MAGIC_LEN))
		return -EBADMSG;
	if (v > PACK_VERSION)
		return -EPROTONOSUPPORT;
	if (v != PACK_VERSION || get_le32(h + 12) != 0)
		return -EBADMSG;
	return 0;
}

/*
 * Look at the trailer of the pack open on fd.  Returns 1 (finished; the
 * footer's position in *foff, *flen), 0 (no valid trailer), or -errno.
 */
static int trailer_read(int fd, uint64_t *foff, uint32_t *flen)
{
	uint8_t t[PACK_TRAILER_LEN];
	struct stat st;
	uint64_t size, off;
	uint32_t len;
	int ret;

	if (fstat(fd, &st))
		return -errno;
	size = (uint64_t)st.st_size;
	if (size < PACK_HEADER_LEN + SEAL_OVERHEAD + 4 + PACK_TRAILER_LEN)
		return 0;
	ret = pread_full(fd, t, sizeof(t), (off_t)(size - sizeof(t)));
	if (ret)
		return ret;
	off = get_le64(t);
	len = get_le32(t + 8);
	if (memcmp(t + 12, PACK_TRAILER_MAGIC, 4))
		return 0;
	/* off + len + PACK_TRAILER_LEN == size, without overflow. */
	if (len < SEAL_OVERHEAD + 4 ||
	    len > size - PACK_TRAILER_LEN - PACK_HEADER_LEN ||
	    off != size - PACK_TRAILER_LEN - len)
		return 0;
	if (foff)
		*foff = off;
	if (flen)
		*flen = len;
	return 1;
}

/*
 * Seal the footer for entries e[0..n) at offset off, then the trailer.
 * The footer is made durable before the trailer is written: the trailer
 * is what marks the pack finished, so it must never reach the disk ahead
 * of the footer it points to.  The file is then cut right after the
 * trailer, which also drops anything a failed earlier write left beyond.
 */
static int footer_write(int fd, uint64_t off, const uint8_t name[PACK_NAME_LEN],
			const struct pack_entry *e, size_t n,
			const struct store_keys *keys)
{
	uint8_t aad[PACK_FOOTER_AAD_LEN + PACK_NAME_LEN];
	uint8_t trailer[PACK_TRAILER_LEN];
	uint8_t *pt = NULL, *sealed = NULL;
	size_t ptlen, slen;
	int ret;

	if (n > PACK_MAX_ENTRIES)
		return -EFBIG;
	ptlen = 4 + n * PACK_ENTRY_LEN;
	slen = ptlen + SEAL_OVERHEAD;
	pt = malloc(ptlen);
	sealed = malloc(slen);
	if (!pt || !sealed) {
		ret = -ENOMEM;
		goto out;
	}
	put_le32(pt, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = pt + 4 + i * PACK_ENTRY_LEN;

		memcpy(p, e[i].id, CHUNK_ID_LEN);
		put_le64(p + 32, e[i].off);
		put_le32(p + 40, e[i].slen);
		put_le32(p + 44, e[i].rlen);
		p[48] = e[i].flags;
	}
	memcpy(aad, PACK_FOOTER_AAD, PACK_FOOTER_AAD_LEN);
	memcpy(aad + PACK_FOOTER_AAD_LEN, name, PACK_NAME_LEN);
	ret = aead_seal(keys->enc, aad, sizeof(aad), pt, ptlen, sealed);
	if (ret)
		goto out;

	/* Round the file up to a multiple of PACK_PAD with a hole before
	 * the footer, so that a pack holding one small file does not tell
	 * that file's size to whoever sees the pack (offsite). */
	uint64_t total = off + slen + sizeof(trailer);
	off += (PACK_PAD - total % PACK_PAD) % PACK_PAD;

	put_le64(trailer, off);
	put_le32(trailer + 8, (uint32_t)slen);
	memcpy(trailer + 12, PACK_TRAILER_MAGIC, 4);

	ret = pwrite_full(fd, sealed, slen, (off_t)off);
	if (!ret && fdatasync(fd))
		ret = -errno;
	crash_point("pack-seal");
	if (!ret)
		ret = pwrite_full(fd, trailer, sizeof(trailer),
				  (off_t)(off + slen));
	if (!ret && ftruncate(fd, (off_t)(off + slen + sizeof(trailer))))
		ret = -errno;
	if (!ret && fsync(fd))
		ret = -errno;
	/* A sealed pack is read back rarely (the chunk cache serves recent
	 * reads, the kernel's cache of the mount the rest): leaving its
	 * pages to the kernel made every new pack take fresh memory. */
	if (!ret)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
out:
	free(pt);
	free(sealed);
	return ret;
}

/*
 * The flock is taken right after the exclusive create; the directory is
 * fsynced so that once pack_sync has made records durable the file they
 * are in cannot vanish in a crash.  If the header cannot be written the
 * file is removed again (O_EXCL and the lock make it ours).
 */
int pack_create(const char *path, const uint8_t name[PACK_NAME_LEN],
		struct pack_writer **out)
{
	uint8_t h[PACK_HEADER_LEN];
	struct pack_writer *pw;
	int fd, ret;

	pw = calloc(1, sizeof(*pw));
	if (!pw)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		free(pw);
		return ret;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		/* Someone opened our fresh file first: leave it to them. */
		ret = -errno;
		close(fd);
		free(pw);
		return ret;
	}
	put_header(h);
	ret = pwrite_full(fd, h, sizeof(h), 0);
	if (!ret)
		ret = fsync_parent_dir(path);
	if (ret) {
		unlink(path);
		close(fd);
		free(pw);
		return ret;
	}
	pw->fd = fd;
	memcpy(pw->name, name, PACK_NAME_LEN);
	pw->size = PACK_HEADER_LEN;
	*out = pw;
	return 0;
}

/*
 * The entry list grows before the write so a failed allocation cannot
 * leave a record on disk that the footer will not list.  A failed write
 * does not advance the size: the next record overwrites whatever part of
 * it landed, and pack_finish cuts off any tail.
 */
int pack_append(struct pack_writer *pw, struct pack_entry *e,
		const uint8_t *sealed)
{
	int ret;

	if (e->slen < SEAL_OVERHEAD)
		return -EINVAL;
	if (pw->n >= PACK_MAX_ENTRIES || pw->size > UINT64_MAX / 2)
		return -EFBIG;
	struct pack_entry *ne = buf_grow(pw->ents, &pw->cap, pw->n + 1, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	pw->ents = ne;
	ret = pwrite_full(pw->fd, sealed, e->slen, (off_t)pw->size);
	if (ret)
		return ret;
	crash_point("pack-append");
	e->off = pw->size;
	pw->ents[pw->n++] = *e;
	pw->size += e->slen;
	return 0;
}

uint64_t pack_size(const struct pack_writer *pw)
{
	return pw->size;
}

size_t pack_count(const struct pack_writer *pw)
{
	return pw->n;
}

const uint8_t *pack_name(const struct pack_writer *pw)
{
	return pw->name;
}

/* fdatasync is enough: the size change it must persist is data-relevant
 * metadata, and the directory entry was synced by pack_create. */
int pack_sync(struct pack_writer *pw)
{
	return fdatasync(pw->fd) ? -errno : 0;
}

static void writer_free(struct pack_writer *pw)
{
	free(pw->ents);
	free(pw);
}

/*
 * The explicit unlock matters if the descriptor was ever shared (a fork
 * without exec): close alone would then not release the flock.  Also
 * after a failed footer the lock must go, so the pack can be finished as
 * an orphan.
 */
int pack_finish(struct pack_writer *pw, const struct store_keys *keys)
{
	int ret;

	ret = footer_write(pw->fd, pw->size, pw->name, pw->ents, pw->n, keys);
	flock(pw->fd, LOCK_UN);
	if (close(pw->fd) && !ret)
		ret = -errno;
	writer_free(pw);
	return ret;
}

/* The file stays as it is, an orphan for pack_finish_orphan; unlocked
 * explicitly for the same reason as in pack_finish. */
void pack_abandon(struct pack_writer *pw)
{
	if (!pw)
		return;
	flock(pw->fd, LOCK_UN);
	close(pw->fd);
	writer_free(pw);
}

/*
 * The caller's entries (from the index) are the truth about what the
 * pack holds: bytes after the last of them were never committed and are
 * cut off.  Nothing is written unless the file looks like our pack and
 * holds every listed record; a pack that is already finished is left
 * alone, so running this twice is harmless.
 */
int pack_finish_orphan(const char *path, const uint8_t name[PACK_NAME_LEN],
		       const struct pack_entry *e, size_t n,
		       const struct store_keys *keys)
{
	uint8_t h[PACK_HEADER_LEN];
	uint64_t end = PACK_HEADER_LEN, size;
	struct stat st;
	int fd, ret;

	for (size_t i = 0; i < n; i++) {
		if (e[i].off < PACK_HEADER_LEN || e[i].slen < SEAL_OVERHEAD ||
		    e[i].off > UINT64_MAX / 2)
			return -EINVAL;
		if (e[i].off + e[i].slen > end)
			end = e[i].off + e[i].slen;
	}

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
		goto out;
	}
	ret = trailer_read(fd, NULL, NULL);
	if (ret) {
		if (ret > 0)
			ret = 0;
		goto out;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (size >= PACK_HEADER_LEN) {
		ret = pread_full(fd, h, sizeof(h), 0);
		if (!ret)
			ret = check_header(h);
	} else if (n == 0) {
		/* Died between create and header: nothing to lose. */
		put_header(h);
		ret = pwrite_full(fd, h, sizeof(h), 0);
		size = PACK_HEADER_LEN;
	} else {
		ret = -EBADMSG;
	}
	if (ret)
		goto out;
	if (size < end) {
		/* The index names records that are not there. */
		ret = -EBADMSG;
		goto out;
	}
	if (ftruncate(fd, (off_t)end)) {
		ret = -errno;
		goto out;
	}
	ret = footer_write(fd, end, name, e, n, keys);
out:
	if (close(fd) && !ret)
		ret = -errno;
	return ret;
}

int pack_is_finished(const char *path)
{
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = trailer_read(fd, NULL, NULL);
	close(fd);
	return ret;
}

/*
 * Trust nothing before authentication, and after it check the entries
 * anyway (bounds, flags, raw length), so a writer bug shows up here
 * rather than as a bad read much later.  The pack name is in the
 * footer's AAD: a pack renamed or swapped for another fails to open.
 */
int pack_read_footer(const char *path, const uint8_t name[PACK_NAME_LEN],
		     const struct store_keys *keys, struct pack_entry **entries,
		     size_t *n)
{
	uint8_t aad[PACK_FOOTER_AAD_LEN + PACK_NAME_LEN];
	uint8_t h[PACK_HEADER_LEN];
	uint8_t *sealed = NULL, *pt = NULL;
	struct pack_entry *ents = NULL;
	uint64_t foff;
	uint32_t flen, count;
	size_t ptlen;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = trailer_read(fd, &foff, &flen);
	if (ret == 0)
		ret = -EBADMSG;
	if (ret < 0)
		goto out;
	ret = pread_full(fd, h, sizeof(h), 0);
	if (!ret)
		ret = check_header(h);
	if (ret)
		goto out;

	ptlen = flen - SEAL_OVERHEAD;
	sealed = malloc(flen);
	pt = malloc(ptlen);
	if (!sealed || !pt) {
		ret = -ENOMEM;
		goto out;
	}
	ret = pread_full(fd, sealed, flen, (off_t)foff);
	if (ret)
		goto out;
	memcpy(aad, PACK_FOOTER_AAD, PACK_FOOTER_AAD_LEN);
	memcpy(aad + PACK_FOOTER_AAD_LEN, name, PACK_NAME_LEN);
	ret = aead_open(keys->enc, aad, sizeof(aad), sealed, flen, pt);
	if (ret)
		goto out;

	ret = -EBADMSG;
	count = get_le32(pt);
	if ((uint64_t)count * PACK_ENTRY_LEN + 4 != ptlen)
		goto out;
	if (count) {
		ents = malloc(count * sizeof(*ents));
		if (!ents) {
			ret = -ENOMEM;
			goto out;
		}
	}
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *p = pt + 4 + (size_t)i * PACK_ENTRY_LEN;
		struct pack_entry *x = &ents[i];

		memcpy(x->id, p, CHUNK_ID_LEN);
		x->off = get_le64(p + 32);
		x->slen = get_le32(p + 40);
		x->rlen = get_le32(p + 44);
		x->flags = p[48];
		if (x->off < PACK_HEADER_LEN || x->slen < SEAL_OVERHEAD ||
		    x->off > foff || x->slen > foff - x->off)
			goto out;
		if (x->flags & ~CHUNK_F_ZSTD)
			goto out;
		if (!(x->flags & CHUNK_F_ZSTD) &&
		    x->slen != (uint64_t)x->rlen + SEAL_OVERHEAD)
			goto out;
	}
	*entries = ents;
	*n = count;
	ents = NULL;
	ret = 0;
out:
	free(ents);
	free(sealed);
	free(pt);
	close(fd);
	return ret;
}
