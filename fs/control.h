/*
 * control.h - a mounted volume's control socket: how `tresor snapshot
 * create` reaches the volume's running daemon instead of writing the store
 * behind its back, and how the scheduling daemon reads its op latencies.
 *
 * An abstract Unix socket named after the store's real path and the
 * volume id; one request line, one reply line.  Only root and the
 * daemon's own user may talk to it (SO_PEERCRED).  Requests: ping,
 * take-snapshot TIME PINNED [NAME], freeze, opstats, mountpoint (where the volume is
 * mounted: `tresor restore` into it copies by sharing extents).
 */
#ifndef TRESOR_CONTROL_H
#define TRESOR_CONTROL_H

#include <stddef.h>
#include <stdint.h>

struct vfs;
struct control;

/* Socket address (abstract: leading NUL) for store dir (a real path) and
 * volume id; *len receives the address length to pass to bind/connect. */
void control_addr(const char *store_dir, int64_t vol, void *sockaddr_un,
		  unsigned int *len);

/* Start serving requests for v in a thread.  -EADDRINUSE if another
 * daemon serves this volume. */
int control_start(struct vfs *v, struct control **out);
void control_stop(struct control *c);

/*
 * A connection to the control socket of (store_dir, vol) in *fd.
 * -ECONNREFUSED / -ENOENT when nobody listens there.
 */
int control_connect(const char *store_dir, int64_t vol, int *fd);

/*
 * Send one request line to the daemon serving (store_dir, vol) and read
 * its reply line into reply (NUL-terminated, newline stripped).
 * -ECONNREFUSED / -ENOENT when no daemon serves the volume.
 */
int control_request(const char *store_dir, int64_t vol, const char *line,
		    char *reply, size_t size);

/* Ask the daemon serving (store_dir, vol) to finish its open pack, commit
 * and hold all writes until control_thaw(*fd) (or 60 s).  -ECONNREFUSED /
 * -ENOENT when no daemon serves it. */
int control_freeze(const char *store_dir, int64_t vol, int *fd);
void control_thaw(int fd);

/* Does the daemon serving (store_dir, vol) answer within timeout_ms?
 * 0, -ETIMEDOUT, or -ECONNREFUSED / -ENOENT when none serves it. */
int control_ping(const char *store_dir, int64_t vol, int timeout_ms);

/* How long a daemon holds a snapshot set's member at most (ms).  The
 * holder must commit well before: cmd_snapshot gives up at half. */
#define CONTROL_HOLD_MS 60000

/*
 * Ask the daemon serving (store_dir, vol) to flush and hold every write
 * (vfs_snapshot_hold) until control_release(*fd); *epoch is the volume's
 * current epoch then.  Waits timeout_ms for the answer (-ETIMEDOUT).
 * -ECONNREFUSED / -ENOENT when no daemon serves it; the daemon's error
 * (-EROFS for a read-only mount) else.
 */
int control_hold(const char *store_dir, int64_t vol, int timeout_ms, int *fd,
		 int64_t *epoch);
/* Release the hold and wait for the daemon to take up its new epoch;
 * closes fd. */
int control_release(int fd, int timeout_ms);

#endif
