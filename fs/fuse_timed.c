/*
 * fuse_timed.c - the FUSE operations table with timing: each wrapper
 * calls the real operation (fuse_ops.c) and counts its duration in the
 * volume's opstats.  The operations reply before they return (one FUSE
 * thread by default), so that duration is the daemon's share of the
 * operation's latency.
 */
#include <time.h>

#include "fuse_int.h"
#include "opstats.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static const struct fuse_lowlevel_ops *inner(struct vfs *v)
{
	return v->inner_ops;
}

/* The request is gone once the operation replied: take v first. */
#define TIMED(OP, NAME, PARAMS, ARGS) \
	static void NAME##_timed PARAMS \
	{ \
		struct vfs *v = fuse_req_userdata(req); \
		uint64_t t0 = now_ns(); \
		inner(v)->NAME ARGS; \
		opstats_record(&v->opstats, OP, now_ns() - t0); \
	}

TIMED(OPS_LOOKUP, lookup, (fuse_req_t req, fuse_ino_t p, const char *n), (req, p, n))
TIMED(OPS_GETATTR, getattr, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi),
      (req, i, fi))
TIMED(OPS_SETATTR, setattr, (fuse_req_t req, fuse_ino_t i, struct stat *sb, int set,
			     struct fuse_file_info *fi), (req, i, sb, set, fi))
TIMED(OPS_OPEN, open, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi), (req, i, fi))
TIMED(OPS_CREATE, create, (fuse_req_t req, fuse_ino_t p, const char *n, mode_t m,
			   struct fuse_file_info *fi), (req, p, n, m, fi))
TIMED(OPS_READ, read, (fuse_req_t req, fuse_ino_t i, size_t s, off_t o,
		       struct fuse_file_info *fi), (req, i, s, o, fi))
TIMED(OPS_WRITE, write, (fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o,
			 struct fuse_file_info *fi), (req, i, b, s, o, fi))
TIMED(OPS_FLUSH, flush, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi), (req, i, fi))
TIMED(OPS_RELEASE, release, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi),
      (req, i, fi))
TIMED(OPS_FSYNC, fsync, (fuse_req_t req, fuse_ino_t i, int ds, struct fuse_file_info *fi),
      (req, i, ds, fi))
TIMED(OPS_READDIR, readdir, (fuse_req_t req, fuse_ino_t i, size_t s, off_t o,
			     struct fuse_file_info *fi), (req, i, s, o, fi))
TIMED(OPS_READDIR, readdirplus, (fuse_req_t req, fuse_ino_t i, size_t s, off_t o,
				 struct fuse_file_info *fi), (req, i, s, o, fi))
TIMED(OPS_MKDIR, mkdir, (fuse_req_t req, fuse_ino_t p, const char *n, mode_t m), (req, p, n, m))
TIMED(OPS_UNLINK, unlink, (fuse_req_t req, fuse_ino_t p, const char *n), (req, p, n))
TIMED(OPS_RENAME, rename, (fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np,
			   const char *nn, unsigned int fl), (req, p, n, np, nn, fl))

const struct fuse_lowlevel_ops *fuse_timed_ops(const struct fuse_lowlevel_ops *ops,
					       struct fuse_lowlevel_ops *out,
					       struct vfs *v)
{
	v->inner_ops = ops;
	*out = *ops;
#define WRAP(NAME) if (ops->NAME) out->NAME = NAME##_timed
	WRAP(lookup); WRAP(getattr); WRAP(setattr); WRAP(open); WRAP(create);
	WRAP(read); WRAP(write); WRAP(flush); WRAP(release); WRAP(fsync);
	WRAP(readdir); WRAP(readdirplus); WRAP(mkdir); WRAP(unlink); WRAP(rename);
#undef WRAP
	return out;
}
