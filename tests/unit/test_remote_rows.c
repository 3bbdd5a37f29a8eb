/*
 * test_remote_rows.c - the replication tables (remote/repo.c): which
 * packs a remote lacks, holds and freed as a push notes them, when freed
 * packs are due, and the folder walk SFTP and WebDAV share (listing.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "../../chunker/catalog.h"
#include "../../remote/listing.h"
#include "../../remote/repo.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct seen {
	int n;
	int64_t sum;		/* of val */
	uint8_t last[PACK_NAME_LEN];
};

static int count(void *arg, const struct remote_cfg_pack *p)
{
	struct seen *s = arg;
	s->n++;
	s->sum += p->val;
	memcpy(s->last, p->name, PACK_NAME_LEN);
	return 0;
}

static struct seen packs(struct index *ix, enum remote_cfg_packs_of which, int64_t id,
			 int64_t before)
{
	struct seen s = { 0 };
	CHECK_EQ(remote_cfg_packs(ix, which, id, before, count, &s), 0);
	return s;
}

static void test_rows(const char *dir)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/index.db", dir);
	struct index *ix;
	CHECK_EQ(index_open(path, 1, &ix), 0);
	uint8_t name[3][PACK_NAME_LEN];
	int64_t row[3];
	for (int i = 0; i < 3; i++) {
		memset(name[i], 0x10 * (i + 1), PACK_NAME_LEN);
		CHECK_EQ(catalog_pack_insert(ix, name[i], &row[i]), 0);
		if (i < 2)	/* the third stays open */
			CHECK_EQ(catalog_pack_finished(ix, row[i], 100 * (i + 1)), 0);
	}
	struct remote_cfg c = { 0 };
	snprintf(c.name, sizeof(c.name), "r");
	snprintf(c.url, sizeof(c.url), "/nowhere");
	CHECK_EQ(remote_cfg_add(ix, &c), 0);
	CHECK_EQ(remote_cfg_find(ix, "r", &c), 0);

	struct seen s = packs(ix, REMOTE_PACKS_ALL, 0, 0);
	CHECK_EQ(s.n, 2);
	CHECK(!memcmp(s.last, name[1], PACK_NAME_LEN));	/* by name */
	s = packs(ix, REMOTE_PACKS_LACKING, c.id, 0);
	CHECK_EQ(s.n, 2);
	CHECK_EQ(s.sum, 300);
	uint64_t np, nb;
	CHECK_EQ(remote_cfg_pending(ix, c.id, &np, &nb), 0);
	CHECK_EQ(np, 2);
	CHECK_EQ(nb, 300);

	/* pushed the first, locked until 50 */
	CHECK_EQ(remote_cfg_note_held(ix, c.id, name[0], 50), 0);
	s = packs(ix, REMOTE_PACKS_LACKING, c.id, 0);
	CHECK_EQ(s.n, 1);
	CHECK(!memcmp(s.last, name[1], PACK_NAME_LEN));
	s = packs(ix, REMOTE_PACKS_HELD, c.id, 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.sum, 100);
	CHECK_EQ(packs(ix, REMOTE_PACKS_EXPIRING, c.id, 50).n, 0);
	s = packs(ix, REMOTE_PACKS_EXPIRING, c.id, 51);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.sum, 50);
	CHECK_EQ(remote_cfg_note_locked(ix, c.id, name[0], 60), 0);
	CHECK_EQ(packs(ix, REMOTE_PACKS_EXPIRING, c.id, 51).n, 0);
	CHECK_EQ(packs(ix, REMOTE_PACKS_FREED, c.id, 0).n, 0);

	/* a held pack the index no longer names is freed, then gone */
	CHECK_EQ(remote_cfg_note_held(ix, c.id, name[2], 0), 0);
	s = packs(ix, REMOTE_PACKS_FREED, c.id, 0);
	CHECK_EQ(s.n, 0);	/* the open pack is still named */
	uint8_t lost[PACK_NAME_LEN];
	memset(lost, 0x77, sizeof(lost));
	CHECK_EQ(remote_cfg_note_held(ix, c.id, lost, 7), 0);
	s = packs(ix, REMOTE_PACKS_FREED, c.id, 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.sum, 7);
	CHECK_EQ(remote_cfg_note_freed(ix, c.id, lost, 1000, 7), 0);
	CHECK_EQ(packs(ix, REMOTE_PACKS_FREED, c.id, 0).n, 0);
	c.grace_ns = 5;
	struct remote_gone_pack *g;
	CHECK_EQ(remote_cfg_gone(ix, &c, &g), 1);
	CHECK(!memcmp(g[0].name, lost, PACK_NAME_LEN));
	CHECK_EQ(g[0].due, 7000000000LL);	/* the lock outlasts the grace */
	free(g);
	CHECK_EQ(remote_cfg_note_deleted(ix, c.id, lost), 0);
	CHECK_EQ(remote_cfg_gone(ix, &c, &g), 0);
	free(g);

	/* a push's intent: while its pack is here, nothing to free; a row
	 * whose pack is gone here is freed with its retention; once held,
	 * it is freed through remote_pack, and the freeing drops both */
	uint8_t sent[PACK_NAME_LEN];
	memset(sent, 0x55, sizeof(sent));
	CHECK_EQ(remote_cfg_note_sending(ix, c.id, name[1], 30), 0);
	CHECK_EQ(remote_cfg_note_sending(ix, c.id, sent, 40), 0);
	CHECK_EQ(remote_cfg_note_sending(ix, c.id, sent, 20), 0);	/* keeps 40 */
	s = packs(ix, REMOTE_PACKS_FREED, c.id, 0);
	CHECK_EQ(s.n, 1);
	CHECK(!memcmp(s.last, sent, PACK_NAME_LEN));
	CHECK_EQ(s.sum, 40);
	CHECK_EQ(remote_cfg_note_held(ix, c.id, sent, 40), 0);	/* held: freed via remote_pack */
	s = packs(ix, REMOTE_PACKS_FREED, c.id, 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.sum, 40);
	CHECK_EQ(remote_cfg_note_freed(ix, c.id, sent, 2000, 40), 0);
	CHECK_EQ(packs(ix, REMOTE_PACKS_FREED, c.id, 0).n, 0);
	CHECK_EQ(remote_cfg_gone(ix, &c, &g), 1);
	free(g);
	CHECK_EQ(remote_cfg_note_deleted(ix, c.id, sent), 0);

	/* a takeover forgets it all; a recovery holds it all */
	CHECK_EQ(remote_cfg_forget_packs(ix, c.id), 0);
	CHECK_EQ(packs(ix, REMOTE_PACKS_HELD, c.id, 0).n, 0);
	CHECK_EQ(remote_cfg_note_all_held(ix, c.id), 0);
	CHECK_EQ(packs(ix, REMOTE_PACKS_LACKING, c.id, 0).n, 0);
	CHECK_EQ(packs(ix, REMOTE_PACKS_HELD, c.id, 0).n, 2);

	CHECK_EQ(remote_cfg_set_pushed(ix, c.id, 9, 4, 1, 2), 0);
	uint64_t min;
	CHECK_EQ(remote_cfg_min_seq(ix, &min), 0);
	CHECK_EQ(min, 9);
	index_close(ix);
}

/* A tree of folders "", "a/", "a/b/", "c/", each with one file "f". */
static int fake_dir(struct remote *r, const char *dir, const char *prefix,
		    struct listing_dirs *todo, remote_list_cb cb, void *arg)
{
	(void)r;
	static const char *const tree[][2] = { { "", "a/" }, { "", "c/" }, { "a/", "a/b/" } };
	char key[64];
	snprintf(key, sizeof(key), "%sf", dir);
	int rc = strncmp(key, prefix, strlen(prefix)) ? 0 : cb(arg, key, 1);
	for (size_t i = 0; i < sizeof(tree) / sizeof(tree[0]) && !rc; i++)
		if (!strcmp(tree[i][0], dir) && listing_dir_may_match(tree[i][1], prefix))
			rc = listing_dirs_push(todo, strdup(tree[i][1]));
	return rc;
}

static int collect(void *arg, const char *key, uint64_t size)
{
	(void)size;
	strcat(arg, key);
	strcat(arg, " ");
	return 0;
}

static void test_walk(void)
{
	char got[256] = "";
	CHECK_EQ(listing_walk(NULL, "", fake_dir, collect, got), 0);
	CHECK(!strcmp(got, "f c/f a/f a/b/f "));
	got[0] = 0;
	CHECK_EQ(listing_walk(NULL, "a/b", fake_dir, collect, got), 0);
	CHECK(!strcmp(got, "a/b/f "));
	got[0] = 0;
	CHECK_EQ(listing_walk(NULL, "a/", fake_dir, collect, got), 0);
	CHECK(!strcmp(got, "a/f a/b/f "));
}

int main(void)
{
	char dir[] = "/tmp/tresor-test-remote-rows-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	test_rows(dir);
	test_walk();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_EQ(system(cmd), 0);
	return CHECK_DONE();
}
