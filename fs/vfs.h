/*
 * vfs.h - the FUSE daemon's state: one mounted volume of a store.
 *
 * Locking (two levels, always taken in this order; I8 in docs/DESIGN.md):
 *   node->dlock  serialises the data path of one file (its dirty ranges,
 *                cutting them into chunks, reads that merge them); who
 *                holds several (a snapshot, a copy between two files)
 *                takes them in address order;
 *   ctx->lock    the big lock: the index and its open transaction, the open
 *                pack, the node table and every node's attributes and
 *                counters.  Held only for short sections; the CPU work on
 *                chunks (hashing, compressing, sealing, opening) runs
 *                without it.
 * The chunk cache inside the store has its own lock, taken last.
 * The remote the daemon fetches missing or damaged packs from lives in the
 * store's fetch hook (st->fetch, installed by the composition root's
 * vfs_mount_hooks after the fork, removed after vfs_close: one connection
 * for readers behind its own lock, one owned by its background thread);
 * readers call it from store_read_chunk holding none of the locks above.
 */
#ifndef TRESOR_VFS_H
#define TRESOR_VFS_H

#include <pthread.h>
#include <stdint.h>
#include "namespace.h"
#include "opstats.h"
#include "../chunker/store.h"

/* Dirty (written, not yet chunked) bytes of a file. */
struct range {
	uint64_t off;
	size_t len, cap;
	uint8_t *buf;
};

/*
 * The data-path state of a file, only while it is open or has data in
 * flight: a volume may have a million inodes cached by the kernel, and
 * they should cost little.  Allocated by node_pin (n->nopen 0 -> 1),
 * freed by node_maybe_free once nopen is back to 0 with nothing buffered
 * or queued.  So a thread that holds dlock must hold a pin (nopen) too.
 */
struct node_data {
	pthread_mutex_t dlock;
	struct range *ranges;		/* sorted, disjoint (dlock) */
	size_t nranges, rangecap;
	size_t dirty_bytes;		/* sum of range lengths (dlock + lock) */
	uint64_t stream_end;		/* where the last cut ended (dlock) */
	struct pending *phead, *ptail;	/* chunks queued, not applied (lock) */
	int werr;			/* first error storing them (lock) */
	uint64_t psize;			/* size as persisted in the index (lock) */
	/* The extents as the index has them, for reads (view.h): built at
	 * a read (dlock + lock), valid while xgen == xmap_gen; xgen counts
	 * changes of the file's extents (lock). */
	struct xmap *xmap;
	uint64_t xgen, xmap_gen;
};

/* One inode the kernel knows of (all fields under ctx->lock).  104
 * bytes: a million of them fit the daemon's 200 MB. */
struct node {
	struct node *next;		/* hash chain */
	struct inode_attr attr;		/* current attributes; attr.ino */
	uint64_t nlookup;		/* kernel references */
	struct node_data *d;		/* non-NULL while nopen > 0 */
	int32_t nopen;			/* open handles and other pins */
	uint32_t hot : 30;		/* 1 + index in v->hot, or 0 */
	uint32_t attr_dirty : 1;	/* attr not yet written to the index */
	uint32_t nocap : 1;		/* known to have no security.capability */
};
#define PIPE_MAX_WORKERS 8
#define PREFETCH_RECENT 8

struct snapfile;

struct vfs {
	struct store *st;
	struct volume_info vol;		/* vol.epoch is the current epoch */
	int readonly;
	int lockfd;			/* flock on the volume: one mount only */
	pthread_mutex_t lock;
	struct node **tab;
	size_t tabsize, nnodes;
	/* Nodes that may be open, dirty or attr_dirty: commit and snapshot
	 * walk these, not the whole table (node_mark_hot, node.c). */
	struct node **hot;
	size_t nhot, hotcap;
	int hot_overflow;		/* realloc failed once: walk the table */
	uint64_t ino_reserved;		/* next_ino persisted up to here */
	size_t dirty_total;		/* bytes in all ranges (lock) */
	int commit_errors;
	char *mountpoint;		/* for syncfs before a snapshot */
	int list_snapshots;		/* readdir of / shows .snapshots */
	int writeback;			/* -o writeback: kernel write-back cache */
	double attr_timeout;		/* -o cache_timeout: what the kernel may */
	double entry_timeout;		/* cache of the live tree (seconds) */
	void *se;			/* the FUSE session, for notify_inval_* */
	int adopted;			/* serving a connection an earlier
					 * process mounted (vfs_mount_hooks) */
	unsigned fh_gen;		/* top bits of the handles it gives out */
	int adopted_crash;		/* ... from a process that crashed */
	uint64_t fuse_reads;		/* read requests served (atomic) */
	uint64_t xmap_loads;		/* extent maps built for them (atomic) */
	int xattrs_maybe;		/* the volume may have xattrs (lock) */
	int acl;			/* POSIX ACLs applied (acl.h); set at init */
	int noacl;			/* -o noacl: refuse them (EOPNOTSUPP) */
	char fetch_remote[64];		/* -o remote=NAME ("": origin) */
	int fill;			/* -o fill: fetch every pack not here */
	pthread_mutex_t snap_lock;	/* one snapshot at a time */
	/* Reads that wait for a remote, answered off the request thread
	 * (fuse_defer.c); all under defer_lock, never with lock held. */
	pthread_mutex_t defer_lock;
	pthread_cond_t defer_cond;
	struct deferred_read *defer_head, *defer_tail;
	pthread_t defer_threads[4];
	int ndefer_threads, defer_idle, defer_stop;
	struct control *control;
	/* open snapshot-file handles (fuse_view.c), under lock */
	struct snapfile *snapfiles;
	/* chunk pipeline (pipeline.c), under lock */
	struct pending *pipe_head, *pipe_tail;
	size_t inflight;
	int pipe_stop;
	pthread_cond_t pipe_work, pipe_done;
	pthread_t workers[PIPE_MAX_WORKERS];
	int nworkers, nworkers_wanted;
	int nprefetch;			/* read-ahead jobs queued */
	int64_t prefetch_recent[8];	/* chunks queued lately: not again */
	unsigned int prefetch_pos;
	/* committer thread */
	pthread_t committer;
	pthread_cond_t stop_cond;
	int stopping;	/* FUSE operation counts and latencies (opstats.h; atomics) */
	struct opstats opstats;
	const void *inner_ops;		/* the untimed table (fuse_timed.c) */
};

/* Take volume vol's lock in the store at dir (store_lock): exclusive for
 * its one writing daemon, shared for read-only mounts.  The descriptor,
 * or -EWOULDBLOCK while another holds it. */
int vfs_volume_lock(const char *dir, int64_t vol, int shared);
/* Open the volume: lock it, clean inodes left unlinked by a crash (not
 * when adopted: the kernel may still hold those open). */
int vfs_open(struct vfs *v, struct store *st, const char *volume,
	     int readonly, int adopted);
/* Flush everything, stop the committer, release the volume lock. */
int vfs_close(struct vfs *v);
int vfs_start_committer(struct vfs *v);

/* Node table (ctx->lock held). */
struct node *node_get(struct vfs *v, uint64_t ino, int *err);
struct node *node_find(struct vfs *v, uint64_t ino);
struct node *node_new(struct vfs *v, const struct inode_attr *a);
void node_forget(struct vfs *v, struct node *n, uint64_t count);
/* Take a pin on n (an open handle, or a section that must keep it and
 * its data lock alive), giving it its node_data; -ENOMEM (lock held). */
int node_pin(struct vfs *v, struct node *n);
/* Note n on the hot list after making it open, dirty or attr_dirty. */
void node_mark_hot(struct vfs *v, struct node *n);
/* attr_dirty = 1 and on the hot list (lock held). */
void node_touch(struct vfs *v, struct node *n);
void node_release(struct vfs *v, struct node *n);
/* Free n if nothing references it any more (lock held). */
void node_maybe_free(struct vfs *v, struct node *n);
/* Free n's data-path state and whatever it still buffers (lock held;
 * nobody holds a pin). */
void node_data_free(struct vfs *v, struct node *n);
/* Call fn on every node that may be open, dirty or attr_dirty (lock
 * held); fn may not free nodes and returns non-zero to stop. */
int node_hot_walk(struct vfs *v, int (*fn)(struct vfs *, struct node *, void *),
		  void *arg);

/* The chunk pipeline (pipeline.c). */
struct pending;
struct pipe_block;
int pipeline_start(struct vfs *v, int nworkers);
void pipeline_stop(struct vfs *v);
/* A buffer handed to the pipeline whole (it then frees it), holding one
 * reference for its builder; NULL on ENOMEM (the caller keeps mem). */
struct pipe_block *pipeline_block_new(uint8_t *mem);
/* Drop the builder's reference (lock NOT held).  used 0: no chunk was
 * queued from it, and its buffer stays the caller's. */
void pipeline_block_put(struct vfs *v, struct pipe_block *b, int used);
/* Queue a chunk of n's data at off (dlock held, lock not): a copy of
 * data, or with blk the slice data of blk itself.  extra: bytes of blk
 * that are no chunk, charged to this one (its last). */
int pipeline_queue(struct vfs *v, struct node *n, struct pipe_block *blk,
		   const uint8_t *data, size_t len, uint64_t off, size_t extra);
/* Wait until n has nothing queued; return and clear its error (lock held). */
int pipeline_wait(struct vfs *v, struct node *n);
/* Pin n's queued chunks overlapping [off, off+len) for a read (lock held). */
struct pending **pipeline_pin(struct vfs *v, struct node *n, uint64_t off,
			      size_t len, size_t *count);
void pipeline_overlay(struct pending **ps, size_t count, uint8_t *buf,
		      size_t len, uint64_t off);
void pipeline_unpin(struct vfs *v, struct pending **ps, size_t count);
/* Have the workers load chunk ref into the cache (lock held). */
void pipeline_prefetch(struct vfs *v, const struct chunk_ref *ref);
/* Have the workers load the chunks just past from into the cache, so a
 * sequential reader finds them decrypted (lock NOT held). */
void pipeline_readahead(struct vfs *v, int64_t view, uint64_t ino,
			uint64_t from);
uint64_t vfs_alloc_ino(struct vfs *v, int *err);

/* Persist n's attributes (ctx->lock held). */
int node_persist(struct vfs *v, struct node *n);

/* Data path (dlock held, ctx->lock not held). */
int node_write(struct vfs *v, struct node *n, const void *buf, size_t len,
	       uint64_t off);
int node_read(struct vfs *v, struct node *n, void *buf, size_t len,
	      uint64_t off, size_t *got);
int node_flush(struct vfs *v, struct node *n);
int node_truncate(struct vfs *v, struct node *n, uint64_t size);
/* The kernel should forget what it cached of .snapshots/name (a snapshot
 * made or deleted outside a FUSE request); no lock held. */
void vfs_inval_snapshot(struct vfs *v, const char *name);
/* Fill buf from ino's extents in view (holes as zeros); lock NOT held. */
int vfs_read_extents(struct vfs *v, int64_t view, uint64_t ino, void *buf,
		     size_t len, uint64_t off);

/* What the composition root runs around a mount's serve loop (any may be
 * NULL): started after the fork and before serving (a remote's
 * connections and threads belong to the serving process), stopping when
 * the loop has ended (before vfs_close), closed after vfs_close. */
struct vfs_mount_hooks {
	void (*started)(struct vfs *v, void *arg);
	void (*stopping)(struct vfs *v, void *arg);
	void (*closed)(struct vfs *v, void *arg);
	/* Once the kernel's INIT is answered: the connection's descriptor
	 * and the INIT bytes, for a keeper to hand to a later process. */
	void (*connected)(int fuse_fd, const void *init, size_t len, void *arg);
	void *arg;
	/* Serve a connection another process mounted instead of mounting
	 * (adopt_init_len > 0): its /dev/fuse descriptor and the INIT
	 * request it got, replayed here since the kernel sends INIT once. */
	int adopt_fd;
	const void *adopt_init;
	size_t adopt_init_len;
	unsigned fh_gen;	/* of this process's handles: 1-65535 */
	int adopt_crashed;	/* the earlier process crashed (writes lost) */
};

/* vfs_mount_main's answer when SIGUSR2 stopped it: the mount is left in
 * place, its connection with whoever holds a copy (a keeper). */
#define VFS_DETACHED 1

/* Serve the volume at mountpoint until unmounted (or SIGUSR2: detached).  opts: comma-separated
 * FUSE options (allow_other, ro, ...) and tresor's own (README).  Without
 * foreground it returns in the parent once the mount is ready (the child
 * serves).  The mount's source (mountinfo, df, findmnt) is STORE#VOLUME,
 * the store's real path: the spelling of an fstab line.  -ENOTEMPTY: the
 * mount point holds files the mount would hide (opts "nonempty" allows). */
int vfs_mount_main(struct store *st, const char *volume,
		   const char *mountpoint, const char *opts, int foreground,
		   const struct vfs_mount_hooks *hooks);

/* The source a mount of volume of the store in dir shows (and an fstab
 * line names): "REALPATH#VOLUME". */
void vfs_mount_source(const char *dir, const char *volume, char *out, size_t size);
/* 1 if mountpoint is a tresor mount now, its source in src (unescaped);
 * 0 if it is not (or is another kind of mount). */
int vfs_mounted_at(const char *mountpoint, char *src, size_t size);
/* The same for a path taken as it is: no realpath(), which would stat a
 * mount nobody serves yet (a kept one, tools/keeper.h) and wait. */
int vfs_mounted_at_path(const char *path, char *src, size_t size);

/* 1 if the index still names pack name (takes ctx->lock): the fetcher
 * asks before installing a pack fetched for a read (fetch.h). */
int vfs_pack_wanted(void *arg, const uint8_t name[PACK_NAME_LEN]);

/* Commit: persist clean nodes' attributes, sync the pack, commit the index
 * (ctx->lock held). */
int vfs_commit(struct vfs *v);

int64_t vfs_now(void);

/*
 * Take a snapshot of the volume at one instant: pull the kernel's dirty
 * pages in (syncfs), hold every open file's data lock, flush, and record
 * the epoch.  Writes that complete before the call are in it; none is
 * torn.  Takes and releases the locks itself.  name and pinned as
 * ns_snapshot_create's.
 */
int vfs_snapshot(struct vfs *v, const char *name, int64_t time, int pinned,
		 struct snapshot_info *si);

/*
 * A snapshot set's member (tools/cmd_snapshot.c): the instant of
 * vfs_snapshot (syncfs, flush, commit), then every write held until
 * vfs_snapshot_release, while another process records the set's rows in
 * one transaction.  *epoch is the volume's current epoch, the one the
 * set's snapshot of it will show.  Release reads the epoch back from the
 * index, so rows written after it are born after the snapshot whether
 * or not the holder committed.
 */
struct vfs_hold;
int vfs_snapshot_hold(struct vfs *v, int64_t *epoch, struct vfs_hold **h);
int vfs_snapshot_release(struct vfs *v, struct vfs_hold *h);

/* Inode numbers the kernel sees: the high 24 bits say which view (the
 * snapshot id, never reused: 16 million snapshots per store), the low 40
 * the inode (vfs_alloc_ino stops below INO_LIVE_MAX). */
#define INO_SLOT_SHIFT 40
#define INO_LIVE_MAX (1ull << INO_SLOT_SHIFT)
#define INO_SLOT(ino) ((uint64_t)(ino) >> INO_SLOT_SHIFT)
#define INO_BASE(ino) ((uint64_t)(ino) & ((1ull << INO_SLOT_SHIFT) - 1))
#define SLOT_SNAPDIR 0xFFFFFFull
#define SNAPDIR_INO ((SLOT_SNAPDIR << INO_SLOT_SHIFT) | 1)
#define SNAP_INO(id, ino) (((uint64_t)(id) << INO_SLOT_SHIFT) | (ino))
#define SNAPDIR_NAME ".snapshots"

#endif
