/*
 * buf.h - the one way tresor grows an array or a byte buffer: double its
 * capacity until it holds what is needed, so n appends cost O(n).
 *
 *	struct item *v = NULL;
 *	size_t n = 0, cap = 0;
 *	...
 *	struct item *nv = buf_grow(v, &cap, n + 1, sizeof(*v));
 *	if (!nv)
 *		goto nomem;	// v and cap are unchanged, still valid
 *	v = nv;
 *	v[n++] = x;
 */
#ifndef TRESOR_BUF_H
#define TRESOR_BUF_H

#include <stddef.h>

/* p (may be NULL) with room for at least need elements of elem bytes,
 * *cap updated; p itself if it had room.  NULL on overflow or when memory
 * runs out: p and *cap are then untouched.  The first allocation holds
 * at least 16 elements. */
void *buf_grow(void *p, size_t *cap, size_t need, size_t elem);

#endif
