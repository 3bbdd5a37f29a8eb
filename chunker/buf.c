/*
 * buf.c - growing arrays and byte buffers (buf.h).
 */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"

void *buf_grow(void *p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap && p)
		return p;
	size_t ncap = *cap ? *cap : 16;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return NULL;
		ncap *= 2;
	}
	if (elem && ncap > SIZE_MAX / elem)
		return NULL;
	void *np = realloc(p, ncap * elem);
	if (np)
		*cap = ncap;
	return np;
}
