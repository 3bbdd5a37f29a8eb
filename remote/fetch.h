/*
 * fetch.h - packs from a remote copy: the source of packs that are not in
 * the local store yet (a lazy recovery) or no longer valid there (bit rot,
 * a deleted file).
 *
 * Owns downloading a pack, verifying it (size, authenticated footer naming
 * this pack, every record opening) and installing it atomically in the
 * store's packs directory; and the fetcher a store's read path calls when
 * a local pack fails (store.c: chunk_load).  The remote is never trusted:
 * bytes from it are used only after they authenticate, so a hostile or
 * damaged remote can make a read fail but never return wrong bytes.
 */
#ifndef TRESOR_FETCH_H
#define TRESOR_FETCH_H

#include <stdint.h>
#include "repo.h"

/*
 * Download pack name from r, verify it against keys (its size must be
 * size when size > 0) and install it as DIR/packs/XX/NAME (temp file,
 * fsync, rename; an existing bad file is replaced).  *bytes: its length.
 * -ENODATA: the remote has no such object; -EBADMSG: it fails
 * verification (nothing installed); other -errno from the remote or disk.
 */
int pack_fetch_install(struct remote *r, const struct store_keys *keys,
		       const char *dir, const uint8_t name[PACK_NAME_LEN],
		       uint64_t size, uint64_t *bytes);

/*
 * Verify a pack's bytes held in memory: its footer (written to a temp
 * file next to path, since footers are read from files) and every record.
 * Used for packs on a remote (check --remote --read-data) without
 * installing them.  -EBADMSG if anything fails.
 */
int pack_verify_bytes(const struct store_keys *keys, const char *tmpdir,
		      const uint8_t name[PACK_NAME_LEN], const uint8_t *buf,
		      size_t len);

/*
 * Verify the local pack file at path completely (footer and every
 * record).  0, -ENOENT, -EBADMSG, or -errno.
 */
int pack_verify_file(const struct store_keys *keys, const char *path,
		     const uint8_t name[PACK_NAME_LEN]);

struct pack_fetcher;

enum fetch_mode {
	/* Fetch the whole pack, install it, then read locally (commands). */
	FETCH_SYNC = 0,
	/* Answer a read with a ranged GET of just its record, and fetch the
	 * whole pack in a background thread (the daemon: fast first byte). */
	FETCH_BACKGROUND = 1,
};

struct fetch_stats {
	uint64_t records;	/* ranged GETs of single records */
	uint64_t packs;		/* whole packs installed */
	uint64_t healed;	/* of which replaced a bad local file */
	uint64_t bytes;		/* downloaded */
	uint64_t failed;	/* fetches that failed */
};

/*
 * Attach a fetcher to st (st->fetch) using the remote configured in its
 * index as remote_name (NULL: "origin" if there is one, else the first by
 * name).  label names what is served in log lines (the volume).  With
 * fill, the background thread also fetches every finished pack that is
 * not local yet once nothing is asked for (a lazy store filling itself).
 * Reads the index: call it with the index to itself (before threads
 * start).  -ENOENT: no remote configured.
 */
int fetcher_attach(struct store *st, const char *remote_name,
		   const char *label, enum fetch_mode mode, int fill);

/*
 * Whether a lazy store (index meta "lazy") can fetch what it lacks from
 * remote_name (NULL: as fetcher_attach picks): its stored files are
 * absolute and the remote opens (key files read); with probe, one cheap
 * request too (the repository marker's size), never a pack.  0 if it
 * can or the store is not lazy; else -errno with the remote's name in
 * name and the reason, one line, in why.
 */
int fetch_lazy_check(struct index *ix, const char *remote_name, int probe,
		     char *name, size_t namesize, char *why, size_t whysize);

/* Background mode: before installing a pack that is missing here (not a
 * damaged one), ask wanted(arg, name) whether the index still names it:
 * a pack a GC removed meanwhile must not come back as a stray file.
 * Set right after fetcher_attach, before reads start. */
void fetcher_set_wanted(struct pack_fetcher *f,
			int (*wanted)(void *arg, const uint8_t name[PACK_NAME_LEN]),
			void *arg);

/* Stop the background thread (queued packs are left; reads still work,
 * by ranged GETs): before what wanted() uses goes away. */
void fetcher_stop_thread(struct pack_fetcher *f);

/* Stop the background thread, close the remotes, detach from st. */
void fetcher_detach(struct store *st);

/* Name of the remote the fetcher uses ("origin"). */
const char *fetcher_remote_name(const struct pack_fetcher *f);

void fetcher_stats(struct pack_fetcher *f, struct fetch_stats *s);

/* 1 once, when a fill (fetcher_attach with fill) has fetched every pack
 * that was missing without a failure: the caller may then clear the
 * store's lazy mark (meta "lazy") in its next index transaction. */
int fetcher_take_filled(struct pack_fetcher *f);

/*
 * Called by the store's read path when reading ref's record from its
 * local pack failed with local_err (thread-safe).  FETCH_SYNC: the pack
 * is fetched, verified and installed; returns 1 and the caller reads it
 * locally again.  FETCH_BACKGROUND: the record's sealed bytes are fetched
 * alone into *sealed (malloc'd, ref->e.slen long) and 0 is returned; the
 * whole pack is queued.  Negative errno if the remote cannot help.
 */
struct chunk_ref;
int fetcher_load(struct pack_fetcher *f, const struct chunk_ref *ref,
		 int local_err, uint8_t **sealed);

#endif
