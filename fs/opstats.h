/*
 * opstats.h - counts and latency histograms of a mounted volume's FUSE
 * operations, for the metrics (`tresor daemon`'s Prometheus endpoint).
 *
 * The hot path is two clock reads and three relaxed atomic adds per
 * operation; the histogram has fixed bucket bounds (OPSTAT_BOUNDS_US).
 * The figures leave the daemon through its control socket ("opstats").
 */
#ifndef TRESOR_OPSTATS_H
#define TRESOR_OPSTATS_H

#include <stddef.h>
#include <stdint.h>

enum opstat_op {
	OPS_LOOKUP, OPS_GETATTR, OPS_SETATTR, OPS_OPEN, OPS_CREATE, OPS_READ,
	OPS_WRITE, OPS_FLUSH, OPS_RELEASE, OPS_FSYNC, OPS_READDIR, OPS_MKDIR,
	OPS_UNLINK, OPS_RENAME, OPS_COUNT
};

/* Upper bounds of the buckets in microseconds; a last one is +Inf. */
#define OPSTAT_BOUNDS_US 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, \
	25000, 50000, 100000, 250000, 1000000
#define OPSTAT_BUCKETS 15

struct opstats {
	uint64_t count[OPS_COUNT];
	uint64_t sum_ns[OPS_COUNT];
	uint64_t bucket[OPS_COUNT][OPSTAT_BUCKETS];	/* not cumulative */
};

extern const char *const opstat_names[OPS_COUNT];

/* Count one operation of ns nanoseconds (any thread). */
void opstats_record(struct opstats *s, enum opstat_op op, uint64_t ns);

/* One line: "NAME:COUNT:SUM_NS:B0,B1,...,B14 ..." for ops seen at least
 * once.  Returns the length, or -ENOSPC. */
int opstats_format(const struct opstats *s, char *buf, size_t size);

/* Parse such a line back (what the metrics endpoint reads). */
int opstats_parse(const char *line, struct opstats *s);

#endif
