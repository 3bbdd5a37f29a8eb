/*
 * cmd_key.c - `tresor key change-passphrase STORE` and `tresor key export
 * STORE`: the store's key file (chunker/crypto.c), which wraps the master
 * key under the passphrase.
 *
 * A passphrase change rewraps the same master key: nothing else of the
 * store changes, and remotes get the new key file at their next push
 * (keys/key-HASH beside keys/key, FORMAT.md §15).  Copies of the old key
 * file (remotes pushed to before, backups of the store directory) still
 * open with the old passphrase: a change guards against a passphrase
 * leaking later, not against one that already leaked.
 */
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../chunker/crypto.h"
#include "cli.h"

static void key_path(const char *dir, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", dir, STORE_KEY_FILE);
	if (access(path, F_OK))
		die(EXIT_NO_STORE, "%s is not a tresor store (no key file %s); create one with 'tresor init %s'",
		    dir, path, dir);
}

static int key_change_passphrase(struct opts *o)
{
	if (o->npos != 2)
		die(EXIT_USAGE, "usage: tresor key change-passphrase STORE [--new-passphrase-file FILE] [--kdf-log2n N]");
	const char *dir = o->pos[1];
	char path[PATH_MAX];
	key_path(dir, path, sizeof(path));
	char *old = get_passphrase(o, 0, dir);
	char *new = get_new_passphrase(o, dir);
	if (!strcmp(old, new))
		die(1, "the new passphrase of %s is the old one; nothing changed", dir);
	struct kdf_params kp = { .log2n = (uint32_t)o->kdf_log2n, .r = 8, .p = 1 };
	int err = keyfile_rewrap(path, old, strlen(old), new, strlen(new),
				 o->kdf_log2n ? &kp : NULL);
	free_passphrase(old);
	free_passphrase(new);
	if (err == -EKEYREJECTED)
		die(EXIT_PASSPHRASE, "wrong passphrase for store %s; nothing changed", dir);
	if (err == -EINVAL)
		die(EXIT_USAGE, "--kdf-log2n: from 10 to 22: %ld", o->kdf_log2n);
	if (err == -EBADMSG || err == -EPROTONOSUPPORT)
		die(1, "the key file %s is damaged or from a newer tresor; nothing changed", path);
	if (err)
		die(1, "cannot change the passphrase of store %s: %s; the old one still works",
		    dir, strerror(-err));
	printf("changed the passphrase of store %s; now give the new one to everything that opens it (the daemon's passphrase-file, fstab's passphrase_file=, scripts); remotes get the new key file at their next push; copies made before (remotes, backups) still open with the old passphrase\n",
	       dir);
	return 0;
}

/* The key file as text for paper: base64 in lines of 64, between markers
 * that name the store, with a checksum to type-check a transcription. */
static int key_export(struct opts *o)
{
	if (o->npos != 2)
		die(EXIT_USAGE, "usage: tresor key export STORE");
	const char *dir = o->pos[1];
	char path[PATH_MAX];
	key_path(dir, path, sizeof(path));
	uint8_t *buf;
	size_t len;
	int err = read_file(path, &buf, &len);
	if (err)
		die(1, "cannot read the key file %s: %s", path, strerror(-err));
	unsigned char *b64 = malloc(4 * ((len + 2) / 3) + 1);
	if (!b64)
		die(1, "out of memory");
	int n = EVP_EncodeBlock(b64, buf, (int)len);
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
	char hex[65];
	hex_encode(md, 8, hex);
	free(buf);
	char when[64];
	cli_iso_time(time(NULL), when, sizeof(when));
	printf("tresor key file of store %s, exported %s\n", dir, when);
	printf("It holds the master key wrapped by the passphrase: with it and the\n"
	       "passphrase the data opens, with it alone it does not.  To put it back:\n"
	       "  sed -n '/^-----BEGIN/,/^-----END/p' THIS | sed '1d;$d' | base64 -d > STORE/%s\n"
	       "  chmod 600 STORE/%s; sha256sum STORE/%s  (starts with the checksum below)\n",
	       STORE_KEY_FILE, STORE_KEY_FILE, STORE_KEY_FILE);
	printf("-----BEGIN TRESOR KEY FILE-----\n");
	for (int i = 0; i < n; i += 64)
		printf("%.*s\n", n - i < 64 ? n - i : 64, b64 + i);
	printf("-----END TRESOR KEY FILE-----\n");
	printf("sha256 %s...\n", hex);
	free(b64);
	return 0;
}

int cmd_key(struct opts *o)
{
	const char *sub = o->npos ? o->pos[0] : "";
	if (!strcmp(sub, "change-passphrase"))
		return key_change_passphrase(o);
	if (!strcmp(sub, "export"))
		return key_export(o);
	die(EXIT_USAGE, "usage: tresor key change-passphrase STORE [--new-passphrase-file FILE] [--kdf-log2n N] | tresor key export STORE");
}
