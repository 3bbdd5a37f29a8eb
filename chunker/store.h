/*
 * store.h - a tresor store: one directory holding the key file, the SQLite
 * index and the pack files.
 *
 * Owns the store directory (creating and opening it, the one place that
 * builds pack paths), its settings, and the chunk path: deduplicate, seal,
 * append to the open pack, record in the catalog; and back: locate, read,
 * authenticate, decompress, cache, or ask the fetch hook.
 *
 * Locking: functions that touch st->ix or the open pack need the caller to
 * serialise them (the FUSE daemon holds its big lock).  store_read_chunk
 * and store_seal_chunk are thread-safe and are meant to run without that
 * lock, since they carry the CPU cost.
 */
#ifndef TRESOR_STORE_H
#define TRESOR_STORE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "fastcdc.h"
#include "crypto.h"
#include "catalog.h"
#include "index.h"
#include "pack.h"

#define STORE_FORMAT_VERSION 2
#define STORE_KEY_FILE "tresor.key"
#define STORE_INDEX_FILE "index.db"
#define STORE_PACK_DIR "packs"
#define STORE_PACK_TARGET (32u << 20)

struct store_params {
	uint32_t chunk_min, chunk_avg, chunk_max;
	struct kdf_params kdf;
};

struct chunk_cache;
struct pack_fetcher;
struct chunk_ref;

struct store {
	char *dir;
	struct index *ix;
	struct store_keys keys;
	struct fastcdc_params cdc;
	uint64_t pack_target;
	int zlevel;
	/* The pack chunks are appended to; NULL until the first write. */
	struct pack_writer *pw;
	int64_t pw_rowid;
	/* Decrypted chunks (own lock inside). */
	struct chunk_cache *cache;
	/* Where packs missing or bad here come from: the fetch hook, which
	 * the replication layer installs (remote/fetch.h) and the store knows
	 * only by these calls.  fetch NULL: nowhere, a failed read is EIO.
	 * Thread-safe itself.  fetch_take_filled: 1 once, when a fill has
	 * made every pack local (the lazy mark may go). */
	struct pack_fetcher *fetch;
	int (*fetch_load)(struct store *st, const struct chunk_ref *ref,
			  int local_err, uint8_t **sealed);
	int (*fetch_take_filled)(struct pack_fetcher *f);
};

/* Defaults: 256 KiB / 1 MiB / 4 MiB chunks, scrypt 2^17. */
void store_params_default(struct store_params *p);

/*
 * Create a store at dir, which must not exist or be an empty directory.
 * It is built in a sibling temporary directory and renamed into place, so
 * a failed init leaves nothing behind.  Returns 0 or -errno (-ENOTEMPTY,
 * -EINVAL for bad chunk sizes).
 */
int store_init(const char *dir, const struct store_params *p,
	       const char *pass, size_t passlen);

/*
 * Open the store at dir with the passphrase.  -ENOENT: no store there;
 * -EKEYREJECTED: wrong passphrase; -EPROTONOSUPPORT: newer format.
 * Packs left open by a process that died are finished by
 * store_finish_orphans (the daemon calls it when it mounts read-write).
 */
int store_open(const char *dir, const char *pass, size_t passlen,
	       struct store **out);

/* (Re)open the index of an open store whose st->ix is NULL (after a
 * fork: SQLite connections must not cross one). */
int store_open_index(struct store *st);

/* Finish the open pack, commit, close.  Returns the first error. */
int store_close(struct store *st);

/* Make everything appended durable, then commit the index: data before
 * the index that names it. */
int store_commit(struct store *st);

/* Path of a pack file: DIR/packs/ab/abcdef... (malloc'd): the one place
 * that builds it.  _in: of the store at dir, not opened. */
char *store_pack_path(const struct store *st,
		      const uint8_t name[PACK_NAME_LEN]);
char *store_pack_path_in(const char *dir, const uint8_t name[PACK_NAME_LEN]);

/* Take lock name of the store at dir: an flock on DIR/locks/NAME (the
 * folder made on first use), shared or exclusive, never waiting.  Returns
 * the descriptor, which holds the lock until it is closed or the process
 * ends; -EWOULDBLOCK while another holds it.  The one place that builds
 * lock paths (FORMAT.md §1). */
int store_lock(const char *dir, const char *name, int shared);

/* What the pack files of the store at dir take on disk (their padding is
 * a hole), for stats; needs only the index. */
uint64_t store_packs_disk_bytes(const char *dir, struct index *ix);

/* A chunk ready to be stored: its ID and sealed bytes. */
struct sealed_chunk {
	struct pack_entry e;
	uint8_t *buf;		/* malloc'd sealed bytes, e.slen long */
};

/* Compute the keyed ID of data (thread-safe). */
void store_chunk_id(const struct store *st, const void *data, size_t len,
		    uint8_t id[CHUNK_ID_LEN]);

/* Compress and seal data whose ID is id (thread-safe; cs: the calling
 * thread's context or NULL, see chunk_seal).  sc->buf must be freed by
 * the caller. */
int store_seal_chunk(const struct store *st, const uint8_t id[CHUNK_ID_LEN],
		     const void *data, size_t len, struct sealed_chunk *sc,
		     struct chunk_sealer *cs);

/* Rowid of the chunk with this ID, or -ENOENT. */
int store_chunk_lookup(struct store *st, const uint8_t id[CHUNK_ID_LEN],
		       int64_t *rowid);

/* Append a sealed chunk to the open pack (rotating packs as they fill) and
 * record it in the index; if the chunk is already known, nothing is
 * written.  Needs an open index transaction. */
int store_chunk_add(struct store *st, const struct sealed_chunk *sc,
		    int64_t *rowid);

/* Store data as one chunk (lookup, seal, add). */
int store_put(struct store *st, const void *data, size_t len, int64_t *rowid);

/* Where a chunk lives, for store_read_chunk. */
struct chunk_ref {
	int64_t rowid;
	uint8_t pack[PACK_NAME_LEN];
	struct pack_entry e;
};
int store_chunk_ref(struct store *st, int64_t rowid, struct chunk_ref *ref);

/*
 * Copy len bytes at coff of the chunk into dst, reading and opening the
 * chunk (or using the cache).  -EBADMSG if the chunk fails authentication
 * (wrong bytes are never returned), -errno on I/O errors.  Thread-safe.
 */
int store_read_chunk(struct store *st, const struct chunk_ref *ref,
		     uint64_t coff, void *dst, size_t len);

/* Append an existing chunk's sealed record to the open pack and point the
 * chunk's row there (the GC moving live chunks out of a pack). */
int store_chunk_move(struct store *st, const struct sealed_chunk *sc,
		     int64_t rowid);
/* Start the pack a GC rewrite copies into, recording it in pack_trash
 * (committed) first so a crash before the rewrite commits leaves no stray
 * file; the caller removes that row in the rewrite's transaction.  Leaves
 * a write transaction open. */
int store_new_gc_pack(struct store *st, uint8_t name[PACK_NAME_LEN]);

/* Finish the pack being written now (fsync, footer) and say so in the
 * index: before an index commit that must not run ahead of it. */
int store_finish_current_pack(struct store *st);

/* Reads on the calling thread, while on, do not wait for the fetch hook:
 * a chunk whose pack is missing or bad here fails with -EWOULDBLOCK, for
 * the caller to read again where waiting for a remote stalls nobody else
 * (a FUSE request thread; fs/fuse_defer.c).  Per thread. */
void store_defer_fetches(int on);

/* Load a chunk into the cache ahead of a read (thread-safe). */
int store_prefetch_chunk(struct store *st, const struct chunk_ref *ref);
/* 1 if the chunk is in the cache now. */
int store_chunk_cached(struct store *st, int64_t rowid);

/* A pack file was replaced (healed): drop cached descriptors of the old
 * file so the next read opens the new one (thread-safe). */
void store_pack_replaced(struct store *st, const uint8_t name[PACK_NAME_LEN]);

/* Finish all packs left open by dead processes.  Returns how many were
 * finished, or -errno. */
int store_finish_orphans(struct store *st);

#endif
