/*
 * repo.h - the remote repository shared by push and recovery: remotes
 * configured in the index, object keys and sealed metadata deltas.
 * repo.c alone runs SQL on the replication tables (remote, remote_pack,
 * remote_sending, remote_gone): every remote_cfg_* call below.
 *
 * Remote layout (version 3, see docs/FORMAT.md §15):
 *   tresor-repo          "TRESORRP", u32 version, u32 0 (plaintext marker)
 *   keys/key             the store's key file, as is (passphrase-wrapped)
 *   data/XX/NAME         finished packs, byte for byte
 *   meta/NNNNNNNNNNNNNNNN  metadata deltas 1, 2, ... (16 hex digits):
 *                        "TRSMETA3", a sealed header naming the store that
 *                        wrote it, the object it continues and the newest
 *                        image, then the sealed zstd-compressed changelog
 *                        delta (changelog.h).  Version 2 objects (no image
 *                        fields) and version 1 ones (the sealed delta
 *                        alone) are still read.
 *   image/N-ID.PART      sealed parts of an image of the index as of
 *                        meta/N (image.h, FORMAT.md §15.5).
 * A push uploads the packs a delta needs, then the delta: the remote is
 * restorable at every moment.  Object names and sizes say nothing about
 * file names or sizes: packs have random names and are ~32 MiB.
 */
#ifndef TRESOR_REPO_H
#define TRESOR_REPO_H

#include "remote.h"
#include "../chunker/store.h"

#define REPO_VERSION 3
#define REPO_WRITER_LEN 16
#define REPO_HASH_LEN 32
#define REPO_IMAGE_ID_LEN 16

/* A remote as configured in the store. */
struct remote_cfg {
	int64_t id;
	char name[64];
	char url[512];
	struct remote_options opt;
	char strs[6][512];	/* backing for opt's strings */
	uint64_t last_seq;	/* changelog sequence pushed so far */
	uint64_t next_meta;	/* number of the next delta object */
	int64_t last_push;	/* ns, 0 = never */
	/* Packs freed locally are deleted on the remote this long after the
	 * delta that stops naming them is published (default 7 days; at
	 * add, grace_set 0 means the default). */
	int64_t grace_ns;
	int grace_set;
	/* S3 Object Lock: mode REMOTE_LOCK_* and retention in days for
	 * every object uploaded; 0 days: none. */
	int lock_mode;
	int lock_days;
	int64_t meta_lock_until;	/* s: retention of the oldest non-pack object */
	/* Who this store is on the remote: the writer id in the header of
	 * every delta it publishes there (random, made when the row is). */
	uint8_t writer[REPO_WRITER_LEN];
	/* Identity (header hash) of meta/(next_meta - 1) as this store wrote
	 * or recovered it; has_tip 0: not known (a version 1 object). */
	uint8_t tip[REPO_HASH_LEN];
	int has_tip;
	/* 1: the next delta is a full image (after a takeover: the chain
	 * before holds another store's state). */
	int full_next;
	/* Header hash of the delta a push is publishing, noted before it is
	 * sent: after a crash, only that object is taken as this store's
	 * (a clone of the store directory has the same writer id). */
	uint8_t pending[REPO_HASH_LEN];
	int has_pending;
	/* The newest image on the chain as this store knows it (0: none, or
	 * not known), the bytes of the index file it holds, and the bytes of
	 * the deltas published after it: what decides the next image. */
	uint64_t image_meta, image_size, since_image;
	/* The lowest metadata object this store may still have to delete
	 * there: those below were deleted, or were never its to delete. */
	uint64_t meta_floor;
};

#define REPO_DEFAULT_GRACE_NS (7LL * 86400 * 1000000000)

/* Add a remote to the store (and start noting changes).  -EEXIST. */
int remote_cfg_add(struct index *ix, const struct remote_cfg *c);
int remote_cfg_find(struct index *ix, const char *name, struct remote_cfg *c);
int remote_cfg_list(struct index *ix, struct remote_cfg **cs, size_t *n);
/* Finished packs the remote does not hold yet: how many, how many bytes. */
int remote_cfg_pending(struct index *ix, int64_t remote, uint64_t *packs, uint64_t *bytes);

/* A pack row as remote_cfg_packs gives it: the pack's rowid (0 for
 * FREED and EXPIRING), its name, and val (size; lock_until in s for
 * FREED and EXPIRING); for HELD, when check last downloaded and verified
 * it whole (ns, 0: never). */
struct remote_cfg_pack {
	int64_t id;
	uint8_t name[PACK_NAME_LEN];
	int64_t val;
	int64_t verified;
};
enum remote_cfg_packs_of {
	REMOTE_PACKS_ALL,	/* finished packs, by name */
	REMOTE_PACKS_LACKING,	/* finished packs remote is not known to hold */
	REMOTE_PACKS_HELD,	/* finished packs remote holds */
	REMOTE_PACKS_FREED,	/* packs remote holds, or may (a dead push's), that the
				 * index no longer names */
	REMOTE_PACKS_EXPIRING,	/* packs remote holds, still named, lock_until < before */
};
/* Call fn for each pack of the kind asked (rows whose name is not a pack
 * name are skipped); stops at fn's first nonzero return and returns it. */
int remote_cfg_packs(struct index *ix, enum remote_cfg_packs_of which, int64_t remote,
		     int64_t before, int (*fn)(void *arg, const struct remote_cfg_pack *p),
		     void *arg);

/* What a push learnt, noted in the index (the caller's transaction):
 * remote holds pack name, locked until lock_until (s; 0: not locked). */
int remote_cfg_note_held(struct index *ix, int64_t remote, const uint8_t *name,
			 int64_t lock_until);
/* A push is about to send pack name to remote, with retention lock_until
 * (s): noted and committed before the first byte goes, so that a push
 * that dies leaves no object the index does not know of (FORMAT.md §9.11
 * remote_sending).  remote_cfg_note_held drops the row; a row whose pack
 * is freed here before it was held comes back as REMOTE_PACKS_FREED. */
int remote_cfg_note_sending(struct index *ix, int64_t remote, const uint8_t *name,
			    int64_t lock_until);
/* check --remote --read-data downloaded pack name whole from remote and
 * it verified, at time (ns; FORMAT.md §9.11 remote_pack.verified). */
int remote_cfg_note_verified(struct index *ix, int64_t remote, const uint8_t *name,
			     int64_t time);
/* The published delta no longer names pack name: its grace starts at
 * freed (ns). */
int remote_cfg_note_freed(struct index *ix, int64_t remote, const uint8_t *name,
			  int64_t freed, int64_t lock_until);
/* Its retention was extended to until (s). */
int remote_cfg_note_locked(struct index *ix, int64_t remote, const uint8_t *name,
			   int64_t until);
/* It was deleted from remote; its pack_trash row goes once no remote
 * holds or awaits it. */
int remote_cfg_note_deleted(struct index *ix, int64_t remote, const uint8_t *name);
/* Remote holds every finished pack (a recovery fetched them from it). */
int remote_cfg_note_all_held(struct index *ix, int64_t remote);
/* Forget what remote holds and awaits deletion (a takeover). */
int remote_cfg_forget_packs(struct index *ix, int64_t remote);
/* A push published through changelog sequence last_seq. */
int remote_cfg_set_pushed(struct index *ix, int64_t remote, uint64_t last_seq,
			  uint64_t next_meta, int64_t last_push, int64_t meta_lock_until);
int remote_cfg_set_meta_lock(struct index *ix, int64_t remote, int64_t until);
/* The lowest sequence pushed to every remote (0: none). */
int remote_cfg_min_seq(struct index *ix, uint64_t *min);
/* A read transaction: one consistent state of the index until ended. */
int remote_cfg_read_begin(struct index *ix);
void remote_cfg_read_end(struct index *ix);
/* Replace the options of remote name that o sets (non-NULL strings; the
 * rest stay).  -ENOENT: no such remote. */
int remote_cfg_set_opts(struct index *ix, const char *name, const struct remote_options *o);

/* Freed packs a remote still holds, with when each may be deleted (the
 * later of the grace and the Object Lock retention); *out malloc'd. */
struct remote_gone_pack {
	uint8_t name[PACK_NAME_LEN];
	char key[80];
	int64_t due;		/* ns */
};
size_t remote_cfg_gone(struct index *ix, const struct remote_cfg *c,
		       struct remote_gone_pack **out);

/*
 * Images of the index on a remote as this store knows them (FORMAT.md
 * §9.11 remote_image): every image it sent (noted before its first part
 * is sent, so the parts of a push that died are known too) or recovered
 * from.  published: ns when an object naming it was published or
 * recovered (0: not known to be named); lock_until (s): no object below
 * it is retained past then.  What a published image makes unnecessary
 * (objects below it, older images) is deleted after the grace from
 * published and after lock_until (push.c).
 */
struct remote_image_row {
	uint64_t meta;
	uint8_t id[REPO_IMAGE_ID_LEN];
	uint32_t parts;
	int64_t published, lock_until;
};
int remote_cfg_image_sending(struct index *ix, int64_t remote, uint64_t meta,
			     const uint8_t id[REPO_IMAGE_ID_LEN], uint32_t parts);
/* An object naming image id (of object meta, parts) is out (or was
 * recovered): note it at now unless noted already. */
int remote_cfg_image_published(struct index *ix, int64_t remote, uint64_t meta,
			       const uint8_t id[REPO_IMAGE_ID_LEN], uint32_t parts,
			       int64_t now, int64_t lock_until);
/* Every image row of remote, by object number; *out malloc'd. */
int remote_cfg_images(struct index *ix, int64_t remote, struct remote_image_row **out,
		      size_t *n);
int remote_cfg_image_forget(struct index *ix, int64_t remote,
			    const uint8_t id[REPO_IMAGE_ID_LEN]);
int remote_cfg_set_floor(struct index *ix, int64_t remote, uint64_t floor);

/* Wall-clock time in ns that remote schedules (grace, Object Lock dates)
 * use: CLOCK_REALTIME plus TRESOR_TEST_CLOCK_OFFSET seconds if set (a test
 * hook standing for days going by; never set it in production). */
int64_t repo_now_ns(void);

/* Remote key of a pack ("data/XX/NAME") and of metadata delta n. */
void repo_pack_key(const uint8_t name[PACK_NAME_LEN], char *key, size_t size);
void repo_meta_key(uint64_t n, char *key, size_t size);

/* The key of a later key file on the remote: "keys/key-" and the first
 * 32 hex digits of the SHA-256 of its bytes (FORMAT.md §15: after a
 * passphrase change; "keys/key" is the first).  0 or -EIO. */
int repo_key_object(const void *keyfile, size_t len, char *key, size_t size);

/* Record where this store now stands on remote c (after a publish or a
 * takeover): next_meta, tip, full_next and the image fields as in c; no
 * pending. */
int remote_cfg_set_chain(struct index *ix, const struct remote_cfg *c);
/* Note the header hash of the delta about to be published on remote id. */
int remote_cfg_set_pending(struct index *ix, int64_t id, const uint8_t hash[REPO_HASH_LEN]);

/* The header of a version 2 metadata object: who wrote it, after what. */
#define REPO_META_TAKEOVER 1u	/* the writer took the chain over here */
struct repo_meta_hdr {
	uint8_t writer[REPO_WRITER_LEN];
	uint64_t parent;		/* the object it continues, 0: none */
	uint8_t parent_hash[REPO_HASH_LEN];	/* its hash; zeros: version 1 or none */
	uint32_t flags;			/* REPO_META_* */
	int64_t time_ns;
	char origin[256];		/* "host:/store/dir" of the writer */
	/* The newest image on this object's path (version 3; image.h): the
	 * object whose state it holds (0: none), its id, parts and size. */
	uint64_t image;
	uint8_t image_id[REPO_IMAGE_ID_LEN];
	uint32_t image_parts;
	uint64_t image_size;
	/* Filled when read: */
	int v1;				/* a version 1 object: no header */
	int v2;				/* a version 2 object: no image fields */
	uint8_t hash[REPO_HASH_LEN];	/* SHA-256 of the sealed header */
};

/* "host:dir" of this machine and store, for a header's origin. */
void repo_origin(const char *dir, char *out, size_t size);

/* Compress and seal a delta as meta object n with header h (its hash is
 * set in h->hash).  The header's AAD binds n, the delta's binds n and the
 * header. */
int repo_seal_meta(const struct store_keys *keys, uint64_t n, struct repo_meta_hdr *h,
		   const uint8_t *d, size_t len, uint8_t **out, size_t *outlen);
/* Compress d and seal it under key with the AAD given (an image part);
 * repo_open_blob is its inverse (-EBADMSG if it does not authenticate). */
int repo_seal_blob(const uint8_t key[KEY_LEN], const uint8_t *aad, size_t alen,
		   const uint8_t *d, size_t len, uint8_t **out, size_t *outlen);
int repo_open_blob(const uint8_t key[KEY_LEN], const uint8_t *aad, size_t alen,
		   const uint8_t *in, size_t len, uint8_t **out, size_t *outlen);
/* Inverse of repo_seal_meta, and reads version 2 (h->v2 = 1) and 1
 * objects (h->v1 = 1):
 * -EBADMSG if it does not authenticate as n.  h may be NULL. */
int repo_open_delta(const struct store_keys *keys, uint64_t n,
		    const uint8_t *in, size_t len, struct repo_meta_hdr *h,
		    uint8_t **out, size_t *outlen);
/* The header of meta/n alone (one small ranged read): -ENOENT, -EBADMSG,
 * or a remote error. */
int repo_read_meta_hdr(struct remote *r, const struct store_keys *keys, uint64_t n,
		       struct repo_meta_hdr *h);
/* The highest n of the remote's meta/ objects (0: none). */
int repo_meta_max(struct remote *r, uint64_t *max);
/* The same, and the lowest (0: none). */
int repo_meta_range(struct remote *r, uint64_t *min, uint64_t *max);
/* The writer id as 32 hex digits, for messages. */
void repo_writer_hex(const uint8_t w[REPO_WRITER_LEN], char out[2 * REPO_WRITER_LEN + 1]);

#endif
