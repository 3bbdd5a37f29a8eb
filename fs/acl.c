/*
 * acl.c - POSIX ACLs in their xattr form and their link to the mode bits
 * (rules in acl.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "acl.h"
#include "../chunker/util.h"

#define ACL_VERSION 2
#define TAG_USER_OBJ 0x01
#define TAG_USER 0x02
#define TAG_GROUP_OBJ 0x04
#define TAG_GROUP 0x08
#define TAG_MASK 0x10
#define TAG_OTHER 0x20
#define ENTRY_SIZE 8

static unsigned entry_tag(const uint8_t *e)
{
	return e[0] | e[1] << 8;
}

static unsigned entry_perm(const uint8_t *e)
{
	return e[2] | e[3] << 8;
}

static void entry_set_perm(uint8_t *e, unsigned perm)
{
	e[2] = perm & 7;
	e[3] = 0;
}

int acl_is_acl_name(const char *name)
{
	return !strcmp(name, ACL_XATTR_ACCESS) || !strcmp(name, ACL_XATTR_DEFAULT);
}

/* The order the kernel requires: owner, named users (ids ascending),
 * owning group, named groups (ascending), mask, other. */
int acl_valid(const void *val, size_t len)
{
	const uint8_t *p = val;
	if (len < 4 || (len - 4) % ENTRY_SIZE || get_le32(p) != ACL_VERSION)
		return -EINVAL;
	enum { WANT_OWNER, USERS, GROUPS, WANT_OTHER, DONE } state = WANT_OWNER;
	int needs_mask = 0, have_prev = 0;
	uint32_t prev = 0;
	for (size_t off = 4; off < len; off += ENTRY_SIZE) {
		const uint8_t *e = p + off;
		uint32_t id = get_le32(e + 4);
		if (entry_perm(e) & ~7u)
			return -EINVAL;
		switch (entry_tag(e)) {
		case TAG_USER_OBJ:
			if (state != WANT_OWNER)
				return -EINVAL;
			state = USERS;
			break;
		case TAG_USER:
		case TAG_GROUP:
			if (state != (entry_tag(e) == TAG_USER ? USERS : GROUPS) ||
			    (have_prev && id <= prev))
				return -EINVAL;
			prev = id;
			have_prev = 1;
			needs_mask = 1;
			break;
		case TAG_GROUP_OBJ:
			if (state != USERS)
				return -EINVAL;
			state = GROUPS;
			have_prev = 0;
			break;
		case TAG_MASK:
			if (state != GROUPS)
				return -EINVAL;
			state = WANT_OTHER;
			break;
		case TAG_OTHER:
			if (state != WANT_OTHER && !(state == GROUPS && !needs_mask))
				return -EINVAL;
			state = DONE;
			break;
		default:
			return -EINVAL;
		}
	}
	return state == DONE ? 0 : -EINVAL;
}

int acl_equiv_mode(const void *val, size_t len, mode_t *perm)
{
	if (acl_valid(val, len))
		return -EINVAL;
	const uint8_t *p = val;
	mode_t m = 0;
	int more = 0;
	for (size_t off = 4; off < len; off += ENTRY_SIZE) {
		const uint8_t *e = p + off;
		switch (entry_tag(e)) {
		case TAG_USER_OBJ:
			m |= entry_perm(e) << 6;
			break;
		case TAG_GROUP_OBJ:
			m |= entry_perm(e) << 3;
			break;
		case TAG_MASK:	/* comes after the owning group */
			m = (m & ~(mode_t)070) | entry_perm(e) << 3;
			more = 1;
			break;
		case TAG_OTHER:
			m |= entry_perm(e);
			break;
		default:
			more = 1;
		}
	}
	*perm = m;
	return more;
}

/* The entry that holds the group class's bits: the mask, else the owning
 * group. */
static uint8_t *group_class(uint8_t *p, size_t len)
{
	uint8_t *group = NULL;
	for (size_t off = 4; off < len; off += ENTRY_SIZE) {
		if (entry_tag(p + off) == TAG_MASK)
			return p + off;
		if (entry_tag(p + off) == TAG_GROUP_OBJ)
			group = p + off;
	}
	return group;
}

void acl_apply_mode(void *val, size_t len, mode_t mode)
{
	uint8_t *p = val;
	for (size_t off = 4; off < len; off += ENTRY_SIZE) {
		if (entry_tag(p + off) == TAG_USER_OBJ)
			entry_set_perm(p + off, mode >> 6);
		else if (entry_tag(p + off) == TAG_OTHER)
			entry_set_perm(p + off, mode);
	}
	uint8_t *g = group_class(p, len);
	if (g)
		entry_set_perm(g, mode >> 3);
}

int acl_inherit(const void *dacl, size_t len, mode_t *mode, void *out)
{
	if (acl_valid(dacl, len))
		return -EINVAL;
	uint8_t *p = out;
	memcpy(p, dacl, len);
	mode_t m = *mode;
	int more = 0;
	/* The new inode gets no permission that either the caller's mode or
	 * the default ACL withholds. */
	for (size_t off = 4; off < len; off += ENTRY_SIZE) {
		uint8_t *e = p + off;
		unsigned perm = entry_perm(e);
		switch (entry_tag(e)) {
		case TAG_USER_OBJ:
			perm &= m >> 6;
			m &= (mode_t)perm << 6 | ~(mode_t)S_IRWXU;
			entry_set_perm(e, perm);
			break;
		case TAG_OTHER:
			perm &= m;
			m &= (mode_t)perm | ~(mode_t)S_IRWXO;
			entry_set_perm(e, perm);
			break;
		case TAG_GROUP_OBJ:
			break;
		default:	/* named entries and the mask */
			more = 1;
		}
	}
	uint8_t *g = group_class(p, len);
	unsigned gperm = entry_perm(g) & (m >> 3);
	m &= (mode_t)gperm << 3 | ~(mode_t)S_IRWXG;
	entry_set_perm(g, gperm);
	*mode = m;
	return more;
}

/* The xattr convention: size 0 asks the length only. */
static int copy_out(void *buf, size_t size, const void *val, int r)
{
	if (r < 0 || !size)
		return r;
	if ((size_t)r > size)
		return -ERANGE;
	memcpy(buf, val, r);
	return r;
}

int acl_xattr_get(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		  mode_t mode, const char *name, void *buf, size_t size)
{
	if (strcmp(name, ACL_XATTR_ACCESS))
		return ns_xattr_get(ix, vol, view, ino, name, buf, size);
	int len = ns_xattr_get(ix, vol, view, ino, name, NULL, 0);
	if (len < 0)
		return len;
	uint8_t *val = malloc(len ? len : 1);
	if (!val)
		return -ENOMEM;
	int r = ns_xattr_get(ix, vol, view, ino, name, val, len);
	mode_t perm;
	if (r >= 0) {
		acl_apply_mode(val, r, mode);
		/* Minimal or malformed: the mode says it all. */
		if (acl_equiv_mode(val, r, &perm) != 1)
			r = -ENODATA;
	}
	r = copy_out(buf, size, val, r);
	free(val);
	return r;
}

int acl_xattr_list(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		   mode_t mode, char *buf, size_t size)
{
	int len = ns_xattr_list(ix, vol, view, ino, NULL, 0);
	if (len <= 0)
		return len;
	char *names = malloc(len);
	if (!names)
		return -ENOMEM;
	int r = ns_xattr_list(ix, vol, view, ino, names, len);
	for (char *x = names; r > 0 && x < names + r; x += strlen(x) + 1) {
		if (strcmp(x, ACL_XATTR_ACCESS) ||
		    acl_xattr_get(ix, vol, view, ino, mode, x, NULL, 0) != -ENODATA)
			continue;
		size_t n = strlen(x) + 1;
		memmove(x, x + n, names + r - (x + n));
		r -= n;
		break;
	}
	r = copy_out(buf, size, names, r);
	free(names);
	return r;
}
