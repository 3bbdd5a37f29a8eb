/*
 * fuzz_s3_list.c - libFuzzer target for the S3 ListObjectsV2 page parser
 * (remote/listing.c: s3_listing_parse, s3_listing_deliver), the code
 * s3.c runs on every listing reply.  The first input byte picks the
 * remote's prefix and the listed prefix from a small table; the rest is
 * the reply body.  Checked: every entry has a key; every key handed on
 * is non-empty, starts with the listed prefix (the remote's prefix
 * removed) and came from an entry; a truncated page's token is a string;
 * nothing leaks (ASan).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "listing.h"

static const char *const remote_prefix[] = { "", "tresor/", "a/b/" };
static const char *const list_prefix[] = { "", "data/", "meta/", "data/0" };

struct seen {
	const struct s3_listing *p;
	const char *want;	/* the listed prefix */
	size_t calls;
	int stop_at;
};

static int on_key(void *arg, const char *key, uint64_t size)
{
	struct seen *s = arg;

	(void)size;
	if (!key || !*key || strncmp(key, s->want, strlen(s->want)))
		abort();
	if (++s->calls > s->p->n)
		abort();
	return s->stop_at && (int)s->calls == s->stop_at ? 7 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *rp = remote_prefix[data[0] % 3];
	const char *lp = list_prefix[(data[0] >> 2) % 4];
	char full[64];
	struct s3_listing p;

	strcpy(full, rp);
	strcat(full, lp);
	memset(&p, 0, sizeof(p));
	int rc = s3_listing_parse((const char *)data + 1, size - 1, &p);
	if (rc != 0 && rc != -ENOMEM && rc != -EBADMSG)
		abort();
	for (size_t i = 0; i < p.n; i++)
		if (!p.ents[i].key)
			abort();
	if (p.token && strlen(p.token) > (64u << 10))
		abort();
	struct seen s = { .p = &p, .want = lp, .stop_at = data[0] >> 4 };
	int d = s3_listing_deliver(&p, full, strlen(rp), on_key, &s);
	if (d != 0 && d != 7)
		abort();
	s3_listing_free(&p);
	return 0;
}
