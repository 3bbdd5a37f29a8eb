/*
 * image.c - images of the index on a remote (image.h, FORMAT.md §15.5).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../chunker/crypto.h"
#include "../chunker/util.h"
#include "image.h"

#define AAD_LABEL "tresor image v3"

void image_part_key(uint64_t n, const uint8_t id[REPO_IMAGE_ID_LEN], uint32_t p,
		    char *key, size_t size)
{
	char hex[2 * REPO_IMAGE_ID_LEN + 1];
	hex_encode(id, REPO_IMAGE_ID_LEN, hex);
	snprintf(key, size, "image/%016llx-%s.%08x", (unsigned long long)n, hex, p);
}

/* AAD of part p of parts: label || u64 n || id || u32 p || u32 parts. */
static size_t part_aad(uint64_t n, const uint8_t id[REPO_IMAGE_ID_LEN], uint32_t p,
		       uint32_t parts, uint8_t *aad)
{
	size_t l = strlen(AAD_LABEL);
	memcpy(aad, AAD_LABEL, l);
	put_le64(aad + l, n);
	memcpy(aad + l + 8, id, REPO_IMAGE_ID_LEN);
	put_le32(aad + l + 8 + REPO_IMAGE_ID_LEN, p);
	put_le32(aad + l + 12 + REPO_IMAGE_ID_LEN, parts);
	return l + 16 + REPO_IMAGE_ID_LEN;
}

uint32_t image_part_count(uint64_t size)
{
	return size ? (uint32_t)((size + IMAGE_PART_SIZE - 1) / IMAGE_PART_SIZE) : 1;
}

#define part_count image_part_count

int image_parse_key(const char *key, uint64_t *n, uint8_t id[REPO_IMAGE_ID_LEN], uint32_t *p)
{
	unsigned long long nn;
	unsigned pp;
	char hex[2 * REPO_IMAGE_ID_LEN + 1];
	int used = 0;
	if (strlen(key) != 6 + 16 + 1 + 2 * REPO_IMAGE_ID_LEN + 1 + 8 ||
	    sscanf(key, "image/%16llx-%32[0-9a-f].%8x%n", &nn, hex, &pp, &used) != 3 ||
	    (size_t)used != strlen(key) || strlen(hex) != 2 * REPO_IMAGE_ID_LEN ||
	    hex_decode(hex, id, REPO_IMAGE_ID_LEN))
		return -EINVAL;
	*n = nn;
	*p = pp;
	return 0;
}

int image_put(struct remote *r, const struct store_keys *keys, uint64_t n,
	      const uint8_t id[REPO_IMAGE_ID_LEN], const char *path,
	      struct repo_meta_hdr *h, uint64_t *sent)
{
	*sent = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat sb;
	int err = fstat(fd, &sb) ? -errno : 0;
	uint64_t size = err ? 0 : (uint64_t)sb.st_size;
	uint32_t parts = part_count(size);
	uint8_t *buf = err ? NULL : malloc(IMAGE_PART_SIZE);
	if (!err && !buf)
		err = -ENOMEM;
	for (uint32_t p = 0; p < parts && !err; p++) {
		uint64_t off = (uint64_t)p * IMAGE_PART_SIZE;
		size_t want = size - off < IMAGE_PART_SIZE ? size - off : IMAGE_PART_SIZE;
		err = pread_full(fd, buf, want, (off_t)off);
		if (err)
			break;
		uint8_t aad[64], *sealed = NULL;
		size_t alen = part_aad(n, id, p, parts, aad), slen = 0;
		char key[96];
		image_part_key(n, id, p, key, sizeof(key));
		err = repo_seal_blob(keys->meta, aad, alen, buf, want, &sealed, &slen);
		if (!err)
			err = remote_put(r, key, sealed, slen);
		free(sealed);
		if (!err)
			*sent += slen;
		crash_point("push-image");
	}
	free(buf);
	close(fd);
	if (err)
		return err;
	h->image = n;
	memcpy(h->image_id, id, REPO_IMAGE_ID_LEN);
	h->image_parts = parts;
	h->image_size = size;
	return 0;
}

int image_get_part(struct remote *r, const struct store_keys *keys,
		   const struct repo_meta_hdr *h, uint32_t p, uint8_t **out, size_t *len,
		   uint64_t *fetched)
{
	char key[96];
	image_part_key(h->image, h->image_id, p, key, sizeof(key));
	uint64_t off = (uint64_t)p * IMAGE_PART_SIZE;
	size_t want = h->image_size - off < IMAGE_PART_SIZE ? h->image_size - off
							    : IMAGE_PART_SIZE;
	uint8_t *sealed = NULL, *d = NULL, aad[64];
	size_t slen = 0, dl = 0, alen = part_aad(h->image, h->image_id, p, h->image_parts, aad);
	int err = remote_get(r, key, 0, 0, &sealed, &slen);
	if (err == -ENOENT)
		err = -ENODATA;
	if (fetched)
		*fetched += slen;
	if (!err)
		err = repo_open_blob(keys->meta, aad, alen, sealed, slen, &d, &dl);
	if (!err && dl != want)
		err = -EBADMSG;
	free(sealed);
	if (err) {
		free(d);
		return err;
	}
	*out = d;
	*len = dl;
	return 0;
}

int image_get(struct remote *r, const struct store_keys *keys,
	      const struct repo_meta_hdr *h, const char *path,
	      char *failed, size_t fsize)
{
	if (!h->image || h->image_parts != part_count(h->image_size))
		return -EBADMSG;
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int err = 0;
	for (uint32_t p = 0; p < h->image_parts && !err; p++) {
		uint8_t *d = NULL;
		size_t dl = 0;
		err = image_get_part(r, keys, h, p, &d, &dl, NULL);
		if (!err)
			err = pwrite_full(fd, d, dl, (off_t)p * IMAGE_PART_SIZE);
		free(d);
		if (err && failed)
			image_part_key(h->image, h->image_id, p, failed, fsize);
	}
	if (!err && fsync(fd))
		err = -errno;
	close(fd);
	if (err)
		unlink(path);
	return err;
}
