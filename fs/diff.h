/*
 * diff.h - what changed between two views (snapshots) of a volume.
 */
#ifndef TRESOR_DIFF_H
#define TRESOR_DIFF_H

#include <stddef.h>
#include "namespace.h"

/*
 * The changes from view a to view b of volume vol, sorted by path: one
 * malloc'd line each, "+ PATH" (added), "- PATH" (removed) or "M PATH"
 * (content or metadata changed), paths relative to the volume's root;
 * *lines malloc'd.  -errno.
 */
int diff_views(struct index *ix, int64_t vol, int64_t a, int64_t b,
	       char ***lines, size_t *n);

#endif
