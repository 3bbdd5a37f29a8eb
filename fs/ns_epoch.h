/*
 * ns_epoch.h - the namespace across epochs: taking, pinning and deleting
 * snapshots, and what lies between two epochs.  Split from namespace.c,
 * whose rows and rules (namespace.h) it shares; namespace.h includes this
 * header, so callers include that one.
 */
#ifndef TRESOR_NS_EPOCH_H
#define TRESOR_NS_EPOCH_H

#include "namespace.h"

/*
 * Snapshot names.  A snapshot taken at time (ns; local time) is called
 * YYYY-MM-DD, else YYYY-MM-DD_HHMM, else YYYY-MM-DD_HHMMSS, else that with
 * .2, .3, ...: the first of these that sorts (byte order, as ls shows
 * them) after every name the volumes gave a snapshot taken at or before
 * time, and that none of them has.  So names sort in the order the
 * snapshots were taken, and a name is not given again after a prune
 * (which always keeps the newest snapshot).  Older stores' names
 * (YYYY-MM-DD.N) sort before the new names of their day.  Names not
 * starting with a digit (chosen by a person) take no part.
 * ns_snapshot_name: the name the next snapshot at time gets in every one
 * of the n volumes (-EEXIST: none left).
 */
int ns_snapshot_name(struct index *ix, const int64_t *vols, size_t n, int64_t time,
		     char *name, size_t size);
/* Record the volume's current epoch as snapshot name (NULL: the one
 * ns_snapshot_name gives; else exactly name, -EEXIST if taken), pinned
 * (exempt from prune) or not, and start a new epoch: two rows, whatever
 * the volume's size. */
int ns_snapshot_create(struct index *ix, int64_t vol, const char *name,
		       int64_t time, int pinned, struct snapshot_info *si);
/* Snapshot set: the current epochs of the n volumes, all under one name
 * (as ns_snapshot_create's, free in every one) and one time, noted
 * as members of set, pinned or not, marked with note (NULL: none); sis[i]
 * for vols[i].  The caller holds the transaction (one for the whole set)
 * and keeps the volumes from writing meanwhile. */
int ns_snapshot_create_set(struct index *ix, const char *set,
			   const int64_t *vols, size_t n, const char *name,
			   int64_t time, int pinned, const char *note,
			   struct snapshot_info *sis);
/* Mark a snapshot (note: why, e.g. its before-snapshot hook failed; NULL
 * or "": unmark). */
int ns_snapshot_note(struct index *ix, int64_t id, const char *note);
/* The members of snapshot name of set, by volume id (*out malloc'd);
 * -ENOENT if none. */
int ns_set_members(struct index *ix, const char *set, const char *name,
		   struct snapshot_info **out, size_t *n);
/* One snapshot of a set: its name and time. */
struct set_snap {
	char name[128];
	int64_t time;	/* ns */
};
/* The snapshots of set, oldest first (*out malloc'd). */
int ns_set_list(struct index *ix, const char *set, struct set_snap **out, size_t *n);
int ns_snapshot_pin(struct index *ix, int64_t id, int pinned);
/* Delete a snapshot and every row only it kept (chunk references drop;
 * chunks left with none are garbage for the pack GC).  *rows counts the
 * rows deleted. */
int ns_snapshot_delete(struct index *ix, int64_t id, int64_t *rows);

/* Sealed bytes of chunks that only snapshot epoch e (between kept epochs
 * prev and next, next = EPOCH_ALIVE - 1 for the newest) holds. */
int ns_exclusive_bytes(struct index *ix, int64_t vol, int64_t prev,
			  int64_t e, int64_t next, uint64_t *bytes);
/* Inodes with any row born or ended in epochs (from, to]. */
int ns_changed_inodes(struct index *ix, int64_t vol, int64_t from,
			 int64_t to, uint64_t **inos, size_t *n);

#endif
