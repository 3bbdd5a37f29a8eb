/*
 * fuzz_delta.c - libFuzzer target for chunker/changelog.c applying a metadata
 * delta, as `tresor recover` does with every meta/N object once it has
 * authenticated and decompressed it.  The input is the delta itself
 * (TRSDELT1 header, records of typed values), applied inside a write
 * transaction to an index created once, then rolled back.
 *
 * A malformed delta must give an error (-EBADMSG, -EIO) and apply
 * nothing, never crash, hang or read out of bounds; a well-formed one
 * with wrong values may write wrong rows (the AEAD keeps strangers from
 * writing deltas; this guards the parser and a buggy writer).  After a
 * failed apply the index must still answer a query.
 */
#include "fuzz_common.h"
#include "changelog.h"
#include "namespace.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>

static struct index *ix;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[300];

	(void)argc, (void)argv;
	snprintf(path, sizeof(path), "%s/delta-index.db", fuzz_tmpdir());
	unlink(path);
	/* quiet: malformed records make SQL errors on purpose */
	log_set_level(LOG_ERR);
	if (index_open(path, 1, &ix))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t from = 0, to = 0;

	if (index_begin(ix))
		abort();
	int err = changelog_apply(ix, data, size, &from, &to);
	if (err > 0)
		abort();
	index_rollback(ix);
	/* the index is still usable */
	int64_t v;
	err = index_meta_get(ix, "format", &v);
	if (err && err != -ENOENT)
		abort();
	return 0;
}
