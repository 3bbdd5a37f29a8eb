/*
 * progress.h - one progress line for long commands (push, recover, check,
 * prune, restore): bytes, rate and ETA, redrawn at most 4 times a second
 * on stderr when stderr is a terminal; silent otherwise, so logs and
 * journald never fill with it.  TRESOR_PROGRESS=0 silences it, =1 forces
 * it (tests).
 */
#ifndef TRESOR_PROGRESS_H
#define TRESOR_PROGRESS_H

#include <stdint.h>

struct progress {
	const char *what;	/* "push offsite", "recover", ... */
	uint64_t total;		/* bytes expected, 0 if unknown */
	uint64_t done;
	double start, last;	/* monotonic seconds */
	int on;			/* drawing at all */
	int drawn;		/* a line is on the screen */
	const char *unit;	/* NULL: bytes; else counted things ("snapshots"),
				 * set after progress_start */
};

void progress_start(struct progress *p, const char *what, uint64_t total);
/* Set the bytes done so far (and the total, if it changed; 0 keeps it). */
void progress_set(struct progress *p, uint64_t done, uint64_t total);
/* A callback form of progress_set for the library (arg is the progress). */
void progress_cb(void *arg, uint64_t done, uint64_t total);
/* Clear the line. */
void progress_end(struct progress *p);

#endif
