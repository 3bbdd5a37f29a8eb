/*
 * pack.h - pack files: the only place chunk bytes live.
 *
 * A pack is a header, then sealed chunk records back to back, then (once
 * finished) an encrypted footer that lists every record, so the chunk
 * table can be rebuilt from packs alone.  Packs are write-once after they
 * are finished and are uploaded offsite byte for byte.  The layout is in
 * docs/FORMAT.md.  An open (unfinished) pack is held under an exclusive
 * flock by its writer, so another process can tell an orphan (left by a
 * crash) from a pack in use.
 */
#ifndef TRESOR_PACK_H
#define TRESOR_PACK_H

#include <stddef.h>
#include <stdint.h>
#include "crypto.h"

#define PACK_NAME_LEN 16	/* random; hex-encoded as the file name */
#define PACK_HEADER_LEN 16
#define PACK_TRAILER_LEN 16
#define PACK_VERSION 1
#define PACK_PAD (256u << 10)	/* finished packs are a multiple of this */

#define CHUNK_F_ZSTD 0x01	/* payload is zstd-compressed */

/* One record as listed in the footer and in the index. */
struct pack_entry {
	uint8_t id[CHUNK_ID_LEN];
	uint64_t off;		/* of the sealed record in the pack */
	uint32_t slen;		/* sealed length (incl. nonce and tag) */
	uint32_t rlen;		/* raw (plaintext, uncompressed) length */
	uint8_t flags;		/* CHUNK_F_* */
};

/* Upper bound of the sealed size of a chunk of rlen raw bytes. */
size_t chunk_seal_bound(size_t rlen);

/*
 * A compression context that one thread reuses across chunk_seal calls, so
 * zstd's tables are allocated once rather than per chunk.  Never shared
 * between threads at the same time.  NULL from _new on ENOMEM.
 */
struct chunk_sealer;
struct chunk_sealer *chunk_sealer_new(void);
void chunk_sealer_free(struct chunk_sealer *cs);

/*
 * Compress data if that pays (a cheap zstd probe of a sample decides; data
 * that does not shrink is stored as is), then seal it under keys->enc with
 * AAD = id || flags.  out must hold chunk_seal_bound(rlen).  Sets *slen and
 * *flags.  cs: the calling thread's context, or NULL for one made for this
 * call.  Returns 0 or a negative errno.
 */
int chunk_seal(const struct store_keys *keys, const uint8_t id[CHUNK_ID_LEN],
	       const void *data, size_t rlen, int zlevel, uint8_t *out,
	       uint32_t *slen, uint8_t *flags, struct chunk_sealer *cs);

/*
 * Open a sealed record into out (rlen bytes).  Returns 0, or -EBADMSG if
 * authentication fails or the plaintext is not rlen bytes long (wrong
 * bytes are never returned: on any failure out is zeroed), or -ENOMEM.
 */
int chunk_open(const struct store_keys *keys, const uint8_t id[CHUNK_ID_LEN],
	       const uint8_t *sealed, size_t slen, uint8_t flags, uint8_t *out,
	       size_t rlen);

struct pack_writer;

/*
 * Create a new pack file at path (O_EXCL, mode 0600), write its header,
 * take an exclusive flock and fsync the directory.  Returns 0, -EEXIST if
 * path exists (even if it is a live pack), or -errno.
 */
int pack_create(const char *path, const uint8_t name[PACK_NAME_LEN],
		struct pack_writer **out);

/*
 * Append one sealed record: e->slen bytes of sealed, described by e (id,
 * slen, rlen, flags; e->off is ignored on input).  On success e->off
 * receives the record's offset and the writer keeps a copy of *e for the
 * footer.  Returns 0 or -errno (-EINVAL if e->slen < SEAL_OVERHEAD).  Not
 * yet durable: call pack_sync before an index commit names the record.
 */
int pack_append(struct pack_writer *pw, struct pack_entry *e,
		const uint8_t *sealed);

/* Bytes written so far (header included). */
uint64_t pack_size(const struct pack_writer *pw);
/* Number of records appended. */
size_t pack_count(const struct pack_writer *pw);
/* The pack's name. */
const uint8_t *pack_name(const struct pack_writer *pw);

/* fdatasync the pack. */
int pack_sync(struct pack_writer *pw);

/*
 * Write the encrypted footer and trailer, fsync, release the lock, free pw.
 * On error pw is still freed and the file stays an orphan to finish later.
 */
int pack_finish(struct pack_writer *pw, const struct store_keys *keys);

/* Close an open pack without finishing it (at shutdown it is finished
 * instead; this is for error paths).  Frees pw. */
void pack_abandon(struct pack_writer *pw);

/*
 * Finish an orphaned open pack at path: take the flock without waiting
 * (-EWOULDBLOCK if a live writer holds it), truncate it after the last of
 * the n entries (which the caller read from the index), and write the
 * footer listing exactly those entries.  A pack that is already finished
 * is left alone (returns 0).  Returns 0, -EWOULDBLOCK, -EINVAL (an entry
 * with off < PACK_HEADER_LEN or slen < SEAL_OVERHEAD), -EBADMSG (not a
 * pack, or shorter than the entries say: nothing is written), or -errno.
 */
int pack_finish_orphan(const char *path, const uint8_t name[PACK_NAME_LEN],
		       const struct pack_entry *e, size_t n,
		       const struct store_keys *keys);

/* 1 if the pack at path is finished (valid trailer), 0 if not, -errno. */
int pack_is_finished(const char *path);

/*
 * Read and authenticate the footer of the finished pack at path.  *entries
 * is malloc'd (NULL when *n is 0).  Returns 0, -EBADMSG (unfinished,
 * damaged or not this pack), -EPROTONOSUPPORT (newer pack version), or
 * -errno.
 */
int pack_read_footer(const char *path, const uint8_t name[PACK_NAME_LEN],
		     const struct store_keys *keys, struct pack_entry **entries,
		     size_t *n);

#endif
