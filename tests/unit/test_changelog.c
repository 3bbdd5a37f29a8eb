/*
 * test_changelog.c - deltas of the index replay to an identical index:
 * a full first delta, then an incremental one with updates and deletions;
 * a damaged delta applies nothing; rows of an older format (fewer
 * columns) apply, rows of a newer one do not; a delta of a newer store
 * format is refused as such (-EPROTONOSUPPORT), applying nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>

#include "changelog.h"
#include "check.h"
#include "index_sql.h"
#include "namespace.h"

static const char *tables[] = { "meta", "volume", "snapshot", "inode", "dentry",
				"extent", "xattr", "chunk", "pack", "orphan" };

/* All rows of every replicated table as one string. */
static char *dump(struct index *ix)
{
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	out[0] = 0;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY 1, 2, 3, 4", tables[t]);
		if (!strcmp(tables[t], "meta") || !strcmp(tables[t], "orphan") ||
		    !strcmp(tables[t], "chunk") || !strcmp(tables[t], "pack") ||
		    !strcmp(tables[t], "volume"))
			snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY 1, 2", tables[t]);
		sqlite3_stmt *st;
		CHECK(sqlite3_prepare_v2(index_db(ix), sql, -1, &st, NULL) == SQLITE_OK);
		while (sqlite3_step(st) == SQLITE_ROW) {
			for (int i = 0; i < sqlite3_column_count(st); i++) {
				const unsigned char *txt = sqlite3_column_text(st, i);
				int n = sqlite3_column_bytes(st, i);
				while (len + n * 2 + 64 > cap)
					out = realloc(out, cap *= 2);
				len += sprintf(out + len, "%s|", tables[t]);
				for (int k = 0; txt && k < n; k++)
					len += sprintf(out + len, "%02x", txt[k]);
				out[len++] = ',';
				out[len] = 0;
			}
			out[len++] = '\n';
			out[len] = 0;
		}
		sqlite3_finalize(st);
	}
	return out;
}

static struct index *fresh(const char *path)
{
	struct index *ix;
	unlink(path);
	CHECK_EQ(index_open(path, 1, &ix), 0);
	return ix;
}

/* Export everything noted after *seq from a, apply it to b. */
static void replicate(struct index *a, struct index *b, uint64_t *seq)
{
	uint64_t last = 0, f = 99, t = 99;
	CHECK_EQ(changelog_last(a, &last), 0);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(changelog_export(a, *seq, last, &buf, &len), 0);
	CHECK_EQ(index_begin(b), 0);
	CHECK_EQ(changelog_apply(b, buf, len, &f, &t), 0);
	CHECK_EQ(index_commit(b), 0);
	CHECK_EQ(f, *seq);
	CHECK_EQ(t, last);
	free(buf);
	*seq = last;
}

int main(void)
{
	char dir[] = "/tmp/tresor-test-changelog-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char pa[256], pb[256];
	snprintf(pa, sizeof(pa), "%s/a.db", dir);
	snprintf(pb, sizeof(pb), "%s/b.db", dir);
	struct index *a = fresh(pa), *b = fresh(pb);
	CHECK_EQ(changelog_enable(a), 0);
	CHECK_EQ(changelog_enable(a), 0);	/* idempotent */

	struct volume_info vi;
	CHECK_EQ(index_begin(a), 0);
	CHECK_EQ(index_meta_set(a, "format_version", 1), 0);
	CHECK_EQ(ns_volume_create(a, "plans", 0, 0, 1000, &vi), 0);
	int64_t pack;
	uint8_t name[PACK_NAME_LEN] = { 1, 2, 3 };
	CHECK_EQ(catalog_pack_insert(a, name, &pack), 0);
	struct chunk_loc c1 = { .pack = pack, .e = { .id = { 7 }, .off = 16, .slen = 100, .rlen = 72 } };
	struct chunk_loc c2 = { .pack = pack, .e = { .id = { 8 }, .off = 116, .slen = 50, .rlen = 22 } };
	CHECK_EQ(catalog_chunk_insert(a, &c1), 0);
	CHECK_EQ(catalog_chunk_insert(a, &c2), 0);
	for (uint64_t ino = 2; ino < 6; ino++) {
		struct inode_attr at = { .ino = ino, .mode = 0100644, .nlink = 1,
					 .size = 72, .mtime = 5 };
		CHECK_EQ(ns_inode_put(a, vi.id, vi.epoch, &at), 0);
		char nm[16];
		snprintf(nm, sizeof(nm), "f%llu", (unsigned long long)ino);
		CHECK_EQ(ns_dentry_add(a, vi.id, vi.epoch, ROOT_INO, nm, ino), 0);
		struct extent x = { .off = 0, .len = 72, .chunk = c1.rowid };
		CHECK_EQ(ns_extent_replace(a, vi.id, vi.epoch, ino, &x), 0);
	}
	CHECK_EQ(ns_xattr_set(a, vi.id, vi.epoch, 2, "user.k", "\0bin\xff", 5), 0);
	CHECK_EQ(index_commit(a), 0);

	uint64_t seq = 0;
	replicate(a, b, &seq);
	char *da = dump(a), *db = dump(b);
	CHECK(strcmp(da, db) == 0);
	CHECK(strlen(da) > 100);
	free(da);
	free(db);

	/* A snapshot, then changes after it: updates, deletions, a punch. */
	struct snapshot_info si;
	CHECK_EQ(index_begin(a), 0);
	CHECK_EQ(ns_snapshot_create(a, vi.id, "2026-11-01", 42, 0, &si), 0);
	int64_t epoch = si.epoch + 1;
	CHECK_EQ(ns_dentry_remove(a, vi.id, epoch, ROOT_INO, "f3"), 0);
	CHECK_EQ(ns_inode_kill(a, vi.id, epoch, 3), 0);
	struct extent x2 = { .off = 10, .len = 22, .chunk = c2.rowid };
	CHECK_EQ(ns_extent_replace(a, vi.id, epoch, 4, &x2), 0);
	CHECK_EQ(ns_xattr_remove(a, vi.id, epoch, 2, "user.k"), 0);
	CHECK_EQ(ns_orphan_add(a, vi.id, 5), 0);
	CHECK_EQ(index_commit(a), 0);
	uint64_t before = seq;
	replicate(a, b, &seq);
	CHECK(seq > before);
	da = dump(a);
	db = dump(b);
	CHECK(strcmp(da, db) == 0);
	free(da);
	free(db);

	/* Deleting the snapshot drops rows: the deletions replicate. */
	CHECK_EQ(index_begin(a), 0);
	int64_t rows = 0;
	CHECK_EQ(ns_snapshot_delete(a, si.id, &rows), 0);
	CHECK(rows > 0);
	CHECK_EQ(ns_orphan_remove(a, vi.id, 5), 0);
	CHECK_EQ(index_commit(a), 0);
	replicate(a, b, &seq);
	da = dump(a);
	db = dump(b);
	CHECK(strcmp(da, db) == 0);
	free(db);

	/* A damaged delta is refused whole; b stays as it was. */
	CHECK_EQ(index_begin(a), 0);
	struct inode_attr at = { .ino = 9, .mode = 040755, .nlink = 2 };
	CHECK_EQ(ns_inode_put(a, vi.id, epoch, &at), 0);
	CHECK_EQ(index_commit(a), 0);
	uint64_t last;
	CHECK_EQ(changelog_last(a, &last), 0);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(changelog_export(a, seq, last, &buf, &len), 0);
	for (size_t cut = 1; cut < len; cut += 7)
		CHECK_EQ(changelog_apply(b, buf, cut, NULL, NULL), -EBADMSG);
	buf[0] ^= 1;
	CHECK_EQ(changelog_apply(b, buf, len, NULL, NULL), -EBADMSG);
	free(buf);
	db = dump(b);
	CHECK(strcmp(da, db) == 0);
	free(da);
	free(db);

	/* Trimming forgets notes; nothing noted after seq means an empty delta. */
	CHECK_EQ(changelog_trim(a, last), 0);
	CHECK_EQ(changelog_export(a, last, last, &buf, &len), 0);
	CHECK_EQ(len, 8 + 8 + 8 + 4);
	free(buf);

	/* Format 1's snapshot rows (no set_name) apply to a format 2 index,
	 * the new column NULL; format 2's do not fit a format 1 table. */
	char pc[256], pd[256];
	snprintf(pc, sizeof(pc), "%s/c.db", dir);
	snprintf(pd, sizeof(pd), "%s/d.db", dir);
	struct index *c = fresh(pc), *d = fresh(pd);
	CHECK_EQ(sqlite3_exec(index_db(c), "ALTER TABLE snapshot DROP COLUMN set_name;"
			      "ALTER TABLE snapshot DROP COLUMN note", NULL, NULL, NULL), SQLITE_OK);
	CHECK_EQ(changelog_enable(c), 0);
	CHECK_EQ(sqlite3_exec(index_db(c), "INSERT INTO snapshot VALUES (7, 1, 'old', 3, 5, 1)",
			      NULL, NULL, NULL), SQLITE_OK);
	uint64_t cs = 0;
	replicate(c, d, &cs);
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(index_db(d), "SELECT name, pinned, set_name IS NULL FROM snapshot WHERE id = 7",
				 -1, &st, NULL) == SQLITE_OK);
	CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
	const char *nm = (const char *)sqlite3_column_text(st, 0);
	CHECK(nm && !strcmp(nm, "old"));
	CHECK_EQ(sqlite3_column_int(st, 1), 1);
	CHECK_EQ(sqlite3_column_int(st, 2), 1);
	sqlite3_finalize(st);
	CHECK_EQ(changelog_enable(d), 0);
	CHECK_EQ(sqlite3_exec(index_db(d), "INSERT INTO snapshot VALUES (8, 1, 'new', 4, 6, 0, 'odoo', NULL)",
			      NULL, NULL, NULL), SQLITE_OK);
	CHECK_EQ(changelog_last(d, &last), 0);
	CHECK_EQ(changelog_export(d, 0, last, &buf, &len), 0);
	CHECK_EQ(changelog_apply(c, buf, len, NULL, NULL), -EBADMSG);
	free(buf);
	index_close(c);
	index_close(d);

	/* A store of a newer format (3: say, one more snapshot column): its
	 * delta names its format, and is refused as newer, not as damaged,
	 * before any row of it is applied.  The same delta with format 2
	 * only: as this code's, applied (the snapshot's set and note too). */
	char pe[256], pf[256];
	snprintf(pe, sizeof(pe), "%s/e.db", dir);
	snprintf(pf, sizeof(pf), "%s/f.db", dir);
	struct index *e = fresh(pe), *f = fresh(pf);
	CHECK_EQ(changelog_enable(e), 0);
	CHECK_EQ(sqlite3_exec(index_db(e), "INSERT INTO meta VALUES ('format_version', 2);"
			      "INSERT INTO snapshot VALUES (9, 1, 's', 4, 6, 1, 'odoo', 'marked')",
			      NULL, NULL, NULL), SQLITE_OK);
	int64_t fmt = -1;
	CHECK_EQ(changelog_last(e, &last), 0);
	CHECK_EQ(changelog_export(e, 0, last, &buf, &len), 0);
	CHECK_EQ(changelog_format(buf, len, &fmt), 0);
	CHECK_EQ(fmt, 2);
	CHECK_EQ(index_begin(f), 0);
	CHECK_EQ(changelog_apply(f, buf, len, NULL, NULL), 0);
	CHECK_EQ(index_commit(f), 0);
	free(buf);
	CHECK(sqlite3_prepare_v2(index_db(f), "SELECT set_name, note, pinned FROM snapshot WHERE id = 9",
				 -1, &st, NULL) == SQLITE_OK);
	CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
	CHECK(!strcmp(index_text(st, 0), "odoo") && !strcmp(index_text(st, 1), "marked"));
	CHECK_EQ(sqlite3_column_int(st, 2), 1);
	sqlite3_finalize(st);
	CHECK_EQ(sqlite3_exec(index_db(e), "ALTER TABLE snapshot ADD COLUMN later TEXT;"
			      "UPDATE meta SET value = 3 WHERE key = 'format_version';"
			      "INSERT INTO snapshot VALUES (10, 1, 't', 5, 7, 0, 'odoo', NULL, 'x')",
			      NULL, NULL, NULL), SQLITE_OK);
	CHECK_EQ(changelog_last(e, &last), 0);
	CHECK_EQ(changelog_export(e, 0, last, &buf, &len), 0);
	CHECK_EQ(changelog_format(buf, len, &fmt), 0);
	CHECK_EQ(fmt, 3);
	CHECK_EQ(index_begin(f), 0);
	CHECK_EQ(changelog_apply(f, buf, len, NULL, NULL), -EPROTONOSUPPORT);
	index_rollback(f);
	free(buf);
	int64_t v = 0;
	CHECK_EQ(index_meta_get(f, "format_version", &v), 0);
	CHECK_EQ(v, 2);
	CHECK(sqlite3_prepare_v2(index_db(f), "SELECT COUNT(*) FROM snapshot", -1, &st, NULL) ==
	      SQLITE_OK);
	CHECK_EQ(sqlite3_step(st), SQLITE_ROW);
	CHECK_EQ(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	/* A delta that changed no format names none. */
	CHECK_EQ(changelog_export(e, last, last, &buf, &len), 0);
	CHECK_EQ(changelog_format(buf, len, &fmt), 0);
	CHECK_EQ(fmt, 0);
	free(buf);
	index_close(e);
	index_close(f);

	index_close(a);
	index_close(b);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (!check_failures && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	printf("test_changelog: %s\n", check_failures ? "FAILED" : "ok");
	return CHECK_DONE();
}
