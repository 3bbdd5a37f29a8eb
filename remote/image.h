/*
 * image.h - images of the index on a remote (docs/FORMAT.md §15.5): a
 * copy of the index file, cut into parts, each compressed and sealed so
 * that it authenticates only as its part of that image of that object.
 * A push writes one now and then (index_image makes the file); recovery
 * fetches the newest as its index file and applies only the deltas after.
 */
#ifndef TRESOR_IMAGE_H
#define TRESOR_IMAGE_H

#include "repo.h"

/* Bytes of the index file per part (the last one is shorter). */
#define IMAGE_PART_SIZE (32u << 20)

/* Remote key of part p of image id of object n:
 * "image/NNNNNNNNNNNNNNNN-ID.PPPPPPPP". */
void image_part_key(uint64_t n, const uint8_t id[REPO_IMAGE_ID_LEN], uint32_t p,
		    char *key, size_t size);

/* How many parts an index file of size bytes is cut into. */
uint32_t image_part_count(uint64_t size);

/* Parse an image part's key: -EINVAL if key is no such key. */
int image_parse_key(const char *key, uint64_t *n, uint8_t id[REPO_IMAGE_ID_LEN], uint32_t *p);

/*
 * Send the index file at path as the image of object n under id (new and
 * random: plain puts, nothing is replaced), part by part, and set h's
 * image fields to name it.  *sent: bytes put.  Remote errors as
 * remote_put (remote_error(r) says what failed).
 */
int image_put(struct remote *r, const struct store_keys *keys, uint64_t n,
	      const uint8_t id[REPO_IMAGE_ID_LEN], const char *path,
	      struct repo_meta_hdr *h, uint64_t *sent);

/*
 * Fetch part p of the image h names and authenticate it; *len: its bytes
 * of the index file, in *out (malloc'd).  -ENODATA: missing; -EBADMSG:
 * fails authentication or has the wrong length.
 */
int image_get_part(struct remote *r, const struct store_keys *keys,
		   const struct repo_meta_hdr *h, uint32_t p, uint8_t **out, size_t *len,
		   uint64_t *fetched);

/*
 * Fetch the image h names (h->image, id, parts, size), authenticate every
 * part and write the index file at path (made anew, fsync'ed).  -ENODATA:
 * a part is missing; -EBADMSG: one fails authentication or the sizes do
 * not add up (failed, if not NULL, names the part's key).
 */
int image_get(struct remote *r, const struct store_keys *keys,
	      const struct repo_meta_hdr *h, const char *path,
	      char *failed, size_t fsize);

#endif
