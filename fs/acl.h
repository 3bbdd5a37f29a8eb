/*
 * acl.h - POSIX ACLs as a local filesystem keeps them: the link between
 * an access ACL and the mode bits, and what a directory's default ACL
 * gives a new inode.
 *
 * The kernel enforces ACLs (FUSE_POSIX_ACL with default_permissions) but
 * leaves their link to the mode to the filesystem, as ext4 does itself
 * (rule 1 is I10 in docs/DESIGN.md):
 *   1. The mode is the truth for the three entries a mode can say: the
 *      owner, the group class (the mask if there is one, else the owning
 *      group) and other.  A stored access ACL is always read through the
 *      current mode (acl_xattr_get), so chmod needs no ACL rewrite to be
 *      seen, and ACLs stored before tresor applied them (opaque xattrs of
 *      old stores, often minimal copies made by `cp -a`) cannot grant
 *      more than the mode says.
 *   2. An access ACL that says no more than a mode is not stored: setting
 *      it only sets the mode (acl_equiv_mode), and reading it answers
 *      ENODATA, as on ext4.
 *   3. A new inode under a directory with a default ACL inherits it
 *      (acl_inherit), and the process umask is then ignored; without one
 *      the umask applies.
 * The value format is the kernel's xattr form: a little-endian u32
 * version 2, then entries of u16 tag, u16 perm, u32 id.
 */
#ifndef TRESOR_ACL_H
#define TRESOR_ACL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "namespace.h"

#define ACL_XATTR_ACCESS "system.posix_acl_access"
#define ACL_XATTR_DEFAULT "system.posix_acl_default"

/* 1 if name is one of the two ACL xattrs. */
int acl_is_acl_name(const char *name);

/* 0 if val is a well-formed ACL (entries in order, one owner, group and
 * other entry, a mask where named entries need one), else -EINVAL. */
int acl_valid(const void *val, size_t len);

/* The permission bits (0777) val stands for into *perm.  Returns 1 if val
 * says more than those bits (it must be stored), 0 if not, -EINVAL. */
int acl_equiv_mode(const void *val, size_t len, mode_t *perm);

/* Rewrite val's owner, group-class and other entries to mode's bits:
 * what chmod does to an access ACL. */
void acl_apply_mode(void *val, size_t len, mode_t mode);

/* Inheritance at create.  dacl is the parent directory's default ACL,
 * *mode the mode the caller asked for (type and bits, before any umask).
 * Masks *mode by the ACL and writes the new inode's access ACL into out
 * (len bytes, as dacl).  Returns 1 if that access ACL must be stored, 0
 * if the mode says it all, -EINVAL for a malformed dacl. */
int acl_inherit(const void *dacl, size_t len, mode_t *mode, void *out);

/* An xattr as programs see it (rule 1): like ns_xattr_get, but an
 * access ACL is read through mode and answers -ENODATA when minimal. */
int acl_xattr_get(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		  mode_t mode, const char *name, void *buf, size_t size);

/* Like ns_xattr_list, without an access ACL that is minimal under
 * mode. */
int acl_xattr_list(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		   mode_t mode, char *buf, size_t size);

#endif
