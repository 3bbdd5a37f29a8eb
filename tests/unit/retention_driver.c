/*
 * retention_driver.c - a command-line front end to fs/retention.c for the
 * integration test that compares tresor's decisions with restic's
 * (tests/integration/test_retention_restic.py).  Not a test by itself.
 *
 *   retention_driver [--keep-last N] [--keep-hourly N] [--keep-daily N]
 *                    [--keep-weekly N] [--keep-monthly N] [--keep-yearly N]
 *                    [--keep-within DUR]  < snapshots
 *
 * stdin: one snapshot per line, "NAME TIME_NS PINNED" (PINNED 0 or 1).
 * stdout: one line per snapshot, in input order, "NAME keep|remove REASONS".
 * Local time is the process's TZ.  Exit status 0, 1 if retention_apply
 * failed, 2 on bad usage or input.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "retention.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parse a count (-1 or more) into *out; 0 on success. */
static int parse_count(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < -1 || v > 1000000000)
		return -1;
	*out = (int)v;
	return 0;
}

/* Fill p from argv; 0 on success, -1 on bad usage. */
static int parse_args(int argc, char **argv, struct retention_policy *p)
{
	static const char *const names[] = {
		"--keep-last", "--keep-hourly", "--keep-daily",
		"--keep-weekly", "--keep-monthly", "--keep-yearly",
	};
	int *const fields[] = {
		&p->last, &p->hourly, &p->daily,
		&p->weekly, &p->monthly, &p->yearly,
	};
	int i;
	size_t k;

	for (i = 1; i < argc; i += 2) {
		if (i + 1 >= argc)
			return -1;
		if (!strcmp(argv[i], "--keep-within")) {
			if (retention_parse_duration(argv[i + 1],
						     &p->within_ns))
				return -1;
			continue;
		}
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (!strcmp(argv[i], names[k]))
				break;
		if (k == sizeof(names) / sizeof(names[0]) ||
		    parse_count(argv[i + 1], fields[k]))
			return -1;
	}
	return 0;
}

/* Read all "NAME TIME_NS PINNED" lines into a malloc'd array (names are
 * malloc'd too); -1 on bad input or out of memory. */
static int read_snaps(FILE *in, struct retention_snap **out, size_t *nout)
{
	struct retention_snap *s = NULL, *ns;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t linecap = 0;
	int ret = -1;

	while (getline(&line, &linecap, in) > 0) {
		char name[256];
		int64_t t;
		int pinned;

		if (line[0] == '\n')
			continue;
		if (sscanf(line, "%255s %" SCNd64 " %d", name, &t, &pinned) != 3)
			goto out;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			ns = realloc(s, cap * sizeof(*s));
			if (!ns)
				goto out;
			s = ns;
		}
		memset(&s[n], 0, sizeof(s[n]));
		s[n].name = strdup(name);
		if (!s[n].name)
			goto out;
		s[n].time_ns = t;
		s[n].pinned = pinned != 0;
		n++;
	}
	ret = 0;
out:
	free(line);
	if (ret) {
		while (n)
			free((char *)s[--n].name);
		free(s);
		return ret;
	}
	*out = s;
	*nout = n;
	return 0;
}

int main(int argc, char **argv)
{
	struct retention_policy p = { 0 };
	struct retention_snap *s = NULL;
	size_t n = 0, i;
	int r;

	if (parse_args(argc, argv, &p)) {
		fprintf(stderr, "usage: retention_driver [--keep-last|hourly|"
			"daily|weekly|monthly|yearly N] [--keep-within DUR] "
			"< 'NAME TIME_NS PINNED' lines\n");
		return 2;
	}
	if (read_snaps(stdin, &s, &n)) {
		fprintf(stderr, "retention_driver: bad input line\n");
		return 2;
	}
	r = retention_apply(&p, s, n);
	if (r)
		fprintf(stderr, "retention_driver: %s\n", strerror(-r));
	for (i = 0; i < n && !r; i++)
		printf("%s %s %s\n", s[i].name, s[i].keep ? "keep" : "remove",
		       s[i].reasons);
	for (i = 0; i < n; i++)
		free((char *)s[i].name);
	free(s);
	return r ? 1 : 0;
}
