/*
 * changelog.h - what changed in the index since a point, as a compact
 * delta another index can apply: the metadata half of offsite replication
 * (push sends deltas after the packs they name; recovery applies them in
 * order to an empty index).
 *
 * SQLite triggers (created by changelog_enable, so stores without a
 * remote pay nothing) note the primary key of every row inserted,
 * updated or deleted in the replicated tables.  A delta holds, for each
 * key noted after a sequence number, the row as it is now, or a deletion
 * if it is gone: its size follows the change, not the store.
 *
 * Delta layout (all little-endian), before the caller compresses and
 * seals it: "TRSDELT1", u64 from_seq, u64 to_seq, u32 record count, then
 * records: u8 table id, u8 op (1 upsert, 2 delete), u8 value count, then
 * the values: u8 type (1 int64, 2 text, 3 blob, 4 null) and for int64
 * 8 bytes, for text and blob a u32 length and the bytes.  An upsert
 * carries every column in schema order; a delete carries the key.
 */
#ifndef TRESOR_CHANGELOG_H
#define TRESOR_CHANGELOG_H

#include <stddef.h>
#include <stdint.h>
#include "index.h"

/* Create the changelog table and its triggers (idempotent). */
int changelog_enable(struct index *ix);

/* The newest sequence number noted (0 if none). */
int changelog_last(struct index *ix, uint64_t *seq);

/*
 * Build the delta of everything noted in (from, to] into a malloc'd
 * buffer.  Run it inside one read transaction together with whatever
 * decides `to`, so the rows are one consistent state.
 */
int changelog_export(struct index *ix, uint64_t from, uint64_t to,
		     uint8_t **buf, size_t *len);

/* Every row of the replicated tables as one delta (a first push). */
int changelog_export_full(struct index *ix, uint64_t to, uint8_t **buf,
			  size_t *len);

/* Apply a delta to ix (inside the caller's write transaction).  -EBADMSG
 * if it is malformed, -EPROTONOSUPPORT if its meta row format_version is
 * newer than STORE_FORMAT_VERSION (a store of a newer tresor wrote it);
 * nothing is applied then. */
int changelog_apply(struct index *ix, const uint8_t *buf, size_t len,
		    uint64_t *from, uint64_t *to);

/* The store format a delta's meta row format_version gives into *format
 * (0: the delta has no such row: it changed no format), checking the
 * delta's structure.  0, or -EBADMSG if it is malformed. */
int changelog_format(const uint8_t *buf, size_t len, int64_t *format);

/* Forget notes up to seq (after the delta holding them is safely sent). */
int changelog_trim(struct index *ix, uint64_t seq);

#endif
