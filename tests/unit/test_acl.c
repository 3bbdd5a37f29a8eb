/*
 * test_acl.c - unit tests for fs/acl.c: validation in the kernel's order,
 * the mode an ACL stands for, chmod's rewrite, and inheritance at create
 * (the cases `setfacl -d` users meet).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "acl.h"
#include "check.h"

enum { UO = 0x01, U = 0x02, GO = 0x04, G = 0x08, M = 0x10, O = 0x20 };

/* The xattr form of n (tag, perm, id) triples into buf; returns its length. */
static size_t mk(uint8_t *buf, const unsigned (*e)[3], int n)
{
	buf[0] = 2;
	buf[1] = buf[2] = buf[3] = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *p = buf + 4 + 8 * i;
		p[0] = e[i][0];
		p[1] = 0;
		p[2] = e[i][1];
		p[3] = 0;
		uint32_t id = e[i][2];
		memcpy(p + 4, &id, 4);	/* little-endian machine */
	}
	return 4 + 8 * (size_t)n;
}

static unsigned perm_of(const uint8_t *buf, size_t len, unsigned tag)
{
	for (size_t off = 4; off < len; off += 8)
		if (buf[off] == tag)
			return buf[off + 2];
	return 99;
}

int main(void)
{
	uint8_t a[128], b[128];
	const unsigned minimal[][3] = { { UO, 7, -1u }, { GO, 5, -1u }, { O, 5, -1u } };
	const unsigned ext[][3] = { { UO, 6, -1u }, { U, 4, 101 }, { U, 6, 102 },
				    { GO, 4, -1u }, { G, 7, 2000 }, { M, 6, -1u },
				    { O, 0, -1u } };
	mode_t perm = 0;

	size_t l = mk(a, minimal, 3);
	CHECK_EQ(acl_valid(a, l), 0);
	CHECK_EQ(acl_equiv_mode(a, l, &perm), 0);
	CHECK_EQ(perm, 0755);

	l = mk(a, ext, 7);
	CHECK_EQ(acl_valid(a, l), 0);
	CHECK_EQ(acl_equiv_mode(a, l, &perm), 1);
	CHECK_EQ(perm, 0660);	/* the mask, not the owning group, is the group class */

	/* Malformed: named users out of order, a named entry without a
	 * mask, no other entry, a bad version, a torn entry. */
	const unsigned unsorted[][3] = { { UO, 7, -1u }, { U, 4, 102 }, { U, 4, 101 },
					 { GO, 4, -1u }, { M, 7, -1u }, { O, 0, -1u } };
	CHECK_EQ(acl_valid(a, mk(a, unsorted, 6)), -EINVAL);
	const unsigned nomask[][3] = { { UO, 7, -1u }, { U, 4, 101 }, { GO, 4, -1u },
				       { O, 0, -1u } };
	CHECK_EQ(acl_valid(a, mk(a, nomask, 4)), -EINVAL);
	CHECK_EQ(acl_valid(a, mk(a, minimal, 2)), -EINVAL);
	l = mk(a, minimal, 3);
	CHECK_EQ(acl_valid(a, l - 1), -EINVAL);
	a[0] = 1;
	CHECK_EQ(acl_valid(a, l), -EINVAL);

	/* chmod: owner, mask and other follow; the owning group stays. */
	l = mk(a, ext, 7);
	acl_apply_mode(a, l, 0751);
	CHECK_EQ(perm_of(a, l, UO), 7);
	CHECK_EQ(perm_of(a, l, M), 5);
	CHECK_EQ(perm_of(a, l, GO), 4);
	CHECK_EQ(perm_of(a, l, O), 1);
	l = mk(a, minimal, 3);
	acl_apply_mode(a, l, 0640);
	CHECK_EQ(acl_equiv_mode(a, l, &perm), 0);
	CHECK_EQ(perm, 0640);

	/* Inheritance: a file asked 0666 under default u::rwx,u:101:rwx,
	 * g::r-x,m::rwx,o::--- gets 0660 and keeps the named entry. */
	const unsigned dflt[][3] = { { UO, 7, -1u }, { U, 7, 101 }, { GO, 5, -1u },
				     { M, 7, -1u }, { O, 0, -1u } };
	l = mk(a, dflt, 5);
	mode_t mode = S_IFREG | 0666;
	CHECK_EQ(acl_inherit(a, l, &mode, b), 1);
	CHECK_EQ(mode, S_IFREG | 0660);
	CHECK_EQ(perm_of(b, l, UO), 6);
	CHECK_EQ(perm_of(b, l, M), 6);
	CHECK_EQ(perm_of(b, l, O), 0);
	/* A minimal default gives no access ACL, only the masked mode. */
	l = mk(a, minimal, 3);
	mode = S_IFDIR | 0777;
	CHECK_EQ(acl_inherit(a, l, &mode, b), 0);
	CHECK_EQ(mode, S_IFDIR | 0755);
	mode = S_IFREG | 0600;
	CHECK_EQ(acl_inherit(a, l, &mode, b), 0);
	CHECK_EQ(mode, S_IFREG | 0600);
	CHECK_EQ(acl_inherit(a, l - 8, &mode, b), -EINVAL);
	return CHECK_DONE();
}
