/*
 * opstats.c - FUSE operation counters and histograms (see opstats.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opstats.h"

const char *const opstat_names[OPS_COUNT] = {
	"lookup", "getattr", "setattr", "open", "create", "read", "write",
	"flush", "release", "fsync", "readdir", "mkdir", "unlink", "rename",
};

static const uint64_t bounds_us[OPSTAT_BUCKETS - 1] = { OPSTAT_BOUNDS_US };

void opstats_record(struct opstats *s, enum opstat_op op, uint64_t ns)
{
	uint64_t us = ns / 1000;
	int b = 0;
	while (b < OPSTAT_BUCKETS - 1 && us > bounds_us[b])
		b++;
	__atomic_fetch_add(&s->count[op], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->sum_ns[op], ns, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->bucket[op][b], 1, __ATOMIC_RELAXED);
}

int opstats_format(const struct opstats *s, char *buf, size_t size)
{
	size_t len = 0;
	buf[0] = 0;
	for (int op = 0; op < OPS_COUNT; op++) {
		uint64_t n = __atomic_load_n(&s->count[op], __ATOMIC_RELAXED);
		if (!n)
			continue;
		int w = snprintf(buf + len, size - len, "%s%s:%llu:%llu:", len ? " " : "",
				 opstat_names[op], (unsigned long long)n,
				 (unsigned long long)__atomic_load_n(&s->sum_ns[op], __ATOMIC_RELAXED));
		if (w < 0 || (size_t)w >= size - len)
			return -ENOSPC;
		len += w;
		for (int b = 0; b < OPSTAT_BUCKETS; b++) {
			w = snprintf(buf + len, size - len, "%s%llu", b ? "," : "",
				     (unsigned long long)__atomic_load_n(&s->bucket[op][b],
									 __ATOMIC_RELAXED));
			if (w < 0 || (size_t)w >= size - len)
				return -ENOSPC;
			len += w;
		}
	}
	return (int)len;
}

int opstats_parse(const char *line, struct opstats *s)
{
	memset(s, 0, sizeof(*s));
	const char *p = line;
	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		size_t nl = strcspn(p, ":");
		int op = -1;
		for (int i = 0; i < OPS_COUNT; i++)
			if (strlen(opstat_names[i]) == nl && !strncmp(p, opstat_names[i], nl))
				op = i;
		if (op < 0 || !p[nl])
			return -EINVAL;
		char *end;
		p += nl + 1;
		s->count[op] = strtoull(p, &end, 10);
		if (*end != ':')
			return -EINVAL;
		s->sum_ns[op] = strtoull(end + 1, &end, 10);
		if (*end != ':')
			return -EINVAL;
		p = end + 1;
		for (int b = 0; b < OPSTAT_BUCKETS; b++) {
			s->bucket[op][b] = strtoull(p, &end, 10);
			if (end == p || (b < OPSTAT_BUCKETS - 1 && *end != ','))
				return -EINVAL;
			p = end + (b < OPSTAT_BUCKETS - 1);
		}
		if (*p && *p != ' ')
			return -EINVAL;
	}
	return 0;
}
