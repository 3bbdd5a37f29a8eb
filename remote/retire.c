/*
 * retire.c - what a push lets go of on the remote, once the new state is
 * out (retire.h): retention renewed only from the newest image on, freed
 * packs deleted after their grace, metadata a newer image made
 * unnecessary swept.
 *
 * Remote deletion is slow on purpose (I6, docs/DESIGN.md): everything
 * stays until the delta or image that stops needing it is published, then
 * for the grace period, then until its Object Lock retention has passed.
 * So the remote restores at every moment.  No index transaction is open
 * during a remote call (a mounted daemon must not wait for the network);
 * what succeeded is noted after, and a push killed in between does the
 * rest next time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../chunker/buf.h"
#include "../chunker/util.h"
#include "image.h"
#include "retire.h"

#define NS 1000000000LL

int retire_renew_meta(struct store *st, struct remote_cfg *c, struct remote *r,
		      const struct repo_meta_hdr *newest, const char *key_object,
		      int64_t until, uint64_t *retained)
{
	int err = remote_retain(r, "tresor-repo", c->lock_mode, until);
	if (!err)
		err = remote_retain(r, "keys/key", c->lock_mode, until);
	/* the current key file, after a passphrase change (push_key) */
	int later = key_object[0] && strcmp(key_object, "keys/key");
	if (!err && later)
		err = remote_retain(r, key_object, c->lock_mode, until);
	/* The objects a recovery reads: from the newest image on.  Those
	 * below are not renewed: they wait for their deletion (as freed
	 * packs do), which their retention must not hold up for ever. */
	uint64_t from = c->meta_floor ? c->meta_floor : 1;
	if (!newest->v1 && !newest->v2 && newest->image > from)
		from = newest->image;
	for (uint64_t n = from; n < c->next_meta && !err; n++) {
		char key[64];
		repo_meta_key(n, key, sizeof(key));
		err = remote_retain(r, key, c->lock_mode, until);
		if (err == -ENOENT)	/* a slot a dead push skipped past */
			err = 0;
		*retained += !err;
	}
	/* The newest image: the one a recovery starts from. */
	for (uint32_t p = 0; !newest->v1 && !newest->v2 && newest->image &&
			     p < newest->image_parts && !err; p++) {
		char key[96];
		image_part_key(newest->image, newest->image_id, p, key, sizeof(key));
		err = remote_retain(r, key, c->lock_mode, until);
		*retained += !err;
	}
	if (!err) {
		*retained += 2 + later;
		err = remote_cfg_set_meta_lock(st->ix, c->id, until);
		c->meta_lock_until = until;
	}
	return err;
}

/*
 * Delete the freed packs whose grace (from when the delta not naming them
 * was published) and retention have both passed; count the rest.  A
 * local pack_trash row is dropped once no remote holds or awaits the pack.
 * As above, no index transaction is open during the remote calls.  The
 * remote restores at every moment meanwhile (I6, docs/DESIGN.md).
 */
int retire_packs(struct store *st, struct remote_cfg *c, struct remote *r,
		 int64_t grace, struct push_result *res)
{
	int64_t now = repo_now_ns();
	struct remote_gone_pack *gone;
	/* remote_cfg_gone dates by the remote's grace; a push may be given another. */
	struct remote_cfg g = *c;
	g.grace_ns = grace;
	size_t ng = remote_cfg_gone(st->ix, &g, &gone);
	char *deleted = ng ? calloc(ng, 1) : NULL;
	int err = ng && !deleted ? -ENOMEM : 0;
	for (size_t i = 0; i < ng && !err; i++) {
		if (gone[i].due > now) {
			res->awaiting_deletion++;
			continue;
		}
		char key[128];
		repo_pack_key(gone[i].name, key, sizeof(key));
		err = remote_delete(r, key);
		if (!err) {
			deleted[i] = 1;
			res->deleted++;
		}
	}
	for (size_t i = 0; i < ng && err && deleted; i++)
		res->awaiting_deletion += !deleted[i] && gone[i].due <= now;
	/* What went is noted in one short transaction, also after a failure. */
	int e = index_begin(st->ix);
	for (size_t i = 0; i < ng && !e && deleted; i++)
		if (deleted[i])
			e = remote_cfg_note_deleted(st->ix, c->id, gone[i].name);
	if (!e)
		e = index_commit(st->ix);
	else
		index_rollback(st->ix);
	free(deleted);
	free(gone);
	return err ? err : e;
}

/*
 * Metadata a newer image made unnecessary (FORMAT.md §15.5).  Let b be the
 * newest image on this store's chain (at most the one the newest object
 * names) that was published at least the grace ago and below which no
 * retention runs any more: a recovery that started before b was published
 * (and so may read the image before it and the deltas after that) had the
 * grace to finish, and one that starts now reads nothing below b.  Then
 * meta/floor .. meta/(b - 1) and every image of an object below b (or of b
 * under another id: a push that died sending it) are deleted, and floor
 * becomes b.  What to delete comes from the index (floor, remote_image):
 * a listing of image/ is used only to find images this store did not
 * write itself (an earlier writer's, before a recovery or a takeover),
 * and only below b.  Remote calls run outside any index transaction; a
 * push killed among them deletes the rest next time.
 */
struct sweep {
	uint64_t below;
	const uint8_t *keep;		/* b's image id */
	char **keys;
	size_t n, cap;
};

static int sweep_cb(void *arg, const char *key, uint64_t size)
{
	(void)size;
	struct sweep *sw = arg;
	uint64_t n;
	uint8_t id[REPO_IMAGE_ID_LEN];
	uint32_t p;
	if (image_parse_key(key, &n, id, &p) || n > sw->below ||
	    (n == sw->below && !memcmp(id, sw->keep, REPO_IMAGE_ID_LEN)))
		return 0;
	char **v = buf_grow(sw->keys, &sw->cap, sw->n + 1, sizeof(*sw->keys));
	if (!v)
		return -ENOMEM;
	sw->keys = v;
	return (v[sw->n++] = strdup(key)) ? 0 : -ENOMEM;
}

int retire_meta(struct store *st, struct remote_cfg *c, struct remote *r,
		const struct repo_meta_hdr *newest, int64_t grace,
		struct push_result *res)
{
	if (newest->v1 || newest->v2 || !newest->image)
		return 0;
	struct remote_image_row *rows;
	size_t nr;
	int err = remote_cfg_images(st->ix, c->id, &rows, &nr);
	if (err)
		return err;
	int64_t now = repo_now_ns();
	uint64_t b = 0, floor = c->meta_floor ? c->meta_floor : 1;
	const uint8_t *keep = NULL;
	for (size_t i = 0; i < nr; i++) {
		const struct remote_image_row *w = &rows[i];
		if (!w->published || w->meta > newest->image)
			continue;
		if (w->published <= now - grace && w->lock_until <= now / NS) {
			if (w->meta >= b) {
				b = w->meta;
				keep = w->id;
			}
		} else if (w->meta > floor) {
			res->meta_awaiting++;	/* a newer image, still in its grace */
		}
	}
	/* keep points into rows, which the loop below compacts: copied
	 * first (a row after b's, moved onto it, once made b look like
	 * another writer's and nothing was deleted). */
	uint8_t keep_id[REPO_IMAGE_ID_LEN] = { 0 };
	if (b)
		memcpy(keep_id, keep, REPO_IMAGE_ID_LEN);
	/* Rows of images below b (and b's under other ids). */
	size_t ngo = 0;
	for (size_t i = 0; i < nr && b; i++)
		if (rows[i].meta < b || (rows[i].meta == b && memcmp(rows[i].id, keep_id,
								      REPO_IMAGE_ID_LEN)))
			rows[ngo++] = rows[i];
	/* b's image is the newest one: its id must be the one the newest
	 * object names (two at one number would be another writer's). */
	if (b && b == newest->image && memcmp(keep_id, newest->image_id, REPO_IMAGE_ID_LEN))
		b = 0;
	if (!b || (b <= floor && !ngo)) {
		free(rows);
		return 0;
	}
	struct sweep sw = { .below = b, .keep = keep_id };
	if (b > floor)	/* a new round: images of others too */
		err = remote_list(r, "image/", sweep_cb, &sw);
	for (size_t i = 0; i < ngo && !err; i++)
		for (uint32_t p = 0; p < rows[i].parts && !err; p++) {
			char key[96];
			image_part_key(rows[i].meta, rows[i].id, p, key, sizeof(key));
			err = remote_delete(r, key);
			res->meta_deleted += !err;
		}
	for (size_t i = 0; i < sw.n && !err; i++) {
		uint64_t n;
		uint8_t id[REPO_IMAGE_ID_LEN];
		uint32_t p;
		int known = 0;	/* deleted above already */
		image_parse_key(sw.keys[i], &n, id, &p);
		for (size_t j = 0; j < ngo && !known; j++)
			known = rows[j].meta == n && !memcmp(rows[j].id, id, REPO_IMAGE_ID_LEN) &&
				p < rows[j].parts;
		if (known)
			continue;
		err = remote_delete(r, sw.keys[i]);
		res->meta_deleted += !err;
	}
	for (uint64_t k = floor; k < b && !err; k++) {
		char key[64];
		repo_meta_key(k, key, sizeof(key));
		err = remote_delete(r, key);
		res->meta_deleted += !err;
		crash_point("push-meta-delete");
	}
	for (size_t i = 0; i < sw.n; i++)
		free(sw.keys[i]);
	free(sw.keys);
	if (!err)
		err = index_begin(st->ix);
	if (!err) {
		for (size_t i = 0; i < ngo && !err; i++)
			err = remote_cfg_image_forget(st->ix, c->id, rows[i].id);
		if (!err && b > floor)
			err = remote_cfg_set_floor(st->ix, c->id, b);
		if (!err)
			err = index_commit(st->ix);
		else
			index_rollback(st->ix);
		if (!err)
			c->meta_floor = b > floor ? b : floor;
	}
	free(rows);
	return err;
}

